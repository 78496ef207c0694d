//! Cost curve: pools (issue 15). Not written yet.

use crate::Row;

pub(crate) fn run(_rows: &mut Vec<Row>) {}
