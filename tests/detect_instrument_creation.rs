//! Creating an instrumented future scales: with a `&'static str` name it
//! allocates nothing and takes no process-wide lock. (Names past the
//! interning table are in `detect_instrument_overflow.rs`, a binary of its
//! own: filling the table first would send this file's names to the
//! allocating registry, whichever test ran first.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use colorseam::detect::{instrument, set_slow_poll_hook};

/// The system allocator, counting this thread's allocations.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every call is forwarded unchanged to `System`; the wrapper only
// counts, in a const-initialised thread-local without a destructor (so the
// count itself never allocates).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn creating_and_dropping_a_task_with_a_static_name_allocates_nothing() {
    // The first creation interns the call site's pair; after that, none
    // may allocate.
    drop(instrument(std::future::ready(()), "checkout"));
    let before = allocations();
    for _ in 0..1_000 {
        drop(std::hint::black_box(instrument(
            std::future::ready(()),
            "checkout",
        )));
    }
    let static_allocations = allocations() - before;

    // The counter is live: an owned name allocates (the String, its entry).
    let before = allocations();
    for _ in 0..10 {
        let name = String::from("checkout");
        drop(std::hint::black_box(instrument(
            std::future::ready(()),
            name,
        )));
    }
    let owned_allocations = allocations() - before;

    assert_eq!(static_allocations, 0, "static names allocated");
    assert!(
        owned_allocations >= 10,
        "{owned_allocations}: the counter counts nothing"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn slow_polls_of_interned_and_registered_tasks_report_their_own_names() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    assert!(set_slow_poll_hook(move |name, _, _| {
        s.lock().unwrap().push(name.to_owned());
    }));
    let slow = || async { std::thread::sleep(Duration::from_millis(5)) };
    instrument(slow(), "interned")
        .slow_poll_threshold(Duration::from_millis(1))
        .await;
    instrument(slow(), format!("owned-{}", 7))
        .slow_poll_threshold(Duration::from_millis(1))
        .await;
    assert_eq!(*seen.lock().unwrap(), ["interned", "owned-7"]);
}
