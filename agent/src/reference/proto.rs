//! `docs/reference/events.md`: every service, message, field, enum and
//! value of `proto/dropscope/v1/*.proto` with the comment above it, read
//! from the files themselves (the subset of proto3 the contract uses:
//! messages, enums, oneofs, maps, services).

use std::fmt::Write as _;

use super::{cell, check_page, generated_from, root};

/// The contract's files, in the order the page lists them.
const FILES: [&str; 3] = ["event.proto", "observer.proto", "collector.proto"];

/// One declaration of a block: a field, an enum value or an RPC.
struct Member {
    name: String,
    /// The field number or enum value ("" for an RPC).
    number: String,
    /// The field's type, or the RPC's `request → response`.
    kind: String,
    doc: String,
}

/// A message, enum or service.
struct Block {
    keyword: String,
    name: String,
    file: &'static str,
    doc: String,
    members: Vec<Member>,
}

/// The blocks of one file, top-level and nested alike (nested ones named
/// `Outer.Inner`).
fn parse(file: &'static str, text: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    // Indices into `blocks` of the blocks open at this point; oneofs are
    // open too but hold their fields in the message around them.
    let mut open: Vec<Option<usize>> = Vec::new();
    let mut comment: Vec<String> = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        if let Some(text) = line.strip_prefix("//") {
            comment.push(text.trim().to_owned());
            continue;
        }
        let doc = comment.join(" ");
        comment.clear();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [keyword @ ("message" | "enum" | "service"), name, "{", ..] => {
                let outer = open
                    .iter()
                    .rev()
                    .flatten()
                    .next()
                    .map(|&index| blocks[index].name.clone());
                blocks.push(Block {
                    keyword: (*keyword).to_owned(),
                    name: outer
                        .map_or_else(|| (*name).to_owned(), |outer| format!("{outer}.{name}")),
                    file,
                    doc,
                    members: Vec::new(),
                });
                open.push(Some(blocks.len() - 1));
            }
            ["oneof", _, "{", ..] => open.push(None),
            ["}"] | ["};"] => {
                open.pop();
            }
            ["rpc", ..] => {
                if let Some(index) = open.iter().rev().flatten().next() {
                    blocks[*index].members.push(rpc(line, doc));
                }
            }
            _ if line.ends_with(';') && line.contains('=') => {
                let Some(&index) = open.iter().rev().flatten().next() else {
                    continue;
                };
                let (left, number) = line
                    .trim_end_matches(';')
                    .rsplit_once('=')
                    .unwrap_or_default();
                let left: Vec<&str> = left.split_whitespace().collect();
                let (kind, name) = match left.as_slice() {
                    [name] => (String::new(), (*name).to_owned()),
                    [kind @ .., name] => (kind.join(" "), (*name).to_owned()),
                    [] => continue,
                };
                blocks[index].members.push(Member {
                    name,
                    number: number.trim().to_owned(),
                    kind,
                    doc,
                });
            }
            _ => {}
        }
    }
    blocks
}

/// `rpc Observe(ObserveRequest) returns (stream Event);` as a member.
fn rpc(line: &str, doc: String) -> Member {
    let name = line["rpc".len()..]
        .trim()
        .split('(')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let arguments: Vec<&str> = line
        .split(['(', ')'])
        .skip(1)
        .step_by(2)
        .map(str::trim)
        .collect();
    let kind = match arguments.as_slice() {
        [request, response, ..] => format!("`{request}` → `{response}`"),
        _ => String::new(),
    };
    Member {
        name,
        number: String::new(),
        kind,
        doc,
    }
}

/// The whole page.
fn render() -> String {
    let mut out = generated_from("proto/dropscope/v1/*.proto");
    out.push_str(
        "# The `dropscope.v1` contract\n\n\
         Every output of dropscope is one of these messages: the gRPC API streams them, `-o json` prints \
         their proto3 JSON mapping (field names in lowerCamelCase, 64-bit integers as strings, enums by \
         name, fields at their default value omitted), a collector and NATS carry them. Fields and enum \
         values are only ever added; a removed one is `reserved`.\n",
    );
    let mut blocks = Vec::new();
    for file in FILES {
        let path = root().join("proto/dropscope/v1").join(file);
        let text = std::fs::read_to_string(&path).expect("reading a proto file");
        blocks.extend(parse(file, &text));
    }
    for keyword in ["service", "message", "enum"] {
        let heading = match keyword {
            "service" => "Services",
            "message" => "Messages",
            _ => "Enums",
        };
        let _ = write!(out, "\n## {heading}\n");
        for block in blocks.iter().filter(|block| block.keyword == keyword) {
            let _ = write!(out, "\n### {} `{}`\n\n", block.keyword, block.name);
            let _ = writeln!(out, "{} *({})*\n", block.doc, block.file);
            let header = match keyword {
                "service" => "| RPC | request → response | what it does |\n|---|---|---|\n",
                "message" => "| field | # | type | meaning |\n|---|---|---|---|\n",
                _ => "| value | # | meaning |\n|---|---|---|\n",
            };
            if block.members.is_empty() {
                out.push_str("(no fields)\n");
                continue;
            }
            out.push_str(header);
            for member in &block.members {
                let _ = match keyword {
                    "service" => writeln!(
                        out,
                        "| `{}` | {} | {} |",
                        member.name,
                        member.kind,
                        cell(&member.doc)
                    ),
                    "message" => writeln!(
                        out,
                        "| `{}` | {} | `{}` | {} |",
                        member.name,
                        member.number,
                        member.kind,
                        cell(&member.doc)
                    ),
                    _ => writeln!(
                        out,
                        "| `{}` | {} | {} |",
                        member.name,
                        member.number,
                        cell(&member.doc)
                    ),
                };
            }
        }
    }
    out
}

#[test]
fn events_page_is_current() {
    check_page("events.md", &render());
}

#[test]
fn every_field_and_value_of_the_contract_is_on_the_page() {
    let page = render();
    let blocks: Vec<Block> = FILES
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(root().join("proto/dropscope/v1").join(file))
                .expect("reading a proto file");
            parse(file, &text)
        })
        .collect();
    assert!(
        blocks
            .iter()
            .any(|block| block.name == "Event" && block.members.len() >= 5)
    );
    assert!(
        blocks.iter().any(|block| block.name == "Observer"
            && block.members.iter().any(|rpc| rpc.name == "Observe"))
    );
    for block in &blocks {
        assert!(!block.doc.is_empty(), "{} has no comment", block.name);
        for member in &block.members {
            assert!(
                !member.doc.is_empty(),
                "{}.{} has no comment",
                block.name,
                member.name
            );
            assert!(
                page.contains(&format!("| `{}` |", member.name)),
                "{}.{} is missing",
                block.name,
                member.name
            );
        }
    }
}
