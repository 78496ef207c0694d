//! Nested offloads (an offload made inside `block_on` on a pool thread) are
//! queued like any other work: free workers run them in parallel, admission
//! and shutdown apply, and the waiting thread helps only as a last resort,
//! never past a deadline. Each test here failed (hung, overran a deadline,
//! grew, or was accepted) under the old per-thread inbox design.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use colorseam::pool::ShutdownOptions;
use common::{Gate, eventually};

const WATCHDOG: Duration = Duration::from_secs(30);

/// Runs `f` on a thread and fails the test if it does not return in time.
fn within<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(WATCHDOG)
        .expect("returned within the watchdog's limit (a hang otherwise)")
}

fn pool(name: &str, threads: usize) -> BlockingPool {
    BlockingPool::builder()
        .name(name)
        .max_threads(threads)
        .queue_capacity(128)
        .build()
        .unwrap()
}

#[test]
fn nested_jobs_that_wait_on_each_other_run_in_parallel_on_idle_threads() {
    let pool = pool("nst-pair", 8);
    let p = pool.clone();
    let (a_saw_b, b_saw_a) = within(move || common::meeting_pair_in_a_job(&p));
    assert!(a_saw_b && b_saw_a, "a saw b: {a_saw_b}, b saw a: {b_saw_a}");
}

/// Helping is a last resort: while the pool can start a thread, nested work
/// runs on another thread, not on the one waiting for it.
#[test]
fn a_nested_offload_runs_on_another_thread_while_the_pool_can_grow() {
    let pool = pool("nst-grow", 4);
    let p = pool.clone();
    let (outer, nested) = within(move || {
        colorseam::block_on(p.clone().offload(move || {
            let outer = std::thread::current().id();
            let nested = colorseam::block_on(async move {
                p.offload(|| std::thread::current().id()).await.unwrap()
            })
            .unwrap();
            (outer, nested)
        }))
        .unwrap()
        .unwrap()
    });
    assert_ne!(outer, nested);
}

/// Past the core count the pool grows only for blocked workers: the monitor
/// sees every thread waiting in `block_on` and starts threads for their
/// nested jobs, rather than the waiting threads running them.
#[test]
fn past_the_core_count_blocked_waiters_get_new_threads_rather_than_helping() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pool = pool("nst-past", 2 * cores);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(cores));
    let p = pool.clone();
    let pairs = within(move || {
        colorseam::block_on(async move {
            let outers: Vec<_> = (0..cores)
                .map(|_| {
                    let (inner, barrier) = (p.clone(), barrier.clone());
                    p.offload(move || {
                        let outer = std::thread::current().id();
                        barrier.wait();
                        let nested = colorseam::block_on(async move {
                            inner.offload(|| std::thread::current().id()).await.unwrap()
                        })
                        .unwrap();
                        (outer, nested)
                    })
                })
                .collect();
            let mut pairs = Vec::new();
            for outer in outers {
                pairs.push(outer.await.unwrap());
            }
            pairs
        })
        .unwrap()
    });
    for (outer, nested) in pairs {
        assert_ne!(outer, nested);
    }
}

/// Admission applies to nested work: on a full pool a nested `try_offload`
/// is refused as saturated, like any other.
#[test]
fn a_nested_try_offload_to_a_full_pool_is_refused() {
    let pool = BlockingPool::builder()
        .name("nst-full")
        .max_threads(1)
        .queue_capacity(1)
        .build()
        .unwrap();
    let p = pool.clone();
    let (refused, filler) = within(move || {
        colorseam::block_on(p.clone().offload(move || {
            // Takes the last permit: the only thread is this one.
            let filler = p.offload(|| "filler ran");
            let refused = colorseam::block_on(async { p.try_offload(|| 1).await }).unwrap();
            (refused, colorseam::block_on(filler).unwrap())
        }))
        .unwrap()
        .unwrap()
    });
    let err = refused.unwrap_err();
    assert!(err.is_saturated(), "{err}");
    assert_eq!(filler.unwrap(), "filler ran");
}

#[test]
fn a_nested_job_can_wait_for_the_async_work_of_the_future_that_made_it() {
    let pool = pool("nst-async", 4);
    let p = pool.clone();
    let got = within(move || {
        colorseam::block_on(p.clone().offload(move || {
            colorseam::block_on(async move {
                let (tx, rx) = mpsc::channel();
                let job = p.offload(move || rx.recv_timeout(Duration::from_secs(5)).ok());
                tokio::time::sleep(Duration::from_millis(10)).await;
                let _ = tx.send(42);
                job.await.unwrap()
            })
        }))
        .unwrap()
        .unwrap()
        .unwrap()
    });
    assert_eq!(got, Some(42));
}

#[test]
fn block_on_timeout_on_a_pool_thread_returns_at_its_deadline_around_a_long_nested_offload() {
    for threads in [1, 4] {
        let pool = pool(&format!("nst-bot{threads}"), threads);
        let p = pool.clone();
        let (outcome, took) = within(move || {
            colorseam::block_on(p.clone().offload(move || {
                let started = Instant::now();
                let outcome = colorseam::block_on_timeout(
                    async move {
                        p.offload(|| std::thread::sleep(Duration::from_secs(2)))
                            .await
                    },
                    Duration::from_millis(100),
                );
                (outcome.map(|_| ()), started.elapsed())
            }))
            .unwrap()
            .unwrap()
        });
        assert!(outcome.unwrap_err().is_timeout());
        assert!(
            took < Duration::from_millis(1500),
            "{threads} threads: took {took:?}"
        );
    }
}

#[test]
fn a_nested_offload_timeout_returns_its_timeout_well_before_the_job_would_end() {
    for threads in [1, 4] {
        let pool = pool(&format!("nst-ot{threads}"), threads);
        let p = pool.clone();
        let (outcome, took) = within(move || {
            colorseam::block_on(p.clone().offload(move || {
                let started = Instant::now();
                let outcome = colorseam::block_on(async move {
                    p.offload_timeout(
                        || std::thread::sleep(Duration::from_millis(1500)),
                        Duration::from_millis(50),
                    )
                    .await
                });
                (outcome.unwrap(), started.elapsed())
            }))
            .unwrap()
            .unwrap()
        });
        let err = outcome.unwrap_err();
        assert!(err.is_timeout(), "{threads} threads: {err}");
        assert!(
            took < Duration::from_millis(1000),
            "{threads} threads: took {took:?}"
        );
    }
}

/// On a pool with no thread to spare, a job with a deadline is never run by
/// the waiting thread (it could not be released from it): it waits in the
/// queue and times out there.
#[test]
fn in_a_one_thread_pool_a_nested_offload_with_a_deadline_times_out_queued() {
    let pool = pool("nst-1dl", 1);
    let p = pool.clone();
    let err = within(move || {
        colorseam::block_on(p.clone().offload(move || {
            colorseam::block_on(
                async move { p.offload_timeout(|| 1, Duration::from_millis(30)).await },
            )
        }))
        .unwrap()
        .unwrap()
        .unwrap()
    })
    .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(err.phase(), Some(colorseam::Phase::Queued), "{err}");
}

/// The waiting thread does not start a long deadline-free job while the
/// future it drives still waits on an offload with a deadline: that offload
/// would be resolved only after the helped job returned.
#[test]
fn helping_never_holds_a_sibling_offload_past_its_deadline() {
    let pool = pool("nst-sib", 1);
    let p = pool.clone();
    let (short, short_took, long) = within(move || {
        colorseam::block_on(p.clone().offload(move || {
            colorseam::block_on(async move {
                let started = Instant::now();
                let long = p.offload(|| {
                    std::thread::sleep(Duration::from_millis(1200));
                    "long"
                });
                let short = async {
                    let r = p.offload_timeout(|| 1, Duration::from_millis(50)).await;
                    (r, started.elapsed())
                };
                let ((short, took), long) = futures::join!(short, long);
                (short, took, long.unwrap())
            })
        }))
        .unwrap()
        .unwrap()
        .unwrap()
    });
    assert!(short.unwrap_err().is_timeout());
    assert!(
        short_took < Duration::from_millis(800),
        "took {short_took:?}"
    );
    assert_eq!(long, "long");
}

#[test]
fn three_deep_nesting_completes_in_a_one_thread_pool() {
    let pool = pool("nst-deep", 1);
    let p = pool.clone();
    let value = within(move || {
        colorseam::block_on(p.clone().offload(move || {
            colorseam::block_on(async move {
                let p2 = p.clone();
                p.offload(move || {
                    colorseam::block_on(async move { p2.offload(|| 7).await.unwrap() * 2 })
                })
                .await
            })
        }))
    });
    assert_eq!(value.unwrap().unwrap().unwrap().unwrap().unwrap(), 14);
    assert_eq!(pool.metrics().threads.peak, 1);
}

#[test]
fn fifty_sandwiches_on_a_two_thread_pool_complete() {
    let pool = pool("nst-fifty", 2);
    let p = pool.clone();
    let sum = within(move || {
        colorseam::block_on(async move {
            let outers: Vec<_> = (0..50u64)
                .map(|i| {
                    let inner = p.clone();
                    p.offload(move || {
                        colorseam::block_on(async move { inner.offload(move || i).await })
                    })
                })
                .collect();
            let mut sum = 0;
            for outer in outers {
                sum += outer.await.unwrap().unwrap().unwrap();
            }
            sum
        })
        .unwrap()
    });
    assert_eq!(sum, (0..50).sum::<u64>());
    assert!(pool.metrics().threads.peak <= 2);
}

#[test]
fn nested_offloads_work_from_inside_spawn_blocking_and_a_local_set() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pool = pool("nst-ctx", 1);
    let p = pool.clone();
    let from_spawn_blocking = rt
        .block_on(async move {
            tokio::task::spawn_blocking(move || {
                colorseam::block_on(async move {
                    let inner = p.clone();
                    p.offload(move || colorseam::block_on(async move { inner.offload(|| 1).await }))
                        .await
                })
            })
            .await
        })
        .unwrap();
    assert_eq!(from_spawn_blocking.unwrap().unwrap().unwrap().unwrap(), 1);

    let p = pool.clone();
    let local = tokio::task::LocalSet::new();
    let from_local_set = local.block_on(&rt, async move {
        let inner = p.clone();
        let not_send = std::rc::Rc::new(2);
        let v = p
            .offload(move || colorseam::block_on(async move { inner.offload(|| 2).await }))
            .await;
        (v, *not_send)
    });
    assert_eq!(from_local_set.0.unwrap().unwrap().unwrap(), 2);
}

#[test]
fn after_shutdown_cancel_queued_a_nested_offload_is_refused() {
    let pool = pool("nst-shut", 2);
    let p = pool.clone();
    let gate = Gate::new();
    let g = gate.clone();
    let (started_tx, started_rx) = mpsc::channel();
    let outer = std::thread::spawn(move || {
        colorseam::block_on(p.clone().offload(move || {
            started_tx.send(()).unwrap();
            g.wait(WATCHDOG);
            colorseam::block_on(async move { p.offload(|| "ran").await })
        }))
    });
    started_rx.recv_timeout(WATCHDOG).unwrap();
    let shutting = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            pool.shutdown_blocking(ShutdownOptions::cancel_queued(Duration::from_secs(20)))
        })
    };
    assert!(eventually(WATCHDOG, || pool
        .offload(|| ())
        .now_or_never_is_refused()));
    gate.open();
    let nested = outer.join().unwrap().unwrap().unwrap().unwrap();
    let err = nested.unwrap_err();
    assert!(err.is_shutdown(), "{err}");
    let report = shutting.join().unwrap();
    assert_eq!(report.abandoned, 0);
}

/// The pool settles when the helped job ends (its outer job, abandoned by
/// its caller, still runs): shutdown must be woken then, not when the outer
/// job ends seconds later.
#[test]
fn shutdown_returns_promptly_when_helped_work_settles_the_pool() {
    for blocking in [true, false] {
        let pool = BlockingPool::builder()
            .name("nst-settle")
            .max_threads(1)
            .max_abandoned(0)
            .queue_capacity(4)
            .build()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let p = pool.clone();
        let outer = rt.block_on(async {
            pool.offload_timeout(
                move || {
                    colorseam::block_on(async move {
                        let nested = p.offload(|| 1);
                        // A poll that blocks: the nested job waits in the queue.
                        std::thread::sleep(Duration::from_millis(300));
                        let v = nested.await;
                        std::thread::sleep(Duration::from_secs(5));
                        v
                    })
                },
                Duration::from_millis(50),
            )
            .await
        });
        assert!(outer.unwrap_err().is_timeout());
        let started = Instant::now();
        let options = ShutdownOptions::run_queued(Duration::from_secs(20));
        let report = if blocking {
            pool.shutdown_blocking(options)
        } else {
            rt.block_on(pool.shutdown(options))
        };
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "blocking: {blocking}, took {took:?}"
        );
        assert_eq!(report.abandoned, 0, "{report:?}");
    }
}

#[test]
fn shutdown_blocking_from_a_job_of_the_same_pool_settles_everything_but_its_caller() {
    let pool = BlockingPool::builder()
        .name("nst-self")
        .max_threads(1)
        .queue_capacity(4)
        .build()
        .unwrap();
    let gate = Gate::new();
    let (started_tx, started_rx) = mpsc::channel();
    let p = pool.clone();
    let g = gate.clone();
    let outer = std::thread::spawn(move || {
        colorseam::block_on(p.clone().offload(move || {
            started_tx.send(()).unwrap();
            g.wait(WATCHDOG);
            p.shutdown_blocking(ShutdownOptions::run_queued(Duration::MAX))
        }))
    });
    started_rx.recv_timeout(WATCHDOG).unwrap();
    // Queued behind the caller on the only thread: shutdown runs it.
    let queued = {
        let pool = pool.clone();
        std::thread::spawn(move || colorseam::block_on(pool.offload(|| "queued ran")))
    };
    assert!(eventually(WATCHDOG, || pool.metrics().queue_depth == 1));
    gate.open();
    let report = within(move || outer.join().unwrap()).unwrap().unwrap();
    assert_eq!(report.completed, 1, "{report:?}");
    assert_eq!(report.abandoned, 0, "{report:?}");
    assert_eq!(queued.join().unwrap().unwrap().unwrap(), "queued ran");
}

#[test]
fn the_async_shutdown_from_a_job_of_the_same_pool_returns() {
    let pool = pool("nst-self-async", 2);
    let p = pool.clone();
    let report = within(move || {
        colorseam::block_on(p.clone().offload(move || {
            colorseam::block_on(p.shutdown(ShutdownOptions::run_queued(Duration::MAX)))
        }))
    });
    let report = report.unwrap().unwrap().unwrap();
    assert_eq!(report.abandoned, 0);
}

trait RefusedNow {
    fn now_or_never_is_refused(self) -> bool;
}

impl<T: Send + 'static> RefusedNow for colorseam::Offload<T> {
    /// Whether the offload resolves at once with a shut-down error.
    fn now_or_never_is_refused(self) -> bool {
        matches!(
            futures::FutureExt::now_or_never(self),
            Some(Err(e)) if e.is_shutdown()
        )
    }
}

type Res<T> = Result<T, colorseam::Error>;
type ShutsDown = std::thread::JoinHandle<Res<Res<colorseam::pool::ShutdownReport>>>;

/// Occupies a one-thread pool (queue of one) with a job that, once `go` is
/// sent, shuts its own pool down without a deadline. Made after the caller
/// has queued a job of its own, that shutdown waits for the queue, and the
/// waiting thread must run the caller's job itself: it helps with a job
/// that is not its own. (Before lent permits a nested offload waiting for
/// room set this up; it now borrows its outer job's permit and the thread
/// runs its own job instead: `tests/pool_nested_admission.rs`.)
fn outer_that_will_shut_its_pool_down(pool: &BlockingPool) -> (mpsc::Sender<()>, ShutsDown) {
    let (started_tx, started_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let p = pool.clone();
    let outer = std::thread::spawn(move || {
        colorseam::block_on(p.clone().offload(move || {
            started_tx.send(()).unwrap();
            go_rx.recv_timeout(WATCHDOG).unwrap();
            p.shutdown_blocking(ShutdownOptions::run_queued(Duration::MAX))
        }))
    });
    started_rx.recv_timeout(WATCHDOG).unwrap();
    (go_tx, outer)
}

fn one_slot_pool(name: &str) -> BlockingPool {
    BlockingPool::builder()
        .name(name)
        .max_threads(1)
        .queue_capacity(1)
        .build()
        .unwrap()
}

/// A helped job whose caller gives up is abandoned without thread
/// accounting: it holds no thread of its own, so none is freed or counted.
#[test]
fn abandoning_a_helped_job_leaves_the_thread_counts_intact() {
    let pool = one_slot_pool("nst-abandon");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (go, waiting) = outer_that_will_shut_its_pool_down(&pool);
    let (queued_tx, queued_rx) = mpsc::channel();
    let gate = Gate::new();
    let g = gate.clone();
    let mut helped = Box::pin(pool.offload(move || {
        queued_tx.send(()).unwrap();
        g.wait(WATCHDOG);
    }));
    rt.block_on(async { assert!(futures::poll!(helped.as_mut()).is_pending()) });
    go.send(()).unwrap();
    queued_rx.recv_timeout(WATCHDOG).unwrap();
    // Dropped while the waiting thread runs it.
    drop(helped);
    let m = pool.metrics();
    assert_eq!(m.outcomes.cancelled_running, 1);
    assert_eq!((m.threads.total, m.threads.abandoned), (1, 0), "{m:?}");
    gate.open();
    let report = waiting.join().unwrap().unwrap().unwrap();
    assert_eq!(report.abandoned, 0, "{report:?}");
    // Shut down: the one thread leaves, and none was ever abandoned.
    assert!(eventually(WATCHDOG, || {
        let m = pool.metrics();
        (m.threads.total, m.threads.abandoned, m.threads.peak) == (0, 0, 1)
    }));
}

/// At its deadline a shutdown releases the callers of helped jobs too.
#[test]
fn a_shutdown_deadline_releases_the_caller_of_a_helped_job() {
    let pool = one_slot_pool("nst-shut-help");
    let (go, waiting) = outer_that_will_shut_its_pool_down(&pool);
    let gate = Gate::new();
    let g = gate.clone();
    let (queued_tx, queued_rx) = mpsc::channel();
    let (made_tx, made_rx) = mpsc::channel();
    let helped = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let job = pool.offload(move || {
                queued_tx.send(()).unwrap();
                g.wait(WATCHDOG);
            });
            made_tx.send(()).unwrap();
            let r = colorseam::block_on(job);
            (r, started.elapsed())
        })
    };
    made_rx.recv_timeout(WATCHDOG).unwrap();
    go.send(()).unwrap();
    queued_rx.recv_timeout(WATCHDOG).unwrap();
    let report = pool.shutdown_blocking(ShutdownOptions::run_queued(Duration::from_millis(100)));
    // The outer job and the job it helps with, both released.
    assert_eq!(report.abandoned, 2, "{report:?}");
    let (result, took) = helped.join().unwrap();
    let err = result.unwrap().unwrap_err();
    assert!(err.is_shutdown(), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    gate.open();
    assert!(waiting.join().unwrap().unwrap().unwrap_err().is_shutdown());
}

/// A thread that waits in `block_on` for something other than its own
/// nested work does not run other callers' jobs: one of them could wait
/// for what this thread does after its `block_on`, a cycle that plain
/// queueing does not have.
#[test]
fn a_waiting_thread_does_not_run_unrelated_jobs_that_may_wait_for_it() {
    let pool = pool("nst-unrelated", 1);
    let (tx, rx) = mpsc::channel();
    let (started_tx, started_rx) = mpsc::channel();
    let first = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            colorseam::block_on(pool.offload(move || {
                started_tx.send(()).unwrap();
                colorseam::block_on(async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                })
                .unwrap();
                tx.send("after block_on").unwrap();
            }))
        })
    };
    started_rx.recv_timeout(WATCHDOG).unwrap();
    // Queued while the only thread waits in block_on; waits for that thread.
    let second = colorseam::block_on(pool.offload(move || rx.recv_timeout(Duration::from_secs(5))));
    first.join().unwrap().unwrap().unwrap();
    assert_eq!(second.unwrap().unwrap(), Ok("after block_on"));
}
