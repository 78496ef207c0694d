//! The incident over real HTTP, small enough for a test: a blocking SDK
//! called in the handler makes `/live` miss its 1 s timeout; the same SDK
//! behind colorseam keeps every probe answered. The bounds are far from
//! the figures (a localhost probe answers in milliseconds; the naive
//! service is blocked for seconds at a stretch).

use std::time::Duration;

use colorseam_integrations::incident::{self, Config, Handler};

fn config() -> Config {
    Config {
        workers: 2,
        slow_requests: 8,
        // 8 calls on 2 workers: each worker blocked 4 × 700 ms = 2.8 s in
        // a row, far past a 1 s probe timeout.
        sdk_delay: Duration::from_millis(700),
        sdk_limit: 8,
        probe_period: Duration::from_millis(100),
        probe_timeout: Duration::from_secs(1),
        failure_threshold: 3,
    }
}

#[test]
fn a_blocking_sdk_in_the_handler_fails_the_liveness_probe() {
    let report = incident::run(Handler::Naive, &config()).unwrap();
    assert!(report.probes_failed >= 1, "{report:?}");
    assert_eq!(report.slow_ok, 8, "{report:?}");
    assert!(
        report.peak_sdk_calls <= 2,
        "the SDK ran on the 2 workers: {report:?}"
    );
}

#[test]
fn the_same_sdk_behind_colorseam_keeps_every_probe_answered() {
    let report = incident::run(Handler::Colorseam, &config()).unwrap();
    assert_eq!(report.probes_failed, 0, "{report:?}");
    assert!(report.probes >= 2, "{report:?}");
    assert_eq!(report.slow_ok, 8, "{report:?}");
    assert!(
        report.peak_sdk_calls > 2,
        "the SDK ran off the workers: {report:?}"
    );
}
