//! DNS messages as the tc program captures them: the first byte picks the
//! transport (even: UDP, odd: TCP with its length prefix), the rest is the
//! payload. Any payload reads or fails with a typed error, never a panic,
//! and a name read is at most 255 wire bytes in presentation form.
#![no_main]

use dropscope::decode::dns::{self, Transport};
use libfuzzer_sys::fuzz_target;

/// The longest name in presentation form: 255 wire bytes, each at most
/// four characters (`\DDD`).
const MAX_TEXT_LEN: usize = 4 * 255;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, payload)) = input.split_first() else {
        return;
    };
    let transport = if mode % 2 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    match dns::parse(payload, transport) {
        Ok(message) => {
            if let Some(question) = message.question {
                assert!(question.name.len() <= MAX_TEXT_LEN);
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
