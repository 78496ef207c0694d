//! Every error reads as one lower-case line that says what happened: a job
//! released by shutdown while it ran says so, and a panic without a string
//! payload has no message.

use std::time::Duration;

use colorseam::BlockingPool;
use colorseam::pool::ShutdownOptions;

mod common;
use common::Gate;

const LONG: Duration = Duration::from_secs(20);

fn assert_one_lower_case_line(text: &str) {
    assert!(!text.contains('\n'), "one line: {text}");
    let first = text.chars().next().expect("not empty");
    assert!(first.is_lowercase(), "lower case: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_released_by_shutdown_says_it_was_released_while_running() {
    let pool = BlockingPool::builder()
        .name("em-released")
        .max_threads(1)
        .build()
        .unwrap();
    let gate = Gate::new();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let g = gate.clone();
    let running = tokio::spawn(pool.offload(move || {
        let _ = started_tx.send(());
        g.wait(LONG);
    }));
    started_rx.recv_timeout(LONG).unwrap();
    let queued = tokio::spawn(pool.offload(|| ()));
    let report = pool
        .shutdown(ShutdownOptions::cancel_queued(Duration::from_millis(50)))
        .await;
    assert_eq!(report.abandoned, 1, "{report:?}");
    let err = running.await.unwrap().unwrap_err();
    assert!(err.is_shutdown(), "{err}");
    assert_eq!(err.phase(), Some(colorseam::Phase::Running));
    let text = err.to_string();
    assert_one_lower_case_line(&text);
    assert!(
        text.starts_with("offload was released by shutdown after "),
        "{text}"
    );
    assert!(
        text.contains(" while running in pool \"em-released\""),
        "{text}"
    );
    assert!(!text.contains("refused"), "it was accepted and ran: {text}");

    let err = queued.await.unwrap().unwrap_err();
    assert_eq!(err.phase(), Some(colorseam::Phase::Queued));
    let text = err.to_string();
    assert_one_lower_case_line(&text);
    assert!(
        text.starts_with("offload was cancelled by shutdown after "),
        "{text}"
    );
    assert!(text.contains(" while queued in pool"), "{text}");

    // After shutdown, a new call is refused: it never got in.
    let err = pool.offload(|| ()).await.unwrap_err();
    let text = err.to_string();
    assert_one_lower_case_line(&text);
    assert!(
        text.starts_with("offload was refused: the pool is shut down"),
        "{text}"
    );
    gate.open();
}

#[tokio::test(flavor = "current_thread")]
async fn a_panic_with_a_non_string_payload_has_no_message() {
    let pool = BlockingPool::builder().name("em-any").build().unwrap();
    let err = pool
        .offload(|| std::panic::resume_unwind(Box::new(42u8)))
        .await
        .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), None);
    let text = err.to_string();
    assert_one_lower_case_line(&text);
    assert!(text.starts_with("offload panicked after "), "{text}");
    assert!(!text.contains("Box<dyn Any>"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn string_panic_payloads_keep_their_message() {
    let pool = BlockingPool::builder().name("em-str").build().unwrap();
    let err = pool
        .offload(|| std::panic::resume_unwind(Box::new(String::from("owned"))))
        .await
        .unwrap_err();
    assert_eq!(err.panic_message(), Some("owned"));
    assert!(err.to_string().contains("panicked with `owned`"), "{err}");
}

#[test]
fn a_plain_thread_block_on_panicking_with_a_non_string_payload_has_no_message() {
    let err = colorseam::block_on(async { std::panic::resume_unwind(Box::new(7i32)) }).unwrap_err();
    assert!(err.is_panic(), "{err}");
    assert_eq!(err.panic_message(), None);
}
