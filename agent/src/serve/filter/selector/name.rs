//! The syntax of label keys (qualified names, `example.com/name`) and label
//! values, as Kubernetes validates them.

use super::SelectorError;

/// Longest name part of a key, and longest value.
const MAX_NAME: usize = 63;
/// Longest DNS prefix of a key.
const MAX_PREFIX: usize = 253;

/// Checks a qualified name: `[prefix/]name`, the prefix a DNS subdomain.
pub(super) fn validate_key(key: &str, at: usize) -> Result<(), SelectorError> {
    let invalid = |problem| SelectorError::InvalidKey {
        key: key.to_owned(),
        at,
        problem,
    };
    let name = match key.split_once('/') {
        None => key,
        Some((prefix, name)) => {
            if name.contains('/') {
                return Err(invalid("a key has at most one '/'"));
            }
            if prefix.is_empty() || prefix.len() > MAX_PREFIX || !is_dns_subdomain(prefix) {
                return Err(invalid(
                    "the prefix must be a DNS subdomain: lowercase alphanumeric, '-' and '.', \
                     starting and ending alphanumeric, at most 253 characters",
                ));
            }
            name
        }
    };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name.len() > MAX_NAME {
        return Err(invalid("the name is longer than 63 characters"));
    }
    if !is_label_token(name) {
        return Err(invalid(
            "the name must be alphanumeric, '-', '_' or '.', starting and ending alphanumeric",
        ));
    }
    Ok(())
}

/// Checks a label value: empty, or up to 63 characters of the name syntax.
pub(super) fn validate_value(key: &str, value: &str, at: usize) -> Result<(), SelectorError> {
    let problem = if value.len() > MAX_NAME {
        "longer than 63 characters"
    } else if !value.is_empty() && !is_label_token(value) {
        "a value must be alphanumeric, '-', '_' or '.', starting and ending alphanumeric"
    } else {
        return Ok(());
    };
    Err(SelectorError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        at,
        problem,
    })
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_label_token(text: &str) -> bool {
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// Dot-separated lowercase DNS labels (RFC 1123).
fn is_dns_subdomain(text: &str) -> bool {
    text.split('.').all(|label| {
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
                edge(first)
                    && edge(last)
                    && bytes.iter().all(|b| edge(b) || *b == b'-')
                    && bytes.len() <= MAX_NAME
            }
            _ => false,
        }
    })
}
