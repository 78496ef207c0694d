//! A SQLite query that would run for minutes, stopped at its deadline.
//!
//! A `rusqlite::Connection` is `Send` but not `Sync`, so it lives on one
//! thread behind a `ThreadBound`, and `interrupt_with` gives the adapter
//! what stops a query from outside: the connection's `InterruptHandle`. The
//! example runs, three times:
//!
//! 1. a recursive CTE counting to 10^11 (minutes of work) under a 200 ms
//!    deadline: the caller gets its timeout error at 200 ms, saying an
//!    interrupt was sent; SQLite stops the query (`interrupted`) a few
//!    milliseconds later and the thread returns;
//! 2. the next call at once, served by a fresh thread and connection;
//!
//! and then the same query without an interrupter, for contrast: the caller
//! is released at the deadline just the same, but the thread stays stuck
//! in the query (the adapter's stuck count says 1) until the example ends.
//!
//! Every figure is measured on the spot. Run it with
//!
//! ```text
//! cargo run --release --example sqlite_interrupt
//! ```

use std::sync::mpsc;
use std::time::{Duration, Instant};

use colorseam::adapter::ThreadBound;

/// Counts to 10^11 one row at a time: minutes of work for SQLite.
const ENDLESS: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000000) SELECT count(*) FROM c";
const DEADLINE: Duration = Duration::from_millis(200);

fn open() -> rusqlite::Connection {
    rusqlite::Connection::open_in_memory().expect("SQLite opens an in-memory database")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let db = ThreadBound::builder("sqlite", open)
        .default_timeout(DEADLINE)
        .interrupt_with(|conn: &rusqlite::Connection| {
            let handle = conn.get_interrupt_handle();
            move || handle.interrupt()
        })
        .build()
        .expect("a valid adapter name");
    let version: String = db
        .call(|conn| conn.query_row("SELECT sqlite_version()", [], |row| row.get(0)))
        .await
        .expect("the call runs")
        .expect("SQLite answers");
    println!("SQLite {version}, a {DEADLINE:?} deadline per call\n");

    println!("with interrupt_with:");
    for round in 1..=3 {
        let (tx, rx) = mpsc::channel();
        let called = Instant::now();
        let err = db
            .call(move |conn| {
                let outcome = conn.query_row(ENDLESS, [], |row| row.get::<_, i64>(0));
                let _ = tx.send((Instant::now(), outcome));
            })
            .await
            .expect_err("the query cannot finish in time");
        let released = called.elapsed();
        let next = Instant::now();
        let one: i64 = db
            .call(|conn| conn.query_row("SELECT 1", [], |row| row.get(0)))
            .await
            .expect("the next call is served")
            .expect("SQLite answers");
        let next_took = next.elapsed();
        let (returned, outcome) = tokio::task::spawn_blocking(move || rx.recv())
            .await
            .expect("the waiting task runs")
            .expect("the interrupted query returns");
        let stopped = returned.saturating_duration_since(called + DEADLINE);
        println!("  round {round}: caller released after {released:.1?}: {err}");
        println!(
            "           query stopped {stopped:.1?} after the deadline ({}), next call served in {next_took:.1?} (SELECT 1 = {one})",
            match outcome {
                Ok(n) => format!("it finished?! {n}"),
                Err(e) => format!("{e}"),
            }
        );
    }
    // Each interrupted call retired its thread; the one serving now is fresh.
    println!(
        "  the serving thread: {} stuck; {} SQLite threads left in the process\n",
        db.metrics().threads.abandoned,
        sqlite_threads("sqlite-")
    );

    println!("without an interrupter:");
    let plain = ThreadBound::builder("sqlite-plain", open)
        .default_timeout(DEADLINE)
        .build()
        .expect("a valid adapter name");
    let called = Instant::now();
    let err = plain
        .call(|conn| conn.query_row(ENDLESS, [], |row| row.get::<_, i64>(0)))
        .await
        .expect_err("the query cannot finish in time");
    println!("  caller released after {:.1?}: {err}", called.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refused = plain
        .call(|conn| conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0)))
        .await;
    println!(
        "  500 ms later the query still runs; the next call {}",
        match refused {
            Ok(_) =>
                "was served by a fresh thread (one thread stays stuck in the query)".to_owned(),
            Err(e) => format!("failed: {e}"),
        }
    );
    println!(
        "  {} SQLite threads left in the process, one stuck in the query",
        sqlite_threads("sqlite-plain")
    );
    // The stuck thread is never joined: returning from `main` ends it.
}

/// The OS threads whose name starts with `prefix`, from `/proc` (Linux; 0
/// elsewhere).
fn sqlite_threads(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(Result::ok)
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .filter(|name| name.starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}
