//! Cost curves at scale (issue 15), as criterion groups: one group per
//! curve, one benchmark per point, so criterion's report plots the
//! per-operation cost against the scale. `examples/compare/` runs the same
//! curves beside the single-call scenarios and prints last ÷ first.
//!
//! ```text
//! cargo bench --bench scale
//! cargo bench --bench scale -- deadlines   # one curve
//! ```

use criterion::{criterion_group, criterion_main};

// The loads of the cost curves, shared with `examples/compare`.
#[path = "../support/curves.rs"]
mod curves;

mod adapters;
mod callers;
mod deadlines;
mod pools;
mod sandwiches;

criterion_group!(
    curves,
    deadlines::bench,
    pools::bench,
    callers::bench,
    sandwiches::bench,
    adapters::bench
);
criterion_main!(curves);
