//! [`publish`]: every pool's figures through the `metrics` crate facade.

use metrics::{counter, gauge};

use super::{Latency, PoolMetrics};

/// Publishes a snapshot of every live pool and adapter ([`all`](super::all))
/// through the [`metrics`](https://docs.rs/metrics) crate facade, to
/// whatever recorder the program installed (Prometheus, StatsD, ...).
///
/// Nothing runs in the background: call it where the figures are read,
/// such as in the handler that serves a Prometheus scrape, or from a task
/// of your own every few seconds. Each call sets every series to the value
/// of this moment (counters with `absolute`), so calling it twice never
/// counts anything twice, and the cost of metrics is paid per call, never
/// on the offload path. Without an installed recorder it does nothing of
/// note.
///
/// The series, each labelled with `pool` (the pool's or adapter's name):
///
/// | name | type | labels | what |
/// | --- | --- | --- | --- |
/// | `colorseam_pool_threads` | gauge | `state`: `total`, `idle`, `busy`, `abandoned` | the pool's OS threads, by what they do |
/// | `colorseam_pool_threads_peak` | gauge | | the most threads it ever held at once |
/// | `colorseam_pool_queue_depth` | gauge | | jobs accepted and waiting for a thread |
/// | `colorseam_pool_stuck_calls` | gauge | | calls abandoned by their caller whose thread still runs them |
/// | `colorseam_pool_calls_total` | counter | `outcome`: `completed`, `panicked`, `timed_out`, `cancelled`, `rejected`, `shut_down`, `detached_failed`; `phase` on `timed_out` (`waiting_for_room`, `queued`, `running`) and `cancelled` (`queued`, `running`) | calls ended, by how |
/// | `colorseam_pool_interrupts_total` | counter | `result`: `sent`, `panicked`, `recovered` | interrupters run for abandoned calls, and what came of them |
/// | `colorseam_pool_queue_wait_seconds_bucket` | counter | `le`: [`Latency::BUCKET_BOUNDS`] in seconds, and `+Inf` | jobs that waited in the queue less than `le` (cumulative) |
/// | `colorseam_pool_queue_wait_seconds_count` | counter | | jobs that left the queue for a thread |
/// | `colorseam_pool_queue_wait_seconds_sum` | gauge | | their queue waits, summed, in seconds |
/// | `colorseam_pool_run_seconds_bucket` | counter | `le`, as above | jobs that ran for less than `le` (cumulative) |
/// | `colorseam_pool_run_seconds_count` | counter | | jobs that ran (abandoned ones once they return) |
/// | `colorseam_pool_run_seconds_sum` | gauge | | their run times, summed, in seconds |
///
/// The `_bucket` / `_count` / `_sum` triples are the parts of a
/// Prometheus histogram, published as plain series because the facade's
/// own histograms take single samples and these are already counted:
/// `histogram_quantile(0.99, rate(colorseam_pool_run_seconds_bucket[5m]))`
/// works on them as on any histogram. (`_sum` is a gauge because the
/// facade's counters are integers.)
///
/// # Caveats
///
/// A pool that is dropped stops being published, but a recorder keeps its
/// last values until the recorder forgets them (an exporter's idle
/// timeout, for one). Two pools with one name publish into the same series
/// (the last one published wins); give each pool its own name.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let pool = colorseam::BlockingPool::builder().name("db").build().unwrap();
/// pool.offload(|| 1 + 1).await.unwrap();
/// // In the scrape handler, or every few seconds from a task of yours:
/// colorseam::metrics::publish();
/// # }
/// ```
pub fn publish() {
    for metrics in super::all() {
        publish_pool(&metrics);
    }
}

fn publish_pool(m: &PoolMetrics) {
    let pool = m.name.as_str();
    let threads = &m.threads;
    for (state, n) in [
        ("total", threads.total),
        ("idle", threads.idle),
        ("busy", threads.busy),
        ("abandoned", threads.abandoned),
    ] {
        gauge!("colorseam_pool_threads", "pool" => pool.to_owned(), "state" => state).set(n as f64);
    }
    gauge!("colorseam_pool_threads_peak", "pool" => pool.to_owned()).set(threads.peak as f64);
    gauge!("colorseam_pool_queue_depth", "pool" => pool.to_owned()).set(m.queue_depth as f64);
    gauge!("colorseam_pool_stuck_calls", "pool" => pool.to_owned()).set(m.stuck_calls.len() as f64);

    let o = &m.outcomes;
    for (outcome, n) in [
        ("completed", o.completed),
        ("panicked", o.panicked),
        ("rejected", o.rejected),
        ("shut_down", o.shut_down),
        ("detached_failed", o.detached_failures),
    ] {
        counter!("colorseam_pool_calls_total", "pool" => pool.to_owned(), "outcome" => outcome)
            .absolute(n);
    }
    for (outcome, phase, n) in [
        (
            "timed_out",
            "waiting_for_room",
            o.timed_out_waiting_for_room,
        ),
        ("timed_out", "queued", o.timed_out_queued),
        ("timed_out", "running", o.timed_out_running),
        ("cancelled", "queued", o.cancelled_queued),
        ("cancelled", "running", o.cancelled_running),
    ] {
        counter!(
            "colorseam_pool_calls_total",
            "pool" => pool.to_owned(),
            "outcome" => outcome,
            "phase" => phase
        )
        .absolute(n);
    }
    let i = &m.interrupts;
    for (result, n) in [
        ("sent", i.sent),
        ("panicked", i.panicked),
        ("recovered", i.recovered),
    ] {
        counter!("colorseam_pool_interrupts_total", "pool" => pool.to_owned(), "result" => result)
            .absolute(n);
    }

    histogram(
        pool,
        &m.queue_wait,
        [
            "colorseam_pool_queue_wait_seconds_bucket",
            "colorseam_pool_queue_wait_seconds_count",
            "colorseam_pool_queue_wait_seconds_sum",
        ],
    );
    histogram(
        pool,
        &m.run_time,
        [
            "colorseam_pool_run_seconds_bucket",
            "colorseam_pool_run_seconds_count",
            "colorseam_pool_run_seconds_sum",
        ],
    );
}

/// One [`Latency`] as a Prometheus histogram's `_bucket`, `_count` and
/// `_sum` series.
fn histogram(pool: &str, latency: &Latency, [bucket, count, sum]: [&'static str; 3]) {
    for (bound, below) in latency.buckets() {
        let le = bound.as_secs_f64().to_string();
        counter!(bucket, "pool" => pool.to_owned(), "le" => le).absolute(below);
    }
    counter!(bucket, "pool" => pool.to_owned(), "le" => "+Inf").absolute(latency.count);
    counter!(count, "pool" => pool.to_owned()).absolute(latency.count);
    gauge!(sum, "pool" => pool.to_owned()).set(latency.sum.as_secs_f64());
}
