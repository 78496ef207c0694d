//! A real HTTP/1.1 client (hyper's), as a prober or a scraper would use.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A client that keeps connections alive between requests, like a kubelet
/// or a Prometheus server does.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// A response, whole.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
    /// From sending the request to the last byte of the body.
    pub took: Duration,
}

/// Why a request got no response.
#[derive(Debug)]
pub enum GetError {
    /// No whole response within the timeout.
    TimedOut(Duration),
    /// The connection or the protocol failed.
    Failed(String),
}

impl std::fmt::Display for GetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GetError::TimedOut(after) => write!(f, "no response within {after:?}"),
            GetError::Failed(why) => write!(f, "request failed: {why}"),
        }
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }
}

impl HttpClient {
    /// `GET url`, the whole body read, within `timeout` (the request fails
    /// with [`GetError::TimedOut`] past it, as a probe does).
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<Response, GetError> {
        let uri: hyper::Uri = url.parse().map_err(|e| GetError::Failed(format!("{e}")))?;
        let started = Instant::now();
        let exchange = async {
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|e| GetError::Failed(e.to_string()))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| GetError::Failed(e.to_string()))?
                .to_bytes();
            Ok(Response {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
                took: started.elapsed(),
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| GetError::TimedOut(timeout))?
    }
}
