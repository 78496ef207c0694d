//! `ForSync<T>`: an async resource, served to sync callers.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::block_on::{Call, Runtime};
use crate::bridge::bridge_handle;
use crate::error::Error;

/// The default deadline of a [`ForSync`] call, as in `reqwest::blocking`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Owns an async resource (typically a client) and serves it to sync code.
///
/// Sync callers reach the resource only through [`call`](Self::call), which
/// runs an async block against it and blocks until it finishes or its
/// deadline passes: the `reqwest::blocking` pattern for any async client.
/// Each call has the adapter's name and default timeout (30 s unless set),
/// real in every calling context that may block (see
/// [`block_on_timeout`](crate::block_on_timeout)), and from async code it is
/// refused with a typed error instead of freezing the runtime.
///
/// Build the resource with [`ForSync::connect`], which runs its constructor
/// on colorseam's bridge runtime, so the resource's IO is bound to a runtime
/// that outlives every caller. A resource built elsewhere can be handed over
/// with [`ForSync::new`]; it must then not depend on a runtime that shuts
/// down before the adapter.
///
/// # Caveats
///
/// - Calls run on the bridge runtime (or, from a pool thread, on the
///   runtime of the async caller that submitted the job), so the future
///   must be `Send + 'static`: it gets the resource as an `Arc<T>`.
/// - At the deadline the caller is released and the call's future is
///   cancelled at its next yield; a future that never yields keeps one
///   bridge worker busy.
///
/// # Drop
///
/// Dropping the adapter never blocks and never panics, in any context,
/// inside an async task included: the resource is handed to the bridge
/// runtime and dropped there, inside a runtime, as async resources expect.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use colorseam::adapter::ForSync;
///
/// /// An async client, as a vendor crate would provide it.
/// struct Client;
/// impl Client {
///     async fn connect() -> Client { Client }
///     async fn get(&self, key: &str) -> String {
///         tokio::time::sleep(Duration::from_millis(1)).await;
///         format!("value of {key}")
///     }
/// }
///
/// // Plain sync code, no runtime in sight.
/// let client = ForSync::builder("kv")
///     .default_timeout(Duration::from_secs(2))
///     .connect(Client::connect())
///     .unwrap();
/// let value = client.call(|c| async move { c.get("a").await }).unwrap();
/// assert_eq!(value, "value of a");
/// ```
pub struct ForSync<T: Send + Sync + 'static> {
    resource: Option<Arc<T>>,
    name: Arc<str>,
    timeout: Option<Duration>,
}

/// Configures a [`ForSync`]: made by [`ForSync::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` or `connect` is called"]
pub struct ForSyncBuilder {
    name: Arc<str>,
    timeout: Option<Duration>,
}

impl ForSyncBuilder {
    /// The deadline of every call made with [`call`](ForSync::call), and of
    /// [`connect`](Self::connect), from its start (default 30 s).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// No default deadline: calls wait as long as their future does (and
    /// [`connect`](Self::connect) as long as `make` does).
    pub fn no_default_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// Wraps a resource that is already built.
    pub fn build<T: Send + Sync + 'static>(self, resource: T) -> ForSync<T> {
        ForSync {
            resource: Some(Arc::new(resource)),
            name: self.name,
            timeout: self.timeout,
        }
    }

    /// Builds the resource by running `make` on the bridge runtime, within
    /// the default timeout.
    ///
    /// # Errors
    ///
    /// As [`block_on_timeout`](crate::block_on_timeout): refused from async
    /// code, timed out, or panicked.
    #[track_caller]
    pub fn connect<T, F>(self, make: F) -> Result<ForSync<T>, Error>
    where
        T: Send + Sync + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let call = Call::new(Some(self.name.clone()), "connect");
        // Always on the bridge (the resource's IO belongs there), so always
        // with a deadline, if a far one.
        let deadline = self
            .timeout
            .and_then(|t| call.started.checked_add(t))
            .unwrap_or_else(crate::block_on::far_future);
        let resource = call.run_until(make, Some(deadline), Runtime::Bridge)?;
        Ok(ForSync {
            resource: Some(Arc::new(resource)),
            name: self.name,
            timeout: self.timeout,
        })
    }
}

impl ForSync<()> {
    /// A builder for an adapter named `name` (default deadline 30 s); the
    /// resource's type comes with [`build`](ForSyncBuilder::build) or
    /// [`connect`](ForSyncBuilder::connect).
    pub fn builder(name: impl Into<String>) -> ForSyncBuilder {
        ForSyncBuilder {
            name: Arc::from(name.into()),
            timeout: Some(DEFAULT_TIMEOUT),
        }
    }
}

impl<T: Send + Sync + 'static> ForSync<T> {
    /// Wraps a resource that is already built, with the default settings.
    pub fn new(name: impl Into<String>, resource: T) -> Self {
        ForSync::builder(name).build(resource)
    }

    /// Builds the resource by running `make` on the bridge runtime, within
    /// the default timeout, with the default settings.
    ///
    /// # Errors
    ///
    /// As [`block_on_timeout`](crate::block_on_timeout): refused from async
    /// code, timed out, or panicked.
    #[track_caller]
    pub fn connect<F>(name: impl Into<String>, make: F) -> Result<Self, Error>
    where
        F: Future<Output = T> + Send + 'static,
    {
        ForSync::builder(name).connect(make)
    }

    /// The adapter's name, as errors show it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `f(resource)` and blocks until its future finishes or the
    /// adapter's timeout passes.
    ///
    /// # Errors
    ///
    /// [`Error::is_async_context`] from async code (`.await` the resource
    /// directly there); [`Error::is_timeout`] at the deadline (the future is
    /// then cancelled); [`Error::is_panic`] if the future panicked.
    #[track_caller]
    pub fn call<F, Fut>(&self, f: F) -> Result<Fut::Output, Error>
    where
        F: FnOnce(Arc<T>) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.call_with(f, self.timeout)
    }

    /// [`call`](Self::call) with its own deadline `timeout` from now.
    ///
    /// # Errors
    ///
    /// As for [`call`](Self::call).
    #[track_caller]
    pub fn call_timeout<F, Fut>(&self, f: F, timeout: Duration) -> Result<Fut::Output, Error>
    where
        F: FnOnce(Arc<T>) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        self.call_with(f, Some(timeout))
    }

    #[track_caller]
    fn call_with<F, Fut>(&self, f: F, timeout: Option<Duration>) -> Result<Fut::Output, Error>
    where
        F: FnOnce(Arc<T>) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        let call = Call::new(Some(self.name.clone()), "call");
        // Refuse async callers before running any of the caller's code.
        if crate::context().is_async() {
            return Err(call.refusal());
        }
        let resource = self
            .resource
            .clone()
            .expect("the resource is only taken by Drop");
        // Without a timeout the future still runs on the bridge, so a call
        // behaves the same with or without one: a far deadline stands in.
        let deadline = timeout
            .and_then(|t| call.started.checked_add(t))
            .unwrap_or_else(crate::block_on::far_future);
        call.run_until(f(resource), Some(deadline), Runtime::Bridge)
    }
}

impl<T: Send + Sync + 'static> Drop for ForSync<T> {
    fn drop(&mut self) {
        let Some(resource) = self.resource.take() else {
            return;
        };
        // Dropped inside the bridge runtime: async resources may need a
        // runtime to deregister, and this thread may be an async worker that
        // must not block. Spawning never blocks and needs no context.
        match bridge_handle() {
            Ok(handle) => drop(handle.spawn(async move { drop(resource) })),
            Err(_) => crate::pool::task::drop_quietly(resource),
        }
    }
}

impl<T: Send + Sync + 'static> fmt::Debug for ForSync<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForSync")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
