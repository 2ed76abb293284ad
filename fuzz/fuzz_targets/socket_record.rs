//! Connect and DNS records from the socket ring buffer: any bytes decode to
//! a record or a typed error, never a panic.
#![no_main]

use std::time::SystemTime;

use dropscope::decode::{Clock, socket::SocketDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let mut decoder = SocketDecoder::new(Clock::with_boot(SystemTime::UNIX_EPOCH));
    if let Err(error) = decoder.record(bytes) {
        let _ = error.to_string();
    }
});
