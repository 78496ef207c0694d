//! Issue 12 under a hostile review: user code (here a waker's `Drop`) run
//! while one of the adapters' locks is held. Each test makes the user code
//! wait, with a generous bound, for something a pool thread can only do by
//! taking that same lock: held, the wait runs out; released, it ends at once.

mod common;

use std::io::{self, Read};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::task::Waker;
use std::time::Duration;

use colorseam::BlockingPool;
use colorseam::adapter::{Unblock, UnblockIter};
use common::{Reentrant, within};
use futures::Stream;
use tokio::io::{AsyncRead, ReadBuf};

/// How long a waker's drop waits for the pool thread: far past any load.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long the whole test may take before it is called a deadlock.
const STUCK: Duration = Duration::from_secs(60);

/// An item that says when it is dropped (on the pool thread, when a push
/// into a closed feed refuses it).
struct Told(Option<mpsc::Sender<()>>);

impl Drop for Told {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// What an `UnblockIter` whose step timed out leaves behind: the stream
/// (its feed closed, holding the last clone of the waker `armed` runs in),
/// and a step still running that pushes one item when `armed` says go.
struct Abandoned {
    stream: Pin<Box<UnblockIter<Box<dyn Iterator<Item = Told> + Send>>>>,
    /// True while the test drops or polls the stream (the waker's drop is
    /// expected then, with the stream's own code on the stack).
    inside: Arc<AtomicBool>,
    /// Set by the waker's drop: (ran inside, saw the item refused in time).
    verdict: Arc<std::sync::Mutex<Option<(bool, bool)>>>,
    _pool: BlockingPool,
}

fn abandoned_step(name: &str) -> Abandoned {
    let pool = BlockingPool::builder()
        .name(name)
        .max_threads(1)
        .max_abandoned(1)
        .default_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (told_tx, told_rx) = mpsc::channel::<()>();
    // The step's one item comes only when the waker's drop says go.
    let iter: Box<dyn Iterator<Item = Told> + Send> =
        Box::new(std::iter::once(()).map(move |()| {
            go_rx.recv().expect("the test sends go");
            Told(Some(told_tx.clone()))
        }));
    let mut stream = Box::pin(Unblock::builder().pool(pool.clone()).build_iter(iter));
    let inside = Arc::new(AtomicBool::new(false));
    let verdict = Arc::new(std::sync::Mutex::new(None));
    let (was_inside, out) = (inside.clone(), verdict.clone());
    let told_rx = std::sync::Mutex::new(told_rx);
    let armed = Reentrant::dropping(move || {
        let ran_inside = was_inside.load(Ordering::SeqCst);
        let _ = go_tx.send(());
        // The abandoned step pushes the item: refused by the closed feed,
        // it is dropped right after the feed's lock is taken and let go.
        let in_time = told_rx.lock().unwrap().recv_timeout(PATIENCE).is_ok();
        *out.lock().unwrap() = Some((ran_inside, in_time));
    });
    let plain = Reentrant::waker(|| {});
    let waker = Waker::from(plain.clone());
    // The deadline passes while the iterator waits: the step is given up on
    // (the abandoned job keeps this waker until it ends).
    let got = loop {
        let seen = plain.woken();
        match poll_next(stream.as_mut(), &waker) {
            std::task::Poll::Ready(got) => break got,
            std::task::Poll::Pending => assert!(
                common::eventually(STUCK, || plain.woken() > seen),
                "the stream's waker was never woken"
            ),
        }
    };
    assert_eq!(
        got.map(|item| item.is_err()),
        Some(true),
        "the step times out"
    );
    // The stream has ended; a poll still leaves its waker with the feed,
    // and nothing else keeps this one.
    let armed = Waker::from(armed);
    assert!(matches!(
        poll_next(stream.as_mut(), &armed),
        std::task::Poll::Ready(None)
    ));
    drop(armed);
    Abandoned {
        stream,
        inside,
        verdict,
        _pool: pool,
    }
}

impl Abandoned {
    fn verdict(&self) -> (bool, bool) {
        assert!(
            common::eventually(STUCK, || self.verdict.lock().unwrap().is_some()),
            "the waker was never dropped"
        );
        self.verdict.lock().unwrap().expect("checked just above")
    }
}

#[test]
fn a_waker_dropped_with_a_dropped_unblock_iter_runs_with_the_feed_unlocked() {
    let (ran_inside, in_time) = within(STUCK, "dropping an UnblockIter", || {
        let Abandoned {
            stream,
            inside,
            verdict,
            _pool,
        } = abandoned_step("r12-iter-drop");
        inside.store(true, Ordering::SeqCst);
        drop(stream);
        inside.store(false, Ordering::SeqCst);
        Abandoned {
            stream: Box::pin(UnblockIter::new(
                Box::new(std::iter::empty()) as Box<dyn Iterator<Item = Told> + Send>
            )),
            inside,
            verdict,
            _pool,
        }
        .verdict()
    });
    assert!(
        ran_inside,
        "the feed did not hold the waker's last clone: the test did not test"
    );
    assert!(
        in_time,
        "the waker's drop waited {PATIENCE:?} for a push the feed's lock held up: \
         it ran with the lock held"
    );
}

/// A reader whose one read returns only when told to, and says when it ends.
struct Held {
    go: mpsc::Receiver<()>,
}

impl Read for Held {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.go.recv().expect("the test sends go");
        buf[0] = 7;
        Ok(1)
    }
}

#[test]
fn a_waker_replaced_on_an_unblock_is_dropped_with_the_wakers_unlocked() {
    let in_time = within(STUCK, "polling an Unblock with a new waker", || {
        let pool = BlockingPool::builder()
            .name("r12-unblock-wk")
            .max_threads(1)
            .build()
            .unwrap();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let mut io = Box::pin(
            Unblock::builder()
                .pool(pool.clone())
                .build(Held { go: go_rx }),
        );
        let mut space = [0u8; 8];
        // The second waker: woken by the step's end, which takes the lock.
        let woken = Arc::new(AtomicBool::new(false));
        let (woke_tx, woke_rx) = mpsc::channel::<()>();
        let flag = woken.clone();
        let second = Waker::from(Reentrant::waker(move || {
            flag.store(true, Ordering::SeqCst);
            let _ = woke_tx.send(());
        }));
        let in_time = Arc::new(AtomicBool::new(false));
        let seen = in_time.clone();
        let woke_rx = std::sync::Mutex::new(woke_rx);
        let first = Waker::from(Reentrant::dropping(move || {
            let _ = go_tx.send(());
            // The read ends and the step wakes both halves' wakers, which
            // it can only do once the wakers' lock is free.
            seen.store(
                woke_rx.lock().unwrap().recv_timeout(PATIENCE).is_ok(),
                Ordering::SeqCst,
            );
        }));
        {
            let mut buf = ReadBuf::new(&mut space);
            let mut cx = std::task::Context::from_waker(&first);
            assert!(io.as_mut().poll_read(&mut cx, &mut buf).is_pending());
        }
        drop(first);
        {
            // Replacing the first waker drops the Unblock's clone, its last.
            let mut buf = ReadBuf::new(&mut space);
            let mut cx = std::task::Context::from_waker(&second);
            let _ = io.as_mut().poll_read(&mut cx, &mut buf);
        }
        assert!(common::eventually(PATIENCE, || woken.load(Ordering::SeqCst)));
        in_time.load(Ordering::SeqCst)
    });
    assert!(
        in_time,
        "the replaced waker's drop waited {PATIENCE:?} for a wake the wakers' lock held up: \
         it ran with the lock held"
    );
}

#[test]
fn a_waker_replaced_on_an_unblock_iter_is_dropped_with_the_feed_unlocked() {
    let (ran_inside, in_time) = within(STUCK, "polling an UnblockIter with a new waker", || {
        let mut abandoned = abandoned_step("r12-iter-wk");
        let other = Waker::from(Reentrant::waker(|| {}));
        abandoned.inside.store(true, Ordering::SeqCst);
        let _ = poll_next(abandoned.stream.as_mut(), &other);
        abandoned.inside.store(false, Ordering::SeqCst);
        abandoned.verdict()
    });
    assert!(
        ran_inside,
        "the feed did not hold the waker's last clone: the test did not test"
    );
    assert!(
        in_time,
        "the replaced waker's drop waited {PATIENCE:?} for a push the feed's lock held up: \
         it ran with the lock held"
    );
}

fn poll_next<S: Stream + ?Sized>(
    stream: Pin<&mut S>,
    waker: &Waker,
) -> std::task::Poll<Option<S::Item>> {
    stream.poll_next(&mut std::task::Context::from_waker(waker))
}

/// What a re-entering waker does to the pool when it runs.
#[derive(Debug, Clone, Copy)]
enum Reenter {
    ReadMetrics,
    Offload,
    ShutDown,
}

const EVERY_WAY: [Reenter; 3] = [Reenter::ReadMetrics, Reenter::Offload, Reenter::ShutDown];

fn reentrant_waker(pool: &BlockingPool, how: Reenter) -> (Arc<Reentrant>, Waker) {
    let pool = pool.clone();
    let reentrant =
        Reentrant::waker(move || match how {
            Reenter::ReadMetrics => {
                let _ = pool.metrics();
            }
            Reenter::Offload => drop(pool.try_offload(|| ())),
            Reenter::ShutDown => drop(pool.shutdown(
                colorseam::pool::ShutdownOptions::cancel_queued(Duration::ZERO),
            )),
        });
    let waker = Waker::from(reentrant.clone());
    (reentrant, waker)
}

#[test]
fn wakers_woken_by_a_timeout_and_by_the_permit_it_gives_back_may_reenter_the_pool() {
    for how in EVERY_WAY {
        within(STUCK, "a caller timing out", move || timing_out(how));
    }
}

/// One thread, one queue slot: a call that times out while it runs (its
/// own waker, woken by the timer thread, re-enters the pool), and a caller
/// waiting for room, woken by the permit the timed-out call gives back.
fn timing_out(how: Reenter) {
    let pool = BlockingPool::builder()
        .name("r12-timeout")
        .max_threads(1)
        .queue_capacity(1)
        .max_abandoned(1)
        .build()
        .unwrap();
    let gate = common::Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let g = gate.clone();
    let mut running = Box::pin(pool.offload_timeout(
        move || {
            let _ = started_tx.send(());
            g.wait(STUCK);
        },
        Duration::from_millis(200),
    ));
    let (timed, timed_waker) = reentrant_waker(&pool, how);
    assert!(common::poll_once(running.as_mut(), &timed_waker).is_pending());
    started_rx.recv_timeout(STUCK).expect("the job starts");
    let g = gate.clone();
    let queued = pool.offload(move || g.wait(STUCK));
    let mut waiting = Box::pin(pool.offload(|| 2));
    let (room, room_waker) = reentrant_waker(&pool, how);
    assert!(common::poll_once(waiting.as_mut(), &room_waker).is_pending());
    // The timer thread wakes the running call's waker at its deadline.
    assert!(
        common::eventually(STUCK, || timed.woken() >= 1),
        "{how:?}: the timed-out caller was never woken"
    );
    // Polled again, the caller gives up: its permit goes back (abandoned
    // within budget), waking the caller waiting for room on this thread.
    let result = loop {
        let seen = timed.woken();
        match common::poll_once(running.as_mut(), &timed_waker) {
            std::task::Poll::Ready(result) => break result,
            std::task::Poll::Pending => {
                assert!(common::eventually(STUCK, || timed.woken() > seen))
            }
        }
    };
    let error = result.unwrap_err();
    match how {
        // The waker shut the pool down first: released by shutdown, or timed out.
        Reenter::ShutDown => assert!(error.is_timeout() || error.is_shutdown(), "{error}"),
        _ => assert!(error.is_timeout(), "{how:?}: {error}"),
    }
    assert!(
        common::eventually(STUCK, || room.woken() >= 1),
        "{how:?}: the waiter was never woken"
    );
    gate.open();
    let result = futures::executor::block_on(waiting);
    match how {
        Reenter::ShutDown => assert!(result.unwrap_err().is_shutdown()),
        _ => assert_eq!(result.unwrap(), 2, "{how:?}"),
    }
    drop(queued);
}

#[test]
fn many_threads_racing_deadlines_on_one_thread_bound_never_hold_more_threads_than_its_budget() {
    use colorseam::adapter::ThreadBound;
    const MAX_ABANDONED: usize = 2;
    let sampler = common::ThreadSampler::start("r12tb");
    let conn = Arc::new(
        ThreadBound::builder("r12tb", || 0u64)
            .max_abandoned(MAX_ABANDONED)
            .build()
            .unwrap(),
    );
    futures::executor::block_on(conn.call(|_| ())).unwrap();
    let callers: Vec<_> = (0..4u64)
        .map(|t| {
            let conn = conn.clone();
            std::thread::spawn(move || {
                let (mut ok, mut timed_out, mut refused) = (0, 0, 0);
                for i in 0..150u64 {
                    // Deadlines that land before, during and after the call.
                    let work = Duration::from_micros((i + t) % 7 * 300);
                    let call = conn.call_timeout(
                        move |n| {
                            *n += 1;
                            std::thread::sleep(work)
                        },
                        Duration::from_micros(900),
                    );
                    match futures::executor::block_on(call) {
                        Ok(()) => ok += 1,
                        Err(e) if e.is_timeout() => timed_out += 1,
                        Err(e) if e.is_saturated() => refused += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
                (ok, timed_out, refused)
            })
        })
        .collect();
    let mut total = 0;
    for caller in callers {
        let (ok, timed_out, refused) = caller.join().expect("a caller does not panic");
        total += ok + timed_out + refused;
    }
    assert_eq!(total, 600);
    drop(conn);
    assert!(common::eventually(Duration::from_secs(30), || {
        common::os_threads_named("r12tb") == 0
    }));
    let (peak, samples) = sampler.peak();
    println!("peak {peak} threads over {samples} samples");
    assert!(samples > 10, "the sampler did not sample");
    assert!(
        peak <= 1 + MAX_ABANDONED,
        "{peak} threads alive at once, against a budget of 1 + {MAX_ABANDONED}"
    );
}

/// A duplex value: reads come from a buffer, writes go to another.
struct Duplex {
    input: io::Cursor<Vec<u8>>,
    output: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Read for Duplex {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

impl io::Write for Duplex {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn split_halves_of_one_unblock_in_two_tasks_both_finish_under_a_paused_clock() {
    within(STUCK, "split halves under start_paused", || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let output = Arc::new(std::sync::Mutex::new(Vec::new()));
        let io = Unblock::builder().capacity(4096).build(Duplex {
            input: io::Cursor::new(data.clone()),
            output: output.clone(),
        });
        let (read, written) = runtime.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut reader, mut writer) = tokio::io::split(io);
            let sent = data.clone();
            let reading = tokio::spawn(async move {
                let mut got = Vec::new();
                reader.read_to_end(&mut got).await.unwrap();
                got
            });
            let writing = tokio::spawn(async move {
                for chunk in sent.chunks(1000) {
                    writer.write_all(chunk).await.unwrap();
                }
                writer.flush().await.unwrap();
                sent.len()
            });
            (reading.await.unwrap(), writing.await.unwrap())
        });
        assert_eq!(read.len(), 100_000, "the reader got everything");
        assert_eq!(written, 100_000);
        assert_eq!(
            output.lock().unwrap().len(),
            100_000,
            "the writer wrote everything"
        );
    });
}

#[test]
fn split_halves_of_one_unblock_in_two_tasks_of_a_futures_local_pool_both_finish() {
    within(STUCK, "split halves on a futures LocalPool", || {
        use futures::task::LocalSpawnExt;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let output = Arc::new(std::sync::Mutex::new(Vec::new()));
        let io = Unblock::builder().capacity(4096).build(Duplex {
            input: io::Cursor::new(data.clone()),
            output: output.clone(),
        });
        let (mut reader, mut writer) = tokio::io::split(io);
        let mut pool = futures::executor::LocalPool::new();
        let read = pool
            .spawner()
            .spawn_local_with_handle(async move {
                let mut got = Vec::new();
                reader.read_to_end(&mut got).await.unwrap();
                got.len()
            })
            .unwrap();
        let sent = data.clone();
        let wrote = pool
            .spawner()
            .spawn_local_with_handle(async move {
                for chunk in sent.chunks(1000) {
                    writer.write_all(chunk).await.unwrap();
                }
                writer.flush().await.unwrap();
            })
            .unwrap();
        let (read, ()) = pool.run_until(futures::future::join(read, wrote));
        assert_eq!(read, 100_000, "the reader got everything");
        assert_eq!(
            output.lock().unwrap().len(),
            100_000,
            "the writer wrote everything"
        );
    });
}

#[test]
fn a_watchdog_report_hook_may_offload_to_a_pool_and_wait_for_it() {
    use colorseam::detect::Watchdog;
    within(STUCK, "a report hook that offloads", || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let pool = BlockingPool::builder().name("r12-hook").build().unwrap();
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (p, a) = (pool.clone(), answered.clone());
        let watchdog = Watchdog::builder()
            .threshold(Duration::from_millis(100))
            .on_report(move |_| {
                let p2 = p.clone();
                // Re-enters the pool from the hook: offloads, waits, reads metrics.
                let busy = colorseam::block_on(p.offload(move || p2.metrics().threads.busy));
                if matches!(busy, Ok(Ok(busy)) if busy >= 1) {
                    a.fetch_add(1, Ordering::SeqCst);
                }
            })
            .install(rt.handle())
            .unwrap();
        let gate = common::Gate::new();
        let g = gate.clone();
        // The runtime's one worker is frozen until a hook has answered.
        rt.spawn(async move { g.wait(STUCK) });
        assert!(
            common::eventually(STUCK, || answered.load(Ordering::SeqCst) >= 1),
            "no report hook got an answer from the pool"
        );
        gate.open();
        assert!(common::eventually(STUCK, || watchdog.stalls() >= 1));
        drop(watchdog);
        drop(rt);
    });
}
