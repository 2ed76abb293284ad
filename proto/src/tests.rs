//! The contract's own rules, checked on the .proto text: every message,
//! enum, field, value and rpc is documented, and every enum starts with an
//! `_UNKNOWN = 0` value. And the JSON form is the proto3 JSON mapping.

const PROTOS: [(&str, &str); 3] = [
    (
        "collector.proto",
        include_str!("../dropscope/v1/collector.proto"),
    ),
    ("event.proto", include_str!("../dropscope/v1/event.proto")),
    (
        "observer.proto",
        include_str!("../dropscope/v1/observer.proto"),
    ),
];

#[test]
fn every_declaration_is_documented() {
    for (file, text) in PROTOS {
        undocumented_in(file, text);
    }
}

fn undocumented_in(file: &str, text: &str) {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut undocumented = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let declares = line.starts_with("message ")
            || line.starts_with("enum ")
            || line.starts_with("oneof ")
            || line.starts_with("service ")
            || line.starts_with("rpc ")
            || (line.ends_with(';') && line.contains(" = "));
        if !declares {
            continue;
        }
        let previous = index
            .checked_sub(1)
            .map(|before| lines[before])
            .unwrap_or("");
        if !previous.starts_with("//") {
            undocumented.push(format!("{file} line {}: {line}", index + 1));
        }
    }
    assert!(undocumented.is_empty(), "undocumented: {undocumented:#?}");
}

#[test]
fn every_enum_starts_with_unknown_zero() {
    let mut lines = PROTOS
        .iter()
        .flat_map(|(_, text)| text.lines())
        .map(str::trim);
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
            lost_events: 0,
            total_events: 0,
            lost_drops: 3,
            total_drops: 5,
            time: None,
            missing_until: None,
        })),
        kind: v1::EventKind::Loss as i32,
        time: None,
        node: "node-a".into(),
    };
    let decoded = v1::Event::decode(event.encode_to_vec().as_slice()).expect("decodes");
    assert_eq!(decoded, event);
}

#[test]
fn json_is_the_proto3_mapping() {
    use crate::v1;
    let event = v1::Event {
        event: Some(v1::event::Event::Drop(v1::DropEvent {
            flow_id: 7,
            kind: v1::DropEventKind::New as i32,
            packets: 3,
            tcp_flags: vec!["SYN".into()],
            first_seen: Some(pbjson_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 5_000_000,
            }),
            ..Default::default()
        })),
        kind: v1::EventKind::Drop as i32,
        time: None,
        node: "node-a".into(),
    };
    let json = serde_json::to_value(&event).expect("serializes");
    // lowerCamelCase names, enums by name, 64-bit integers as strings,
    // timestamps in RFC 3339.
    assert_eq!(json["kind"], "EVENT_KIND_DROP");
    assert_eq!(json["drop"]["flowId"], "7");
    assert_eq!(json["drop"]["kind"], "DROP_EVENT_KIND_NEW");
    assert_eq!(json["drop"]["tcpFlags"][0], "SYN");
    let first_seen = json["drop"]["firstSeen"].as_str().unwrap_or_default();
    assert!(
        first_seen == "2023-11-14T22:13:20.005Z" || first_seen == "2023-11-14T22:13:20.005+00:00",
        "RFC 3339 in UTC: {first_seen}"
    );
    let back: v1::Event = serde_json::from_value(json).expect("parses back");
    assert_eq!(back, event);
}
