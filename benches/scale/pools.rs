//! Cost curve: pools in one process (issue 15), as the criterion group
//! `pools`.
//!
//! 1 → 100 → 1,000 pools alive at once, each having run a few offloads so
//! that its threads exist. Two benchmarks per point:
//!
//! - `round_robin/<n>`: one trivial offload to each of the `n` pools in
//!   turn, awaited one at a time from a task on a 2-worker runtime; per
//!   element, the round trip with `n` pools in the process;
//! - `metrics_all/<n>`: one `colorseam::metrics::all()`, which snapshots
//!   every pool (linear in the pools by nature); per element, the cost of
//!   one pool's snapshot, which is what must stay flat.
//!
//! `examples/compare/pools.rs` adds the growth monitor's CPU and the
//! process's thread counts.

use std::hint::black_box;
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use criterion::{BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;

const POINTS: [usize; 3] = [1, 100, 1_000];

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// `n` pools, each having run a few offloads at once.
fn pools(rt: &Runtime, n: usize) -> Vec<BlockingPool> {
    let pools = crate::curves::pools_named("bench-pool", n);
    let warm = pools.clone();
    rt.block_on(async move {
        tokio::spawn(crate::curves::warm(warm))
            .await
            .expect("the warm-up task")
    });
    pools
}

pub(crate) fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("pools");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for n in POINTS {
        let pools = pools(&rt, n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("round_robin", n), &pools, |b, pools| {
            b.iter_custom(|iters| {
                let pools = pools.clone();
                rt.block_on(async move {
                    tokio::spawn(async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            for pool in &pools {
                                black_box(pool.offload(|| black_box(1u64)).await.expect("offload"));
                            }
                        }
                        start.elapsed()
                    })
                    .await
                    .expect("the measured task")
                })
            });
        });
        group.bench_function(BenchmarkId::new("metrics_all", n), |b| {
            b.iter(|| black_box(colorseam::metrics::all()));
        });
        drop(pools);
    }
    group.finish();
}
