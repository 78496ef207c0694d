//! Faults from outside: the OS refusing threads, panicking callbacks and
//! destructors, jobs that never return, clocks that jump. Each becomes a
//! typed error or is contained; none panics the caller or loses a job.

mod common;

use std::time::Duration;

use colorseam::{BlockingPool, ErrorKind};

/// A stack no machine can give: the OS refuses every thread of this pool.
const IMPOSSIBLE_STACK: usize = 1 << 46;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_the_os_refuses_becomes_a_typed_error_not_a_panic_or_a_lost_job() {
    let pool = BlockingPool::builder()
        .name("fi-spawn")
        .max_threads(2)
        .stack_size(IMPOSSIBLE_STACK)
        .build()
        .unwrap();
    for _ in 0..3 {
        let err = tokio::time::timeout(Duration::from_secs(10), pool.offload(|| 1))
            .await
            .expect("resolved, not lost")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SpawnFailed, "{err}");
        assert!(
            err.to_string().contains("refused to start a pool thread"),
            "{err}"
        );
    }
    assert_eq!(pool.metrics().threads.total, 0);
    assert_eq!(pool.metrics().queue_depth, 0);
    // Detached work is refused the same way, through the error sink.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    let detached = BlockingPool::builder()
        .name("fi-spawn-d")
        .stack_size(IMPOSSIBLE_STACK)
        .error_sink(move |e| s.lock().unwrap().push(e.kind()))
        .build()
        .unwrap();
    let _ = detached.detach(|| ());
    assert!(common::eventually(Duration::from_secs(10), || seen
        .lock()
        .unwrap()
        .contains(&ErrorKind::SpawnFailed)));
}

#[tokio::test(start_paused = true)]
async fn a_tokio_clock_that_jumps_past_the_deadline_does_not_cut_the_job_short() {
    // Deadlines are real time: a paused tokio clock advanced by an hour in
    // one step is not an hour gone by, so the job keeps its 600 s.
    let pool = BlockingPool::builder().name("fi-clock").build().unwrap();
    let gate = common::Gate::new();
    let g = gate.clone();
    let call = tokio::spawn(pool.offload_timeout(
        move || {
            g.wait(Duration::from_secs(20));
            "finished"
        },
        Duration::from_secs(600),
    ));
    tokio::time::advance(Duration::from_secs(3600)).await;
    // Let the call see the jump (its tokio sleep fires) on real time.
    for _ in 0..20 {
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!call.is_finished(), "released by a jump of tokio's clock");
    gate.open();
    assert_eq!(call.await.unwrap().unwrap(), "finished");
}

#[test]
fn extreme_values_for_every_setter_are_typed_errors_or_documented_clamps() {
    use colorseam::adapter::{ForAsync, ThreadBound, Unblock};
    use colorseam::detect::Watchdog;
    assert!(
        ForAsync::builder("fi-x")
            .max_threads(usize::MAX)
            .build(())
            .is_err()
    );
    assert!(ForAsync::builder("fi-x").max_threads(0).build(()).is_err());
    assert!(
        ForAsync::builder("fi-x")
            .queue_capacity(0)
            .build(())
            .is_err()
    );
    assert!(
        ForAsync::builder("fi-x")
            .max_abandoned(usize::MAX)
            .build(())
            .is_err()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Huge timeouts mean "no deadline"; zero means "already due".
        let fa = ForAsync::builder("fi-x")
            .default_timeout(Duration::MAX)
            .build(())
            .unwrap();
        assert_eq!(fa.call(|_| 1).await.unwrap(), 1);
        let tb = ThreadBound::builder("fi-x", || 0u8)
            .default_timeout(Duration::MAX)
            .build()
            .unwrap();
        assert_eq!(tb.call(|n| *n).await.unwrap(), 0);
        let tb = ThreadBound::builder("fi-x", || 0u8)
            .default_timeout(Duration::ZERO)
            .build()
            .unwrap();
        let _ = tb.call(|n| *n).await; // a value or a timeout, never a panic
        // Capacities are clamped, not allocated as asked.
        use tokio::io::AsyncReadExt;
        let mut r = Unblock::builder()
            .capacity(usize::MAX)
            .build(std::io::Cursor::new(vec![1u8; 10]));
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out.len(), 10);
        use futures::StreamExt;
        let items: Vec<_> = Unblock::builder()
            .capacity(usize::MAX)
            .build_iter(0..3)
            .collect()
            .await;
        assert_eq!(items.len(), 3);
        let lag =
            colorseam::detect::LagMonitor::start(&tokio::runtime::Handle::current(), Duration::MAX)
                .unwrap();
        drop(lag);
        let lag = colorseam::detect::LagMonitor::start(
            &tokio::runtime::Handle::current(),
            Duration::ZERO,
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(lag);
    });
    let watchdog = Watchdog::builder()
        .threshold(Duration::MAX)
        .install(rt.handle())
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    drop(watchdog);
    let watchdog = Watchdog::builder()
        .threshold(Duration::ZERO)
        .install(rt.handle())
        .unwrap();
    drop(watchdog);
    assert!(colorseam::block_on_timeout(async { 1 }, Duration::MAX).is_ok());
    assert!(colorseam::block_on_timeout(std::future::pending::<()>(), Duration::ZERO).is_err());
    let far = std::time::Instant::now() + Duration::from_secs(86_400 * 365 * 100);
    assert!(colorseam::block_on_deadline(async { 1 }, far).is_ok());
}
