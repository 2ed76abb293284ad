//! The HTTP/1.1 side of [`super::TestApiServer`]: reading a request line,
//! writing answers (plain or chunked, fast or slow) and `Status` bodies.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Write as _},
    net::TcpStream,
    time::Duration,
};

use anyhow::{Result, bail};
use serde_json::{Value, json};

/// A parsed request line.
pub(super) struct Request {
    pub(super) path: String,
    pub(super) query: BTreeMap<String, String>,
}

pub(super) fn read_request(stream: &TcpStream) -> Result<Request> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        bail!("malformed request line {line:?}");
    };
    // The headers: nothing in them changes the answer.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    if method != "GET" {
        bail!("the test API server serves GET only, not {method}");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key.to_owned(), value.to_owned())
        })
        .collect();
    Ok(Request {
        path: path.to_owned(),
        query,
    })
}

/// How many bytes a slow connection delivers at a time.
const SLOW_PIECE: usize = 16;

/// The answer's side of a connection: fast, or slow (a few bytes at a
/// time, a pause after each).
pub(super) struct Paced {
    pub(super) stream: TcpStream,
    pub(super) pause: Option<Duration>,
}

impl std::io::Write for Paced {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let Some(pause) = self.pause else {
            return self.stream.write(bytes);
        };
        let written = self.stream.write(&bytes[..bytes.len().min(SLOW_PIECE)])?;
        self.stream.flush()?;
        std::thread::sleep(pause);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// A `Status` body as the API server writes one.
pub(super) fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

pub(super) fn respond(stream: &mut Paced, code: u16, body: &Value) -> Result<()> {
    let text = body.to_string();
    let phrase = match code {
        200 => "OK",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Error",
    };
    write!(
        stream,
        "HTTP/1.1 {code} {phrase}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{text}",
        text.len()
    )?;
    stream.flush()?;
    Ok(())
}

/// One JSON line as one chunk of the chunked body.
pub(super) fn send_event(stream: &mut Paced, event: &Value) -> std::io::Result<()> {
    let line = format!("{event}\n");
    write!(stream, "{:x}\r\n{line}\r\n", line.len())?;
    stream.flush()
}

/// Ends a chunked body properly (a watch that timed out).
pub(super) fn finish(mut stream: Paced) -> Result<()> {
    write!(stream, "0\r\n\r\n")?;
    stream.flush()?;
    Ok(())
}
