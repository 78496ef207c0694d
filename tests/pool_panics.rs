//! A panicking job comes back as an error with its message; the pool keeps
//! its full capacity.

use std::time::Duration;

use colorseam::{BlockingPool, ErrorKind, Phase};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_comes_back_as_an_error_carrying_its_message() {
    let pool = BlockingPool::builder().name("pn-msg").build().unwrap();
    let err = pool
        .offload(|| -> u32 { panic!("vendor sdk exploded: code {}", 7) })
        .await
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.kind(), ErrorKind::Panicked);
    assert_eq!(err.phase(), Some(Phase::Running));
    assert_eq!(err.panic_message(), Some("vendor sdk exploded: code 7"));
    assert!(
        err.to_string().contains("vendor sdk exploded: code 7"),
        "{err}"
    );
    assert_eq!(pool.metrics().outcomes.panicked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_keeps_its_full_capacity_after_every_thread_panicked() {
    let pool = BlockingPool::builder()
        .name("pn-cap")
        .max_threads(3)
        .build()
        .unwrap();
    let panics: Vec<_> = (0..9)
        .map(|i| pool.offload(move || -> u8 { panic!("boom {i}") }))
        .collect();
    for p in panics {
        assert!(p.await.unwrap_err().is_panic());
    }
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
    let jobs: Vec<_> = (0..3)
        .map(|_| {
            let barrier = barrier.clone();
            pool.offload_timeout(move || barrier.wait().is_leader(), Duration::from_secs(20))
        })
        .collect();
    let mut leaders = 0;
    for job in jobs {
        leaders += usize::from(
            job.await
                .expect("three threads ran at once after nine panics"),
        );
    }
    assert_eq!(leaders, 1);
    assert!(pool.metrics().threads.total <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_string_panic_payload_still_gives_an_error() {
    let pool = BlockingPool::builder().name("pn-any").build().unwrap();
    let err = pool
        .offload(|| std::panic::panic_any(42u8))
        .await
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), None, "a u8 payload has no text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_error_hands_back_the_original_payload() {
    #[derive(Debug, PartialEq)]
    struct Code(u32);
    let pool = BlockingPool::builder().name("pn-payload").build().unwrap();
    let err = pool
        .offload(|| -> u32 { std::panic::panic_any(Code(7)) })
        .await
        .unwrap_err();
    assert_eq!(err.panic_message(), None);
    let payload = err.try_into_panic().expect("a panic keeps its payload");
    assert_eq!(payload.downcast_ref::<Code>(), Some(&Code(7)));

    let err = pool
        .offload(|| -> u32 { panic!("with text {}", std::hint::black_box(1)) })
        .await
        .unwrap_err();
    let payload = err.try_into_panic().expect("a panic keeps its payload");
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("with text 1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_that_is_not_a_panic_gives_itself_back() {
    let pool = BlockingPool::builder()
        .name("pn-nopayload")
        .build()
        .unwrap();
    let err = pool
        .offload_timeout(
            || std::thread::sleep(Duration::from_secs(2)),
            Duration::from_millis(20),
        )
        .await
        .unwrap_err();
    let err = err.try_into_panic().expect_err("a timeout has no payload");
    assert!(err.is_timeout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_error_whose_payload_panics_on_drop_does_not_panic() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("payload destructor");
        }
    }
    let pool = BlockingPool::builder().name("pn-bomb").build().unwrap();
    let err = pool
        .offload(|| -> u32 { std::panic::panic_any(Bomb) })
        .await
        .unwrap_err();
    assert!(err.is_panic());
    // Dropped here, inside the test's task: a second panic would fail it.
    drop(err);
}

#[test]
fn a_block_on_timeout_panic_hands_back_its_payload() {
    #[derive(Debug, PartialEq)]
    struct Code(u8);
    let err = colorseam::block_on_timeout(
        async { std::panic::panic_any(Code(3)) },
        Duration::from_secs(5),
    )
    .unwrap_err();
    assert!(err.is_panic());
    let payload = err.try_into_panic().expect("a panic keeps its payload");
    assert_eq!(payload.downcast_ref::<Code>(), Some(&Code(3)));
}
