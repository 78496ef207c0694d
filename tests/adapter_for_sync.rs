//! `ForSync<T>`: an async client served to sync callers with a name and a
//! default timeout; dropping it anywhere never panics and never blocks.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use colorseam::adapter::ForSync;

/// A stand-in for an async client with a connection to a runtime.
struct Client {
    calls: AtomicUsize,
    ticker: tokio::sync::Mutex<tokio::time::Interval>,
}

impl Client {
    async fn connect() -> Client {
        Client {
            calls: AtomicUsize::new(0),
            // An interval is bound to the runtime it was made in.
            ticker: tokio::sync::Mutex::new(tokio::time::interval(Duration::from_millis(1))),
        }
    }

    async fn get(&self, key: u32) -> u32 {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.ticker.lock().await.tick().await;
        key * 2
    }
}

#[test]
fn a_sync_caller_uses_an_async_client_through_call() {
    let client = ForSync::connect("kv", Client::connect()).unwrap();
    let sum: u32 = (0..10)
        .map(|k| client.call(move |c| async move { c.get(k).await }).unwrap())
        .sum();
    assert_eq!(sum, 90);
    let calls = client
        .call(|c| async move { c.calls.load(Ordering::SeqCst) })
        .unwrap();
    assert_eq!(calls, 10);
    let _ = &client;
    assert!(format!("{client:?}").contains("kv"));
}

#[test]
fn a_call_past_the_adapter_timeout_is_a_timeout_error_naming_the_adapter() {
    let client = ForSync::builder("slow-backend")
        .default_timeout(Duration::from_millis(50))
        .connect(Client::connect())
        .unwrap();
    let started = Instant::now();
    let err = client
        .call(|_c| async { tokio::time::sleep(Duration::from_secs(10)).await })
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.is_timeout());
    assert_eq!(err.pool(), "slow-backend");
    assert_eq!(err.operation(), "call");
    let text = err.to_string();
    assert!(text.starts_with("call timed out after"), "{text}");
    assert!(text.contains("in adapter \"slow-backend\""), "{text}");
    // A per-call timeout overrides the default.
    let ok = client.call_timeout(|c| async move { c.get(4).await }, Duration::from_secs(5));
    assert_eq!(ok.unwrap(), 8);
}

#[tokio::test(flavor = "current_thread")]
async fn dropping_the_adapter_inside_an_async_task_neither_panics_nor_blocks() {
    let client = tokio::task::spawn_blocking(|| ForSync::connect("dropped", Client::connect()))
        .await
        .unwrap()
        .unwrap();
    // Using it from async code is refused...
    assert!(
        client
            .call(|_c| async { 1 })
            .unwrap_err()
            .is_async_context()
    );
    // ...and dropping it here is fine.
    let started = Instant::now();
    drop(client);
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[test]
fn the_resource_is_dropped_on_the_bridge_runtime() {
    struct Tell(std::sync::mpsc::Sender<(String, bool)>);
    impl Drop for Tell {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            let in_runtime = tokio::runtime::Handle::try_current().is_ok();
            let _ = self.0.send((name, in_runtime));
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let adapter = ForSync::new("tell", Tell(tx));
    drop(adapter);
    let (thread, in_runtime) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(thread, "colorseam-bridge");
    assert!(in_runtime);
}

#[test]
fn a_panicking_call_is_an_error_and_the_adapter_goes_on() {
    let client = ForSync::new("panicky", Arc::new(()));
    let err = client
        .call(|_c| async {
            if true {
                panic!("client bug");
            }
        })
        .unwrap_err();
    assert_eq!(err.panic_message(), Some("client bug"));
    assert_eq!(client.call(|_c| async { 2 }).unwrap(), 2);
}
