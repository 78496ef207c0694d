//! The incident, with a real HTTP server: an axum service whose handler
//! calls a blocking SDK, probed on `/live` by a real HTTP client with
//! Kubernetes' default liveness timeout (1 s) while slow requests are in
//! flight. Once with the SDK called inline in the handler ([`Handler::Naive`]),
//! once through a `colorseam::adapter::ForAsync` ([`Handler::Colorseam`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use colorseam::adapter::ForAsync;

use crate::http::HttpClient;

/// How the handler calls the SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// `sdk.lookup(id)` right in the async handler: the bug.
    Naive,
    /// `vendor.call(|sdk| sdk.lookup(id)).await` on a bounded adapter.
    Colorseam,
}

impl Handler {
    pub fn label(self) -> &'static str {
        match self {
            Handler::Naive => "naive (SDK called in the handler)",
            Handler::Colorseam => "colorseam (ForAsync adapter)",
        }
    }
}

/// The scenario's sizes.
#[derive(Debug, Clone)]
pub struct Config {
    /// Runtime worker threads of the service.
    pub workers: usize,
    /// Slow requests sent at once.
    pub slow_requests: usize,
    /// How long one SDK call blocks.
    pub sdk_delay: Duration,
    /// At most this many SDK calls at once (the adapter's bound).
    pub sdk_limit: usize,
    /// Time between the starts of two liveness probes.
    pub probe_period: Duration,
    /// A probe without a response in this long fails (Kubernetes'
    /// `timeoutSeconds` defaults to 1).
    pub probe_timeout: Duration,
    /// Consecutive failures after which Kubernetes restarts the pod
    /// (`failureThreshold` defaults to 3).
    pub failure_threshold: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 2,
            slow_requests: 50,
            sdk_delay: Duration::from_millis(300),
            sdk_limit: 16,
            probe_period: Duration::from_millis(250),
            probe_timeout: Duration::from_secs(1),
            failure_threshold: 3,
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub handler: Handler,
    /// Probes sent while slow requests were in flight.
    pub probes: usize,
    /// Of those, how many got no response within the timeout (or failed).
    pub probes_failed: usize,
    /// The longest run of consecutive failed probes.
    pub most_consecutive_failures: usize,
    /// Slowest answered probe.
    pub slowest_probe: Duration,
    /// Median answered probe.
    pub median_probe: Duration,
    /// Slow requests answered 200.
    pub slow_ok: usize,
    /// From the first slow request to the last answer.
    pub wall: Duration,
    /// The most SDK calls that ran at once.
    pub peak_sdk_calls: usize,
}

impl Report {
    /// Whether a kubelet with this failure threshold would have restarted
    /// the pod.
    pub fn restarted(&self, threshold: usize) -> bool {
        self.most_consecutive_failures >= threshold
    }
}

/// A vendor's blocking client: each lookup blocks its thread.
struct BlockingSdk {
    delay: Duration,
    in_call: AtomicUsize,
    peak: AtomicUsize,
}

impl BlockingSdk {
    fn lookup(&self, id: u32) -> String {
        let now = self.in_call.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(self.delay); // a blocking socket read, say
        self.in_call.fetch_sub(1, Ordering::SeqCst);
        format!("record {id}")
    }
}

enum Sdk {
    Naive(Arc<BlockingSdk>),
    Colorseam(ForAsync<Arc<BlockingSdk>>),
}

async fn lookup(State(sdk): State<Arc<Sdk>>, Path(id): Path<u32>) -> (StatusCode, String) {
    match &*sdk {
        Sdk::Naive(sdk) => (StatusCode::OK, sdk.lookup(id)),
        Sdk::Colorseam(vendor) => match vendor.call(move |sdk| sdk.lookup(id)).await {
            Ok(record) => (StatusCode::OK, record),
            Err(err) => (StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
        },
    }
}

/// The service: `/live` answers at once; `/lookup/{id}` calls the SDK.
fn service(sdk: Arc<Sdk>) -> Router {
    Router::new()
        .route("/live", get(|| async { "ok" }))
        .route("/lookup/{id}", get(lookup))
        .with_state(sdk)
}

/// Serves the service on a fresh runtime (as a pod would), sends the slow
/// requests and probes `/live` from a client on threads of its own (as
/// the kubelet is another process), and measures.
pub fn run(handler: Handler, config: &Config) -> std::io::Result<Report> {
    let raw = Arc::new(BlockingSdk {
        delay: config.sdk_delay,
        in_call: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
    });
    let sdk = Arc::new(match handler {
        Handler::Naive => Sdk::Naive(raw.clone()),
        Handler::Colorseam => Sdk::Colorseam(
            ForAsync::builder("vendor-sdk")
                .max_threads(config.sdk_limit)
                .queue_capacity(config.slow_requests.max(1))
                .build(raw.clone())
                .map_err(std::io::Error::other)?,
        ),
    });
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers)
        .thread_name("service-worker")
        .enable_all()
        .build()?;
    let listener = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    server.spawn(async move { axum::serve(listener, service(sdk)).await });

    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("prober")
        .enable_all()
        .build()?;
    let report = client.block_on(async {
        let http = HttpClient::default();
        // The service is up before the load starts.
        let mut ready = false;
        for _ in 0..50 {
            if http
                .get(&format!("http://{addr}/live"), config.probe_timeout)
                .await
                .is_ok()
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !ready {
            return Err(std::io::Error::other("the service never answered /live"));
        }
        let started = Instant::now();
        let slow: Vec<_> = (0..config.slow_requests)
            .map(|i| {
                let http = http.clone();
                let url = format!("http://{addr}/lookup/{i}");
                tokio::spawn(async move { http.get(&url, Duration::from_secs(120)).await })
            })
            .collect();
        // Probe like a kubelet: one probe per period, each with its own
        // timeout, for as long as slow requests are in flight.
        let mut latencies = Vec::new();
        let (mut probes, mut failed, mut run, mut most) = (0, 0, 0, 0);
        let mut next = Instant::now();
        while slow.iter().any(|s| !s.is_finished()) {
            probes += 1;
            match http
                .get(&format!("http://{addr}/live"), config.probe_timeout)
                .await
            {
                Ok(response) if response.status == 200 => {
                    latencies.push(response.took);
                    run = 0;
                }
                _ => {
                    failed += 1;
                    run += 1;
                    most = usize::max(most, run);
                }
            }
            next += config.probe_period;
            tokio::time::sleep_until(next.max(Instant::now()).into()).await;
        }
        let mut slow_ok = 0;
        for request in slow {
            if let Ok(Ok(response)) = request.await {
                slow_ok += usize::from(response.status == 200);
            }
        }
        let wall = started.elapsed();
        latencies.sort();
        Ok(Report {
            handler,
            probes,
            probes_failed: failed,
            most_consecutive_failures: most,
            slowest_probe: latencies.last().copied().unwrap_or_default(),
            median_probe: latencies
                .get(latencies.len() / 2)
                .copied()
                .unwrap_or_default(),
            slow_ok,
            wall,
            peak_sdk_calls: raw.peak.load(Ordering::SeqCst),
        })
    })?;
    // Both runtimes go without waiting for anything still blocked.
    client.shutdown_background();
    server.shutdown_background();
    Ok(report)
}
