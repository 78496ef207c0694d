//! With the `tracing` feature, the watchdog's event for an ongoing stall
//! carries what the thread waits on in a `wait` field (Linux).
#![cfg(all(feature = "tracing", target_os = "linux"))]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Keeps the `wait` and `message` fields of every watchdog warning.
#[derive(Default)]
struct WatchdogEvents {
    seen: Mutex<Vec<(Option<String>, String)>>,
}

#[derive(Default)]
struct Fields {
    wait: Option<String>,
    message: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "wait" => self.wait = Some(format!("{value:?}")),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
}

impl Subscriber for WatchdogEvents {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message.starts_with("colorseam watchdog") {
            self.seen
                .lock()
                .unwrap()
                .push((fields.wait, fields.message));
        }
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn the_watchdog_event_of_an_ongoing_stall_has_a_wait_field() {
    let events: &'static WatchdogEvents = Box::leak(Box::default());
    tracing::subscriber::set_global_default(Dispatch(events)).expect("the first subscriber");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a runtime");
    // No report hook: with `tracing`, the event is the report.
    let watchdog = colorseam::detect::Watchdog::builder()
        .threshold(Duration::from_millis(50))
        .install(rt.handle())
        .expect("the watchdog starts");
    rt.block_on(async {
        tokio::spawn(colorseam::detect::instrument(
            async { std::thread::sleep(Duration::from_millis(400)) },
            "traced",
        ))
        .await
        .expect("the task ends");
    });
    let start = Instant::now();
    let found = loop {
        let seen = events.seen.lock().unwrap().clone();
        if let Some(found) = seen
            .iter()
            .find(|(wait, _)| wait.as_deref().is_some_and(|w| w.contains("nanosleep")))
        {
            break found.clone();
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{seen:#?}");
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(watchdog);
    assert!(found.1.contains("in task \"traced\""), "{found:?}");
    assert!(found.1.contains("blocked in "), "{found:?}");
}

/// A `&'static` subscriber as a dispatch target.
struct Dispatch(&'static WatchdogEvents);

impl Subscriber for Dispatch {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        self.0.enabled(m)
    }
    fn new_span(&self, a: &Attributes<'_>) -> Id {
        self.0.new_span(a)
    }
    fn record(&self, i: &Id, r: &Record<'_>) {
        self.0.record(i, r)
    }
    fn record_follows_from(&self, a: &Id, b: &Id) {
        self.0.record_follows_from(a, b)
    }
    fn event(&self, e: &Event<'_>) {
        self.0.event(e)
    }
    fn enter(&self, i: &Id) {
        self.0.enter(i)
    }
    fn exit(&self, i: &Id) {
        self.0.exit(i)
    }
}
