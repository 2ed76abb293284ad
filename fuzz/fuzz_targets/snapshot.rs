//! Snapshot files (`--snapshot`): any text loads into a store or fails with
//! an error naming file, line and field, never a panic; bytes that are not
//! UTF-8 are refused before parsing, as the file reader does.
#![no_main]

use std::path::Path;

use dropscope::enrich::{snapshot, store::Store};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let mut store = Store::new();
    if let Err(error) = snapshot::load_str(text, Path::new("fuzz.yaml"), &mut store) {
        let _ = error.to_string();
    }
});
