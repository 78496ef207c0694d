//! A legacy parser that hangs on one input and crashes on another, called
//! two ways: through a `BlockingPool` (threads), then through a
//! `ProcessPool` (worker processes).
//!
//! `parse` stands in for a vendor PDF or OCR library: `b"hang"` makes it
//! spin forever (no syscall, no way to interrupt it), `b"crash"` makes it
//! abort the process, as a segfault or a failed assertion in C would, and
//! anything else parses.
//!
//! 1. **Threads.** In a child process (this example run again with
//!    `--threads`, so the demonstration cannot take this one down), the
//!    service parses `hang` with a 200 ms deadline: the caller is released,
//!    but the thread spins on, abandoned, for the life of the process. Then
//!    `crash`: the abort ends the whole service, every other request with
//!    it. The parent prints what the child said and how it died.
//! 2. **Processes.** The same three requests through a `ProcessPool`: the
//!    hang's worker is killed at the deadline and replaced, the crash is a
//!    typed error with the signal, and the service goes on.
//!
//! Every figure is measured on the spot. Run it with
//!
//! ```text
//! cargo run --release --features process --example isolate_parser
//! ```
//!
//! It takes about a second.

use std::process::Command;
use std::time::{Duration, Instant};

use colorseam::BlockingPool;
use colorseam::process::{Functions, ProcessPool};

/// The "vendor parser".
fn parse(input: &[u8]) -> Vec<u8> {
    match input {
        b"hang" => {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        b"crash" => std::process::abort(),
        page => format!("parsed {} bytes", page.len()).into_bytes(),
    }
}

const DEADLINE: Duration = Duration::from_millis(200);

fn main() {
    // First thing: in a worker process this runs the worker and never
    // returns, so nothing below runs there.
    Functions::new().add("parse", parse).init();
    if std::env::args().any(|a| a == "--threads") {
        through_threads();
        return;
    }
    println!("1. through a BlockingPool (threads), in a child process:\n");
    let exe = std::env::current_exe().expect("the path of this example");
    let child = Command::new(exe)
        .arg("--threads")
        .output()
        .expect("the child process");
    for line in String::from_utf8_lossy(&child.stdout).lines() {
        println!("   child: {line}");
    }
    use std::os::unix::process::ExitStatusExt;
    match (child.status.code(), child.status.signal()) {
        (_, Some(signal)) => println!(
            "   the child died of signal {signal}: the crash took the whole service down, with \
             every request in flight\n"
        ),
        (Some(code), _) => println!("   the child exited with {code}\n"),
        _ => println!("   the child ended somehow\n"),
    }

    println!("2. through a ProcessPool (worker processes):\n");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let pool = ProcessPool::builder()
        .name("parsers")
        .max_workers(2)
        .build()
        .expect("a process pool: init was called above");
    runtime.block_on(async {
        for input in [&b"hang"[..], b"crash", b"page one"] {
            let started = Instant::now();
            let outcome = pool.call_timeout("parse", input.to_vec(), DEADLINE).await;
            let took = started.elapsed();
            match outcome {
                Ok(out) => println!(
                    "   {:?}: {:?} in {took:.1?}",
                    String::from_utf8_lossy(input),
                    String::from_utf8_lossy(&out)
                ),
                Err(e) => {
                    println!("   {:?}: {e}", String::from_utf8_lossy(input));
                    println!(
                        "      timeout {}, killed {}, crash {}, signal {:?}",
                        e.is_timeout(),
                        e.is_killed(),
                        e.is_crash(),
                        e.signal()
                    );
                }
            }
        }
    });
    let m = pool.metrics();
    println!(
        "\n   pool: {} worker processes started, {} killed, {} crashed, {} calls completed, {} \
         workers alive now (at most 2; replacements start as soon as the dead are reaped)",
        m.started, m.killed, m.crashed, m.pool.outcomes.completed, m.workers
    );
    let report = pool.shutdown_blocking(colorseam::pool::ShutdownOptions::run_queued(
        Duration::from_secs(5),
    ));
    println!(
        "   shutdown in {:.1?}: every worker reaped ({} left)",
        report.elapsed,
        pool.metrics().workers
    );
    println!(
        "\nWith threads the hang costs a spinning thread for good and the crash costs the \
         service;\nwith processes both are one call's typed error and the service goes on."
    );
}

/// The child's side of part 1: the parser on threads.
fn through_threads() {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let pool = BlockingPool::builder()
        .name("parsers")
        .max_threads(2)
        .build()
        .expect("a valid pool");
    runtime.block_on(async {
        let err = pool
            .offload_timeout(|| parse(b"hang"), DEADLINE)
            .await
            .expect_err("the hang outlives its deadline");
        println!("\"hang\": {err}");
        let m = pool.metrics();
        println!(
            "pool threads: {} in all, {} abandoned and still spinning (a thread cannot be killed)",
            m.threads.total, m.threads.abandoned
        );
        let ok = pool
            .offload(|| parse(b"page one"))
            .await
            .expect("a page parses");
        println!("\"page one\": {:?}", String::from_utf8_lossy(&ok));
        println!("\"crash\": parsing...");
        // The output so far must reach the parent before the abort.
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = pool.offload(|| parse(b"crash")).await;
        println!("never printed: the process is gone");
    });
}
