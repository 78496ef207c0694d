//! `ForAsync<T>`: a sync resource served to async callers through `call`
//! only, on the adapter's own bounded pool (a bulkhead), with a deadline and
//! a panic policy.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use colorseam::Phase;
use colorseam::adapter::{ForAsync, PanicPolicy};
use common::{Gate, os_threads_named};

const LONG: Duration = Duration::from_secs(20);

/// A blocking vendor client.
#[derive(Default)]
struct Vendor {
    running: AtomicUsize,
    peak: AtomicUsize,
}

impl Vendor {
    fn lookup(&self, id: u32, hold: Duration) -> u32 {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(hold);
        self.running.fetch_sub(1, Ordering::SeqCst);
        id
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_run_on_the_adapters_own_named_threads() {
    let vendor = ForAsync::new("fa-named", Vendor::default()).unwrap();
    let name = vendor
        .call(|_v| std::thread::current().name().map(str::to_owned))
        .await
        .unwrap()
        .unwrap();
    assert!(name.starts_with("fa-named-"), "{name}");
    assert_eq!(vendor.name(), "fa-named");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_bounds_how_many_calls_run_at_once() {
    let vendor = Arc::new(
        ForAsync::builder("fa-limit")
            .max_threads(3)
            .build(Vendor::default())
            .unwrap(),
    );
    let calls: Vec<_> = (0..30)
        .map(|i| vendor.call(move |v| v.lookup(i, Duration::from_millis(2))))
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), i as u32);
    }
    let peak = vendor
        .call(|v| v.peak.load(Ordering::SeqCst))
        .await
        .unwrap();
    assert_eq!(peak, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_dependency_is_contained_by_its_bulkhead_and_others_keep_serving() {
    let hung = ForAsync::builder("fa-hung")
        .max_threads(2)
        .max_abandoned(1)
        .queue_capacity(4)
        .default_timeout(Duration::from_millis(40))
        .build(())
        .unwrap();
    let healthy = ForAsync::new("fa-ok", ()).unwrap();
    let gate = Gate::new();
    let mut refused = 0;
    let mut timed_out = 0;
    for _ in 0..20 {
        let g = gate.clone();
        match hung.call(move |_| g.wait(LONG)).await {
            Err(e) if e.is_timeout() => timed_out += 1,
            Err(e) if e.is_saturated() => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
        // The other dependency is unaffected.
        assert_eq!(healthy.call(|_| 5).await.unwrap(), 5);
    }
    assert_eq!(timed_out + refused, 20);
    assert!(timed_out >= 3, "{timed_out}");
    // Never more than limit + max_abandoned threads for the hung dependency.
    assert!(os_threads_named("fa-hung-") <= 3);
    assert!(hung.pool().metrics().threads.peak <= 3);
    gate.open();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_call_names_the_adapter_and_releases_the_caller() {
    let vendor = ForAsync::builder("fa-time")
        .default_timeout(Duration::from_millis(50))
        .build(Vendor::default())
        .unwrap();
    let started = Instant::now();
    let err = vendor
        .call(|v| v.lookup(1, Duration::from_secs(10)))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.is_timeout());
    assert_eq!(err.phase(), Some(Phase::Running));
    let text = err.to_string();
    assert!(text.starts_with("call timed out after"), "{text}");
    assert!(text.contains("in adapter \"fa-time\""), "{text}");
    let ok = vendor
        .call_timeout(|v| v.lookup(2, Duration::ZERO), Duration::from_secs(5))
        .await;
    assert_eq!(ok.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_panic_is_returned_as_an_error() {
    let vendor = ForAsync::new("fa-err", ()).unwrap();
    let err = vendor
        .call(|_| -> u8 { panic!("sdk assertion failed") })
        .await
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("sdk assertion failed"));
    assert_eq!(vendor.call(|_| 1).await.unwrap(), 1, "the adapter goes on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_resume_policy_a_panic_resumes_in_the_caller() {
    let vendor = ForAsync::builder("fa-resume")
        .panic_policy(PanicPolicy::Resume)
        .build(())
        .unwrap();
    let vendor = Arc::new(vendor);
    let v = vendor.clone();
    let joined = tokio::spawn(async move { v.call(|_| -> u8 { panic!("resume me") }).await }).await;
    let payload = joined.unwrap_err().into_panic();
    // The sync code's own payload: `panic!` with a literal makes a `&str`.
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"resume me"));
    assert_eq!(vendor.call(|_| 2).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_resume_policy_a_non_string_payload_resumes_unchanged() {
    #[derive(Debug, PartialEq)]
    struct VendorFault(u32);
    let vendor = Arc::new(
        ForAsync::builder("fa-resume-any")
            .panic_policy(PanicPolicy::Resume)
            .build(())
            .unwrap(),
    );
    let v = vendor.clone();
    let joined = tokio::spawn(async move {
        v.call(|_| -> u8 { std::panic::panic_any(VendorFault(42)) })
            .await
    })
    .await;
    let payload = joined.unwrap_err().into_panic();
    assert_eq!(
        payload.downcast_ref::<VendorFault>(),
        Some(&VendorFault(42)),
        "the payload a caller catches is the one the sync code raised, not a made-up string"
    );
}

#[test]
fn a_bad_limit_is_a_config_error() {
    assert!(
        ForAsync::builder("fa-bad")
            .max_threads(0)
            .build(())
            .is_err()
    );
    assert!(ForAsync::new("", ()).is_err());
}
