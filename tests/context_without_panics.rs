//! Where code runs, learned without a panic: `context()`, the guard,
//! `block_on`, `block_on_timeout` and `block_on_in_place` from every kind of
//! thread, next to a panic hook that counts or aborts, in an unwinding and
//! in a `panic = "abort"` build.
//!
//! This target has its own small harness (`harness = false` in Cargo.toml)
//! because libtest refuses to build tests with `panic = "abort"` on stable.
//! Each case runs in a child process of its own (this binary again, with
//! `--case NAME`), so a case that aborts fails alone and the run reports it.
//! `.ci/run` runs it a second time built with `-C panic=abort`, with
//! `COLORSEAM_EXPECT_PANIC=abort` so a case checks the build really aborts,
//! and once more with `COLORSEAM_HARNESS_SELFTEST=1`, which adds a case that
//! panics and must make the run fail. It answers libtest's `--list` and
//! `--exact`, so `cargo nextest run` runs it too.

use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use colorseam::guard::{self, Policy};
use colorseam::{BlockingPool, CallerContext, RuntimeFlavor};

/// How long one case may take before the harness calls it hung.
const WATCHDOG: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    MultiThreadWorker,
    MultiThreadBlockOn,
    CurrentThreadDriver,
    CurrentThreadTask,
    LocalSetOnCurrentThread,
    LocalSetTaskOnMultiThreadBlockOn,
    LocalSetBodyOnMultiThreadBlockOn,
    SpawnBlockingMultiThread,
    SpawnBlockingCurrentThread,
    HandleEnterMultiThread,
    HandleEnterCurrentThread,
    PoolThread,
    InsideBlockOn,
    BridgeThread,
}

const KINDS: [Kind; 15] = [
    Kind::Plain,
    Kind::MultiThreadWorker,
    Kind::MultiThreadBlockOn,
    Kind::CurrentThreadDriver,
    Kind::CurrentThreadTask,
    Kind::LocalSetOnCurrentThread,
    Kind::LocalSetTaskOnMultiThreadBlockOn,
    Kind::LocalSetBodyOnMultiThreadBlockOn,
    Kind::SpawnBlockingMultiThread,
    Kind::SpawnBlockingCurrentThread,
    Kind::HandleEnterMultiThread,
    Kind::HandleEnterCurrentThread,
    Kind::PoolThread,
    Kind::InsideBlockOn,
    Kind::BridgeThread,
];

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a multi-thread runtime")
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

/// Runs `f` in a thread of `kind` and returns its result.
fn run_in<R: Send + 'static>(kind: Kind, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = match kind {
            Kind::Plain => f(),
            Kind::MultiThreadWorker => multi_thread()
                .block_on(async { tokio::spawn(async move { f() }).await })
                .expect("the task ran"),
            Kind::MultiThreadBlockOn => multi_thread().block_on(async move { f() }),
            Kind::CurrentThreadDriver => current_thread().block_on(async move { f() }),
            Kind::CurrentThreadTask => current_thread()
                .block_on(async { tokio::spawn(async move { f() }).await })
                .expect("the task ran"),
            Kind::LocalSetOnCurrentThread => tokio::task::LocalSet::new()
                .block_on(&current_thread(), async {
                    tokio::task::spawn_local(async move { f() }).await
                })
                .expect("the local task ran"),
            Kind::LocalSetTaskOnMultiThreadBlockOn => tokio::task::LocalSet::new()
                .block_on(&multi_thread(), async {
                    tokio::task::spawn_local(async move { f() }).await
                })
                .expect("the local task ran"),
            Kind::LocalSetBodyOnMultiThreadBlockOn => {
                tokio::task::LocalSet::new().block_on(&multi_thread(), async move { f() })
            }
            Kind::SpawnBlockingMultiThread => multi_thread()
                .block_on(async { tokio::task::spawn_blocking(f).await })
                .expect("the blocking task ran"),
            Kind::SpawnBlockingCurrentThread => current_thread()
                .block_on(async { tokio::task::spawn_blocking(f).await })
                .expect("the blocking task ran"),
            Kind::HandleEnterMultiThread => {
                let rt = multi_thread();
                let _entered = rt.enter();
                f()
            }
            Kind::HandleEnterCurrentThread => {
                let rt = current_thread();
                let _entered = rt.enter();
                f()
            }
            Kind::PoolThread => {
                let pool = BlockingPool::builder()
                    .name("context-case")
                    .build()
                    .expect("a pool");
                multi_thread()
                    .block_on(pool.offload(f))
                    .expect("the job ran")
            }
            Kind::InsideBlockOn => colorseam::block_on(async move { f() }).expect("block_on"),
            Kind::BridgeThread => {
                colorseam::block_on_timeout(async move { f() }, Duration::from_secs(30))
                    .expect("block_on_timeout from a plain thread")
            }
        };
        let _ = tx.send(result);
    });
    rx.recv_timeout(WATCHDOG)
        .unwrap_or_else(|_| panic!("{kind:?}: no answer within {WATCHDOG:?}: a hang or a panic"))
}

/// Where blocking is fine, so the blocking entry points give a value.
fn blocking_is_fine(kind: Kind) -> bool {
    !matches!(
        kind,
        Kind::MultiThreadWorker
            | Kind::CurrentThreadDriver
            | Kind::CurrentThreadTask
            | Kind::LocalSetOnCurrentThread
            | Kind::InsideBlockOn
            | Kind::BridgeThread
    )
}

fn expected_context(kind: Kind) -> CallerContext {
    use CallerContext::*;
    match kind {
        Kind::Plain => NoRuntime,
        Kind::MultiThreadWorker => AsyncWorker {
            flavor: RuntimeFlavor::MultiThread,
        },
        Kind::CurrentThreadDriver | Kind::CurrentThreadTask | Kind::LocalSetOnCurrentThread => {
            AsyncWorker {
                flavor: RuntimeFlavor::CurrentThread,
            }
        }
        // The documented look-alikes: no scheduler runs on these threads.
        Kind::MultiThreadBlockOn
        | Kind::LocalSetTaskOnMultiThreadBlockOn
        | Kind::LocalSetBodyOnMultiThreadBlockOn
        | Kind::SpawnBlockingMultiThread
        | Kind::HandleEnterMultiThread => BlockingThread {
            flavor: RuntimeFlavor::MultiThread,
        },
        Kind::SpawnBlockingCurrentThread | Kind::HandleEnterCurrentThread => BlockingThread {
            flavor: RuntimeFlavor::CurrentThread,
        },
        Kind::PoolThread => PoolThread {
            pool: "context-case".into(),
        },
        Kind::InsideBlockOn => InsideBlockOn,
        Kind::BridgeThread => BridgeThread,
    }
}

/// A future that needs tokio's timer, created inside the polled future.
async fn needs_timer() -> &'static str {
    tokio::time::sleep(Duration::from_millis(2)).await;
    "timer fired"
}

/// Counts every panic the process reports, and chains to the hook before.
fn install_counting_hook() -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        seen.fetch_add(1, Ordering::SeqCst);
        eprintln!("counting hook saw a panic: {info}");
        previous(info);
    }));
    count
}

/// Everything colorseam does to learn where it runs, in every kind of
/// thread: context(), the guard, each blocking entry point (refused or not).
fn exercise_every_kind() {
    guard::set_policy(Policy::Ignore);
    for kind in KINDS {
        run_in(kind, move || {
            let _ = colorseam::context();
            guard::assert_blocking_allowed();
            let _ = colorseam::block_on(needs_timer());
            let _ = colorseam::block_on_in_place(needs_timer());
            if kind != Kind::InsideBlockOn {
                let _ = colorseam::block_on_timeout(needs_timer(), Duration::from_secs(30));
            }
        });
    }
}

// --- the cases -----------------------------------------------------------

fn context_names_every_kind_of_thread() {
    for kind in KINDS {
        let seen = run_in(kind, colorseam::context);
        eprintln!("context: {kind:?} -> {seen:?}");
        assert_eq!(seen, expected_context(kind), "{kind:?}");
        assert_eq!(seen.is_async(), !blocking_is_fine(kind), "{kind:?}");
    }
}

fn block_on_gives_a_value_where_blocking_is_fine_and_a_refusal_elsewhere() {
    for kind in KINDS {
        let result = run_in(kind, || colorseam::block_on(needs_timer()));
        match result {
            Ok(value) => {
                assert!(
                    blocking_is_fine(kind),
                    "block_on from {kind:?} should be refused"
                );
                assert_eq!(value, "timer fired");
            }
            Err(e) => {
                assert!(
                    !blocking_is_fine(kind),
                    "block_on from {kind:?} failed: {e}"
                );
                assert!(e.is_async_context(), "{kind:?}: {e}");
            }
        }
        if kind == Kind::InsideBlockOn {
            // block_on_timeout needs a `Send` future and refuses the same way.
            continue;
        }
        let result = run_in(kind, || {
            colorseam::block_on_timeout(needs_timer(), Duration::from_secs(30))
        });
        assert_eq!(
            result.is_ok(),
            blocking_is_fine(kind),
            "block_on_timeout from {kind:?}: {result:?}"
        );
    }
}

fn block_on_in_place_also_blocks_in_place_on_a_multi_thread_worker() {
    for kind in KINDS {
        let result = run_in(kind, || colorseam::block_on_in_place(needs_timer()));
        let expect_value = blocking_is_fine(kind) || kind == Kind::MultiThreadWorker;
        match result {
            Ok(value) => {
                assert!(
                    expect_value,
                    "block_on_in_place from {kind:?} should be refused"
                );
                assert_eq!(value, "timer fired");
            }
            Err(e) => {
                assert!(!expect_value, "block_on_in_place from {kind:?} failed: {e}");
                assert!(e.is_async_context(), "{kind:?}: {e}");
            }
        }
    }
}

fn block_on_in_place_works_inside_a_raw_block_in_place() {
    let value = run_in(Kind::MultiThreadWorker, || {
        tokio::task::block_in_place(|| colorseam::block_on_in_place(needs_timer()))
    });
    assert_eq!(value.expect("nested block_in_place is fine"), "timer fired");
}

fn the_guard_counts_violations_only_where_a_scheduler_would_freeze() {
    guard::set_policy(Policy::Ignore);
    for kind in KINDS {
        let before = guard::violations();
        run_in(kind, guard::assert_blocking_allowed);
        let reported = guard::violations() - before;
        // A future colorseam's block_on polls is the sync caller's own
        // thread: silent, though blocking_on there is refused.
        let loud = !blocking_is_fine(kind) && kind != Kind::InsideBlockOn;
        assert_eq!(reported, u64::from(loud), "guard from {kind:?}");
    }
}

fn a_chaining_hook_installed_after_first_use_sees_no_panics() {
    // First use, before the hook: whatever colorseam sets up once.
    let _ = colorseam::context();
    let _ = run_in(Kind::MultiThreadWorker, || colorseam::block_on(async {}));
    let panics = install_counting_hook();
    exercise_every_kind();
    assert_eq!(panics.load(Ordering::SeqCst), 0, "colorseam raised panics");
}

fn an_aborting_hook_does_not_kill_the_process_on_a_refused_block_on() {
    // First use, before the hook, as in the chaining case.
    let _ = run_in(Kind::MultiThreadWorker, colorseam::context);
    std::panic::set_hook(Box::new(|info| {
        eprintln!("aborting hook: {info}");
        std::process::abort();
    }));
    for kind in [
        Kind::MultiThreadWorker,
        Kind::CurrentThreadDriver,
        Kind::LocalSetOnCurrentThread,
    ] {
        let err = run_in(kind, || colorseam::block_on(needs_timer())).unwrap_err();
        assert!(err.is_async_context(), "{err}");
    }
    exercise_every_kind();
}

#[cfg(panic = "unwind")]
fn block_on_in_place_works_from_a_drop_during_unwinding() {
    struct InDrop(std::sync::mpsc::Sender<Result<&'static str, colorseam::Error>>);
    impl Drop for InDrop {
        fn drop(&mut self) {
            assert!(std::thread::panicking());
            let _ = self.0.send(colorseam::block_on_in_place(needs_timer()));
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let rt = multi_thread();
    let joined = rt.block_on(async {
        tokio::spawn(async move {
            let _in_drop = InDrop(tx);
            panic!("unwinding through a Drop that blocks in place");
        })
        .await
    });
    assert!(joined.unwrap_err().is_panic());
    let from_drop = rx.recv_timeout(WATCHDOG).expect("the Drop ran");
    assert_eq!(
        from_drop.expect("block_on_in_place from the Drop"),
        "timer fired"
    );
}

fn the_build_uses_the_panic_strategy_the_run_asked_for() {
    let built = if cfg!(panic = "abort") {
        "abort"
    } else {
        "unwind"
    };
    if let Ok(expected) = std::env::var("COLORSEAM_EXPECT_PANIC") {
        assert_eq!(
            built, expected,
            "the panic strategy this binary was built with"
        );
    }
}

fn a_case_that_panics_fails_the_run() {
    panic!("the harness self-test: this case must fail the run");
}

// --- the harness ---------------------------------------------------------

type Case = (&'static str, fn());

fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = vec![
        (
            "context_names_every_kind_of_thread",
            context_names_every_kind_of_thread,
        ),
        (
            "block_on_gives_a_value_where_blocking_is_fine_and_a_refusal_elsewhere",
            block_on_gives_a_value_where_blocking_is_fine_and_a_refusal_elsewhere,
        ),
        (
            "block_on_in_place_also_blocks_in_place_on_a_multi_thread_worker",
            block_on_in_place_also_blocks_in_place_on_a_multi_thread_worker,
        ),
        (
            "block_on_in_place_works_inside_a_raw_block_in_place",
            block_on_in_place_works_inside_a_raw_block_in_place,
        ),
        (
            "the_guard_counts_violations_only_where_a_scheduler_would_freeze",
            the_guard_counts_violations_only_where_a_scheduler_would_freeze,
        ),
        (
            "a_chaining_hook_installed_after_first_use_sees_no_panics",
            a_chaining_hook_installed_after_first_use_sees_no_panics,
        ),
        (
            "an_aborting_hook_does_not_kill_the_process_on_a_refused_block_on",
            an_aborting_hook_does_not_kill_the_process_on_a_refused_block_on,
        ),
        (
            "the_build_uses_the_panic_strategy_the_run_asked_for",
            the_build_uses_the_panic_strategy_the_run_asked_for,
        ),
    ];
    #[cfg(panic = "unwind")]
    cases.push((
        "block_on_in_place_works_from_a_drop_during_unwinding",
        block_on_in_place_works_from_a_drop_during_unwinding,
    ));
    if std::env::var_os("COLORSEAM_HARNESS_SELFTEST").is_some() {
        cases.push((
            "a_case_that_panics_fails_the_run",
            a_case_that_panics_fails_the_run,
        ));
    }
    cases
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--case") {
        let name = args.get(at + 1).expect("--case needs a name");
        let (_, case) = cases()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no case named {name}"));
        case();
        return ExitCode::SUCCESS;
    }
    // Plain words are filters, as with libtest; other flags are ignored.
    let filters: Vec<&String> = args
        .iter()
        .filter(|a| !a.starts_with('-') && a.as_str() != "terse")
        .collect();
    if args.iter().any(|a| a == "--list") {
        // libtest's listing, which cargo-nextest reads (it then runs each
        // case as `--exact NAME`); no case is ignored.
        if !args.iter().any(|a| a == "--ignored") {
            for (name, _) in cases() {
                println!("{name}: test");
            }
        }
        return ExitCode::SUCCESS;
    }
    let exe = std::env::current_exe().expect("the path of this test binary");
    let strategy = if cfg!(panic = "abort") {
        "abort"
    } else {
        "unwind"
    };
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, _) in cases() {
        let exact = args.iter().any(|a| a == "--exact");
        let chosen = |f: &&String| {
            if exact {
                name == f.as_str()
            } else {
                name.contains(f.as_str())
            }
        };
        if !filters.is_empty() && !filters.iter().any(chosen) {
            continue;
        }
        ran += 1;
        let mut child = Command::new(&exe)
            .args(["--case", name])
            .stdin(Stdio::null())
            .spawn()
            .expect("a child process for the case");
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("the child's status") {
                break Some(status);
            }
            if started.elapsed() > WATCHDOG * 3 {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        match status {
            Some(status) if status.success() => println!("case {name} ... ok"),
            Some(status) => {
                println!("case {name} ... FAILED ({status})");
                failed.push(name);
            }
            None => {
                println!("case {name} ... FAILED (hung)");
                failed.push(name);
            }
        }
    }
    println!(
        "context_without_panics (panic={strategy}): {} passed, {} failed",
        ran - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
