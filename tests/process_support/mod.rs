//! What the process pool tests share: the functions their workers run,
//! a small harness (workers run the test binary again, so its `main` must
//! call `Functions::init` first: these targets have `harness = false`),
//! and /proc helpers that count a process's children.

#![allow(dead_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use colorseam::process::Functions;

/// The functions every process test binary registers.
pub fn functions() -> Functions {
    let functions = Functions::new()
        .add("echo", |input: &[u8]| input.to_vec())
        .add("pid", |_: &[u8]| std::process::id().to_le_bytes().to_vec())
        .add("spin", |_: &[u8]| {
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        })
        .add("sleep_ms", |input: &[u8]| {
            let ms = u64::from_le_bytes(input.try_into().unwrap_or([0; 8]));
            std::thread::sleep(Duration::from_millis(ms));
            Vec::new()
        })
        .add("abort", |_: &[u8]| std::process::abort())
        .add("exit", |input: &[u8]| {
            std::process::exit(i32::from(input.first().copied().unwrap_or(3)))
        })
        .add("segv", |_: &[u8]| {
            // A SIGSEGV without unsafe code: ask the kernel to send it.
            // Twice: std's stack-overflow handler takes the first, finds
            // no fault in a guard page, and puts the default action back.
            for _ in 0..2 {
                let _ = std::process::Command::new("kill")
                    .args(["-SEGV", &std::process::id().to_string()])
                    .status();
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_secs(10));
            Vec::new()
        })
        .add("panic", |_: &[u8]| panic!("the parser gave up"))
        .add_fallible("fallible", |input: &[u8]| {
            if input.is_empty() {
                Err("empty input")
            } else {
                Ok(input.to_vec())
            }
        })
        .add("hog", |_: &[u8]| {
            // Allocates and touches memory until something stops it.
            let mut keep = Vec::new();
            loop {
                let mut chunk = vec![0u8; 16 << 20];
                chunk[0] = 1;
                keep.push(std::hint::black_box(chunk));
            }
        })
        .add("stderr_then_abort", |_: &[u8]| {
            eprintln!("parser: giving up on page 3");
            std::process::abort()
        });
    #[cfg(feature = "process-serde")]
    let functions = functions.add_serde("sum", |numbers: Vec<u64>| -> (u64, usize) {
        (numbers.iter().sum(), numbers.len())
    });
    functions
}

pub type Case = (&'static str, fn());

/// Runs the cases chosen by the command line (plain words filter, as with
/// libtest; `--list` lists; `--exact` matches whole names), each in this
/// process, and prints libtest's lines.
pub fn run(cases: &[Case]) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            for (name, _) in cases {
                println!("{name}: test");
            }
        }
        return ExitCode::SUCCESS;
    }
    let exact = args.iter().any(|a| a == "--exact");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let started = Instant::now();
    let (mut passed, mut failed, mut skipped) = (0, Vec::new(), 0);
    for (name, case) in cases {
        let chosen = filters.is_empty()
            || filters.iter().any(|f| {
                if exact {
                    name == f
                } else {
                    name.contains(f.as_str())
                }
            });
        if !chosen {
            skipped += 1;
            continue;
        }
        let began = Instant::now();
        match catch_unwind(AssertUnwindSafe(case)) {
            Ok(()) => {
                println!("test {name} ... ok ({:.2?})", began.elapsed());
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    let verdict = if failed.is_empty() { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {passed} passed; {} failed; 0 ignored; 0 measured; {skipped} \
         filtered out; finished in {:.2}s\n",
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        for name in failed {
            eprintln!("failed: {name}");
        }
        ExitCode::FAILURE
    }
}

/// One line of `/proc/<pid>/stat`: (state, ppid), or `None` if gone.
pub fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The children of `parent`, with their states, from a scan of /proc.
pub fn children_of(parent: u32) -> Vec<(u32, char)> {
    // A count that cannot be read must fail the test, not pass it.
    let dir = std::fs::read_dir("/proc").expect("/proc lists this machine's processes");
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let (state, ppid) = stat(pid)?;
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}

/// How many children of this process were alive together at one instant:
/// those in two listings of /proc in a row. One listing is not a snapshot
/// (a worker reaped during it and its replacement started after it began
/// can both be in it), but a child in two listings was alive for the whole
/// gap between them, and so were all the others in both.
pub fn children_alive_together() -> usize {
    let me = std::process::id();
    let first: Vec<u32> = children_of(me).into_iter().map(|(pid, _)| pid).collect();
    children_of(me)
        .into_iter()
        .filter(|(pid, _)| first.contains(pid))
        .count()
}

/// True if `pid` has exited: gone from /proc, or a zombie (dead, waiting
/// for whoever is its parent now to reap it).
pub fn is_dead(pid: u32) -> bool {
    match stat(pid) {
        None => true,
        Some((state, _)) => state == 'Z' || state == 'X',
    }
}

/// Polls `condition` until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
