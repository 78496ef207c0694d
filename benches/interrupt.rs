//! Interrupters: how soon an abandoned job gives its thread back, and what
//! registering one costs a call that is never cancelled.
//!
//! - `socket_release`: a job blocked in a `TcpStream` read from a local
//!   server that answers only after 250 ms (a slow upstream), under a 20 ms
//!   deadline. Measured: from the deadline to the job returning (its thread
//!   free again). Contenders:
//!   - `colorseam`: `on_cancel(shutdown_tcp(&stream))`, run by colorseam
//!     at the deadline;
//!   - `abandon_and_wait`: no interrupter (colorseam before interrupters,
//!     or any pool): the caller is released at the deadline and the job
//!     returns when the server answers;
//!   - `helper_thread`: the workaround users wrote, a thread started per
//!     call that polls `job.is_cancelled()` every millisecond and then shuts
//!     the stream down.
//!
//!   Criterion's figure is the mean of a sample; the p50 and p99 over all
//!   iterations are printed after the group (`p50/p99 over the deadline`).
//! - `register`: inside one running job, `job::current()` plus
//!   `on_cancel(f)` and dropping the guard, for a call never cancelled
//!   (goal: at most 100 ns), next to `job::current()` alone; with an
//!   interrupter that captures nothing, and with one that captures a clone
//!   of an `Arc` (a handle to its resource, as real ones do).
//!
//! Run with `cargo bench --bench interrupt`.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use colorseam::job;
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};

const DEADLINE: Duration = Duration::from_millis(20);
const ANSWER_AFTER: Duration = Duration::from_millis(250);

/// A local server that answers each connection with one byte after
/// [`ANSWER_AFTER`], from a thread per connection.
fn slow_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
    let addr = listener.local_addr().expect("a bound address");
    std::thread::Builder::new()
        .name("bench-slow-server".to_owned())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                std::thread::spawn(move || {
                    std::thread::sleep(ANSWER_AFTER);
                    let _ = stream.write_all(b"!");
                    // Held open until the client goes.
                    let _ = stream.read(&mut [0; 1]);
                });
            }
        })
        .expect("a server thread");
    addr
}

#[derive(Clone, Copy)]
enum Stop {
    Colorseam,
    AbandonAndWait,
    HelperThread,
}

/// One call: returns how long after its deadline the job returned.
fn one_call(
    rt: &tokio::runtime::Runtime,
    pool: &BlockingPool,
    addr: SocketAddr,
    stop: Stop,
) -> Duration {
    let (tx, rx) = std::sync::mpsc::channel();
    let called = Instant::now();
    let call = pool.offload_timeout(
        move || {
            let mut stream = TcpStream::connect(addr).expect("the server accepts");
            let job = job::current().expect("a pool thread");
            let _guard = match stop {
                Stop::Colorseam => Some(job.on_cancel(
                    colorseam::interrupt::shutdown_tcp(&stream).expect("a descriptor to spare"),
                )),
                Stop::AbandonAndWait => None,
                Stop::HelperThread => {
                    let clone = stream.try_clone().expect("a descriptor to spare");
                    let done = Arc::new(AtomicBool::new(false));
                    let d = done.clone();
                    let job = job.clone();
                    std::thread::spawn(move || {
                        while !d.load(Ordering::Acquire) {
                            if job.is_cancelled() {
                                let _ = clone.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    });
                    struct Done(Arc<AtomicBool>);
                    impl Drop for Done {
                        fn drop(&mut self) {
                            self.0.store(true, Ordering::Release);
                        }
                    }
                    let _done = Done(done);
                    let _ = stream.read(&mut [0; 1]);
                    let _ = tx.send(Instant::now());
                    return;
                }
            };
            let _ = stream.read(&mut [0; 1]);
            let _ = tx.send(Instant::now());
        },
        DEADLINE,
    );
    let released = rt.block_on(call);
    assert!(released.is_err(), "the server answers after the deadline");
    let returned = rx.recv().expect("the job returns");
    returned.saturating_duration_since(called + DEADLINE)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * q).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn socket_release(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let addr = slow_server();
    let pool = BlockingPool::builder()
        .name("bench-interrupt")
        .max_threads(8)
        .build()
        .expect("a valid pool");
    let mut group = c.benchmark_group("socket_release");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    let mut summary = Vec::new();
    for (name, stop) in [
        ("colorseam", Stop::Colorseam),
        ("helper_thread", Stop::HelperThread),
        ("abandon_and_wait", Stop::AbandonAndWait),
    ] {
        let lags = Arc::new(Mutex::new(Vec::new()));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let lag = one_call(&rt, &pool, addr, stop);
                    lags.lock().expect("not poisoned").push(lag);
                    total += lag;
                }
                total
            })
        });
        let mut lags = lags.lock().expect("not poisoned").clone();
        lags.sort();
        summary.push((
            name,
            lags.len(),
            percentile(&lags, 0.5),
            percentile(&lags, 0.99),
        ));
    }
    group.finish();
    for (name, n, p50, p99) in summary {
        println!(
            "socket_release/{name}: {n} calls, job returned p50 {p50:.2?} / p99 {p99:.2?} over the deadline"
        );
    }
}

fn register(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let pool = BlockingPool::builder()
        .name("bench-register")
        .build()
        .expect("a valid pool");
    let mut group = c.benchmark_group("register");
    group.measurement_time(Duration::from_secs(3));
    let resource = Arc::new(0u64);
    group.bench_function("job_current", |b| {
        b.iter_custom(|iters| {
            rt.block_on(pool.offload(move || {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(job::current());
                }
                start.elapsed()
            }))
            .expect("the job runs")
        })
    });
    group.bench_function("on_cancel_and_drop_no_capture", |b| {
        b.iter_custom(|iters| {
            rt.block_on(pool.offload(move || {
                let start = Instant::now();
                for _ in 0..iters {
                    let guard = job::current().expect("a pool thread").on_cancel(|| {
                        black_box(());
                    });
                    drop(black_box(guard));
                }
                start.elapsed()
            }))
            .expect("the job runs")
        })
    });
    group.bench_function("on_cancel_and_drop", |b| {
        let resource = resource.clone();
        b.iter_custom(|iters| {
            let resource = resource.clone();
            rt.block_on(pool.offload(move || {
                let start = Instant::now();
                for _ in 0..iters {
                    // What an interrupter captures: a handle to its resource.
                    let handle = resource.clone();
                    let guard = job::current().expect("a pool thread").on_cancel(move || {
                        black_box(&handle);
                    });
                    drop(black_box(guard));
                }
                start.elapsed()
            }))
            .expect("the job runs")
        })
    });
    group.finish();
}

criterion_group!(benches, register, socket_release);
criterion_main!(benches);
