//! A `/metrics` endpoint in Prometheus text format: each scrape calls
//! `colorseam::metrics::publish()` and renders what the
//! `metrics-exporter-prometheus` recorder holds. No background thread
//! publishes: the figures are read when they are asked for.

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};

/// Installs the Prometheus recorder as the process's `metrics` recorder
/// (once per process) and returns the handle that renders it.
pub fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new().install_recorder()
}

/// The app: `GET /metrics` publishes every colorseam pool and renders the
/// recorder as Prometheus text.
pub fn app(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                colorseam::metrics::publish();
                handle.render()
            }
        }),
    )
}
