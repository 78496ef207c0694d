//! Randomized operation sequences against a reference model of the pool's
//! accounting: random pool sizes, and random mixes of quick, slow,
//! panicking, timed-out and dropped jobs, submitted by waiting and by
//! refusing callers, with and without a shutdown. After each sequence the
//! outcomes callers saw and the pool's metrics must reconcile exactly.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use colorseam::pool::ShutdownOptions;
use colorseam::{BlockingPool, ErrorKind, Phase};
use common::eventually;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// A job sleeping `micros`, maybe panicking, maybe with a deadline.
    Job {
        micros: u64,
        panics: bool,
        timeout_micros: Option<u64>,
        try_only: bool,
    },
    /// The same, but its future is dropped after `polls` polls.
    Dropped { micros: u64, polls: u8 },
    /// Let everything submitted so far settle.
    Settle,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u64..3_000, any::<bool>(), proptest::option::of(0u64..4_000), any::<bool>())
            .prop_map(|(micros, panics, timeout_micros, try_only)| Op::Job {
                micros,
                panics: panics && micros % 3 == 0,
                timeout_micros,
                try_only,
            }),
        2 => (0u64..3_000, 0u8..3).prop_map(|(micros, polls)| Op::Dropped { micros, polls }),
        1 => Just(Op::Settle),
    ]
}

/// What the callers saw, by outcome.
#[derive(Debug, Default)]
struct Seen {
    ok: u64,
    panicked: u64,
    timed_out_room: u64,
    timed_out_queued: u64,
    timed_out_running: u64,
    saturated: u64,
    shut_down: u64,
}

struct Ledger {
    started: AtomicUsize,
    captured_dropped: AtomicUsize,
}

struct Captured(Arc<Ledger>);
impl Drop for Captured {
    fn drop(&mut self) {
        self.0.captured_dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// Keeps the expected "model panic" messages off the test output.
fn quiet_model_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let expected = info.payload().downcast_ref::<&str>() == Some(&"model panic");
            if !expected {
                previous(info);
            }
        }));
    });
}

fn run_sequence(threads: usize, queue: usize, abandoned: usize, ops: Vec<Op>, shutdown: bool) {
    quiet_model_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = BlockingPool::builder()
        .name("model")
        .max_threads(threads)
        .queue_capacity(queue)
        .max_abandoned(abandoned)
        .keep_alive(Duration::from_millis(20))
        .build()
        .unwrap();
    let ledger = Arc::new(Ledger {
        started: AtomicUsize::new(0),
        captured_dropped: AtomicUsize::new(0),
    });
    let jobs = ops.iter().filter(|o| !matches!(o, Op::Settle)).count();
    let seen = rt.block_on(async {
        let mut seen = Seen::default();
        let mut waiting = tokio::task::JoinSet::new();
        for op in ops {
            match op {
                Op::Job {
                    micros,
                    panics,
                    timeout_micros,
                    try_only,
                } => {
                    let captured = Captured(ledger.clone());
                    let l = ledger.clone();
                    let body = move || {
                        let _captured = captured;
                        l.started.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(micros));
                        if panics {
                            panic!("model panic");
                        }
                        micros
                    };
                    let future = match (timeout_micros, try_only) {
                        (Some(t), _) => pool.offload_timeout(body, Duration::from_micros(t)),
                        (None, true) => pool.try_offload(body),
                        (None, false) => pool.offload(body),
                    };
                    waiting.spawn(future);
                }
                Op::Dropped { micros, polls } => {
                    let captured = Captured(ledger.clone());
                    let l = ledger.clone();
                    let mut future = Box::pin(pool.offload(move || {
                        let _captured = captured;
                        l.started.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(micros));
                    }));
                    for _ in 0..polls {
                        // A resolved future must not be polled again.
                        if futures::poll!(future.as_mut()).is_ready() {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                }
                Op::Settle => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            assert!(pool.metrics().threads.total <= threads + abandoned);
        }
        if shutdown {
            let report = pool
                .shutdown(ShutdownOptions::cancel_queued(Duration::from_millis(5)))
                .await;
            assert!(report.elapsed < Duration::from_secs(5));
        }
        while let Some(joined) = waiting.join_next().await {
            match joined.expect("a caller's task never panics") {
                Ok(_) => seen.ok += 1,
                Err(e) => match (e.kind(), e.phase()) {
                    (ErrorKind::Panicked, _) => seen.panicked += 1,
                    (ErrorKind::Timeout, Some(Phase::WaitingForRoom)) => seen.timed_out_room += 1,
                    (ErrorKind::Timeout, Some(Phase::Queued)) => seen.timed_out_queued += 1,
                    (ErrorKind::Timeout, Some(Phase::Running)) => seen.timed_out_running += 1,
                    (ErrorKind::Saturated, _) => seen.saturated += 1,
                    (ErrorKind::ShutDown, _) => seen.shut_down += 1,
                    other => panic!("unexpected outcome {other:?}: {e}"),
                },
            }
        }
        seen
    });
    // Every job's closure is dropped exactly once, run or not; wait for
    // abandoned ones to return.
    assert!(
        eventually(Duration::from_secs(20), || ledger
            .captured_dropped
            .load(Ordering::SeqCst)
            == jobs),
        "captured values dropped: {} of {jobs}",
        ledger.captured_dropped.load(Ordering::SeqCst)
    );
    assert!(eventually(Duration::from_secs(20), || {
        let m = pool.metrics();
        m.threads.busy == 0 && m.threads.abandoned == 0 && m.queue_depth == 0
    }));
    let m = pool.metrics();
    let o = m.outcomes;
    // Callers' view and metrics agree, outcome by outcome.
    assert_eq!(o.panicked, seen.panicked, "{o:?} vs {seen:?}");
    assert!(
        o.completed >= seen.ok,
        "dropped futures may complete unseen"
    );
    assert_eq!(o.timed_out_waiting_for_room, seen.timed_out_room);
    assert_eq!(o.timed_out_queued, seen.timed_out_queued);
    assert_eq!(o.timed_out_running, seen.timed_out_running);
    assert_eq!(o.rejected, seen.saturated);
    // Every started closure ended exactly one way.
    let started = ledger.started.load(Ordering::SeqCst) as u64;
    let ended_running = o.completed + o.panicked + o.timed_out_running + o.cancelled_running;
    assert!(ended_running <= started, "{o:?}, started {started}");
    assert_eq!(
        started,
        ended_running + shut_down_while_running(&o, &seen, started, ended_running),
        "{o:?}"
    );
    assert!(m.threads.peak <= threads + abandoned, "{:?}", m.threads);
}

/// Jobs abandoned by the shutdown deadline were started but end as
/// "shut down"; they are the only started jobs the other counters miss.
fn shut_down_while_running(
    o: &colorseam::metrics::OutcomeCounters,
    seen: &Seen,
    started: u64,
    ended: u64,
) -> u64 {
    let gap = started - ended;
    assert!(
        gap <= o.shut_down,
        "{gap} started jobs unaccounted; {o:?} {seen:?}"
    );
    gap
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn outcomes_and_metrics_reconcile_for_random_sequences(
        threads in 1usize..4,
        queue in 1usize..6,
        abandoned in 0usize..3,
        ops in proptest::collection::vec(op(), 1..40),
        shutdown in any::<bool>(),
    ) {
        run_sequence(threads, queue, abandoned, ops, shutdown);
    }
}
