//! `guard::assert_blocking_allowed()`: silent wherever blocking is fine, a
//! violation (panic or warning, by policy) from async code. One test, run
//! in order, because the policy is process-wide.

use colorseam::guard::{self, Policy};

fn blocking_function() -> &'static str {
    guard::assert_blocking_allowed();
    "blocked safely"
}

#[test]
fn the_guard_is_silent_where_blocking_is_fine_and_loud_in_async_code() {
    // Debug builds default to panicking.
    assert_eq!(
        guard::policy(),
        if cfg!(debug_assertions) {
            Policy::Panic
        } else {
            Policy::Warn
        }
    );
    guard::set_policy(Policy::Panic);

    // Silent: plain thread, pool thread, spawn_blocking thread, and a future
    // driven by colorseam's block_on on the caller's own thread.
    assert_eq!(blocking_function(), "blocked safely");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(
            colorseam::offload(blocking_function).await.unwrap(),
            "blocked safely"
        );
        assert_eq!(
            tokio::task::spawn_blocking(blocking_function)
                .await
                .unwrap(),
            "blocked safely"
        );
    });
    assert_eq!(
        colorseam::block_on(async { blocking_function() }).unwrap(),
        "blocked safely"
    );
    assert_eq!(guard::violations(), 0);

    // Loud: an async task on a multi-thread worker, and a current-thread
    // runtime's block_on.
    let panicked = rt.block_on(async { tokio::spawn(async { blocking_function() }).await });
    let message = panicked.unwrap_err().into_panic();
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted message");
    assert!(message.contains("tests/guard.rs"), "{message}");
    assert!(message.contains("colorseam::offload"), "{message}");
    let current = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        current.block_on(async { blocking_function() })
    }));
    assert!(caught.is_err());
    assert_eq!(guard::violations(), 2);

    // Warn: reported, counted, and the call goes on.
    guard::set_policy(Policy::Warn);
    let value = rt.block_on(async { tokio::spawn(async { blocking_function() }).await });
    assert_eq!(value.unwrap(), "blocked safely");
    assert_eq!(guard::violations(), 3);

    // Ignore: counted only.
    guard::set_policy(Policy::Ignore);
    current.block_on(async { blocking_function() });
    assert_eq!(guard::violations(), 4);
}
