//! colorseam beside real servers, shared by this package's examples and
//! tests: a tiny HTTP client ([`http`]), the incident of a blocking SDK
//! call inside an axum handler, probed like a Kubernetes liveness check
//! ([`incident`]), and a Prometheus endpoint fed by
//! `colorseam::metrics::publish()` ([`prometheus`]).

#![forbid(unsafe_code)]

pub mod http;
pub mod incident;
pub mod prometheus;
