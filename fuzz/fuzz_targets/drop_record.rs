//! Drop records from the kfree_skb ring buffer: any bytes decode to a record
//! or a typed error, never a panic; a record that decodes also names the
//! slot it claims, so `capture` can retire it.
#![no_main]

use std::time::SystemTime;

use dropscope::{
    decode::{self, Clock, Decoder, Symbols},
    kernel::DropReasonNames,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let mut decoder = Decoder::new(
        DropReasonNames::from_pairs([(12, "NETFILTER_DROP".to_owned())]),
        Symbols::from_pairs([(0xffff_ffff_8100_0000, "nf_hook_slow")]),
        Clock::with_boot(SystemTime::UNIX_EPOCH),
    );
    let claimed = decode::claimed_slot(bytes);
    match decoder.drop_record(bytes) {
        Ok((record, key)) => assert_eq!(claimed, Some((record.slot, key))),
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
