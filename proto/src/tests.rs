//! The contract's own rules, checked on the .proto text: every message,
//! enum, field and value is documented, and every enum starts with an
//! `_UNKNOWN = 0` value.

const EVENT_PROTO: &str = include_str!("../dropscope/v1/event.proto");

#[test]
fn every_declaration_is_documented() {
    let lines: Vec<&str> = EVENT_PROTO.lines().map(str::trim).collect();
    let mut undocumented = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let declares = line.starts_with("message ")
            || line.starts_with("enum ")
            || line.starts_with("oneof ")
            || (line.ends_with(';') && line.contains(" = "));
        if !declares {
            continue;
        }
        let previous = index
            .checked_sub(1)
            .map(|before| lines[before])
            .unwrap_or("");
        if !previous.starts_with("//") {
            undocumented.push(format!("line {}: {line}", index + 1));
        }
    }
    assert!(undocumented.is_empty(), "undocumented: {undocumented:#?}");
}

#[test]
fn every_enum_starts_with_unknown_zero() {
    let mut lines = EVENT_PROTO.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("enum ") {
            let first_value = lines
                .by_ref()
                .find(|line| line.ends_with(';'))
                .unwrap_or_default();
            assert!(
                first_value.contains("_UNKNOWN = 0;"),
                "enum {name} starts with {first_value:?}"
            );
        }
    }
}

#[test]
fn generated_messages_round_trip() {
    use prost::Message as _;

    use crate::v1;
    let event = v1::Event {
        event: Some(v1::event::Event::Loss(v1::LossEvent {
            source: v1::LossSource::KernelRingFull as i32,
            lost: 3,
            total: 5,
            time: None,
        })),
    };
    let decoded = v1::Event::decode(event.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(decoded, event);
}
