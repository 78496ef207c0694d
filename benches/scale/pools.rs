//! Cost curve: pools (issue 15). Not written yet.

use criterion::Criterion;

pub(crate) fn bench(_c: &mut Criterion) {}
