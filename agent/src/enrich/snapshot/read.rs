//! Reading a snapshot file within a size cap: refused from its metadata
//! before reading, and read through a limit so that a file that grows (or a
//! pipe, whose metadata says nothing) cannot pass the cap either.

use std::{fs::File, io::Read, path::Path};

use super::{Error, Problem};

/// The file's text, if it is UTF-8 and at most `cap` bytes.
pub(super) fn read_capped(path: &Path, cap: u64) -> Result<String, Error> {
    let file = File::open(path).map_err(Error::Io)?;
    let size = file.metadata().map_err(Error::Io)?.len();
    if size > cap {
        return Err(Error::TooLarge {
            size,
            at_least: false,
            cap,
        });
    }
    // One more byte than the cap, to tell "exactly the cap" from "more".
    let limit = cap.saturating_add(1);
    let mut bytes = Vec::with_capacity(usize::try_from(size.min(limit)).unwrap_or(0));
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(Error::Io)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > cap {
        return Err(Error::TooLarge {
            size: read,
            at_least: true,
            cap,
        });
    }
    String::from_utf8(bytes).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|byte| **byte == b'\n').count() + 1;
        let column = valid
            .iter()
            .rev()
            .take_while(|byte| **byte != b'\n')
            .count()
            + 1;
        Error::Parse {
            line: Some(line),
            column: Some(column),
            field: ".".into(),
            problem: Problem::NotUtf8,
        }
    })
}
