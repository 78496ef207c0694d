//! The incident this crate exists for, with a real HTTP server: an axum
//! service with `/live` and a `/lookup/{id}` handler that calls a blocking
//! vendor SDK (300 ms per call). A real HTTP client probes `/live` every
//! 250 ms with Kubernetes' default liveness timeout (1 s) while 50 slow
//! requests are in flight, on a 2-worker runtime: once with the SDK called
//! right in the handler, once through `colorseam::adapter::ForAsync`
//! (at most 16 SDK calls at once), side by side.
//!
//! ```text
//! cargo run --release --manifest-path integrations/Cargo.toml --example http_service
//! ```

use colorseam_integrations::incident::{self, Config, Handler};

fn main() -> std::io::Result<()> {
    let config = Config::default();
    println!(
        "{} slow requests ({:?} of blocking SDK each) on a {}-worker axum service; /live probed every \
         {:?} with a {:?} timeout.\n",
        config.slow_requests,
        config.sdk_delay,
        config.workers,
        config.probe_period,
        config.probe_timeout
    );
    let mut reports = Vec::new();
    for handler in [Handler::Naive, Handler::Colorseam] {
        println!("running {} ...", handler.label());
        reports.push(incident::run(handler, &config)?);
    }
    println!();
    println!(
        "{:<36} {:>6} {:>7} {:>11} {:>12} {:>12} {:>8} {:>8} {:>8}",
        "handler",
        "probes",
        "failed",
        "worst run",
        "probe p50",
        "probe max",
        "slow ok",
        "SDK peak",
        "wall"
    );
    println!("{}", "-".repeat(116));
    for r in &reports {
        println!(
            "{:<36} {:>6} {:>7} {:>11} {:>12} {:>12} {:>8} {:>8} {:>8}",
            r.handler.label(),
            r.probes,
            r.probes_failed,
            r.most_consecutive_failures,
            format!("{:.1?}", r.median_probe),
            format!("{:.1?}", r.slowest_probe),
            format!("{}/{}", r.slow_ok, config.slow_requests),
            r.peak_sdk_calls,
            format!("{:.2?}", r.wall),
        );
    }
    println!();
    for r in &reports {
        println!(
            "- {}: {} of {} probes failed, {} in a row at worst: a kubelet (failureThreshold {}) \
             would {}.",
            r.handler.label(),
            r.probes_failed,
            r.probes,
            r.most_consecutive_failures,
            config.failure_threshold,
            if r.restarted(config.failure_threshold) {
                "have restarted the pod, and the retries would have started it all again"
            } else {
                "have left the pod alone"
            },
        );
    }
    println!(
        "  The naive handler ran the SDK on the runtime's {} workers, so /live waited behind it; \
         colorseam ran\n  at most {} SDK calls at once on the adapter's own threads, and the \
         workers kept answering.",
        config.workers, config.sdk_limit
    );
    Ok(())
}
