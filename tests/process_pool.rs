//! A process pool end to end, with real worker processes: calls, typed
//! outcomes of the function (output, error, panic, unknown name), the sync
//! entry point, metrics, shutdown, and the entry point's guard rails.
//!
//! `harness = false`: workers run this binary again, so `main` calls
//! `Functions::init` before anything else.

use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use colorseam::ErrorKind;
use colorseam::pool::ShutdownOptions;
use colorseam::process::ProcessPool;

mod process_support;
use process_support::{Case, children_of, is_dead, runtime};

fn pool(name: &str, workers: usize) -> ProcessPool {
    ProcessPool::builder()
        .name(name)
        .max_workers(workers)
        .build()
        .expect("a valid process pool")
}

fn a_call_round_trips_its_bytes_through_a_worker_process() {
    let pool = pool("round-trip", 1);
    runtime().block_on(async {
        let out = pool.call("echo", b"hello".to_vec()).await.unwrap();
        assert_eq!(out, b"hello");
        // A caller that has its result never sees the call still busy.
        assert_eq!(pool.metrics().pool.threads.busy, 0);
        let pid = pool.call("pid", Vec::new()).await.unwrap();
        let pid = u32::from_le_bytes(pid.try_into().unwrap());
        assert_ne!(pid, std::process::id(), "it ran in another process");
        assert_eq!(pool.metrics().worker_pids, vec![pid]);
        // The worker is reused: a second call runs in the same process.
        let again = pool.call("pid", Vec::new()).await.unwrap();
        assert_eq!(u32::from_le_bytes(again.try_into().unwrap()), pid);
        let big = vec![7u8; 3 << 20];
        assert_eq!(pool.call("echo", big.clone()).await.unwrap(), big);
    });
    let m = pool.metrics();
    assert_eq!(m.started, 1);
    assert_eq!(m.pool.outcomes.completed, 4);
}

fn a_panic_is_a_panic_error_and_the_worker_goes_on() {
    let pool = pool("panics", 1);
    runtime().block_on(async {
        let before = pool.call("pid", Vec::new()).await.unwrap();
        let err = pool.call("panic", Vec::new()).await.unwrap_err();
        assert!(err.is_panic(), "{err}");
        assert!(!err.is_crash());
        assert_eq!(err.panic_message(), Some("the parser gave up"));
        assert_eq!(err.function(), Some("panic"));
        let text = err.to_string();
        assert!(
            text.starts_with("process call \"panic\" panicked with `the parser gave up` after "),
            "{text}"
        );
        assert!(text.contains("in process pool \"panics\""), "{text}");
        assert!(
            text.contains("process_pool.rs"),
            "names the call site: {text}"
        );
        let after = pool.call("pid", Vec::new()).await.unwrap();
        assert_eq!(before, after, "the same worker process goes on");
    });
    assert_eq!(pool.metrics().pool.outcomes.panicked, 1);
}

fn a_fallible_function_error_is_a_job_error_with_its_message() {
    let pool = pool("fallible", 1);
    runtime().block_on(async {
        let err = pool.call("fallible", Vec::new()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Job);
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert_eq!(source, "empty input");
        assert_eq!(pool.call("fallible", b"x".to_vec()).await.unwrap(), b"x");
    });
}

fn an_unregistered_name_is_refused_without_starting_a_worker() {
    let pool = pool("unknown", 1);
    let err = runtime()
        .block_on(pool.call("no-such-function", Vec::new()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotRegistered);
    assert_eq!(pool.metrics().started, 0);
}

fn a_sync_caller_on_a_plain_thread_gets_its_output_and_its_deadline() {
    let pool = pool("sync", 1);
    let p = pool.clone();
    let handle = std::thread::spawn(move || {
        let out = p
            .call_blocking("echo", b"sync".to_vec(), Duration::from_secs(20))
            .unwrap();
        assert_eq!(out, b"sync");
        let started = std::time::Instant::now();
        let err = p
            .call_blocking("spin", Vec::new(), Duration::from_millis(100))
            .unwrap_err();
        assert!(err.is_timeout() && err.is_killed(), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        p.call_blocking("echo", b"again".to_vec(), Duration::from_secs(20))
            .unwrap()
    });
    assert_eq!(handle.join().unwrap(), b"again");
}

fn a_sync_call_from_an_async_task_is_refused_not_a_freeze() {
    let pool = pool("sync-in-async", 1);
    let rt = runtime();
    let task =
        rt.spawn(async move { pool.call_blocking("echo", Vec::new(), Duration::from_secs(5)) });
    let err = rt.block_on(task).unwrap().unwrap_err();
    assert!(err.is_async_context(), "{err}");
}

fn a_sync_call_from_a_blocking_pool_job_works() {
    let pool = pool("sync-in-pool", 1);
    let blocking = colorseam::BlockingPool::builder().build().unwrap();
    let out = runtime().block_on(async move {
        blocking
            .offload(move || {
                pool.call_blocking("echo", b"nested".to_vec(), Duration::from_secs(20))
            })
            .await
            .unwrap()
    });
    assert_eq!(out.unwrap(), b"nested");
}

fn metrics_all_lists_the_pool_with_workers_as_threads() {
    let pool = pool("listed", 2);
    runtime().block_on(pool.call("echo", Vec::new())).unwrap();
    // Read until settled: the supervisor records the run time and may have
    // a second worker starting on a loaded machine; what is listed must be
    // this pool, with one call completed and its workers (1 or 2) as threads.
    let started = std::time::Instant::now();
    let mine = loop {
        let all = colorseam::metrics::all();
        let mine = all.iter().find(|m| m.name == "listed").cloned().unwrap();
        if mine.run_time.count == 1 || started.elapsed() > Duration::from_secs(20) {
            break mine;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(mine.outcomes.completed, 1, "{mine:?}");
    assert!((1..=2).contains(&mine.threads.total), "{mine:?}");
    assert_eq!(mine.run_time.count, 1, "{mine:?}");
}

fn shutdown_runs_the_queue_then_stops_every_worker() {
    let pool = pool("shutdown", 2);
    let rt = runtime();
    let calls: Vec<_> = (0..6).map(|i| pool.call("echo", vec![i])).collect();
    let report = rt.block_on(pool.shutdown(ShutdownOptions::run_queued(Duration::from_secs(20))));
    assert_eq!(report.completed, 6, "{report:?}");
    assert_eq!(report.abandoned, 0);
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(rt.block_on(call).unwrap(), vec![i as u8]);
    }
    let m = pool.metrics();
    assert_eq!(m.workers, 0, "every worker reaped: {m:?}");
    let err = rt.block_on(pool.call("echo", Vec::new())).unwrap_err();
    assert!(err.is_shutdown(), "{err}");
}

fn shutdown_kills_a_running_call_at_its_deadline_and_reports_it() {
    let pool = pool("shutdown-kill", 1);
    let rt = runtime();
    let spinning = pool.call("spin", Vec::new());
    let queued = pool.call("echo", Vec::new());
    assert!(process_support::eventually(Duration::from_secs(20), || {
        pool.metrics().pool.threads.busy == 1
    }));
    let pids = pool.metrics().worker_pids;
    let report = pool.shutdown_blocking(ShutdownOptions::cancel_queued(Duration::from_millis(50)));
    assert_eq!((report.cancelled, report.abandoned), (1, 1), "{report:?}");
    let err = rt.block_on(spinning).unwrap_err();
    assert!(err.is_shutdown() && err.is_killed(), "{err}");
    let err = rt.block_on(queued).unwrap_err();
    assert!(err.is_shutdown() && !err.is_killed(), "{err}");
    assert!(pids.iter().all(|&pid| is_dead(pid)));
    assert!(
        children_of(std::process::id())
            .iter()
            .all(|(pid, _)| !pids.contains(pid))
    );
}

fn dropping_the_last_handle_stops_the_workers() {
    let pool = pool("dropped", 2);
    runtime().block_on(pool.call("echo", Vec::new())).unwrap();
    let pids = pool.metrics().worker_pids;
    assert_eq!(pids.len(), 1);
    drop(pool);
    assert!(process_support::eventually(Duration::from_secs(5), || pids
        .iter()
        .all(|&pid| is_dead(pid)
            && !children_of(std::process::id())
                .iter()
                .any(|c| c.0 == pid))));
}

fn a_program_that_never_reaches_the_pool_fails_the_call_with_spawn_failed() {
    // `true` exits at once without ever calling init: the call that needed
    // the worker says so, and nothing hangs.
    let pool = ProcessPool::builder()
        .name("wrong-program")
        .max_workers(1)
        .program("/bin/true")
        .build()
        .unwrap();
    let err = runtime()
        .block_on(pool.call_timeout("echo", Vec::new(), Duration::from_secs(20)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SpawnFailed, "{err}");
    let why = std::error::Error::source(&err).unwrap().to_string();
    assert!(why.contains("Functions::init"), "{why}");
}

fn configuration_errors_are_errors() {
    let err = ProcessPool::builder().max_workers(0).build().unwrap_err();
    assert_eq!(err, colorseam::ConfigError::ZeroWorkers);
    let err = ProcessPool::builder()
        .queue_capacity(0)
        .build()
        .unwrap_err();
    assert_eq!(err, colorseam::ConfigError::ZeroQueue);
}

#[cfg(feature = "process-serde")]
fn a_typed_call_carries_serde_values_both_ways() {
    let pool = pool("serde", 1);
    let rt = runtime();
    let (sum, len): (u64, usize) = rt
        .block_on(pool.call_serde("sum", &vec![1u64, 2, 39], Duration::from_secs(20)))
        .unwrap();
    assert_eq!((sum, len), (42, 3));
    // An argument that does not decode is the function's error, not a
    // crash. (postcard is not self-describing: a value of another type
    // may decode as garbage instead, so the types must match; `()` is
    // zero bytes, which no `Vec<u64>` decodes from.)
    let err = rt
        .block_on(pool.call_serde::<_, (u64, usize)>("sum", &(), Duration::from_secs(20)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Job, "{err}");
    assert!(
        err.to_string().contains("the argument did not decode"),
        "{err}"
    );
    // A result that does not decode is an error at the caller (a third
    // field the two-field result does not have).
    let err = rt
        .block_on(pool.call_serde::<_, (u64, usize, u64)>(
            "sum",
            &vec![1u64],
            Duration::from_secs(20),
        ))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Job, "{err}");
    assert!(err.to_string().contains("did not decode"), "{err}");
}

#[cfg(not(feature = "process-serde"))]
fn a_typed_call_carries_serde_values_both_ways() {}

fn a_full_queue_refuses_or_times_out_waiting_for_room() {
    let pool = ProcessPool::builder()
        .name("full")
        .max_workers(1)
        .queue_capacity(1)
        .build()
        .unwrap();
    let rt = runtime();
    let long = || 400u64.to_le_bytes().to_vec();
    let running = pool.call("sleep_ms", long());
    let queued = pool.call("sleep_ms", long());
    let err = rt
        .block_on(pool.try_call("echo", Vec::new(), Duration::from_secs(5)))
        .unwrap_err();
    assert!(err.is_saturated(), "{err}");
    let err = rt
        .block_on(pool.call_timeout("echo", Vec::new(), Duration::from_millis(50)))
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(err.phase(), Some(colorseam::Phase::WaitingForRoom));
    rt.block_on(running).unwrap();
    rt.block_on(queued).unwrap();
    let o = pool.metrics().pool.outcomes;
    assert_eq!(
        (o.rejected, o.timed_out_waiting_for_room, o.completed),
        (1, 1, 2)
    );
}

fn a_paused_clock_neither_cuts_a_call_short_nor_stops_its_deadline() {
    let pool = pool("paused", 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        // 100 ms of real work under a 10 s deadline: the idle runtime's
        // clock jumps ahead, the call is not cut short.
        pool.call_timeout(
            "sleep_ms",
            100u64.to_le_bytes().to_vec(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        // And a real 100 ms deadline still fires, in real time.
        let started = std::time::Instant::now();
        let err = pool
            .call_timeout("spin", Vec::new(), Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(err.is_killed(), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(100));
    });
}

fn a_call_driven_by_another_executor_has_its_deadline() {
    let pool = pool("executor", 1);
    let out = futures::executor::block_on(pool.call("echo", b"plain".to_vec())).unwrap();
    assert_eq!(out, b"plain");
    let err = futures::executor::block_on(pool.call_timeout(
        "spin",
        Vec::new(),
        Duration::from_millis(50),
    ))
    .unwrap_err();
    assert!(err.is_timeout() && err.is_killed(), "{err}");
}

fn a_call_on_a_local_set_of_a_current_thread_runtime_completes() {
    let pool = pool("local", 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let out = local.block_on(&rt, async move {
        tokio::task::spawn_local(async move { pool.call("echo", b"local".to_vec()).await })
            .await
            .unwrap()
    });
    assert_eq!(out.unwrap(), b"local");
}

/// A waker that re-enters the pool when woken: reads its metrics and
/// makes a call of its own (never awaited: dropped, which cancels it).
struct Reenter {
    pool: ProcessPool,
    woken: std::sync::atomic::AtomicUsize,
    panics: bool,
}

impl futures::task::ArcWake for Reenter {
    fn wake_by_ref(this: &std::sync::Arc<Self>) {
        this.woken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = this.pool.metrics();
        drop(this.pool.call("echo", Vec::new()));
        if this.panics {
            panic!("a waker that panics");
        }
    }
}

fn a_waker_may_re_enter_the_pool_or_panic_and_the_pool_goes_on() {
    for panics in [false, true] {
        let pool = pool(
            if panics {
                "waker-panics"
            } else {
                "waker-reenters"
            },
            1,
        );
        let waker = std::sync::Arc::new(Reenter {
            pool: pool.clone(),
            woken: std::sync::atomic::AtomicUsize::new(0),
            panics,
        });
        let mut call = Box::pin(pool.call("sleep_ms", 20u64.to_le_bytes().to_vec()));
        let w = futures::task::waker(waker.clone());
        let mut cx = std::task::Context::from_waker(&w);
        assert!(call.as_mut().poll(&mut cx).is_pending());
        assert!(process_support::eventually(Duration::from_secs(20), || {
            waker.woken.load(std::sync::atomic::Ordering::SeqCst) > 0
        }));
        match call.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(out) => assert_eq!(out.unwrap(), Vec::<u8>::new()),
            std::task::Poll::Pending => panic!("woken but not ready"),
        }
        let out = runtime()
            .block_on(pool.call("echo", b"on".to_vec()))
            .unwrap();
        assert_eq!(out, b"on");
    }
}

fn many_threads_on_one_handle_all_get_their_answers_within_the_bound() {
    let pool = pool("shared", 2);
    let threads: Vec<_> = (0..8u8)
        .map(|i| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for j in 0..25u8 {
                    let out = pool
                        .call_blocking("echo", vec![i, j], Duration::from_secs(30))
                        .unwrap();
                    assert_eq!(out, vec![i, j]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let m = pool.metrics();
    assert_eq!(m.pool.outcomes.completed, 200);
    assert!(m.pool.threads.peak <= 2 && m.started <= 2, "{m:?}");
}

fn a_sync_call_from_spawn_blocking_works() {
    let pool = pool("spawn-blocking", 1);
    let rt = runtime();
    let out = rt
        .block_on(rt.spawn_blocking(move || {
            pool.call_blocking("echo", b"sb".to_vec(), Duration::from_secs(20))
        }))
        .unwrap();
    assert_eq!(out.unwrap(), b"sb");
}

const CASES: &[Case] = &[
    (
        "a_call_round_trips_its_bytes_through_a_worker_process",
        a_call_round_trips_its_bytes_through_a_worker_process,
    ),
    (
        "a_panic_is_a_panic_error_and_the_worker_goes_on",
        a_panic_is_a_panic_error_and_the_worker_goes_on,
    ),
    (
        "a_fallible_function_error_is_a_job_error_with_its_message",
        a_fallible_function_error_is_a_job_error_with_its_message,
    ),
    (
        "an_unregistered_name_is_refused_without_starting_a_worker",
        an_unregistered_name_is_refused_without_starting_a_worker,
    ),
    (
        "a_sync_caller_on_a_plain_thread_gets_its_output_and_its_deadline",
        a_sync_caller_on_a_plain_thread_gets_its_output_and_its_deadline,
    ),
    (
        "a_sync_call_from_an_async_task_is_refused_not_a_freeze",
        a_sync_call_from_an_async_task_is_refused_not_a_freeze,
    ),
    (
        "a_sync_call_from_a_blocking_pool_job_works",
        a_sync_call_from_a_blocking_pool_job_works,
    ),
    (
        "metrics_all_lists_the_pool_with_workers_as_threads",
        metrics_all_lists_the_pool_with_workers_as_threads,
    ),
    (
        "shutdown_runs_the_queue_then_stops_every_worker",
        shutdown_runs_the_queue_then_stops_every_worker,
    ),
    (
        "shutdown_kills_a_running_call_at_its_deadline_and_reports_it",
        shutdown_kills_a_running_call_at_its_deadline_and_reports_it,
    ),
    (
        "dropping_the_last_handle_stops_the_workers",
        dropping_the_last_handle_stops_the_workers,
    ),
    (
        "a_program_that_never_reaches_the_pool_fails_the_call_with_spawn_failed",
        a_program_that_never_reaches_the_pool_fails_the_call_with_spawn_failed,
    ),
    (
        "configuration_errors_are_errors",
        configuration_errors_are_errors,
    ),
    (
        "a_typed_call_carries_serde_values_both_ways",
        a_typed_call_carries_serde_values_both_ways,
    ),
    (
        "a_full_queue_refuses_or_times_out_waiting_for_room",
        a_full_queue_refuses_or_times_out_waiting_for_room,
    ),
    (
        "a_paused_clock_neither_cuts_a_call_short_nor_stops_its_deadline",
        a_paused_clock_neither_cuts_a_call_short_nor_stops_its_deadline,
    ),
    (
        "a_call_driven_by_another_executor_has_its_deadline",
        a_call_driven_by_another_executor_has_its_deadline,
    ),
    (
        "a_call_on_a_local_set_of_a_current_thread_runtime_completes",
        a_call_on_a_local_set_of_a_current_thread_runtime_completes,
    ),
    (
        "a_waker_may_re_enter_the_pool_or_panic_and_the_pool_goes_on",
        a_waker_may_re_enter_the_pool_or_panic_and_the_pool_goes_on,
    ),
    (
        "many_threads_on_one_handle_all_get_their_answers_within_the_bound",
        many_threads_on_one_handle_all_get_their_answers_within_the_bound,
    ),
    (
        "a_sync_call_from_spawn_blocking_works",
        a_sync_call_from_spawn_blocking_works,
    ),
];

fn main() -> ExitCode {
    process_support::functions().init();
    process_support::run(CASES)
}
