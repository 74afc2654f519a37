//! `myelin-hub` binary.
fn main() {}
