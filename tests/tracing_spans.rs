//! With the `tracing` feature, the caller's span is entered on the pool
//! thread for the job's duration, and carried through `block_on`.
#![cfg(feature = "tracing")]

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A minimal subscriber: numbers spans, tracks each thread's entered span,
/// and records, for every event with a `probe` field, the span it was in.
#[derive(Default)]
struct SpanRecorder {
    next: AtomicU64,
    metadata: Mutex<std::collections::HashMap<u64, &'static Metadata<'static>>>,
    seen: Mutex<Vec<(String, Option<u64>)>>,
}

thread_local! {
    static STACK: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

impl Subscriber for SpanRecorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        self.metadata.lock().unwrap().insert(id, span.metadata());
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let name = event.metadata().name().to_owned();
        let current = STACK.with(|s| s.borrow().last().copied());
        if event.metadata().fields().field("probe").is_some() {
            self.seen.lock().unwrap().push((name, current));
        }
    }
    fn current_span(&self) -> tracing_core::span::Current {
        match STACK.with(|s| s.borrow().last().copied()) {
            Some(id) => {
                let metadata = self.metadata.lock().unwrap()[&id];
                tracing_core::span::Current::new(Id::from_u64(id), metadata)
            }
            None => tracing_core::span::Current::none(),
        }
    }
    fn enter(&self, span: &Id) {
        STACK.with(|s| s.borrow_mut().push(span.into_u64()));
    }
    fn exit(&self, _: &Id) {
        STACK.with(|s| {
            s.borrow_mut().pop();
        });
    }
}

#[test]
fn the_callers_span_is_entered_on_the_pool_thread_and_through_block_on() {
    let recorder = Arc::new(SpanRecorder::default());
    let dispatch = tracing::Dispatch::from(recorder.clone());
    tracing::dispatcher::set_global_default(dispatch).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let request = tracing::info_span!("request");
    let request_id = request.id().unwrap().into_u64();
    rt.block_on(async {
        let _entered = request.enter();
        colorseam::offload(|| tracing::info!(probe = 1, "in the job"))
            .await
            .unwrap();
    });

    let sync_caller = tracing::info_span!("sync_caller");
    let sync_id = sync_caller.id().unwrap().into_u64();
    {
        let _entered = sync_caller.enter();
        colorseam::block_on(async { tracing::info!(probe = 2, "in block_on") }).unwrap();
        colorseam::block_on_timeout(
            async { tracing::info!(probe = 3, "in block_on_timeout") },
            std::time::Duration::from_secs(5),
        )
        .unwrap();
    }

    let seen = recorder.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(
        seen[0].1,
        Some(request_id),
        "job ran inside the caller's span"
    );
    assert_eq!(
        seen[1].1,
        Some(sync_id),
        "block_on polled inside the caller's span"
    );
    assert_eq!(seen[2].1, Some(sync_id), "the spawned future too");
}
