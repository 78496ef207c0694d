//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

/// OS threads of this process whose name starts with `prefix`, read from
/// /proc so the figure does not depend on the pool's own bookkeeping.
///
/// # Panics
///
/// On Linux, if `/proc/self/task` cannot be read: a count of 0 there would
/// make every `<=` check on it pass without checking anything. Elsewhere
/// there is no /proc and the count is 0.
pub fn os_threads_named(prefix: &str) -> usize {
    os_threads_in("/proc/self/task", prefix)
}

/// [`os_threads_named`], listing the threads in `tasks` (a `/proc/<pid>/task`).
pub fn os_threads_in(tasks: impl AsRef<std::path::Path>, prefix: &str) -> usize {
    let tasks = tasks.as_ref();
    let tasks = match std::fs::read_dir(tasks) {
        Ok(tasks) => tasks,
        Err(error) if cfg!(target_os = "linux") => {
            panic!(
                "cannot count threads: {} is unreadable ({error})",
                tasks.display()
            )
        }
        Err(_) => return 0,
    };
    tasks
        .filter_map(|t| t.ok())
        // A thread that exits between the listing and the read is gone.
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.trim_end().starts_with(prefix))
        .count()
}

/// Polls `condition` every 5 ms until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Async version of [`eventually`].
pub async fn eventually_async(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A gate a job waits on, opened from the test: lets tests hold jobs
/// "running" for exactly as long as they need, without sleeps.
#[derive(Clone)]
pub struct Gate {
    inner: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
}

impl Gate {
    pub fn new() -> Self {
        Gate {
            inner: Default::default(),
        }
    }

    pub fn open(&self) {
        let (lock, cv) = &*self.inner;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }

    /// Blocks until opened, or until `limit` passes (so a failing test
    /// cannot leave threads stuck forever).
    pub fn wait(&self, limit: Duration) {
        let (lock, cv) = &*self.inner;
        let guard = lock.lock().unwrap();
        let _ = cv.wait_timeout_while(guard, limit, |open| !*open).unwrap();
    }
}

/// Fills `pool` with `n` jobs that block until `gate` opens (at most 20 s),
/// returning their futures: the usual way to make a pool busy or full.
pub fn hold(pool: &colorseam::BlockingPool, n: usize, gate: &Gate) -> Vec<colorseam::Offload<()>> {
    (0..n)
        .map(|_| {
            let gate = gate.clone();
            pool.offload(move || gate.wait(Duration::from_secs(20)))
        })
        .collect()
}

/// Opens `gate` and waits for every job [`hold`] started; each must succeed.
pub async fn release(gate: &Gate, held: Vec<colorseam::Offload<()>>) {
    gate.open();
    for job in held {
        job.await.unwrap();
    }
}

/// A waker that runs user code: `on_wake` every time it is woken, `on_drop`
/// when its last clone goes. The shape of a waker (or an executor) that
/// re-enters the crate from a wake-up or a drop.
pub struct Reentrant {
    on_wake: Box<dyn Fn() + Send + Sync>,
    on_drop: Option<Box<dyn FnOnce() + Send + Sync>>,
    pub woken: std::sync::atomic::AtomicUsize,
}

impl Reentrant {
    /// A waker that runs `on_wake` on every wake.
    pub fn waker(on_wake: impl Fn() + Send + Sync + 'static) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Reentrant {
            on_wake: Box::new(on_wake),
            on_drop: None,
            woken: Default::default(),
        })
    }

    /// A waker that runs `on_drop` when its last clone is dropped.
    pub fn dropping(on_drop: impl FnOnce() + Send + Sync + 'static) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Reentrant {
            on_wake: Box::new(|| {}),
            on_drop: Some(Box::new(on_drop)),
            woken: Default::default(),
        })
    }

    pub fn woken(&self) -> usize {
        self.woken.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl std::task::Wake for Reentrant {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.woken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (self.on_wake)();
    }
}

impl Drop for Reentrant {
    fn drop(&mut self) {
        if let Some(on_drop) = self.on_drop.take() {
            on_drop();
        }
    }
}

/// Polls `future` once with `waker`.
pub fn poll_once<F: std::future::Future + ?Sized>(
    future: std::pin::Pin<&mut F>,
    waker: &std::task::Waker,
) -> std::task::Poll<F::Output> {
    future.poll(&mut std::task::Context::from_waker(waker))
}

/// Runs `f` on a thread of its own and returns its value, failing the test
/// if it has not returned within `limit`: a deadlock fails in seconds
/// instead of hanging the suite (the stuck thread is left behind). A panic
/// in `f` is resumed here.
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("test-within".to_owned())
        .spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        })
        .expect("the test can start a thread");
    match rx.recv_timeout(limit) {
        Ok(Ok(value)) => value,
        Ok(Err(payload)) => std::panic::resume_unwind(payload),
        Err(_) => panic!("{what} did not return within {limit:?}: deadlocked?"),
    }
}

/// The ids of this process's OS threads whose name starts with `prefix`,
/// from /proc (see [`os_threads_named`]; panics the same way).
pub fn os_thread_ids_named(prefix: &str) -> Vec<std::ffi::OsString> {
    let tasks = match std::fs::read_dir("/proc/self/task") {
        Ok(tasks) => tasks,
        Err(error) if cfg!(target_os = "linux") => {
            panic!("cannot count threads: /proc/self/task is unreadable ({error})")
        }
        Err(_) => return Vec::new(),
    };
    tasks
        .filter_map(|t| t.ok())
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|name| name.trim_end().starts_with(prefix))
        })
        .map(|t| t.file_name())
        .collect()
}

/// Counts the OS threads named `prefix…` from /proc in a tight loop on a
/// watcher thread, to catch the instant peak (a sample every few
/// microseconds to a millisecond, as busy as the machine is).
///
/// One listing of `/proc/self/task` is not a snapshot: when a thread exits
/// during it, Linux ends the batch early and resumes the next one by
/// position, so one listing can hold a thread that exited and one started
/// after it (seen here: two exited threads and their successor, with the
/// live thread between them skipped). So a sample counts the threads seen
/// in two listings in a row: each was alive from its first sighting to its
/// second, so all were alive together when the first listing ended. That
/// is a true lower bound of the threads alive at that instant.
pub struct ThreadSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    watcher: std::thread::JoinHandle<(usize, u64)>,
}

impl ThreadSampler {
    pub fn start(prefix: &str) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (prefix, done) = (prefix.to_owned(), stop.clone());
        let watcher = std::thread::Builder::new()
            .name("test-sampler".to_owned())
            .spawn(move || {
                let (mut peak, mut samples) = (0, 0u64);
                let mut before = Vec::new();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let now = os_thread_ids_named(&prefix);
                    let both = now.iter().filter(|tid| before.contains(*tid)).count();
                    peak = peak.max(both);
                    before = now;
                    samples += 1;
                    std::thread::yield_now();
                }
                (peak, samples)
            })
            .expect("the test can start a thread");
        ThreadSampler { stop, watcher }
    }

    /// Stops sampling: the most threads seen at once, and how many samples.
    pub fn peak(self) -> (usize, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.watcher.join().expect("the sampler does not panic")
    }
}

/// From a plain thread, a job of `pool` that `block_on`s two nested jobs of
/// the same pool which meet (each sends, then waits up to 5 s to hear from
/// the other): whether each heard the other. Both true only if the two
/// ran at the same time.
pub fn meeting_pair_in_a_job(pool: &colorseam::BlockingPool) -> (bool, bool) {
    use std::sync::mpsc;
    let p = pool.clone();
    colorseam::block_on(pool.offload(move || {
        colorseam::block_on(async move {
            let (to_b, from_a) = mpsc::channel();
            let (to_a, from_b) = mpsc::channel();
            let a = p.offload(move || {
                let _ = to_b.send(());
                from_b.recv_timeout(Duration::from_secs(5)).is_ok()
            });
            let b = p.offload(move || {
                let _ = to_a.send(());
                from_a.recv_timeout(Duration::from_secs(5)).is_ok()
            });
            (a.await.unwrap(), b.await.unwrap())
        })
    }))
    .unwrap()
    .unwrap()
    .unwrap()
}
