//! Hostile review of lent permits (issue 11's nested admission): races
//! between a lender's abandonment and its borrower, a borrower that lends in
//! turn, a borrowed offload moved to `tokio::spawn`, `block_on_timeout` on a
//! pool thread. After each case the permits are counted exactly: the pool
//! is filled with `try_offload` and one more must be refused.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use colorseam::BlockingPool;
use common::{Gate, eventually, within};

const LIMIT: Duration = Duration::from_secs(60);
const GATE: Duration = Duration::from_secs(30);

fn pool(name: &str, threads: usize, queue: usize) -> BlockingPool {
    BlockingPool::builder()
        .name(name)
        .max_threads(threads)
        .queue_capacity(queue)
        .max_abandoned(4)
        .build()
        .unwrap()
}

/// Exactly `permits` jobs are admitted by `try_offload`, and one more is
/// refused: no permit lost to a loan and none made by one.
fn assert_permits_exact(pool: &BlockingPool, permits: usize) {
    let gate = Gate::new();
    let (p, g) = (pool.clone(), gate.clone());
    within(LIMIT, "the permit count", move || {
        colorseam::block_on(async move {
            let held: Vec<_> = (0..permits)
                .map(|_| {
                    let g = g.clone();
                    p.try_offload(move || g.wait(GATE))
                })
                .collect();
            let refused = p.try_offload(|| ()).await;
            assert!(
                refused.as_ref().is_err_and(colorseam::Error::is_saturated),
                "one more than {permits} permits was admitted: {refused:?}"
            );
            g.open();
            for job in held {
                job.await.expect("each of the permits admits a job");
            }
        })
        .unwrap();
    });
}

/// A gated job from a thread of its own, once the pool's one thread is
/// taken: it waits in the queue, holding the last permit.
fn queued_filler(pool: &BlockingPool, gate: &Gate) -> std::thread::JoinHandle<()> {
    let (pool2, g) = (pool.clone(), gate.clone());
    let filler = std::thread::spawn(move || {
        colorseam::block_on(pool2.offload(move || g.wait(GATE)))
            .unwrap()
            .unwrap();
    });
    assert!(eventually(LIMIT, || pool.metrics().queue_depth == 1));
    filler
}

fn settled(pool: &BlockingPool) {
    assert!(eventually(LIMIT, || {
        let m = pool.metrics();
        m.threads.busy == 0 && m.threads.abandoned == 0 && m.queue_depth == 0
    }));
}

#[test]
fn a_block_on_timeout_on_a_pool_thread_whose_borrowing_offload_is_still_queued_gives_the_permit_back()
 {
    let pool = pool("review-bot", 1, 1);
    let (go, filler_gate) = (Gate::new(), Gate::new());
    let (started, outer_started) = mpsc::channel();
    let outer = {
        let (pool, p, go) = (pool.clone(), pool.clone(), go.clone());
        std::thread::spawn(move || {
            colorseam::block_on(pool.offload(move || {
                let _ = started.send(());
                go.wait(GATE);
                // No help under a deadline: with one thread the nested
                // job, admitted on the loan, waits behind the filler.
                colorseam::block_on_timeout(
                    async move { p.offload(|| ()).await },
                    Duration::from_millis(300),
                )
            }))
            .unwrap()
            .unwrap()
        })
    };
    outer_started.recv_timeout(LIMIT).unwrap();
    let filler = queued_filler(&pool, &filler_gate);
    go.open();
    let result = within(LIMIT, "the outer job", move || outer.join().unwrap());
    assert!(
        result.as_ref().is_err_and(colorseam::Error::is_timeout),
        "the nested offload could not run, so block_on_timeout times out: {result:?}"
    );
    filler_gate.open();
    within(LIMIT, "the filler", move || filler.join().unwrap());
    settled(&pool);
    assert_permits_exact(&pool, 2);
}

#[test]
fn a_borrower_that_lends_in_turn_survives_its_outermost_lender_being_abandoned() {
    let pool = pool("review-chain", 1, 1);
    let (go, inner_gate, filler_gate) = (Gate::new(), Gate::new(), Gate::new());
    let (started, outer_started) = mpsc::channel();
    let (inner_running, inner_runs) = mpsc::channel();
    let (drop_outer, dropped) = tokio::sync::oneshot::channel::<()>();
    let outer = {
        let (pool, p, go, g) = (pool.clone(), pool.clone(), go.clone(), inner_gate.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let call = pool.offload(move || {
                let _ = started.send(());
                go.wait(GATE);
                colorseam::block_on(async move {
                    let p2 = p.clone();
                    // The middle job borrows the outer job's permit, then
                    // lends it to the innermost one.
                    p.offload(move || {
                        colorseam::block_on(async move {
                            p2.offload(move || {
                                let _ = inner_running.send(());
                                g.wait(GATE);
                                7_u32
                            })
                            .await
                        })
                    })
                    .await
                })
            });
            runtime.block_on(async move {
                tokio::select! {
                    result = call => panic!("the outer job ended first: {result:?}"),
                    _ = dropped => {}
                }
            });
        })
    };
    outer_started.recv_timeout(LIMIT).unwrap();
    let filler = queued_filler(&pool, &filler_gate);
    go.open();
    inner_runs.recv_timeout(LIMIT).unwrap();
    // The outermost lender leaves while its permit is two loans deep.
    drop_outer.send(()).unwrap();
    within(LIMIT, "dropping the outer call", move || {
        outer.join().unwrap()
    });
    assert!(eventually(LIMIT, || pool
        .metrics()
        .outcomes
        .cancelled_running
        >= 1));
    let refused = colorseam::block_on(pool.try_offload(|| ())).unwrap();
    assert!(
        refused.as_ref().is_err_and(colorseam::Error::is_saturated),
        "the permit lent two levels down was released early: {refused:?}"
    );
    inner_gate.open();
    filler_gate.open();
    within(LIMIT, "the filler", move || filler.join().unwrap());
    settled(&pool);
    assert_permits_exact(&pool, 2);
}

#[test]
fn a_borrowing_offload_polled_once_then_moved_to_tokio_spawn_gives_the_permit_back_when_it_ends() {
    let pool = pool("review-moved", 1, 1);
    let (go, nested_gate, filler_gate) = (Gate::new(), Gate::new(), Gate::new());
    let (started, outer_started) = mpsc::channel();
    let outer = {
        let (pool, p, go, g) = (pool.clone(), pool.clone(), go.clone(), nested_gate.clone());
        std::thread::spawn(move || {
            // A multi-thread caller: the job's `tokio::spawn` goes to it,
            // and it outlives the job (returned with the task).
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let task = runtime.block_on(pool.offload(move || {
                let _ = started.send(());
                go.wait(GATE);
                colorseam::block_on(async move {
                    let mut nested = p.offload(move || {
                        g.wait(GATE);
                        5_u32
                    });
                    // Polled once by the lending drive: it borrows and is
                    // queued; then it leaves this `block_on` for a task.
                    assert!(futures::poll!(&mut nested).is_pending());
                    // Handed out unawaited on purpose: the caller awaits it.
                    Some(tokio::spawn(nested))
                })
                .unwrap()
            }));
            let task = task.unwrap().expect("the job hands out its task");
            (runtime, task)
        })
    };
    outer_started.recv_timeout(LIMIT).unwrap();
    let filler = queued_filler(&pool, &filler_gate);
    go.open();
    let (runtime, task) = within(LIMIT, "the outer job", move || outer.join().unwrap());
    // The outer job ended with its permit out on loan: the moved job holds
    // it, the filler holds the other, so the pool is still full.
    let refused = colorseam::block_on(pool.try_offload(|| ())).unwrap();
    assert!(
        refused.as_ref().is_err_and(colorseam::Error::is_saturated),
        "the lender's end released a permit its borrower still holds: {refused:?}"
    );
    filler_gate.open();
    nested_gate.open();
    within(LIMIT, "the filler", move || filler.join().unwrap());
    let value = within(LIMIT, "the moved offload", move || {
        let value = runtime.block_on(task);
        drop(runtime);
        value
    });
    assert_eq!(value.unwrap().unwrap(), 5);
    settled(&pool);
    assert_permits_exact(&pool, 2);
}

/// A seek whose future was dropped while its step was in flight must not
/// answer the next seek: the next one goes where it was asked and says so.
#[tokio::test]
async fn a_seek_made_after_a_dropped_seek_goes_where_it_was_asked() {
    use tokio::io::{AsyncReadExt, AsyncSeek, AsyncSeekExt};
    let pool = pool("review-seek", 1, 4);
    let gate = Gate::new();
    let g = gate.clone();
    // The pool's one thread is taken: the first seek's step waits behind.
    let blocker = pool.offload(move || g.wait(GATE));
    let data: Vec<u8> = (0..100).collect();
    let mut io = colorseam::adapter::Unblock::builder()
        .pool(pool.clone())
        .build(std::io::Cursor::new(data));
    {
        let mut seek = std::pin::pin!(io.seek(std::io::SeekFrom::Start(10)));
        assert!(futures::poll!(seek.as_mut()).is_pending());
    }
    gate.open();
    blocker.await.unwrap();
    // `AsyncSeekExt::seek` drains a pending seek first; a caller of the
    // trait itself may not, and `start_seek` accepted the second seek.
    std::pin::Pin::new(&mut io)
        .start_seek(std::io::SeekFrom::Start(20))
        .unwrap();
    let at = std::future::poll_fn(|cx| std::pin::Pin::new(&mut io).poll_complete(cx))
        .await
        .unwrap();
    assert_eq!(at, 20, "the second seek reported the first one's position");
    let mut byte = [0_u8; 1];
    io.read_exact(&mut byte).await.unwrap();
    assert_eq!(byte[0], 20, "the read starts where the last seek went");
    assert_eq!(io.stream_position().await.unwrap(), 21);
}

/// `block_on_timeout` on a pool thread spawns its future wrapped in the
/// job's loan: a nested offload that borrowed and then runs past the
/// deadline is abandoned when the spawned future is cancelled, gives the
/// permit back to its (still running) lender, and the pool never runs more
/// threads than its bound plus that one abandoned thread.
#[test]
fn a_borrowing_offload_running_past_a_pool_threads_block_on_timeout_is_abandoned_with_the_permit_exact()
 {
    let pool = pool("rv-run", 2, 1);
    let sampler = common::ThreadSampler::start("rv-run-");
    let (go, nested_gate, filler_gate) = (Gate::new(), Gate::new(), Gate::new());
    let (started, outer_started) = mpsc::channel();
    let (nested_running, nested_runs) = mpsc::channel();
    let outer = {
        let (pool, p, go, g) = (pool.clone(), pool.clone(), go.clone(), nested_gate.clone());
        std::thread::spawn(move || {
            colorseam::block_on(pool.offload(move || {
                let _ = started.send(());
                go.wait(GATE);
                colorseam::block_on_timeout(
                    async move {
                        p.offload(move || {
                            let _ = nested_running.send(());
                            g.wait(GATE);
                        })
                        .await
                    },
                    Duration::from_secs(2),
                )
            }))
            .unwrap()
            .unwrap()
        })
    };
    outer_started.recv_timeout(LIMIT).unwrap();
    // One filler runs beside the outer job, one waits: the pool is full.
    let fillers: Vec<_> = (0..2)
        .map(|_| {
            let (pool, g) = (pool.clone(), filler_gate.clone());
            std::thread::spawn(move || {
                colorseam::block_on(pool.offload(move || g.wait(GATE)))
                    .unwrap()
                    .unwrap();
            })
        })
        .collect();
    assert!(eventually(LIMIT, || pool.metrics().queue_depth == 1));
    go.open();
    // The nested offload borrowed the outer job's permit and is queued.
    assert!(eventually(LIMIT, || pool.metrics().queue_depth == 2));
    filler_gate.open();
    for filler in fillers {
        within(LIMIT, "a filler", move || filler.join().unwrap());
    }
    nested_runs.recv_timeout(LIMIT).unwrap();
    let result = within(LIMIT, "the outer job", move || outer.join().unwrap());
    assert!(
        result.as_ref().is_err_and(colorseam::Error::is_timeout),
        "the nested job runs past the deadline: {result:?}"
    );
    assert!(eventually(LIMIT, || pool.metrics().threads.abandoned == 1));
    // Every permit is back while the abandoned nested job still runs.
    assert_permits_exact(&pool, 3);
    nested_gate.open();
    settled(&pool);
    assert_permits_exact(&pool, 3);
    let (peak, samples) = sampler.peak();
    assert!(samples > 0);
    assert!(
        peak <= 3,
        "at most two workers and one abandoned thread ran at once, saw {peak}"
    );
}

/// Sync code over an async seekable value over a sync one (`BlockingIo`
/// around `Unblock`): a write, then a seek back, then a read sees the
/// written bytes; a read to end of file, then a seek relative to the
/// current position, counts from what was read, not from the read-ahead.
#[test]
fn blocking_io_over_unblock_writes_seeks_back_reads_and_seeks_relative_after_end_of_file() {
    use std::io::{Read, Seek, SeekFrom, Write};
    let pool = pool("review-bio", 1, 4);
    let unblock = colorseam::adapter::Unblock::builder()
        .pool(pool)
        .capacity(4)
        .build(std::io::Cursor::new(Vec::new()));
    let mut io = colorseam::adapter::BlockingIo::new(unblock);
    io.write_all(b"0123456789").unwrap();
    assert_eq!(io.seek(SeekFrom::Start(0)).unwrap(), 0);
    let mut head = [0_u8; 3];
    io.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"012");
    // Read ahead by the adapter's capacity: the reader has consumed 3.
    assert_eq!(io.stream_position().unwrap(), 3);
    let mut rest = Vec::new();
    io.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"3456789");
    assert_eq!(io.seek(SeekFrom::Current(-2)).unwrap(), 8);
    let mut tail = [0_u8; 2];
    io.read_exact(&mut tail).unwrap();
    assert_eq!(&tail, b"89");
    assert_eq!(io.read(&mut tail).unwrap(), 0, "end of file again");
}

/// The boxed sleep makes `Offload` `Unpin`: polled once on a runtime
/// (which makes its first sleep there), moved out, the runtime dropped, and
/// awaited on another executor, it still times out in real time, never
/// before its deadline.
#[test]
fn an_offload_first_polled_on_a_runtime_since_dropped_still_times_out_on_another_executor() {
    let pool = pool("review-moved-rt", 1, 1);
    let gate = Gate::new();
    let g = gate.clone();
    let started = std::time::Instant::now();
    let mut call = pool.offload_timeout(move || g.wait(GATE), Duration::from_millis(300));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { assert!(futures::poll!(&mut call).is_pending()) });
    drop(runtime);
    let result = within(LIMIT, "the moved offload", move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            futures::executor::block_on(call)
        }))
        .map_err(|payload| common_panic_message(&*payload))
    });
    let elapsed = started.elapsed();
    gate.open();
    let result = result.expect("polling the moved offload does not panic");
    assert!(
        result.as_ref().is_err_and(colorseam::Error::is_timeout),
        "{result:?} after {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(300),
        "timed out early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "released late: {elapsed:?}"
    );
}

fn common_panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// The same, with the first runtime alive but no longer driven (its thread
/// is blocked elsewhere): the offload, awaited on a plain thread, still
/// times out at its deadline instead of waiting for the job.
#[test]
fn an_offload_first_polled_on_a_runtime_no_longer_driven_still_times_out_elsewhere() {
    let pool = pool("review-undriven-rt", 1, 1);
    let gate = Gate::new();
    let g = gate.clone();
    let started = std::time::Instant::now();
    let mut call = pool.offload_timeout(move || g.wait(GATE), Duration::from_millis(300));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { assert!(futures::poll!(&mut call).is_pending()) });
    // `runtime` stays alive, and nobody drives it from here on.
    let result = within(LIMIT, "the moved offload", move || {
        futures::executor::block_on(call)
    });
    let elapsed = started.elapsed();
    gate.open();
    assert!(
        result.as_ref().is_err_and(colorseam::Error::is_timeout),
        "{result:?} after {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(300),
        "timed out early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "released late: {elapsed:?}"
    );
    drop(runtime);
}
