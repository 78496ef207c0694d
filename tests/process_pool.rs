//! A process pool end to end, with real worker processes: calls, typed
//! outcomes of the function (output, error, panic, unknown name), the sync
//! entry point, metrics, shutdown, and the entry point's guard rails.
//!
//! `harness = false`: workers run this binary again, so `main` calls
//! `Functions::init` before anything else.

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
    let all = colorseam::metrics::all();
    let mine = all.iter().find(|m| m.name == "listed").unwrap();
    assert_eq!(mine.outcomes.completed, 1);
    assert_eq!(mine.threads.total, 1);
    assert_eq!(mine.run_time.count, 1);
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
];

fn main() -> ExitCode {
    process_support::functions().init();
    process_support::run(CASES)
}
