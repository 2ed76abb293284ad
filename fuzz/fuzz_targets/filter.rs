//! The Observe filters: the first byte picks the input. 0: the rest is a
//! label selector string (the `EventFilter.label` syntax); otherwise the
//! rest is an `ObserveRequest` as the gRPC server decodes it, whose allow
//! and deny lists are compiled. Either parses or fails with a typed error
//! naming the problem, never a panic.
#![no_main]

use dropscope::serve::filter::{Filters, LabelSelector};
use dropscope_proto::v1::ObserveRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// Drop reason names of a pretend running kernel.
fn known_reasons(name: &str) -> bool {
    ["NETFILTER_DROP", "NO_SOCKET"].contains(&name)
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    if mode == 0 {
        if let Ok(text) = std::str::from_utf8(rest)
            && let Err(error) = text.parse::<LabelSelector>()
        {
            let _ = error.to_string();
        }
        return;
    }
    let Ok(request) = ObserveRequest::decode(rest) else {
        return;
    };
    if let Err(error) = Filters::compile(&request.allow, &request.deny, &known_reasons) {
        assert!(!error.field.is_empty());
        let _ = error.to_string();
    }
});
