//! Scraping the Prometheus endpoint over real HTTP finds the pool's
//! series, in Prometheus text format, with the documented names and labels.

use std::time::Duration;

use colorseam::BlockingPool;
use colorseam_integrations::http::HttpClient;
use colorseam_integrations::prometheus;

#[tokio::test(flavor = "multi_thread")]
async fn a_scrape_over_http_finds_the_pools_series() {
    let handle = prometheus::install_recorder().expect("the first recorder of this process");
    let pool = BlockingPool::builder()
        .name("scraped-pool")
        .max_threads(2)
        .build()
        .unwrap();
    for _ in 0..3 {
        pool.offload(|| std::thread::sleep(Duration::from_millis(2)))
            .await
            .unwrap();
    }
    let err = pool
        .offload_timeout(
            || std::thread::sleep(Duration::from_millis(300)),
            Duration::from_millis(10),
        )
        .await
        .unwrap_err();
    assert!(err.is_timeout());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, prometheus::app(handle)).await });
    let scrape = HttpClient::default()
        .get(&format!("http://{addr}/metrics"), Duration::from_secs(10))
        .await
        .expect("the endpoint answers");
    assert_eq!(scrape.status, 200);
    let text = scrape.body;
    let has = |needle: &str| {
        assert!(
            text.lines().any(|line| line.starts_with(needle)),
            "no line starting with {needle} in:\n{text}"
        );
    };
    has(r#"colorseam_pool_calls_total{pool="scraped-pool",outcome="completed"} 3"#);
    has(r#"colorseam_pool_calls_total{pool="scraped-pool",outcome="timed_out",phase="running"} 1"#);
    has(r#"colorseam_pool_threads{pool="scraped-pool",state="total"}"#);
    has(r#"colorseam_pool_queue_wait_seconds_count{pool="scraped-pool"}"#);
    has(r#"colorseam_pool_run_seconds_bucket{pool="scraped-pool",le="+Inf"}"#);
    has(r#"colorseam_pool_run_seconds_bucket{pool="scraped-pool",le="0.001048576"}"#);
    has(r#"colorseam_pool_run_seconds_sum{pool="scraped-pool"}"#);
    has("# TYPE colorseam_pool_calls_total counter");
    has("# TYPE colorseam_pool_threads gauge");
}
