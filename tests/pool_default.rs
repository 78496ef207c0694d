//! The default pool needs no set-up, and can be configured before first use.

#[tokio::test]
async fn offload_works_with_no_setup_on_the_default_pool() {
    let value = colorseam::offload(|| "ready").await.unwrap();
    assert_eq!(value, "ready");
    assert_eq!(colorseam::default_pool().name(), "colorseam-default");
}
