//! A Prometheus endpoint for colorseam's pools: `GET /metrics` calls
//! `colorseam::metrics::publish()` and renders the
//! `metrics-exporter-prometheus` recorder, while a "vendor-sdk" pool
//! serves some traffic. Scrape it with `curl http://127.0.0.1:9898/metrics`
//! (or pass another address as the first argument).
//!
//! ```text
//! cargo run --manifest-path integrations/Cargo.toml --example prometheus
//! ```

use std::time::Duration;

use colorseam::BlockingPool;
use colorseam_integrations::prometheus;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9898".to_owned());
    let handle = prometheus::install_recorder()?;
    let pool = BlockingPool::builder()
        .name("vendor-sdk")
        .max_threads(4)
        .default_timeout(Duration::from_millis(50))
        .build()?;
    // Traffic: mostly quick calls, one in ten past the deadline.
    tokio::spawn(async move {
        for i in 0u64.. {
            let sleep = Duration::from_millis(if i % 10 == 9 { 80 } else { 2 });
            let _ = pool.offload(move || std::thread::sleep(sleep)).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "serving Prometheus text on http://{}/metrics",
        listener.local_addr()?
    );
    axum::serve(listener, prometheus::app(handle)).await?;
    Ok(())
}
