//! Names that do not fit `instrument()`'s interning table still come
//! through intact. A binary of its own: it fills the process-wide table,
//! which would change what other tests in the same process measure.

use colorseam::detect::instrument;

#[test]
fn many_distinct_static_names_keep_their_names_past_the_interning_table() {
    // More distinct (name, call site) pairs than the table holds: the
    // overflow goes to the registry and must still be named right.
    let names: Vec<&'static str> = (0..3_000)
        .map(|i| &*Box::leak(format!("leaked-{i}").into_boxed_str()))
        .collect();
    let tasks: Vec<_> = names
        .iter()
        .map(|name| instrument(std::future::ready(()), *name))
        .collect();
    for (task, name) in tasks.iter().zip(&names) {
        let debug = format!("{task:?}");
        assert!(
            debug.contains(&format!("{name:?}")),
            "{debug} is not {name}"
        );
    }
}
