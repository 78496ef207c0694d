//! `JobContext::on_cancel`: an interrupter runs once, promptly, off the
//! async workers, when its call is abandoned (deadline, dropped future,
//! shutdown, fail-fast batch); never after its guard is dropped; at once if
//! the call was abandoned already; and the accounting follows.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use colorseam::job;
use colorseam::pool::ShutdownOptions;
use common::{Gate, eventually, eventually_async};

const LONG: Duration = Duration::from_secs(20);

fn pool(name: &str) -> BlockingPool {
    BlockingPool::builder()
        .name(name)
        .max_threads(4)
        .build()
        .unwrap()
}

/// What an interrupter saw when it ran.
#[derive(Default)]
struct Seen {
    runs: AtomicUsize,
    thread: Mutex<Option<String>>,
}

impl Seen {
    fn record(&self) {
        *self.thread.lock().unwrap() = std::thread::current().name().map(str::to_owned);
        self.runs.fetch_add(1, Ordering::SeqCst);
    }
    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
    fn thread(&self) -> Option<String> {
        self.thread.lock().unwrap().clone()
    }
}

/// A job that blocks on `gate` (as a socket read would) with an
/// interrupter that records itself and opens the gate.
fn blocked_job(seen: &Arc<Seen>, gate: &Gate) -> impl FnOnce() -> bool + Send + 'static {
    let (seen, gate) = (seen.clone(), gate.clone());
    move || {
        let job = job::current().expect("a pool thread");
        let g = gate.clone();
        let guard = job.on_cancel(move || {
            seen.record();
            g.open();
        });
        gate.wait(LONG);
        guard.fired()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_runs_the_interrupter_once_on_an_interrupt_thread_and_the_thread_comes_back() {
    let pool = pool("int-deadline");
    let (seen, gate) = (Arc::new(Seen::default()), Gate::new());
    let started = Instant::now();
    let err = pool
        .offload_timeout(blocked_job(&seen, &gate), Duration::from_millis(100))
        .await
        .unwrap_err();
    let released = started.elapsed();
    assert!(err.is_timeout(), "{err}");
    assert!(err.interrupt_sent(), "the error says so: {err}");
    assert!(err.to_string().contains("(an interrupt was sent)"), "{err}");
    assert!(
        released < Duration::from_secs(2),
        "released after {released:?}"
    );
    // The job returns: its thread is given back, the stuck count falls.
    assert!(
        eventually_async(LONG, || pool.metrics().threads.abandoned == 0).await,
        "the interrupted job returned"
    );
    assert_eq!(seen.runs(), 1);
    assert_eq!(seen.thread().as_deref(), Some("colorseam-interrupt"));
    let m = pool.metrics();
    assert_eq!(m.interrupts.sent, 1);
    assert_eq!(m.interrupts.recovered, 1);
    assert_eq!(m.interrupts.panicked, 0);
    assert_eq!(m.outcomes.timed_out_running, 1);
    // And it serves the next call.
    assert_eq!(pool.offload(|| 7).await.unwrap(), 7);
}

#[tokio::test]
async fn a_dropped_future_runs_the_interrupter() {
    let pool = pool("int-dropped");
    let (seen, gate) = (Arc::new(Seen::default()), Gate::new());
    let running = Arc::new(AtomicBool::new(false));
    let job = {
        let (running, inner) = (running.clone(), blocked_job(&seen, &gate));
        move || {
            running.store(true, Ordering::SeqCst);
            inner()
        }
    };
    let call = pool.offload(job);
    assert!(eventually_async(LONG, || running.load(Ordering::SeqCst)).await);
    // Dropped before or after the job registers: either way it runs once
    // (at once in `on_cancel`, or sent).
    drop(call);
    assert!(eventually_async(LONG, || pool.metrics().interrupts.recovered == 1).await);
    assert_eq!(seen.runs(), 1);
    assert_eq!(pool.metrics().outcomes.cancelled_running, 1);
}

#[tokio::test]
async fn the_shutdown_deadline_runs_the_interrupters_of_running_jobs() {
    let pool = pool("int-shutdown");
    let (seen, gate) = (Arc::new(Seen::default()), Gate::new());
    let entered = Arc::new(AtomicBool::new(false));
    let job = {
        let (entered, inner) = (entered.clone(), blocked_job(&seen, &gate));
        move || {
            entered.store(true, Ordering::SeqCst);
            inner()
        }
    };
    let call = pool.offload(job);
    assert!(eventually_async(LONG, || entered.load(Ordering::SeqCst)).await);
    let report = pool
        .shutdown(ShutdownOptions::run_queued(Duration::from_millis(50)))
        .await;
    assert_eq!(report.abandoned, 1, "{report:?}");
    let err = call.await.unwrap_err();
    assert!(err.is_shutdown() && err.interrupt_sent(), "{err}");
    assert!(eventually_async(LONG, || seen.runs() == 1).await);
    assert!(eventually_async(LONG, || pool.metrics().interrupts.recovered == 1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_fast_batch_interrupts_the_jobs_still_running_when_one_fails() {
    let pool = pool("int-batch");
    let seen = Arc::new(Seen::default());
    let blocked = Arc::new(AtomicUsize::new(0));
    let jobs: Vec<Box<dyn FnOnce() + Send>> = (0..4)
        .map(|i| {
            // A gate each: one interrupter must not unblock another's job.
            let (seen, gate, blocked) = (seen.clone(), Gate::new(), blocked.clone());
            Box::new(move || {
                if i == 3 {
                    // Fails once the other three are blocked.
                    while blocked.load(Ordering::SeqCst) < 3 {
                        std::thread::yield_now();
                    }
                    panic!("row 3 is bad");
                }
                let job = job::current().expect("a pool thread");
                let g = gate.clone();
                let _guard = job.on_cancel(move || {
                    seen.record();
                    g.open();
                });
                blocked.fetch_add(1, Ordering::SeqCst);
                gate.wait(LONG);
            }) as Box<dyn FnOnce() + Send>
        })
        .collect();
    let err = pool
        .batch_fail_fast(jobs)
        .max_in_flight(4)
        .await
        .unwrap_err();
    assert!(err.is_panic(), "{err}");
    assert!(
        eventually_async(LONG, || pool.metrics().interrupts.recovered == 3).await,
        "{:?}",
        pool.metrics().interrupts
    );
    assert_eq!(seen.runs(), 3, "each running job's interrupter, once");
    assert_eq!(pool.metrics().outcomes.cancelled_running, 3);
}

#[tokio::test]
async fn an_interrupter_registered_after_the_call_was_abandoned_runs_at_once_before_on_cancel_returns()
 {
    let pool = pool("int-late");
    let ran_inline = Arc::new(AtomicBool::new(false));
    let r = ran_inline.clone();
    let err = pool
        .offload_timeout(
            move || {
                let job = job::current().expect("a pool thread");
                while !job.is_cancelled() {
                    std::hint::spin_loop();
                }
                // Right after `is_cancelled` turns true the abandonment may
                // not have reached the registry yet: `on_cancel` still runs
                // it before returning.
                let ran = Arc::new(AtomicBool::new(false));
                let ran2 = ran.clone();
                let guard = job.on_cancel(move || {
                    ran2.store(true, Ordering::SeqCst);
                });
                // Already run when on_cancel returned.
                r.store(
                    ran.load(Ordering::SeqCst) && guard.fired(),
                    Ordering::SeqCst,
                );
            },
            Duration::from_millis(30),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert!(eventually_async(LONG, || pool.metrics().threads.abandoned == 0).await);
    assert!(ran_inline.load(Ordering::SeqCst));
    assert_eq!(pool.metrics().interrupts.sent, 1);
    assert_eq!(pool.metrics().interrupts.recovered, 1);
}

#[tokio::test]
async fn an_interrupter_never_runs_once_its_guard_is_dropped() {
    let pool = pool("int-disarmed");
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let err = pool
        .offload_timeout(
            move || {
                let job = job::current().expect("a pool thread");
                drop(job.on_cancel(move || s.record()));
                while !job.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            },
            Duration::from_millis(30),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert!(!err.interrupt_sent(), "nothing was armed: {err}");
    assert!(!err.to_string().contains("interrupt was sent"), "{err}");
    assert!(eventually_async(LONG, || pool.metrics().threads.abandoned == 0).await);
    assert_eq!(seen.runs(), 0);
    assert_eq!(pool.metrics().interrupts.sent, 0);
    assert_eq!(pool.metrics().interrupts.recovered, 0);
}

#[tokio::test]
async fn a_guard_dropped_while_its_interrupter_runs_waits_for_it_to_finish() {
    let pool = pool("int-drop-waits");
    let finished = Arc::new(AtomicBool::new(false));
    let seen_at_drop = Arc::new(AtomicBool::new(false));
    let (f, s) = (finished.clone(), seen_at_drop.clone());
    let _ = pool
        .offload_timeout(
            move || {
                let job = job::current().expect("a pool thread");
                let guard = job.on_cancel(move || {
                    std::thread::sleep(Duration::from_millis(200));
                    f.store(true, Ordering::SeqCst);
                });
                while !guard.fired() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                // Running now: the drop waits for it.
                drop(guard);
                s.store(finished.load(Ordering::SeqCst), Ordering::SeqCst);
            },
            Duration::from_millis(30),
        )
        .await
        .unwrap_err();
    assert!(eventually_async(LONG, || pool.metrics().interrupts.recovered == 1).await);
    assert!(
        seen_at_drop.load(Ordering::SeqCst),
        "the drop returned before the interrupter finished"
    );
}

#[tokio::test]
async fn a_panicking_interrupter_is_caught_counted_and_the_job_still_comes_back() {
    let pool = pool("int-panics");
    let gate = Gate::new();
    let g = gate.clone();
    let err = pool
        .offload_timeout(
            move || {
                let job = job::current().expect("a pool thread");
                let g2 = g.clone();
                let _guard = job.on_cancel(move || {
                    g2.open();
                    panic!("an interrupter that panics");
                });
                g.wait(LONG);
            },
            Duration::from_millis(30),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout() && err.interrupt_sent());
    assert!(eventually_async(LONG, || pool.metrics().interrupts.recovered == 1).await);
    assert_eq!(pool.metrics().interrupts.panicked, 1);
    // The interrupt threads survive it: the next interrupt runs.
    let (seen, gate) = (Arc::new(Seen::default()), Gate::new());
    let _ = pool
        .offload_timeout(blocked_job(&seen, &gate), Duration::from_millis(30))
        .await
        .unwrap_err();
    assert!(eventually_async(LONG, || seen.runs() == 1).await);
}

/// One interrupter sleeps 1.5 s; 100 other calls time out meanwhile. They
/// are released on time, and their interrupters run while the slow one is
/// still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_interrupter_delays_neither_other_releases_nor_other_interrupters() {
    let pool = BlockingPool::builder()
        .name("int-slow")
        .max_threads(128)
        .build()
        .unwrap();
    let slow_done = Arc::new(AtomicBool::new(false));
    let slow_gate = Gate::new();
    let slow_call = {
        let (done, gate) = (slow_done.clone(), slow_gate.clone());
        pool.offload_timeout(
            move || {
                let job = job::current().expect("a pool thread");
                let g = gate.clone();
                let _guard = job.on_cancel(move || {
                    g.open();
                    std::thread::sleep(Duration::from_millis(1500));
                    done.store(true, Ordering::SeqCst);
                });
                gate.wait(LONG);
            },
            Duration::from_millis(100),
        )
    };
    let fast_runs = Arc::new(AtomicUsize::new(0));
    let fast_seen_while_slow_ran = Arc::new(AtomicUsize::new(0));
    let blocked = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let (runs, while_slow, done, blocked) = (
                fast_runs.clone(),
                fast_seen_while_slow_ran.clone(),
                slow_done.clone(),
                blocked.clone(),
            );
            let gate = Gate::new();
            pool.offload_timeout(
                move || {
                    let job = job::current().expect("a pool thread");
                    let g = gate.clone();
                    let _guard = job.on_cancel(move || {
                        if !done.load(Ordering::SeqCst) {
                            while_slow.fetch_add(1, Ordering::SeqCst);
                        }
                        runs.fetch_add(1, Ordering::SeqCst);
                        g.open();
                    });
                    blocked.fetch_add(1, Ordering::SeqCst);
                    gate.wait(LONG);
                },
                Duration::from_millis(500),
            )
        })
        .collect();
    let slow_err = slow_call.await.unwrap_err();
    assert!(slow_err.is_timeout());
    let results = futures::future::join_all(calls).await;
    let mut latest = Duration::ZERO;
    for result in results {
        let err = result.unwrap_err();
        assert!(err.is_timeout(), "{err}");
        latest = latest.max(err.elapsed());
    }
    assert!(
        latest < Duration::from_millis(1400),
        "released late ({latest:?}): behind the slow interrupter"
    );
    let running_then = blocked.load(Ordering::SeqCst);
    assert!(eventually_async(LONG, || fast_runs.load(Ordering::SeqCst) == running_then).await);
    assert_eq!(
        fast_seen_while_slow_ran.load(Ordering::SeqCst),
        running_then,
        "every fast interrupter ran while the slow one was still running"
    );
    assert!(
        running_then >= 90,
        "most calls were running at their deadline: {running_then}"
    );
    assert!(eventually_async(LONG, || pool.metrics().threads.abandoned == 0).await);
}

#[tokio::test]
async fn on_cancel_twice_registers_two_interrupters_and_both_run() {
    let pool = pool("int-twice");
    let gate = Gate::new();
    let (a, b) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
    let (a2, b2, g) = (a.clone(), b.clone(), gate.clone());
    let _ = pool
        .offload_timeout(
            move || {
                let job = job::current().expect("a pool thread");
                let _first = job.on_cancel(move || a2.record());
                let g2 = g.clone();
                let _second = job.on_cancel(move || {
                    b2.record();
                    g2.open();
                });
                g.wait(LONG);
            },
            Duration::from_millis(30),
        )
        .await
        .unwrap_err();
    assert!(eventually_async(LONG, || a.runs() == 1 && b.runs() == 1).await);
    assert!(eventually_async(LONG, || pool.metrics().interrupts.sent == 2).await);
}

#[tokio::test]
async fn a_guard_moved_to_another_thread_disarms_there() {
    let pool = pool("int-moved");
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let dropper = std::thread::spawn(move || {
        let guard: job::OnCancel = rx.recv().unwrap();
        assert!(!guard.fired());
        drop(guard);
    });
    let err = pool
        .offload_timeout(
            move || {
                let job = job::current().expect("a pool thread");
                tx.send(job.on_cancel(move || s.record())).unwrap();
                // Wait for the other thread to drop it, then get cancelled.
                while !job.is_cancelled() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            },
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    dropper.join().unwrap();
    assert!(err.is_timeout());
    assert!(eventually_async(LONG, || pool.metrics().threads.abandoned == 0).await);
    assert_eq!(seen.runs(), 0);
}

/// A guard that leaves the job in its value outlives the closure: the
/// closure's return disarms it, so even an abandonment that wins the race
/// with the value's delivery cannot reach the resource.
#[tokio::test]
async fn a_guard_that_outlives_its_job_is_disarmed_when_the_closure_returns() {
    let pool = pool("int-outlives");
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let guard = pool
        .offload(move || {
            job::current()
                .expect("a pool thread")
                .on_cancel(move || s.record())
        })
        .await
        .unwrap();
    assert!(!guard.fired());
    drop(guard);
    assert_eq!(seen.runs(), 0);
}

/// A `JobContext` kept past its job: a registration then drops the
/// interrupter unrun (its captures are dropped, once).
#[tokio::test]
async fn on_cancel_after_the_job_returned_drops_the_interrupter_unrun() {
    struct CountsDrop(Arc<AtomicUsize>);
    impl Drop for CountsDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let pool = pool("int-after");
    let context = pool
        .offload(|| job::current().expect("a pool thread"))
        .await
        .unwrap();
    let (drops, runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (token, r) = (CountsDrop(drops.clone()), runs.clone());
    let guard = context.on_cancel(move || {
        let _token = &token;
        r.fetch_add(1, Ordering::SeqCst);
    });
    assert!(!guard.fired());
    assert_eq!(drops.load(Ordering::SeqCst), 1, "dropped at registration");
    drop(guard);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert!(
        job::current().is_none(),
        "outside any job there is no context"
    );
}

#[tokio::test]
async fn a_guard_dropped_while_its_job_unwinds_disarms_the_interrupter() {
    let pool = pool("int-unwinds");
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let err = pool
        .offload(move || {
            let _guard = job::current()
                .expect("a pool thread")
                .on_cancel(move || s.record());
            panic!("the job panics with its guard alive");
        })
        .await
        .unwrap_err();
    assert!(err.is_panic());
    assert!(!err.interrupt_sent());
    assert_eq!(seen.runs(), 0);

    // Unwinding while the interrupter runs: the drop waits for it.
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    let err = pool
        .offload_timeout(
            move || {
                let guard = job::current().expect("a pool thread").on_cancel(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    f.store(true, Ordering::SeqCst);
                });
                while !guard.fired() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                panic!("unwinding with the interrupter running");
            },
            Duration::from_millis(30),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout() && err.interrupt_sent());
    assert!(eventually_async(LONG, || pool.metrics().interrupts.recovered == 1).await);
    assert!(finished.load(Ordering::SeqCst));
}

/// Nested offloads: each job's interrupters belong to that job. The outer
/// call's abandonment interrupts the outer job only (which here unblocks
/// the inner one); an inner deadline interrupts the inner job only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupters_of_nested_offloads_belong_to_their_own_job() {
    let outer_pool = pool("int-nest-outer");
    let inner_pool = pool("int-nest-inner");
    for inner_times_out in [false, true] {
        let (outer_seen, inner_seen) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
        let inner_gate = Gate::new();
        let (os, is, ig, ip) = (
            outer_seen.clone(),
            inner_seen.clone(),
            inner_gate.clone(),
            inner_pool.clone(),
        );
        let outer = outer_pool.offload_timeout(
            move || {
                let outer_job = job::current().expect("a pool thread");
                let g = ig.clone();
                let _outer_guard = outer_job.on_cancel(move || {
                    os.record();
                    g.open();
                });
                let inner_timeout = if inner_times_out {
                    Duration::from_millis(50)
                } else {
                    Duration::from_secs(20)
                };
                colorseam::block_on(ip.offload_timeout(
                    move || {
                        let inner_job = job::current().expect("a pool thread");
                        assert_eq!(inner_job.pool(), "int-nest-inner");
                        let g = ig.clone();
                        let _inner_guard = inner_job.on_cancel(move || {
                            is.record();
                            g.open();
                        });
                        ig.wait(LONG);
                    },
                    inner_timeout,
                ))
                .map(|inner| inner.map_err(|e| e.interrupt_sent()))
            },
            if inner_times_out {
                Duration::from_secs(20)
            } else {
                Duration::from_millis(100)
            },
        );
        let result = outer.await;
        if inner_times_out {
            let inner = result.unwrap().unwrap();
            assert_eq!(inner, Err(true), "the inner call's error says so");
            // Sent when the inner caller was released; runs a moment later.
            assert!(eventually_async(LONG, || inner_seen.runs() == 1).await);
            assert!(
                eventually_async(LONG, || inner_pool.metrics().interrupts.recovered == 1).await
            );
            assert_eq!(outer_seen.runs(), 0);
        } else {
            let err = result.unwrap_err();
            assert!(err.is_timeout() && err.interrupt_sent(), "{err}");
            assert!(eventually_async(LONG, || outer_pool.metrics().threads.abandoned == 0).await);
            assert_eq!(outer_seen.runs(), 1);
            assert_eq!(inner_seen.runs(), 0);
        }
    }
}

/// One round of the race: what the job and its caller share.
#[derive(Default)]
struct Round {
    started: AtomicBool,
    /// The caller is about to drop the call: the job lines its end up.
    dropping: AtomicBool,
    returned: AtomicBool,
    ran: AtomicBool,
    blocked_when_abandoned: AtomicBool,
}

/// Waits for `flag`: spins a little (both sides on a core: a handoff in
/// microseconds), then yields (a loaded machine: the other side needs the
/// core).
fn wait_for(flag: &AtomicBool) {
    let mut spins = 0u32;
    while !flag.load(Ordering::SeqCst) {
        if spins < 4096 {
            spins += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

fn spin(n: u64) {
    for _ in 0..n {
        std::hint::spin_loop();
    }
}

/// 100,000 interrupters racing their call's normal end (its caller drops
/// the future at a random moment around the job's end): no interrupter ever
/// runs after its call's guard was dropped, and every abandoned job that
/// stays blocked is reached.
///
/// The next round is queued before this one is dropped, so the pool's one
/// thread takes it without parking, and both sides wait by spinning briefly,
/// then yielding: on a loaded machine a spinning waiter would take the core
/// the other needs.
/// The job lines its end up with the caller's drop (it waits, briefly, for
/// the caller to say it is about to drop), so the two random delays that
/// follow straddle each other whatever the scheduler does.
#[test]
fn interrupters_racing_normal_completion_never_reach_a_returned_call_and_none_is_lost() {
    const ROUNDS: usize = 100_000;
    let pool = BlockingPool::builder()
        .name("int-race")
        .max_threads(1)
        .max_abandoned(0)
        .build()
        .unwrap();
    let late = Arc::new(AtomicUsize::new(0));
    let runs = Arc::new(AtomicUsize::new(0));
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let submit = |round: &Arc<Round>, spin_job: u64, spin_return: u64, stays_blocked: bool| {
        let (round, late, runs) = (round.clone(), late.clone(), runs.clone());
        pool.offload(move || {
            let job = job::current().expect("a pool thread");
            let (r, late, runs) = (round.clone(), late.clone(), runs.clone());
            let guard = job.on_cancel(move || {
                if r.returned.load(Ordering::SeqCst) {
                    late.fetch_add(1, Ordering::SeqCst);
                }
                r.ran.store(true, Ordering::SeqCst);
                runs.fetch_add(1, Ordering::SeqCst);
            });
            round.started.store(true, Ordering::SeqCst);
            let mut patience = 100_000;
            while !round.dropping.load(Ordering::SeqCst) && patience > 0 {
                std::hint::spin_loop();
                patience -= 1;
            }
            spin(spin_job);
            if stays_blocked && job.is_cancelled() {
                // Stays blocked once abandoned, as a socket read would: it
                // must be reached (none lost).
                let since = Instant::now();
                while !guard.fired() && since.elapsed() < LONG {
                    std::thread::yield_now();
                }
                round.blocked_when_abandoned.store(true, Ordering::SeqCst);
            } else {
                // Returns by itself a moment later (abandoned or not): an
                // abandonment now
                // races the drop, its interrupter sent to an interrupt
                // thread that has not started it yet.
                spin(spin_return);
            }
            drop(guard);
            round.returned.store(true, Ordering::SeqCst);
        })
    };
    let (mut ran_before_return, mut blocked, mut lost) = (0usize, 0usize, 0usize);
    let mut current = Arc::new(Round::default());
    // One round in 32 stays blocked once abandoned (each needs an interrupt
    // thread to wake up and run: the slow part on a loaded machine).
    let mut call = submit(&current, next() % 1024, next() % 1024, next() % 32 == 0);
    for r in 0..ROUNDS {
        let following = Arc::new(Round::default());
        let (spin_job, spin_return, stays) = (next() % 1024, next() % 1024, next() % 32 == 0);
        let following_call =
            (r + 1 < ROUNDS).then(|| submit(&following, spin_job, spin_return, stays));
        wait_for(&current.started);
        current.dropping.store(true, Ordering::SeqCst);
        spin(next() % 1024);
        drop(call);
        wait_for(&current.returned);
        ran_before_return += usize::from(current.ran.load(Ordering::SeqCst));
        if current.blocked_when_abandoned.load(Ordering::SeqCst) {
            blocked += 1;
            lost += usize::from(!current.ran.load(Ordering::SeqCst));
        }
        match following_call {
            Some(following_call) => {
                call = following_call;
                current = following;
            }
            None => break,
        }
    }
    assert!(eventually(LONG, || pool.metrics().queue_depth == 0
        && pool.metrics().threads.abandoned == 0));
    let m = pool.metrics();
    let runs = runs.load(Ordering::SeqCst);
    println!(
        "{ROUNDS} races: {runs} interrupters ran ({} in metrics), {ran_before_return} before their call returned, {} late; {blocked} jobs still blocked when abandoned, {lost} of them not reached",
        m.interrupts.sent,
        late.load(Ordering::SeqCst)
    );
    assert_eq!(
        late.load(Ordering::SeqCst),
        0,
        "an interrupt reached a call that had returned"
    );
    assert_eq!(
        lost, 0,
        "an abandoned job that stayed blocked was never interrupted"
    );
    assert_eq!(m.interrupts.sent as usize, runs);
    assert_eq!(runs, ran_before_return, "each ran before its call returned");
    assert!(
        runs > 0 && runs < ROUNDS,
        "both sides won some races: {runs} of {ROUNDS}"
    );
}

/// A paused test clock neither stops the deadline nor its interrupt: the
/// deadline is real time.
#[tokio::test(start_paused = true)]
async fn under_a_paused_clock_the_deadline_still_interrupts() {
    let pool = pool("int-paused");
    let (seen, gate) = (Arc::new(Seen::default()), Gate::new());
    let err = pool
        .offload_timeout(blocked_job(&seen, &gate), Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(err.is_timeout() && err.interrupt_sent(), "{err}");
    assert!(eventually(LONG, || seen.runs() == 1));
    assert!(eventually(LONG, || pool.metrics().interrupts.recovered == 1));
}

/// No tokio at all on the caller's side: `futures::executor` polls the
/// offload, the bridge times its deadline, and the interrupt is sent.
#[test]
fn a_caller_on_futures_executor_interrupts_at_its_deadline() {
    let pool = pool("int-futures");
    let (seen, gate) = (Arc::new(Seen::default()), Gate::new());
    let err = futures::executor::block_on(
        pool.offload_timeout(blocked_job(&seen, &gate), Duration::from_millis(50)),
    )
    .unwrap_err();
    assert!(err.is_timeout() && err.interrupt_sent(), "{err}");
    assert!(eventually(LONG, || seen.runs() == 1));
}

/// A caller on a current-thread runtime inside a `LocalSet`: released and
/// interrupted the same way.
#[test]
fn a_caller_in_a_local_set_on_a_current_thread_runtime_interrupts_at_its_deadline() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let pool = pool("int-local");
    let (seen, gate) = (Arc::new(Seen::default()), Gate::new());
    let job = blocked_job(&seen, &gate);
    let err = local
        .block_on(&rt, async {
            tokio::task::spawn_local(pool.offload_timeout(job, Duration::from_millis(50)))
                .await
                .unwrap()
        })
        .unwrap_err();
    assert!(err.is_timeout() && err.interrupt_sent(), "{err}");
    assert!(eventually(LONG, || seen.runs() == 1));
}

/// A detached job has no deadline, but a shutdown past its deadline
/// abandons it: its interrupter runs, and the failure is reported.
#[tokio::test]
async fn a_detached_job_is_interrupted_at_the_shutdown_deadline() {
    let failures = Arc::new(AtomicUsize::new(0));
    let f = failures.clone();
    let pool = BlockingPool::builder()
        .name("int-detached")
        .error_sink(move |_| {
            f.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let (seen, gate) = (Arc::new(Seen::default()), Gate::new());
    let entered = Arc::new(AtomicBool::new(false));
    let (e, job) = (entered.clone(), blocked_job(&seen, &gate));
    pool.detach(move || {
        e.store(true, Ordering::SeqCst);
        let _fired = job();
    })
    .unwrap();
    assert!(eventually_async(LONG, || entered.load(Ordering::SeqCst)).await);
    let report = pool
        .shutdown(ShutdownOptions::run_queued(Duration::from_millis(50)))
        .await;
    assert_eq!(report.abandoned, 1, "{report:?}");
    assert!(eventually_async(LONG, || seen.runs() == 1).await);
    assert!(eventually_async(LONG, || pool.metrics().interrupts.recovered == 1).await);
}

/// An interrupter is user code run with no crate lock held: it may read the
/// pool's metrics, offload to it and wait, and shut another pool down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupter_may_reenter_the_pool_it_interrupts() {
    let pool = pool("int-reenter");
    let gate = Gate::new();
    let answer = Arc::new(Mutex::new(None));
    let (g, p, a) = (gate.clone(), pool.clone(), answer.clone());
    let err = pool
        .offload_timeout(
            move || {
                let g2 = g.clone();
                let _guard = job::current().expect("a pool thread").on_cancel(move || {
                    let busy = p.metrics().threads.busy;
                    let n = colorseam::block_on(p.offload(|| 6 * 7)).unwrap().unwrap();
                    *a.lock().unwrap() = Some((busy, n));
                    g2.open();
                });
                g.wait(LONG);
            },
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    assert!(err.interrupt_sent());
    assert!(eventually_async(LONG, || answer.lock().unwrap().is_some()).await);
    assert_eq!(answer.lock().unwrap().unwrap().1, 42);
    assert!(eventually_async(LONG, || pool.metrics().interrupts.recovered == 1).await);
}

/// An interrupter that owns its own guard and drops it while it runs: the
/// drop does not wait for itself.
#[tokio::test]
async fn an_interrupter_that_drops_its_own_guard_does_not_wait_for_itself() {
    let pool = pool("int-self-drop");
    let gate = Gate::new();
    let g = gate.clone();
    let slot: Arc<Mutex<Option<job::OnCancel>>> = Arc::default();
    let s = slot.clone();
    let err = pool
        .offload_timeout(
            move || {
                let inner = s.clone();
                let g2 = g.clone();
                let guard = job::current().expect("a pool thread").on_cancel(move || {
                    drop(inner.lock().unwrap().take());
                    g2.open();
                });
                *s.lock().unwrap() = Some(guard);
                g.wait(LONG);
            },
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    assert!(err.interrupt_sent());
    assert!(
        eventually_async(Duration::from_secs(5), || pool
            .metrics()
            .interrupts
            .recovered
            == 1)
        .await,
        "the interrupter deadlocked on its own guard"
    );
}

/// A one-thread pool whose only thread waits in `block_on` for a nested
/// job and runs it itself (helps): the outer call's abandonment runs the
/// outer job's interrupter while the thread is inside the inner job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interrupter_of_a_job_whose_thread_helps_with_a_nested_job_runs() {
    let pool = BlockingPool::builder()
        .name("int-helping")
        .max_threads(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let inner_ran_here = Arc::new(AtomicBool::new(false));
    let (p, g, r) = (pool.clone(), gate.clone(), inner_ran_here.clone());
    let outer_seen = Arc::new(Seen::default());
    let os = outer_seen.clone();
    let err = pool
        .offload_timeout(
            move || {
                let here = std::thread::current().id();
                let g2 = g.clone();
                let _outer = job::current().expect("a pool thread").on_cancel(move || {
                    os.record();
                    g2.open();
                });
                // No deadline: the only thread runs it itself.
                colorseam::block_on(p.offload(move || {
                    r.store(std::thread::current().id() == here, Ordering::SeqCst);
                    g.wait(LONG);
                }))
                .unwrap()
                .unwrap();
            },
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout() && err.interrupt_sent(), "{err}");
    assert!(eventually_async(LONG, || outer_seen.runs() == 1).await);
    assert!(eventually_async(LONG, || pool.metrics().interrupts.recovered == 1).await);
    assert!(
        inner_ran_here.load(Ordering::SeqCst),
        "the waiting thread helped"
    );
}

/// A job that registers and drops an interrupter per step (per query, say)
/// and is abandoned at a later step: only the interrupter armed then runs,
/// once; none of the thousand dropped before.
#[tokio::test]
async fn a_job_that_registers_per_step_runs_only_the_interrupter_armed_when_abandoned() {
    let pool = pool("int-steps");
    let runs = Arc::new(AtomicUsize::new(0));
    let last = Arc::new(AtomicUsize::new(usize::MAX));
    let (r, l) = (runs.clone(), last.clone());
    let err = pool
        .offload_timeout(
            move || {
                let job = job::current().expect("a pool thread");
                for step in 0.. {
                    let (r, l) = (r.clone(), l.clone());
                    let guard = job.on_cancel(move || {
                        r.fetch_add(1, Ordering::SeqCst);
                        l.store(step, Ordering::SeqCst);
                    });
                    if step >= 1000 && job.is_cancelled() {
                        while !guard.fired() {
                            std::thread::yield_now();
                        }
                        return step;
                    }
                    drop(guard);
                    if step >= 1000 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                unreachable!()
            },
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert!(eventually_async(LONG, || pool.metrics().threads.abandoned == 0).await);
    // Claimed while armed, or (abandoned between two steps) run at once by
    // the next registration: one way or the other, exactly once.
    assert_eq!(runs.load(Ordering::SeqCst), 1, "only the armed one");
    assert!(last.load(Ordering::SeqCst) >= 1000);
}
