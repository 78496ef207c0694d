//! The bridge runtime: one caller's misbehaving future must not stall the
//! timers and IO of other plain-thread `block_on` callers.

mod common;

use std::time::{Duration, Instant};

use common::Gate;

/// The bridge is one per process: tests that block its workers take turns,
/// or one test's blockers would wait for another's to let go.
static BRIDGE_BLOCKED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Starts `n` plain threads whose `block_on_timeout` futures block their
/// runtime thread (sync code called from async code) until `gate` opens,
/// and returns once every one of them is blocking. The caller holds
/// [`BRIDGE_BLOCKED`].
fn block_bridge_workers(n: usize, gate: &Gate) -> Vec<std::thread::JoinHandle<()>> {
    let (running_tx, running) = std::sync::mpsc::channel();
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (gate, running_tx) = (gate.clone(), running_tx.clone());
            std::thread::spawn(move || {
                let _ = colorseam::block_on_timeout(
                    async move {
                        running_tx.send(()).unwrap();
                        gate.wait(Duration::from_secs(10)); // blocks its worker
                    },
                    Duration::from_secs(20),
                );
            })
        })
        .collect();
    for _ in 0..n {
        running
            .recv_timeout(Duration::from_secs(10))
            .expect("the blocking futures start");
    }
    threads
}

#[test]
fn futures_blocking_inside_block_on_timeout_do_not_stall_plain_block_on_timers() {
    let _turn = BRIDGE_BLOCKED.lock().unwrap_or_else(|e| e.into_inner());
    let gate = Gate::new();
    let blockers = block_bridge_workers(2, &gate);
    let started = Instant::now();
    colorseam::block_on(async { tokio::time::sleep(Duration::from_millis(1)).await }).unwrap();
    let slept = started.elapsed();
    gate.open();
    for t in blockers {
        t.join().unwrap();
    }
    assert!(
        slept < Duration::from_secs(2),
        "a 1 ms sleep took {slept:?} while two other callers' futures blocked"
    );
}

#[test]
fn futures_blocking_inside_block_on_timeout_do_not_stall_plain_block_on_io() {
    let _turn = BRIDGE_BLOCKED.lock().unwrap_or_else(|e| e.into_inner());
    let gate = Gate::new();
    let blockers = block_bridge_workers(2, &gate);
    let started = Instant::now();
    let echoed = colorseam::block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut client = tokio::net::TcpStream::connect(listener.local_addr()?).await?;
        let (mut server, _) = listener.accept().await?;
        client.write_all(b"ping").await?;
        let mut got = [0u8; 4];
        server.read_exact(&mut got).await?;
        std::io::Result::Ok(got)
    })
    .unwrap();
    let took = started.elapsed();
    gate.open();
    for t in blockers {
        t.join().unwrap();
    }
    assert_eq!(&echoed.unwrap(), b"ping");
    assert!(took < Duration::from_secs(2), "a local echo took {took:?}");
}

#[test]
fn a_blocking_thread_of_a_current_thread_runtime_polls_against_the_bridge_as_documented() {
    // The rustdoc table of `block_on`: such a thread cannot know whether
    // that runtime is being driven, so the future runs against the bridge.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let outer = rt.handle().id();
    let inner = rt.block_on(async {
        tokio::task::spawn_blocking(|| {
            colorseam::block_on(async { tokio::runtime::Handle::current().id() }).unwrap()
        })
        .await
        .unwrap()
    });
    assert_ne!(inner, outer);
    // And on a thread that merely entered one nobody drives, timers work.
    let _entered = rt.enter();
    let started = Instant::now();
    colorseam::block_on(async { tokio::time::sleep(Duration::from_millis(5)).await }).unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn futures_blocking_inside_block_on_timeout_do_not_stall_a_pool_threads_block_on_timers() {
    let _turn = BRIDGE_BLOCKED.lock().unwrap_or_else(|e| e.into_inner());
    let gate = Gate::new();
    let blockers = block_bridge_workers(2, &gate);
    // Submitted from a current-thread runtime: the job's `block_on` cannot
    // use that runtime, so it polls against the bridge.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pool = colorseam::BlockingPool::builder()
        .name("iso-pool")
        .build()
        .unwrap();
    let slept = rt
        .block_on(pool.offload(|| {
            let started = Instant::now();
            colorseam::block_on(async { tokio::time::sleep(Duration::from_millis(1)).await })
                .unwrap();
            started.elapsed()
        }))
        .unwrap();
    gate.open();
    for t in blockers {
        t.join().unwrap();
    }
    assert!(
        slept < Duration::from_secs(2),
        "a 1 ms sleep took {slept:?}"
    );
}

#[test]
fn block_on_timeout_runs_on_the_callers_multi_thread_runtime_else_on_the_bridge() {
    let on = |rt: tokio::runtime::Runtime| {
        rt.block_on(async {
            tokio::task::spawn_blocking(|| {
                colorseam::block_on_timeout(
                    async { std::thread::current().name().map(str::to_owned) },
                    Duration::from_secs(10),
                )
                .unwrap()
            })
            .await
            .unwrap()
        })
    };
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("caller-rt")
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(on(multi).as_deref(), Some("caller-rt"));
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(on(current).as_deref(), Some("colorseam-bridge"));
}

#[test]
fn futures_blocking_inside_block_on_timeout_do_not_stall_an_offloads_deadline_polled_by_another_executor()
 {
    let _turn = BRIDGE_BLOCKED.lock().unwrap_or_else(|e| e.into_inner());
    let gate = Gate::new();
    let blockers = block_bridge_workers(2, &gate);
    let pool = colorseam::BlockingPool::builder()
        .name("iso-deadline")
        .build()
        .unwrap();
    let (hold, held) = (Gate::new(), Gate::new());
    let h = hold.clone();
    let started = Instant::now();
    // No tokio runtime here: the deadline's timer lives on the bridge.
    let err = pollster::block_on(pool.offload_timeout(
        move || h.wait(Duration::from_secs(10)),
        Duration::from_millis(50),
    ))
    .unwrap_err();
    let released = started.elapsed();
    hold.open();
    held.open();
    gate.open();
    for t in blockers {
        t.join().unwrap();
    }
    assert!(err.is_timeout(), "{err}");
    assert!(
        released < Duration::from_secs(2),
        "a 50 ms deadline released its caller after {released:?}"
    );
}

#[test]
fn futures_blocking_inside_block_on_timeout_do_not_stall_a_deadline_made_inside_a_job() {
    let _turn = BRIDGE_BLOCKED.lock().unwrap_or_else(|e| e.into_inner());
    let gate = Gate::new();
    let blockers = block_bridge_workers(2, &gate);
    let outer = colorseam::BlockingPool::builder()
        .name("iso-outer")
        .build()
        .unwrap();
    let inner = colorseam::BlockingPool::builder()
        .name("iso-inner")
        .build()
        .unwrap();
    let hold = Gate::new();
    let h = hold.clone();
    // Submitted with no runtime: the job runs with the bridge entered, and
    // the deadline of the offload it makes is timed from there.
    let (err, released) = pollster::block_on(outer.offload(move || {
        let started = Instant::now();
        let err = pollster::block_on(inner.offload_timeout(
            move || h.wait(Duration::from_secs(10)),
            Duration::from_millis(50),
        ))
        .unwrap_err();
        (err, started.elapsed())
    }))
    .unwrap();
    hold.open();
    gate.open();
    for t in blockers {
        t.join().unwrap();
    }
    assert!(err.is_timeout(), "{err}");
    assert!(
        released < Duration::from_secs(2),
        "a 50 ms deadline released its caller after {released:?}"
    );
}
