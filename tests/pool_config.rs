//! A bad configuration is a typed error, never a panic; extreme values are
//! rejected or clamped as documented.

use std::time::Duration;

use colorseam::{BlockingPool, ConfigError};

#[test]
fn zero_threads_is_a_config_error() {
    let err = BlockingPool::builder().max_threads(0).build().unwrap_err();
    assert_eq!(err, ConfigError::ZeroThreads);
    assert_eq!(err.to_string(), "max_threads must be at least 1 (got 0)");
}

#[test]
fn zero_queue_is_a_config_error() {
    let err = BlockingPool::builder()
        .queue_capacity(0)
        .build()
        .unwrap_err();
    assert_eq!(err, ConfigError::ZeroQueue);
}

#[test]
fn absurd_sizes_are_config_errors_not_overflows() {
    assert!(matches!(
        BlockingPool::builder().max_threads(usize::MAX).build(),
        Err(ConfigError::TooManyThreads { .. })
    ));
    assert!(matches!(
        BlockingPool::builder().queue_capacity(usize::MAX).build(),
        Err(ConfigError::QueueTooLarge { .. })
    ));
    assert!(matches!(
        BlockingPool::builder().max_abandoned(usize::MAX).build(),
        Err(ConfigError::TooManyAbandoned { .. })
    ));
}

#[test]
fn a_floor_above_the_ceiling_is_a_config_error() {
    let err = BlockingPool::builder()
        .max_threads(2)
        .min_threads(3)
        .build()
        .unwrap_err();
    assert_eq!(err, ConfigError::MinAboveMax { min: 3, max: 2 });
}

#[test]
fn names_that_cannot_name_a_thread_are_config_errors() {
    assert!(matches!(
        BlockingPool::builder().name("").build(),
        Err(ConfigError::BadName(_))
    ));
    assert!(matches!(
        BlockingPool::builder().name("a\0b").build(),
        Err(ConfigError::BadName(_))
    ));
}

#[tokio::test]
async fn extreme_durations_are_clamped_and_work() {
    let pool = BlockingPool::builder()
        .keep_alive(Duration::MAX)
        .default_timeout(Duration::MAX)
        .build()
        .expect("huge durations are clamped, not rejected");
    assert_eq!(pool.offload(|| 1).await.unwrap(), 1);
    assert_eq!(pool.offload_timeout(|| 2, Duration::MAX).await.unwrap(), 2);
    assert_eq!(
        pool.offload_timeout(
            || std::thread::sleep(Duration::from_secs(5)),
            Duration::ZERO
        )
        .await
        .map_err(|e| e.is_timeout()),
        Err(true),
        "a zero timeout is already past: the caller is released at once"
    );
}

#[test]
fn the_default_pool_cannot_be_reconfigured_after_first_use() {
    let _ = colorseam::default_pool();
    let err = BlockingPool::builder().install_default().unwrap_err();
    assert_eq!(err, ConfigError::DefaultAlreadySet);
}
