//! `ThreadBound<T>`: a resource that stays on one thread, called in
//! submission order; a hung thread makes later calls fail fast.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use colorseam::adapter::ThreadBound;
use common::{Gate, eventually_async};

const LONG: Duration = Duration::from_secs(20);

/// Neither Send nor Sync, like many C SDK handles.
struct Connection {
    log: Rc<RefCell<Vec<u32>>>,
    thread: String,
}

fn connect() -> Connection {
    Connection {
        log: Rc::new(RefCell::new(Vec::new())),
        thread: std::thread::current().name().unwrap_or("").to_owned(),
    }
}

/// Starts a call that blocks on `gate`, to be awaited once it runs: its
/// deadline is checked when the future is polled, so it always passes while
/// the call runs, however slowly the thread started.
fn hang<T: 'static>(conn: &ThreadBound<T>, gate: &Gate, timeout: Duration) -> HungCall {
    let (running_tx, running) = std::sync::mpsc::channel();
    let g = gate.clone();
    let call = conn.call_timeout(
        move |_| {
            running_tx.send(()).unwrap();
            g.wait(LONG);
        },
        timeout,
    );
    HungCall { call, running }
}

struct HungCall {
    call: colorseam::adapter::AdapterCall<()>,
    running: std::sync::mpsc::Receiver<()>,
}

impl HungCall {
    /// The call's error, awaited once the call is running.
    async fn given_up(self) -> colorseam::Error {
        let running = self.running;
        tokio::task::spawn_blocking(move || running.recv_timeout(LONG))
            .await
            .unwrap()
            .expect("the hung call starts");
        self.call.await.unwrap_err()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_runs_on_the_one_thread_that_made_the_resource_in_submission_order() {
    let conn = ThreadBound::new("tb-order", connect).unwrap();
    let calls: Vec<_> = (0..50)
        .map(|i| {
            conn.call(move |c| {
                c.log.borrow_mut().push(i);
                (
                    c.thread.clone(),
                    std::thread::current().name().unwrap_or("").to_owned(),
                )
            })
        })
        .collect();
    for call in calls {
        let (made_on, ran_on) = call.await.unwrap();
        assert_eq!(made_on, ran_on);
        assert!(ran_on.starts_with("tb-order-"), "{ran_on}");
    }
    let log = conn.call(|c| c.log.borrow().clone()).await.unwrap();
    assert_eq!(log, (0..50).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_budget_a_hung_call_makes_later_calls_fail_fast_until_it_returns() {
    let conn = ThreadBound::builder("tb-hung", connect)
        .default_timeout(Duration::from_millis(50))
        .max_abandoned(0)
        .build()
        .unwrap();
    let gate = Gate::new();
    let err = hang(&conn, &gate, Duration::from_millis(50))
        .given_up()
        .await;
    assert!(err.is_timeout());

    let started = Instant::now();
    let err = conn.call(|_| ()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(500), "fails fast");
    assert!(err.is_saturated(), "{err}");
    assert_eq!(err.stuck_threads(), 1);
    assert!(err.to_string().contains("1 thread is stuck"), "{err}");
    assert!(err.to_string().contains("tb-hung"), "{err}");
    assert_eq!(conn.metrics().outcomes.rejected, 1, "refusals are counted");

    gate.open();
    assert!(eventually_async(LONG, || conn.metrics().threads.abandoned == 0).await);
    // Served again, by a fresh thread with a fresh resource.
    assert!(
        eventually_async(LONG, || common::os_threads_named("tb-hung").eq(&0)).await,
        "the stuck thread ends once its call returns"
    );
    // The pool counts a thread until its monitor reaps it, a tick after
    // /proc stops listing it: only then is its room free again.
    assert!(
        eventually_async(LONG, || conn.metrics().threads.total == 0).await,
        "{:?}",
        conn.metrics()
    );
    assert_eq!(conn.call(|c| c.log.borrow().len()).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resource_is_dropped_on_its_own_thread_when_the_adapter_goes() {
    struct Tell(std::sync::mpsc::Sender<String>);
    impl Drop for Tell {
        fn drop(&mut self) {
            let _ = self
                .0
                .send(std::thread::current().name().unwrap_or("").to_owned());
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let conn = ThreadBound::new("tb-drop", move || Tell(tx.clone())).unwrap();
    conn.call(|_| ()).await.unwrap();
    drop(conn);
    let dropped_on = tokio::task::spawn_blocking(move || rx.recv_timeout(LONG))
        .await
        .unwrap()
        .unwrap();
    assert!(dropped_on.starts_with("tb-drop-"), "{dropped_on}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factory_that_panics_is_an_error_and_is_tried_again() {
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a = attempts.clone();
    let conn = ThreadBound::new("tb-factory", move || {
        if a.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            panic!("first connect fails");
        }
        7u32
    })
    .unwrap();
    let err = conn.call(|n| *n).await.unwrap_err();
    assert_eq!(err.panic_message(), Some("first connect fails"));
    assert_eq!(conn.call(|n| *n).await.unwrap(), 7);
}

// ---- Composition: re-entrancy, drop, stuck calls, recovery ----

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Wake, Waker};

use futures::FutureExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_made_from_inside_its_own_call_is_a_typed_error_not_a_panic() {
    let conn = Arc::new(ThreadBound::new("tb-reenter", connect).unwrap());
    let again = conn.clone();
    let (through_block_on, through_other_executor) = conn
        .call(move |c| {
            c.log.borrow_mut().push(1);
            // colorseam's block_on on the adapter's own thread (which runs
            // nested calls of its pool inline) ...
            let nested = colorseam::block_on(async { again.call(|c| c.log.borrow().len()).await });
            // ... and another executor, which would wait for itself.
            let queued = pollster::block_on(async {
                again.call_timeout(|_| (), Duration::from_secs(5)).await
            });
            (nested, queued)
        })
        .await
        .unwrap();
    for err in [
        through_block_on.unwrap().unwrap_err(),
        through_other_executor.unwrap_err(),
    ] {
        assert!(err.is_reentrant(), "{err}");
        assert!(!err.is_panic(), "{err}");
        assert!(err.to_string().contains("tb-reenter"), "{err}");
    }
    assert_eq!(
        conn.call(|c| c.log.borrow().clone()).await.unwrap(),
        vec![1],
        "the resource is intact"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_from_a_waker_or_a_drop_during_unwinding_inside_a_call_is_refused_the_same_way() {
    struct CallOnWake(Arc<ThreadBound<Connection>>, std::sync::Mutex<Option<bool>>);
    impl Wake for CallOnWake {
        fn wake(self: Arc<Self>) {
            let result = self.0.call(|_| ()).now_or_never();
            let refused = matches!(result, Some(Err(ref e)) if e.is_reentrant());
            *self.1.lock().unwrap() = Some(refused);
        }
    }
    struct CallOnDrop(Arc<ThreadBound<Connection>>, std::sync::mpsc::Sender<bool>);
    impl Drop for CallOnDrop {
        fn drop(&mut self) {
            assert!(std::thread::panicking());
            let result = self.0.call(|_| ()).now_or_never();
            let _ = self
                .1
                .send(matches!(result, Some(Err(ref e)) if e.is_reentrant()));
        }
    }
    let conn = Arc::new(ThreadBound::new("tb-hostile", connect).unwrap());
    let waker = Arc::new(CallOnWake(conn.clone(), std::sync::Mutex::new(None)));
    let w = waker.clone();
    conn.call(move |_| Waker::from(w).wake()).await.unwrap();
    assert_eq!(*waker.1.lock().unwrap(), Some(true), "refused from a waker");

    let (tx, rx) = std::sync::mpsc::channel();
    let guard = CallOnDrop(conn.clone(), tx);
    let err = conn
        .call(move |_| {
            let _guard = guard;
            panic!("the SDK blew up");
        })
        .await
        .unwrap_err();
    assert_eq!(err.panic_message(), Some("the SDK blew up"));
    assert_eq!(rx.recv_timeout(LONG), Ok(true), "refused while unwinding");
    assert!(
        conn.call(|_| 5).await.is_ok_and(|n| n == 5),
        "still serving"
    );
}

/// Runs this test binary again with only `test` and `CHILD` set, and
/// returns its exit status and output: for behaviour that, when broken,
/// aborts the process.
fn run_child(test: &str) -> (std::process::ExitStatus, String) {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("COLORSEAM_TB_CHILD", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status, text)
}

#[test]
fn a_resource_whose_drop_calls_block_on_is_dropped_before_thread_teardown() {
    if std::env::var_os("COLORSEAM_TB_CHILD").is_none() {
        let (status, output) =
            run_child("a_resource_whose_drop_calls_block_on_is_dropped_before_thread_teardown");
        assert!(status.success(), "{status}: {output}");
        assert!(output.contains("drop's block_on: Ok(7)"), "{output}");
        return;
    }
    struct Flushes;
    impl Drop for Flushes {
        fn drop(&mut self) {
            let flushed = colorseam::block_on(async {
                tokio::time::sleep(Duration::from_millis(1)).await;
                7
            });
            println!("drop's block_on: {flushed:?}");
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let conn = ThreadBound::new("tb-drop-block-on", || Flushes).unwrap();
        // The call uses block_on first, so its thread-locals are set up
        // before the resource's: they would be torn down first.
        conn.call(|_| colorseam::block_on(async { tokio::task::yield_now().await }))
            .await
            .unwrap()
            .unwrap();
        drop(conn);
        assert!(eventually_async(LONG, || common::os_threads_named("tb-drop-block").eq(&0)).await);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_queued_behind_a_stuck_call_fail_fast_with_the_stuck_error() {
    let conn = ThreadBound::new("tb-queued", connect).unwrap();
    let gate = Gate::new();
    let hung = hang(&conn, &gate, Duration::from_millis(100));
    let ran = Arc::new(AtomicUsize::new(0));
    let queued: Vec<_> = (0..3)
        .map(|_| {
            let ran = ran.clone();
            // The default deadline: 30 s.
            conn.call(move |_| ran.fetch_add(1, Ordering::SeqCst))
        })
        .collect();
    assert!(hung.given_up().await.is_timeout());
    let started = Instant::now();
    for call in queued {
        let err = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("a call queued behind a stuck call does not wait out its deadline")
            .unwrap_err();
        assert!(err.is_saturated(), "{err}");
        assert_eq!(err.stuck_threads(), 1, "{err}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    gate.open();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(ran.load(Ordering::SeqCst), 0, "refused calls never run");
}

/// A resource that says which thread made it and which dropped it.
struct Traced {
    made_on: std::thread::ThreadId,
    dropped: std::sync::mpsc::Sender<(std::thread::ThreadId, std::thread::ThreadId)>,
}

impl Drop for Traced {
    fn drop(&mut self) {
        let _ = self
            .dropped
            .send((self.made_on, std::thread::current().id()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_hang_a_bounded_number_of_fresh_threads_come_from_the_factory() {
    let (tx, dropped) = std::sync::mpsc::channel();
    let made = Arc::new(AtomicUsize::new(0));
    let m = made.clone();
    let conn = ThreadBound::builder("tb-recover", move || {
        m.fetch_add(1, Ordering::SeqCst);
        Traced {
            made_on: std::thread::current().id(),
            dropped: tx.clone(),
        }
    })
    .max_abandoned(1)
    .build()
    .unwrap();
    let first = conn.call(|r| r.made_on).await.unwrap();

    // The first thread hangs: a fresh one, with a fresh resource, serves.
    let gate = Gate::new();
    let err = hang(&conn, &gate, Duration::from_millis(50))
        .given_up()
        .await;
    assert!(err.is_timeout());
    let second = conn
        .call(|r| r.made_on)
        .await
        .expect("recovered on a fresh thread");
    assert_ne!(first, second);
    assert_eq!(made.load(Ordering::SeqCst), 2);

    // The fresh one hangs too: the budget (one stuck thread) is spent, so
    // calls fail fast, and no third thread starts.
    let gate2 = Gate::new();
    let err = hang(&conn, &gate2, Duration::from_millis(50))
        .given_up()
        .await;
    assert!(err.is_timeout());
    let started = Instant::now();
    let err = conn.call(|r| r.made_on).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.is_saturated(), "{err}");
    assert_eq!(err.stuck_threads(), 2, "{err}");
    assert_eq!(made.load(Ordering::SeqCst), 2);
    assert!(common::os_threads_named("tb-recover").le(&2));

    // When a stuck call returns, its resource is dropped on its own thread
    // and that thread leaves; the adapter serves again.
    gate.open();
    let (made_on, dropped_on) =
        tokio::task::spawn_blocking(move || dropped.recv_timeout(LONG).unwrap())
            .await
            .unwrap();
    assert_eq!(made_on, first);
    assert_eq!(dropped_on, first, "dropped on the thread that made it");
    // Gone from the OS, and let go by its pool: a pool counts a thread
    // until it has seen it gone (which trails /proc by a monitor tick).
    let pools_count = || -> usize {
        colorseam::metrics::all()
            .iter()
            .filter(|m| m.name == "tb-recover")
            .map(|m| m.threads.total)
            .sum()
    };
    assert!(
        eventually_async(LONG, || common::os_threads_named("tb-recover").eq(&1)
            && pools_count() == 1)
        .await,
        "the first thread leaves once its call returned"
    );
    let third = conn
        .call(|r| r.made_on)
        .await
        .expect("serves after a stuck call returned");
    assert_ne!(third, first);
    assert_ne!(third, second);
    assert_eq!(made.load(Ordering::SeqCst), 3);
    gate2.open();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factory_that_always_panics_costs_no_thread_and_each_call_is_an_error() {
    let conn = ThreadBound::new("tb-bad-factory", || -> u32 { panic!("cannot connect") }).unwrap();
    for _ in 0..20 {
        let err = conn.call(|n| *n).await.unwrap_err();
        assert_eq!(err.panic_message(), Some("cannot connect"));
    }
    assert!(common::os_threads_named("tb-bad-factory").le(&1));
}

#[test]
fn many_threads_on_one_adapter_handle_each_see_their_calls_in_order() {
    let conn = Arc::new(ThreadBound::new("tb-shared", connect).unwrap());
    let threads: Vec<_> = (0..6u32)
        .map(|t| {
            let conn = conn.clone();
            std::thread::spawn(move || {
                for i in 0..40u32 {
                    let n = t * 1000 + i;
                    colorseam::block_on(async {
                        conn.call(move |c| c.log.borrow_mut().push(n)).await
                    })
                    .unwrap()
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let log = colorseam::block_on(async { conn.call(|c| c.log.borrow().clone()).await })
        .unwrap()
        .unwrap();
    assert_eq!(log.len(), 240);
    for t in 0..6u32 {
        let mine: Vec<u32> = log.iter().copied().filter(|n| n / 1000 == t).collect();
        assert_eq!(mine, (0..40).map(|i| t * 1000 + i).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_running_call_retires_its_thread_like_a_deadline_does() {
    let made = Arc::new(AtomicUsize::new(0));
    let m = made.clone();
    let conn =
        ThreadBound::new("tb-drop-running", move || m.fetch_add(1, Ordering::SeqCst)).unwrap();
    let gate = Gate::new();
    let (g, (started_tx, started_rx)) = (gate.clone(), std::sync::mpsc::channel());
    let running = conn.call(move |_| {
        started_tx.send(()).unwrap();
        g.wait(LONG);
    });
    let queued = conn.call(|n| *n);
    let mut running = Box::pin(running);
    // Poll once so the call is under way, then give up on it.
    assert!(futures::poll!(running.as_mut()).is_pending());
    tokio::task::spawn_blocking(move || started_rx.recv_timeout(LONG).unwrap())
        .await
        .unwrap();
    drop(running);
    let err = tokio::time::timeout(Duration::from_secs(5), queued)
        .await
        .expect("the queued call fails fast")
        .unwrap_err();
    assert!(err.is_saturated() && err.stuck_threads() == 1, "{err}");
    assert_eq!(conn.call(|n| *n).await.unwrap(), 1, "a fresh resource");
    gate.open();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_adapter_while_a_call_is_stuck_drops_that_resource_when_the_call_returns() {
    let (tx, dropped) = std::sync::mpsc::channel();
    let conn = ThreadBound::new("tb-drop-stuck", move || Traced {
        made_on: std::thread::current().id(),
        dropped: tx.clone(),
    })
    .unwrap();
    let gate = Gate::new();
    let err = hang(&conn, &gate, Duration::from_millis(50))
        .given_up()
        .await;
    assert!(err.is_timeout());
    drop(conn);
    assert!(dropped.try_recv().is_err(), "not while its call runs");
    gate.open();
    let (made_on, dropped_on) =
        tokio::task::spawn_blocking(move || dropped.recv_timeout(LONG).unwrap())
            .await
            .unwrap();
    assert_eq!(made_on, dropped_on);
    assert!(eventually_async(LONG, || common::os_threads_named("tb-drop-stuc").eq(&0)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_racing_deadlines_every_resource_made_is_dropped_and_every_thread_leaves() {
    let made = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let (m, d) = (made.clone(), dropped.clone());
    let conn = ThreadBound::builder("tb-race", move || {
        m.fetch_add(1, Ordering::SeqCst);
        Counted(d.clone())
    })
    .max_abandoned(2)
    .build()
    .unwrap();
    // One resource made for sure, whatever the load does to the rest.
    conn.call(|_| ()).await.unwrap();
    let (mut ok, mut timed_out, mut refused) = (0, 0, 0);
    for i in 0..300u64 {
        // Deadlines that land before, during and after the call returns.
        let work = Duration::from_micros(i % 7 * 300);
        match conn
            .call_timeout(
                move |_| std::thread::sleep(work),
                Duration::from_micros(900),
            )
            .await
        {
            Ok(()) => ok += 1,
            Err(e) if e.is_timeout() => timed_out += 1,
            Err(e) if e.is_saturated() && e.stuck_threads() > 0 => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok + timed_out + refused, 300);
    drop(conn);
    assert!(
        eventually_async(LONG, || made.load(Ordering::SeqCst)
            == dropped.load(Ordering::SeqCst))
        .await,
        "made {} dropped {}",
        made.load(Ordering::SeqCst),
        dropped.load(Ordering::SeqCst)
    );
    assert!(eventually_async(LONG, || common::os_threads_named("tb-race").eq(&0)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factory_that_calls_its_own_adapter_is_refused_and_the_call_fails_cleanly() {
    static ADAPTER: std::sync::OnceLock<Arc<ThreadBound<u32>>> = std::sync::OnceLock::new();
    static SAW_REENTRANT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let conn = ADAPTER.get_or_init(|| {
        Arc::new(
            ThreadBound::new("tb-factory-reenter", || {
                let again = ADAPTER.get().expect("set before the first call");
                let result = again.call(|n| *n).now_or_never();
                if matches!(result, Some(Err(ref e)) if e.is_reentrant()) {
                    SAW_REENTRANT.store(true, Ordering::SeqCst);
                }
                41
            })
            .unwrap(),
        )
    });
    assert_eq!(conn.call(|n| *n + 1).await.unwrap(), 42);
    assert!(SAW_REENTRANT.load(Ordering::SeqCst));
}

#[test]
fn an_adapter_dropped_while_its_owner_unwinds_still_drops_the_resource_on_its_thread() {
    let (tx, dropped) = std::sync::mpsc::channel();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let conn = ThreadBound::new("tb-unwind", move || Traced {
        made_on: std::thread::current().id(),
        dropped: tx.clone(),
    })
    .unwrap();
    rt.block_on(async { conn.call(|_| ()).await }).unwrap();
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _owned = conn;
        panic!("the owner blew up");
    }));
    assert!(unwound.is_err());
    let (made_on, dropped_on) = dropped.recv_timeout(LONG).unwrap();
    assert_eq!(made_on, dropped_on);
    assert_ne!(dropped_on, std::thread::current().id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_adapters_made_used_and_dropped_leave_no_thread_behind() {
    let dropped = Arc::new(AtomicUsize::new(0));
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    for round in 0..5 {
        let adapters: Vec<_> = (0..10)
            .map(|_| {
                let d = dropped.clone();
                ThreadBound::new("tb-many", move || Counted(d.clone())).unwrap()
            })
            .collect();
        for adapter in &adapters {
            adapter.call(|_| ()).await.unwrap();
        }
        assert!(common::os_threads_named("tb-many") >= 10, "round {round}");
        drop(adapters);
        assert!(
            eventually_async(LONG, || common::os_threads_named("tb-many") == 0).await,
            "round {round}: {} threads left",
            common::os_threads_named("tb-many")
        );
        assert_eq!(dropped.load(Ordering::SeqCst), 10 * (round + 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_waits_in_block_on_does_not_run_the_calls_queued_behind_it() {
    let conn = ThreadBound::new("tb-wait-inside", connect).unwrap();
    let (started_tx, started) = std::sync::mpsc::channel();
    let gate = Gate::new();
    let g = gate.clone();
    let first = conn.call(move |c| {
        c.log.borrow_mut().push(0);
        started_tx.send(()).unwrap();
        // Waits inside the call, the way an SDK flushes through async code.
        colorseam::block_on(async move {
            tokio::task::spawn_blocking(move || g.wait(LONG))
                .await
                .unwrap()
        })
        .unwrap();
    });
    tokio::task::spawn_blocking(move || started.recv_timeout(LONG).unwrap())
        .await
        .unwrap();
    // With and without a deadline (a pool thread waiting in `block_on` may
    // run its pool's queued jobs that have none).
    let queued: Vec<_> = (1..4u32)
        .map(|i| {
            let f = move |c: &mut Connection| c.log.borrow_mut().push(i);
            if i == 2 {
                conn.call_timeout(f, Duration::MAX)
            } else {
                conn.call(f)
            }
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    gate.open();
    first.await.unwrap();
    for call in queued {
        call.await
            .expect("queued calls run after the first, not inside it");
    }
    assert_eq!(
        conn.call(|c| c.log.borrow().clone()).await.unwrap(),
        vec![0, 1, 2, 3]
    );
}

#[test]
fn another_executor_on_a_plain_thread_gets_calls_deadlines_and_fail_fast_too() {
    let conn = ThreadBound::new("tb-pollster", connect).unwrap();
    assert_eq!(
        pollster::block_on(conn.call(|c| c.thread.clone())).unwrap(),
        "tb-pollster-1"
    );
    let gate = Gate::new();
    let (running_tx, running) = std::sync::mpsc::channel();
    let g = gate.clone();
    let hung = conn.call_timeout(
        move |_| {
            running_tx.send(()).unwrap();
            g.wait(LONG);
        },
        Duration::from_millis(50),
    );
    let queued = conn.call(|_| ());
    running.recv_timeout(LONG).unwrap();
    let started = Instant::now();
    assert!(pollster::block_on(hung).unwrap_err().is_timeout());
    let err = pollster::block_on(queued).unwrap_err();
    assert!(err.is_saturated() && err.stuck_threads() == 1, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        pollster::block_on(conn.call(|_| 1)).is_ok(),
        "a fresh thread serves"
    );
    gate.open();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_capacity_of_n_lets_n_calls_wait_behind_the_running_one_and_refuses_the_next() {
    let conn = ThreadBound::builder("tb-capacity", || 0u32)
        .queue_capacity(3)
        .build()
        .unwrap();
    let gate = Gate::new();
    let (running_tx, running) = std::sync::mpsc::channel();
    let g = gate.clone();
    let first = conn.call(move |n| {
        running_tx.send(()).unwrap();
        g.wait(LONG);
        *n += 1;
        *n
    });
    tokio::task::spawn_blocking(move || running.recv_timeout(LONG))
        .await
        .unwrap()
        .expect("the first call starts");
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            conn.call(|n| {
                *n += 1;
                *n
            })
        })
        .collect();
    let err = conn.call(|n| *n).await.unwrap_err();
    assert!(err.is_saturated(), "{err}");
    gate.open();
    assert_eq!(first.await.unwrap(), 1);
    let mut seen = Vec::new();
    for call in waiting {
        seen.push(call.await.unwrap());
    }
    assert_eq!(seen, [2, 3, 4], "the waiting calls ran, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_in_flight_fit_a_queue_made_for_them() {
    let conn = ThreadBound::builder("tb-many", || 0u64)
        .queue_capacity(10_000)
        .build()
        .unwrap();
    let calls: Vec<_> = (0..10_000)
        .map(|_| {
            conn.call(|n| {
                *n += 1;
                *n
            })
        })
        .collect();
    let mut last = 0;
    for call in calls {
        let n = call.await.unwrap();
        assert_eq!(n, last + 1, "in submission order");
        last = n;
    }
    assert_eq!(last, 10_000);
}
