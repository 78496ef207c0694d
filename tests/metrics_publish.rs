//! `metrics::publish()` sets every pool's series in the `metrics` facade's
//! recorder, with the documented names and labels, and publishing twice
//! counts nothing twice.
#![cfg(feature = "metrics")]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};

/// What the recorder holds: one value per series, the series named as
/// Prometheus would show it (`name{label="value",...}`, labels sorted).
#[derive(Default)]
struct Captured {
    series: Mutex<BTreeMap<String, Arc<Value>>>,
}

#[derive(Default)]
struct Value(AtomicU64);

impl CounterFn for Value {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }
}

impl GaugeFn for Value {
    fn increment(&self, _: f64) {
        unreachable!("publish only sets gauges");
    }
    fn decrement(&self, _: f64) {
        unreachable!("publish only sets gauges");
    }
    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }
}

fn series_name(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={:?}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

struct TestRecorder(Arc<Captured>);

impl TestRecorder {
    fn value(&self, key: &Key) -> Arc<Value> {
        self.0
            .series
            .lock()
            .unwrap()
            .entry(series_name(key))
            .or_default()
            .clone()
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.value(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.value(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        panic!("publish records no samples: its histograms are counted already");
    }
}

impl Captured {
    fn counter(&self, series: &str) -> u64 {
        let all = self.series.lock().unwrap();
        let value = all.get(series).unwrap_or_else(|| {
            panic!(
                "no series {series}; have:\n{}",
                all.keys().cloned().collect::<Vec<_>>().join("\n")
            )
        });
        value.0.load(Ordering::Relaxed)
    }
    fn gauge(&self, series: &str) -> f64 {
        f64::from_bits(self.counter(series))
    }
    fn names_starting(&self, prefix: &str) -> Vec<String> {
        let all = self.series.lock().unwrap();
        all.keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_sets_a_pools_gauges_counters_and_histograms_under_its_name() {
    let pool = colorseam::BlockingPool::builder()
        .name("publish-test")
        .max_threads(2)
        .build()
        .unwrap();
    pool.offload(|| ()).await.unwrap();
    pool.offload(|| std::thread::sleep(Duration::from_millis(3)))
        .await
        .unwrap();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let err = pool
        .offload_timeout(
            move || {
                let _ = released.recv_timeout(Duration::from_secs(10));
            },
            Duration::from_millis(20),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    // Published while the abandoned job still runs: one stuck call.
    let captured = Arc::new(Captured::default());
    let recorder = TestRecorder(captured.clone());
    metrics::with_local_recorder(&recorder, colorseam::metrics::publish);
    let p = r#"pool="publish-test""#;
    assert_eq!(
        captured.counter(&format!(
            r#"colorseam_pool_calls_total{{outcome="completed",{p}}}"#
        )),
        2
    );
    assert_eq!(
        captured.counter(&format!(
            r#"colorseam_pool_calls_total{{outcome="timed_out",phase="running",{p}}}"#
        )),
        1
    );
    assert_eq!(
        captured.gauge(&format!("colorseam_pool_stuck_calls{{{p}}}")),
        1.0
    );
    assert_eq!(
        captured.gauge(&format!(
            r#"colorseam_pool_threads{{{p},state="abandoned"}}"#
        )),
        1.0
    );
    assert!(captured.gauge(&format!(r#"colorseam_pool_threads{{{p},state="total"}}"#)) >= 1.0);
    assert!(captured.gauge(&format!("colorseam_pool_threads_peak{{{p}}}")) >= 1.0);

    // The abandoned job returns: three jobs ran, one of them ≥ 3 ms.
    release.send(()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pool.metrics().run_time.count < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the job did not return"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    metrics::with_local_recorder(&recorder, colorseam::metrics::publish);
    metrics::with_local_recorder(&recorder, colorseam::metrics::publish);
    assert_eq!(
        captured.counter(&format!("colorseam_pool_run_seconds_count{{{p}}}")),
        3
    );
    assert_eq!(
        captured.counter(&format!(
            r#"colorseam_pool_run_seconds_bucket{{le="+Inf",{p}}}"#
        )),
        3
    );
    assert!(captured.gauge(&format!("colorseam_pool_run_seconds_sum{{{p}}}")) >= 0.003);
    assert_eq!(
        captured.counter(&format!("colorseam_pool_queue_wait_seconds_count{{{p}}}")),
        3
    );

    // Cumulative buckets at the documented bounds, ascending, ending at
    // the count.
    let bounds = colorseam::metrics::Latency::BUCKET_BOUNDS;
    let mut last = 0;
    for bound in bounds {
        let le = bound.as_secs_f64().to_string();
        let below = captured.counter(&format!(
            r#"colorseam_pool_run_seconds_bucket{{le="{le}",{p}}}"#
        ));
        assert!(below >= last, "bucket {le} went down");
        last = below;
    }
    assert_eq!(last, 3);
    let one_ms = captured.counter(&format!(
        r#"colorseam_pool_run_seconds_bucket{{le="{}",{p}}}"#,
        Duration::from_nanos(1 << 20).as_secs_f64()
    ));
    assert!(
        one_ms <= 2,
        "the 3 ms job and the abandoned one are not under 1.05 ms"
    );
    assert_eq!(
        captured
            .names_starting("colorseam_pool_run_seconds_bucket")
            .len(),
        bounds.len() + 1,
        "one series per bound plus +Inf"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn adapters_are_published_under_their_own_names() {
    let vendor = colorseam::adapter::ForAsync::new("publish-vendor", ()).unwrap();
    vendor.call(|_| ()).await.unwrap();
    let captured = Arc::new(Captured::default());
    let recorder = TestRecorder(captured.clone());
    metrics::with_local_recorder(&recorder, colorseam::metrics::publish);
    assert_eq!(
        captured
            .counter(r#"colorseam_pool_calls_total{outcome="completed",pool="publish-vendor"}"#),
        1
    );
}
