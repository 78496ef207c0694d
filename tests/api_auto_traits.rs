//! The auto traits of every public type, asserted so that a change cannot
//! drop one silently (the shape of tokio's `async_send_sync` test): handles
//! and values are `Send + Sync + Unpin + UnwindSafe + RefUnwindSafe`; public
//! futures are `Send + Unpin` whenever what they carry is, like tokio's
//! `JoinHandle`, so `select!` on `&mut fut` in a loop compiles.

#![allow(dead_code)]

use std::panic::{RefUnwindSafe, UnwindSafe};

fn send_sync<T: Send + Sync>() {}
fn unpin<T: Unpin>() {}
fn unwind_safe<T: UnwindSafe + RefUnwindSafe>() {}
/// A value or handle: all five.
fn value<T: Send + Sync + Unpin + UnwindSafe + RefUnwindSafe>() {}
/// A future: `Send` and `Unpin` (tokio's futures are not all `Sync`).
fn future<F: std::future::Future + Send + Unpin>() {}

/// What a job returns in these checks: `Send + 'static`, nothing more.
struct Value;
/// A resource held by the adapters: `Send + 'static`, nothing more.
struct Resource;

#[test]
fn pool_handles_and_their_values_are_send_sync_unpin_and_unwind_safe() {
    value::<colorseam::BlockingPool>();
    // A builder holds the error sink (`dyn Fn`): not unwind safe, and it
    // needs not be.
    send_sync::<colorseam::pool::Builder>();
    unpin::<colorseam::pool::Builder>();
    value::<colorseam::pool::ShutdownOptions>();
    value::<colorseam::pool::ShutdownReport>();
    value::<colorseam::pool::QueuedWork>();
    value::<colorseam::metrics::PoolMetrics>();
    value::<colorseam::metrics::ThreadMetrics>();
    value::<colorseam::metrics::OutcomeCounters>();
    value::<colorseam::metrics::Latency>();
    value::<colorseam::metrics::StuckCall>();
    value::<colorseam::metrics::InterruptCounters>();
    send_sync::<colorseam::job::JobContext>();
    unpin::<colorseam::job::JobContext>();
    value::<colorseam::job::Cancelled>();
    // A registered interrupter's guard: it may be dropped on any thread.
    send_sync::<colorseam::job::OnCancel>();
    unpin::<colorseam::job::OnCancel>();
    send_sync::<colorseam::interrupt::SharedChild>();
}

#[test]
fn errors_are_send_sync_unpin_and_unwind_safe() {
    value::<colorseam::Error>();
    value::<colorseam::ErrorKind>();
    value::<colorseam::Phase>();
    value::<colorseam::ConfigError>();
    // `?` into the usual boxed error and `anyhow`-style wrappers.
    fn boxes(e: colorseam::Error) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        Box::new(e)
    }
    let _ = boxes;
}

#[test]
fn offload_futures_are_send_and_unpin() {
    future::<colorseam::Offload<Value>>();
    future::<colorseam::Batch<Value>>();
    future::<colorseam::FailFastBatch<Value>>();
    future::<colorseam::pool::Shutdown>();
    // Not `Sync`: a call waiting for room holds tokio's boxed acquire
    // future, which is `Send` only. Nothing polls a future through `&`.
}

#[test]
fn block_on_context_values_are_send_sync_unpin_and_unwind_safe() {
    value::<colorseam::CallerContext>();
    value::<colorseam::RuntimeFlavor>();
    value::<colorseam::guard::Policy>();
}

#[test]
fn adapters_are_send_and_sync_and_their_calls_are_send_and_unpin() {
    send_sync::<colorseam::adapter::ForAsync<Resource>>();
    unpin::<colorseam::adapter::ForAsync<Resource>>();
    send_sync::<colorseam::adapter::ForAsyncBuilder>();
    send_sync::<colorseam::adapter::ThreadBound<Resource>>();
    unpin::<colorseam::adapter::ThreadBound<Resource>>();
    value::<colorseam::adapter::PanicPolicy>();
    future::<colorseam::adapter::AdapterCall<Value>>();
    send_sync::<colorseam::adapter::ForSync<std::sync::Mutex<u8>>>();
    unpin::<colorseam::adapter::Unblock<std::fs::File>>();
    fn send<T: Send>() {}
    send::<colorseam::adapter::Unblock<std::fs::File>>();
    send::<colorseam::adapter::UnblockIter<std::vec::IntoIter<u8>>>();
    unpin::<colorseam::adapter::UnblockIter<std::vec::IntoIter<u8>>>();
    send::<colorseam::adapter::BlockingIo<tokio::net::TcpStream>>();
    send::<colorseam::adapter::BlockingStream<futures::stream::Empty<u8>>>();
    send_sync::<colorseam::adapter::ThreadBoundBuilder<Resource>>();
    send_sync::<colorseam::adapter::ForSyncBuilder>();
    value::<colorseam::adapter::UnblockBuilder>();
    future::<colorseam::adapter::GetMut<'static, std::fs::File>>();
    future::<colorseam::adapter::IntoInner<std::fs::File>>();
}

#[test]
fn detection_handles_and_reports_are_send_and_sync() {
    send_sync::<colorseam::detect::Watchdog>();
    send_sync::<colorseam::detect::WatchdogBuilder>();
    value::<colorseam::detect::StallReport>();
    value::<colorseam::detect::StallState>();
    value::<colorseam::detect::TaskStats>();
    value::<colorseam::detect::ThreadWait>();
    value::<colorseam::detect::Syscall>();
    value::<colorseam::detect::FdTarget>();
    send_sync::<colorseam::detect::LagMonitor>();
    send_sync::<colorseam::detect::DenyBlocking>();
    unpin::<colorseam::detect::DenyBlocking>();
    value::<colorseam::detect::HiddenBlocking>();
    // Instrumented carries the future's traits through, as tokio's
    // wrappers do.
    future::<colorseam::detect::Instrumented<std::future::Ready<u8>>>();
    unwind_safe::<colorseam::detect::Instrumented<std::future::Ready<u8>>>();
}

#[cfg(all(feature = "process", unix))]
#[test]
fn process_pool_handles_and_calls_are_send_sync_and_unpin() {
    send_sync::<colorseam::process::ProcessPool>();
    unpin::<colorseam::process::ProcessPool>();
    send_sync::<colorseam::process::Builder>();
    value::<colorseam::process::ProcessMetrics>();
    future::<colorseam::process::Call>();
    future::<colorseam::process::Shutdown>();
    future::<colorseam::process::CallSerde<u8>>();
    send_sync::<colorseam::process::Functions>();
}

/// The reason `Unpin` matters: `select!` on `&mut call` in a loop, the way
/// one waits on a `JoinHandle` while doing something else.
#[tokio::test]
async fn select_on_a_borrowed_offload_in_a_loop_compiles_and_completes() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let mut call = colorseam::offload_timeout(
        move || rx.recv_timeout(std::time::Duration::from_secs(20)).is_ok(),
        std::time::Duration::from_secs(30),
    );
    let mut ticks = 0u32;
    let mut tx = Some(tx);
    let got = loop {
        tokio::select! {
            result = &mut call => break result.unwrap(),
            () = tokio::time::sleep(std::time::Duration::from_millis(1)) => {
                ticks += 1;
                if ticks == 3 {
                    let _ = tx.take().map(|tx| tx.send(()));
                }
            }
        }
    };
    assert!(got, "the job saw the message sent from the loop");
    assert!(ticks >= 3);
}
