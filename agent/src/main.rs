//! The `dropscope` binary.
fn main() {}
