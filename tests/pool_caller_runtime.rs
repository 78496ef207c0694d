//! The caller's world inside a job: the closure runs with the submitting
//! caller's runtime entered, as a `spawn_blocking` closure does, and with
//! the bridge runtime where that runtime is unknown (a detached job) or
//! gone.

mod common;

use std::sync::Arc;
use std::time::Duration;

use colorseam::BlockingPool;
use common::Gate;
use tokio::runtime::Handle;

const LIMIT: Duration = Duration::from_secs(20);

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What a closure sees of tokio: the current runtime's id, a spawned task's
/// value, and a file read with `tokio::fs`, each driven with the current
/// handle's `block_on` the way a `spawn_blocking` closure would.
fn tokio_world(path: std::path::PathBuf) -> (tokio::runtime::Id, u32, Vec<u8>) {
    let handle = Handle::current();
    let task = tokio::spawn(async { 7 });
    let spawned = handle.block_on(task).expect("the spawned task ran");
    let bytes = handle
        .block_on(tokio::fs::read(path))
        .expect("tokio::fs works");
    (handle.id(), spawned, bytes)
}

fn a_file(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("colorseam-{name}-{}", std::process::id()));
    std::fs::write(&path, b"caller's world").unwrap();
    path
}

#[test]
fn tokio_spawn_handle_current_and_fs_work_in_an_offloaded_closure_as_in_spawn_blocking() {
    let pool = BlockingPool::builder()
        .name("caller-world")
        .build()
        .unwrap();
    let path = a_file("world");
    for (flavor, rt) in [
        ("multi-thread", multi_thread()),
        ("current-thread", current_thread()),
    ] {
        let caller = rt.handle().id();
        let (baseline, in_job) = rt.block_on(async {
            let p = path.clone();
            let baseline = tokio::task::spawn_blocking(move || tokio_world(p))
                .await
                .unwrap();
            let p = path.clone();
            let in_job = pool.offload(move || tokio_world(p)).await.unwrap();
            (baseline, in_job)
        });
        assert_eq!(baseline.0, caller, "{flavor}: spawn_blocking's baseline");
        assert_eq!(
            in_job, baseline,
            "{flavor}: the job sees what spawn_blocking sees"
        );
    }
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_job_started_under_a_runtime_that_then_shuts_down_blocks_on_the_bridge() {
    let pool = BlockingPool::builder().name("caller-gone").build().unwrap();
    let gate = Arc::new(Gate::new());
    let (tx, rx) = std::sync::mpsc::channel();
    let rt = multi_thread();
    let dead = rt.handle().id();
    let g = gate.clone();
    let (started_tx, started) = std::sync::mpsc::channel();
    // Made with the runtime entered, kept (neither polled nor dropped) so
    // the job is not cancelled.
    let entered = rt.enter();
    let offload = pool.offload(move || {
        let _ = started_tx.send(());
        g.wait(LIMIT);
        let result = colorseam::block_on(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Handle::current().id()
        });
        let _ = tx.send(result);
    });
    drop(entered);
    started.recv_timeout(LIMIT).expect("the job started");
    drop(rt);
    gate.open();
    let ran_on = rx
        .recv_timeout(LIMIT)
        .expect("the job reported")
        .expect("block_on inside the job after its runtime shut down");
    assert_ne!(ran_on, dead, "polled against the runtime that is gone");
    drop(offload);
}

#[test]
fn a_job_that_starts_after_its_runtime_shut_down_enters_the_bridge() {
    let pool = BlockingPool::builder()
        .name("caller-gone-before")
        .max_threads(1)
        .build()
        .unwrap();
    let gate = Arc::new(Gate::new());
    let (tx, rx) = std::sync::mpsc::channel();
    let rt = multi_thread();
    let dead = rt.handle().id();
    let g = gate.clone();
    let path = a_file("gone-before");
    let p = path.clone();
    let (first, second) = rt.block_on(async {
        let first = pool.offload(move || g.wait(LIMIT));
        let second = pool.offload(move || {
            let _ = tx.send(tokio_world(p));
        });
        (first, second)
    });
    drop(rt);
    gate.open();
    let (id, spawned, bytes) = rx.recv_timeout(LIMIT).expect("the second job ran");
    assert_ne!(id, dead, "entered the runtime that is gone");
    assert_eq!((spawned, &bytes[..]), (7, &b"caller's world"[..]));
    drop((first, second));
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_detached_job_runs_with_the_bridge_entered_wherever_it_was_detached_from() {
    let pool = BlockingPool::builder()
        .name("caller-detached")
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let report = move |tx: std::sync::mpsc::Sender<_>| {
        move || {
            let entered = Handle::try_current().map(|h| h.id()).ok();
            let blocked = colorseam::block_on(async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                "slept"
            });
            let _ = tx.send((entered, blocked.map_err(|e| e.to_string())));
        }
    };
    // From a plain thread: no runtime of the caller's at all.
    pool.detach(report(tx.clone())).unwrap();
    let (entered, blocked) = rx.recv_timeout(LIMIT).unwrap();
    assert!(entered.is_some(), "no runtime entered in a detached job");
    assert_eq!(blocked.as_deref(), Ok("slept"));
    let bridge = entered;

    // From a runtime that shuts down before the job runs.
    let gate = Arc::new(Gate::new());
    let g = gate.clone();
    pool.detach(move || g.wait(LIMIT)).unwrap();
    let rt = current_thread();
    let dead = rt.handle().id();
    rt.block_on(async { pool.detach(report(tx.clone())) })
        .unwrap();
    drop(rt);
    gate.open();
    let (entered, blocked) = rx.recv_timeout(LIMIT).unwrap();
    assert_ne!(entered, Some(dead));
    assert_eq!(entered, bridge, "the same bridge as from a plain thread");
    assert_eq!(blocked.as_deref(), Ok("slept"));
}

#[test]
fn a_nested_offload_made_in_a_job_runs_in_the_outer_callers_runtime_too() {
    let pool = BlockingPool::builder()
        .name("caller-nested")
        .max_threads(2)
        .build()
        .unwrap();
    let rt = multi_thread();
    let caller = rt.handle().id();
    let inner_pool = pool.clone();
    let seen = rt.block_on(async {
        pool.offload(move || {
            let outer = Handle::current().id();
            // Made on the pool thread, where the caller's runtime is entered.
            let inner = colorseam::block_on(
                inner_pool.offload_timeout(|| Handle::current().id(), Duration::from_secs(10)),
            );
            (outer, inner.map(|r| r.map_err(|e| e.to_string())))
        })
        .await
        .unwrap()
    });
    assert_eq!(seen.0, caller);
    assert_eq!(
        seen.1
            .expect("block_on in the job")
            .expect("the nested job"),
        caller
    );
}
