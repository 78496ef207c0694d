//! The default pool takes a builder's configuration when installed before
//! its first use. (Its own test binary: the default pool is per process.)

use colorseam::BlockingPool;

#[tokio::test]
async fn a_pool_installed_before_first_use_becomes_the_default() {
    let pool = BlockingPool::builder()
        .name("my-default")
        .max_threads(3)
        .install_default()
        .unwrap();
    assert_eq!(colorseam::default_pool().name(), "my-default");
    assert_eq!(colorseam::offload(|| 5).await.unwrap(), 5);
    assert_eq!(pool.metrics().outcomes.completed, 1);
}
