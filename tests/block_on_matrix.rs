//! The runtime-flavor matrix: every blocking entry point, from every calling
//! context, gives its documented outcome (a value or a typed error), and
//! never panics or hangs (each case runs under a watchdog).

use std::time::Duration;

use colorseam::{BlockingPool, CallerContext, Error};

const WATCHDOG: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    PlainThread,
    MultiThreadWorker,
    CurrentThreadWorker,
    LocalSet,
    PoolThread,
    SpawnBlocking,
}

const ALL: [Ctx; 6] = [
    Ctx::PlainThread,
    Ctx::MultiThreadWorker,
    Ctx::CurrentThreadWorker,
    Ctx::LocalSet,
    Ctx::PoolThread,
    Ctx::SpawnBlocking,
];

/// Runs `f` in `ctx` on a fresh thread and returns its result, failing the
/// test if it does not come back within the watchdog's limit.
fn in_context<R: Send + 'static>(ctx: Ctx, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = match ctx {
            Ctx::PlainThread => f(),
            Ctx::MultiThreadWorker => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async { tokio::spawn(async move { f() }).await.unwrap() })
            }
            Ctx::CurrentThreadWorker => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move { f() })
            }
            Ctx::LocalSet => {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    tokio::task::spawn_local(async move { f() }).await.unwrap()
                })
            }
            Ctx::PoolThread => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                let pool = BlockingPool::builder().name("matrix").build().unwrap();
                rt.block_on(async move { pool.offload(f).await }).unwrap()
            }
            Ctx::SpawnBlocking => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async { tokio::task::spawn_blocking(f).await })
                    .unwrap()
            }
        };
        let _ = tx.send(result);
    });
    rx.recv_timeout(WATCHDOG)
        .unwrap_or_else(|_| panic!("{ctx:?}: no answer within {WATCHDOG:?}: a hang or a panic"))
}

/// A future that needs tokio's timer.
async fn needs_timer() -> &'static str {
    tokio::time::sleep(Duration::from_millis(2)).await;
    "timer fired"
}

fn blocking_is_fine(ctx: Ctx) -> bool {
    matches!(ctx, Ctx::PlainThread | Ctx::PoolThread | Ctx::SpawnBlocking)
}

fn check(ctx: Ctx, entry: &str, result: Result<&'static str, Error>, expect_value: bool) {
    match result {
        Ok(value) => {
            assert!(
                expect_value,
                "{entry} from {ctx:?} should have been refused"
            );
            assert_eq!(value, "timer fired");
        }
        Err(e) => {
            assert!(!expect_value, "{entry} from {ctx:?} failed: {e}");
            assert!(e.is_async_context(), "{entry} from {ctx:?}: {e}");
            assert!(
                e.location().file().ends_with("block_on_matrix.rs"),
                "the error names the caller's file: {e}"
            );
            assert!(e.to_string().contains(".await"), "{e}");
        }
    }
    eprintln!(
        "matrix: {entry:<18} {ctx:<20?} -> {}",
        if expect_value {
            "value"
        } else {
            "AsyncContext error"
        }
    );
}

#[test]
fn block_on_gives_a_value_where_blocking_is_fine_and_a_typed_error_elsewhere() {
    for ctx in ALL {
        let result = in_context(ctx, || colorseam::block_on(needs_timer()));
        check(ctx, "block_on", result, blocking_is_fine(ctx));
    }
}

#[test]
fn block_on_timeout_gives_a_value_where_blocking_is_fine_and_a_typed_error_elsewhere() {
    for ctx in ALL {
        let result = in_context(ctx, || {
            colorseam::block_on_timeout(needs_timer(), Duration::from_secs(10))
        });
        check(ctx, "block_on_timeout", result, blocking_is_fine(ctx));
    }
}

#[test]
fn block_on_in_place_also_works_on_a_multi_thread_worker_but_never_on_current_thread() {
    for ctx in ALL {
        let result = in_context(ctx, || colorseam::block_on_in_place(needs_timer()));
        let expect_value = blocking_is_fine(ctx) || ctx == Ctx::MultiThreadWorker;
        check(ctx, "block_on_in_place", result, expect_value);
    }
}

#[test]
fn for_sync_call_gives_a_value_where_blocking_is_fine_and_a_typed_error_elsewhere() {
    let client = std::sync::Arc::new(
        colorseam::adapter::ForSync::builder("matrix-client")
            .default_timeout(Duration::from_secs(10))
            .connect(async { "client" })
            .unwrap(),
    );
    for ctx in ALL {
        let client = client.clone();
        let result = in_context(ctx, move || client.call(|_c| needs_timer()));
        check(ctx, "ForSync::call", result, blocking_is_fine(ctx));
    }
}

#[test]
fn blocking_stream_gives_items_where_blocking_is_fine_and_a_typed_error_elsewhere() {
    for ctx in ALL {
        let result = in_context(ctx, || {
            let stream = futures::stream::once(needs_timer());
            let mut items = colorseam::adapter::BlockingStream::new(stream);
            let first = items.next().expect("one item or one error");
            assert!(
                items.next().is_none(),
                "exhausted after its item or its error"
            );
            first
        });
        check(ctx, "BlockingStream", result, blocking_is_fine(ctx));
    }
}

#[test]
fn blocking_io_reads_where_blocking_is_fine_and_fails_with_a_typed_error_elsewhere() {
    use std::io::Read;
    for ctx in ALL {
        let result = in_context(ctx, || {
            let mut io = colorseam::adapter::BlockingIo::new(&b"timer fired"[..]);
            let mut text = String::new();
            match io.read_to_string(&mut text) {
                Ok(_) => Ok("timer fired"),
                Err(e) => {
                    let inner = e
                        .into_inner()
                        .and_then(|inner| inner.downcast::<Error>().ok())
                        .expect("the io error carries a colorseam error");
                    Err(*inner)
                }
            }
        });
        check(ctx, "BlockingIo", result, blocking_is_fine(ctx));
    }
}

#[test]
fn context_reports_where_the_code_runs() {
    let seen: Vec<(Ctx, CallerContext)> = ALL
        .into_iter()
        .map(|ctx| (ctx, in_context(ctx, colorseam::context)))
        .collect();
    for (ctx, context) in seen {
        eprintln!("context: {ctx:<20?} -> {context:?}");
        match ctx {
            Ctx::PlainThread => assert_eq!(context, CallerContext::NoRuntime),
            Ctx::PoolThread => assert_eq!(
                context,
                CallerContext::PoolThread {
                    pool: "matrix".into()
                }
            ),
            Ctx::SpawnBlocking => assert!(
                matches!(context, CallerContext::BlockingThread { .. }),
                "{context:?}"
            ),
            Ctx::MultiThreadWorker => assert_eq!(
                context,
                CallerContext::AsyncWorker {
                    flavor: colorseam::RuntimeFlavor::MultiThread
                }
            ),
            Ctx::CurrentThreadWorker | Ctx::LocalSet => assert_eq!(
                context,
                CallerContext::AsyncWorker {
                    flavor: colorseam::RuntimeFlavor::CurrentThread
                }
            ),
        }
        assert_eq!(context.is_async(), !blocking_is_fine(ctx));
    }
}

#[test]
fn a_future_that_is_not_send_runs_from_a_plain_thread() {
    let value = colorseam::block_on(async {
        let not_send = std::rc::Rc::new(5);
        tokio::time::sleep(Duration::from_millis(1)).await;
        *not_send
    })
    .unwrap();
    assert_eq!(value, 5);
}

#[test]
fn a_panicking_future_becomes_an_error_and_the_thread_goes_on() {
    let err = colorseam::block_on(async {
        if true {
            panic!("inside the future");
        }
    })
    .unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("inside the future"));
    assert_eq!(colorseam::block_on(async { 1 }).unwrap(), 1);
    let spawned = async {
        if true {
            panic!("spawned");
        }
    };
    let err = colorseam::block_on_timeout(spawned, Duration::from_secs(5)).unwrap_err();
    assert_eq!(err.panic_message(), Some("spawned"));
}

#[test]
fn block_on_called_from_inside_a_future_it_drives_is_refused() {
    let inner = colorseam::block_on(async { colorseam::block_on(async { 1 }) }).unwrap();
    let err = inner.unwrap_err();
    assert!(err.is_async_context(), "{err}");
}
