//! `lab-client`: the traffic of the end-to-end tests as a process of its
//! own, so a test can place it in a pod's network namespace and cgroup
//! (`LabClient` in the harness) and the agent attributes it like a real
//! workload. Each subcommand prints JSON lines on stdout; a bad command line
//! or an unexpected failure prints to stderr and exits with 2.
//!
//! ```text
//! lab-client connect ADDR [--timeout-ms N] [--http PATH]
//!     one blocking TCP connect; without --timeout-ms the kernel gives up
//!     (tcp_syn_retries). {"outcome":"connected"|"refused"|"timed_out"|
//!     "unreachable"|"error","errno":N,"local":"ip:port","elapsed_ms":N,…};
//!     with --http, once connected, `GET PATH` and the response's status
//!     line ("status":"HTTP/1.1 200 OK")
//! lab-client hold ADDR
//!     starts a connect, prints {"local":"ip:port"} once the SYN is out,
//!     and holds it until killed
//! lab-client connects ADDR --count N
//!     starts N connects at once, prints {"started":N,"local":[…]} and holds
//!     them until killed
//! lab-client dns SERVER_IP:PORT NAME [--type A|AAAA] [--tries N]
//!                [--timeout-ms N] [--tcp]
//!     a DNS query (one UDP socket for every try, a new id per try; over
//!     TCP one connection per try). {"outcome":"answered"|"timed_out"|
//!     "refused","rcode":N,"tries":N,"local":"ip:port",…}
//! lab-client dns-server LISTEN_IP:PORT --answer nxdomain|servfail|refused|a:IP|aaaa:IP|silent
//!     answers every query (UDP, and TCP on the same port) until killed;
//!     prints {"listening":"ip:port"} once bound
//! lab-client http-server LISTEN_IP:PORT
//!     answers every HTTP request with `200 OK` and a short body until
//!     killed; prints {"listening":"ip:port"} once bound
//! ```

use std::{
    io::{Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{FromRawFd as _, OwnedFd},
    process::ExitCode,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lab-client: {error}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), Error> {
    let (command, rest) = args
        .split_first()
        .ok_or("usage: lab-client connect|hold|connects|dns|dns-server|http-server …")?;
    let args = Args::parse(rest)?;
    match command.as_str() {
        "connect" => connect(&args),
        "hold" => hold(&args),
        "connects" => connects(&args),
        "dns" => dns(&args),
        "dns-server" => dns_server(&args),
        "http-server" => http_server(&args),
        other => Err(format!("unknown subcommand {other:?}").into()),
    }
}

/// Positional arguments and `--flag [value]` options.
struct Args {
    positional: Vec<String>,
    options: Vec<(String, Option<String>)>,
}

/// Flags without a value.
const SWITCHES: &[&str] = &["--tcp"];

impl Args {
    fn parse(args: &[String]) -> Result<Self, Error> {
        let mut parsed = Self {
            positional: Vec::new(),
            options: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if !arg.starts_with("--") {
                parsed.positional.push(arg.clone());
            } else if SWITCHES.contains(&arg.as_str()) {
                parsed.options.push((arg.clone(), None));
            } else {
                let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
                parsed.options.push((arg.clone(), Some(value.clone())));
            }
        }
        Ok(parsed)
    }

    fn positional(&self, index: usize, what: &str) -> Result<&str, Error> {
        self.positional
            .get(index)
            .map(String::as_str)
            .ok_or_else(|| format!("missing {what}").into())
    }

    fn address(&self, index: usize) -> Result<SocketAddr, Error> {
        let text = self.positional(index, "ADDR (ip:port)")?;
        text.parse()
            .map_err(|error| format!("address {text:?}: {error}").into())
    }

    fn option(&self, flag: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(name, _)| name == flag)
            .and_then(|(_, value)| value.as_deref())
    }

    fn number(&self, flag: &str) -> Result<Option<u64>, Error> {
        self.option(flag)
            .map(|text| {
                text.parse()
                    .map_err(|error| format!("{flag} {text:?}: {error}").into())
            })
            .transpose()
    }

    fn switch(&self, flag: &str) -> bool {
        self.options.iter().any(|(name, _)| name == flag)
    }
}

fn print(value: &Value) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{value}")?;
    stdout.flush()?;
    Ok(())
}

/// Sleeps until killed.
fn hold_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------- TCP

/// A TCP socket whose connect was started (non-blocking).
struct Pending {
    stream: TcpStream,
    /// Set when connect(2) finished at once (0 or an error number).
    finished: Option<i32>,
}

/// Opens a non-blocking TCP socket and starts a connect to `to`.
fn start_connect(to: SocketAddr) -> Result<Pending, Error> {
    let family = if to.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) with constant arguments; the fd is checked below.
    let fd = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(format!("socket: {}", std::io::Error::last_os_error()).into());
    }
    // SAFETY: fd is a new socket nobody else owns.
    let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let (storage, length) = sockaddr(to);
    // SAFETY: storage holds a sockaddr of `length` bytes for this family.
    let result = unsafe { libc::connect(fd, (&raw const storage).cast(), length) };
    let finished = if result == 0 {
        Some(0)
    } else {
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINPROGRESS) => None,
            errno => Some(errno.unwrap_or(-1)),
        }
    };
    Ok(Pending { stream, finished })
}

/// `to` as a `sockaddr_storage` and its length.
fn sockaddr(to: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match to {
        SocketAddr::V4(to) => {
            let address = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: to.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(to.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut storage).cast(), address) };
            (storage, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(to) => {
            let address = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: to.port().to_be(),
                sin6_flowinfo: to.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: to.ip().octets(),
                },
                sin6_scope_id: to.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut storage).cast(), address) };
            (storage, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

/// Waits for a started connect to finish: `Some(errno)` (0: connected),
/// `None` when `deadline` passed first.
fn finish_connect(pending: &Pending, deadline: Option<Instant>) -> Result<Option<i32>, Error> {
    if let Some(errno) = pending.finished {
        return Ok(Some(errno));
    }
    let mut poll = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&pending.stream),
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        let timeout = match deadline {
            None => -1,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX)
            }
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&raw mut poll, 1, timeout) };
        if ready < 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {error}").into());
        }
        if ready > 0 {
            return Ok(Some(match pending.stream.take_error()? {
                Some(error) => error.raw_os_error().unwrap_or(-1),
                None => 0,
            }));
        }
    }
}

fn outcome(errno: i32) -> &'static str {
    match errno {
        0 => "connected",
        libc::ECONNREFUSED => "refused",
        libc::ETIMEDOUT => "timed_out",
        libc::EHOSTUNREACH | libc::ENETUNREACH => "unreachable",
        _ => "error",
    }
}

fn local(stream: &TcpStream) -> String {
    stream
        .local_addr()
        .map(|address| address.to_string())
        .unwrap_or_default()
}

fn connect(args: &Args) -> Result<(), Error> {
    let to = args.address(0)?;
    let deadline = args
        .number("--timeout-ms")?
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    let started = Instant::now();
    let pending = start_connect(to)?;
    // The port is bound once connect(2) returned: read it before a failure
    // releases it.
    let local = local(&pending.stream);
    let finished = finish_connect(&pending, deadline)?;
    let (outcome, errno, by_deadline) = match finished {
        Some(errno) => (outcome(errno), errno, false),
        None => ("timed_out", libc::ETIMEDOUT, true),
    };
    let status = match args.option("--http") {
        Some(path) if errno == 0 => Some(http_get(&pending.stream, to, path)?),
        _ => None,
    };
    print(&json!({
        "outcome": outcome,
        "errno": errno,
        "local": local,
        "remote": to.to_string(),
        "elapsed_ms": elapsed_ms(started),
        "deadline": by_deadline,
        "status": status,
    }))
}

/// Sends `GET path` on a connected stream and returns the response's
/// status line.
fn http_get(stream: &TcpStream, to: SocketAddr, path: &str) -> Result<String, Error> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut stream = stream;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {to}\r\nUser-Agent: lab-client\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    let mut chunk = [0; 512];
    while !response.contains(&b'\n') {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..read]);
    }
    let text = String::from_utf8_lossy(&response);
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

// ---------------------------------------------------------------- HTTP

fn http_server(args: &Args) -> Result<(), Error> {
    let listener = TcpListener::bind(args.address(0)?)?;
    print(&json!({ "listening": listener.local_addr()?.to_string() }))?;
    for stream in listener.incoming().map_while(Result::ok) {
        std::thread::spawn(move || {
            let mut stream = stream;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            // Read the request head, then answer whatever it asked.
            let mut request = Vec::new();
            let mut chunk = [0; 1024];
            while !request.windows(4).any(|window| window == b"\r\n\r\n") && request.len() < 16384 {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(read) => request.extend_from_slice(&chunk[..read]),
                }
            }
            let body = "ok\n";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        });
    }
    Ok(())
}

fn hold(args: &Args) -> Result<(), Error> {
    let to = args.address(0)?;
    let pending = start_connect(to)?;
    print(&json!({
        "local": local(&pending.stream),
        "remote": to.to_string(),
        "finished": pending.finished,
    }))?;
    hold_forever()
}

fn connects(args: &Args) -> Result<(), Error> {
    let to = args.address(0)?;
    let count = args.number("--count")?.ok_or("connects needs --count N")?;
    raise_file_limit(count + 64)?;
    let mut held = Vec::new();
    for _ in 0..count {
        held.push(start_connect(to)?);
    }
    let failed: Vec<i32> = held.iter().filter_map(|pending| pending.finished).collect();
    print(&json!({
        "started": held.len(),
        "local": held.iter().map(|pending| local(&pending.stream)).collect::<Vec<_>>(),
        "finished_at_once": failed,
    }))?;
    hold_forever()
}

/// Raises the soft limit of open files to at least `wanted` (up to the hard
/// limit).
fn raise_file_limit(wanted: u64) -> Result<(), Error> {
    // SAFETY: an all-zero rlimit is valid; getrlimit fills it.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid rlimit pointer for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()).into());
    }
    if limit.rlim_cur >= wanted {
        return Ok(());
    }
    if limit.rlim_max < wanted {
        return Err(format!(
            "{wanted} open files wanted, the hard limit is {}",
            limit.rlim_max
        )
        .into());
    }
    limit.rlim_cur = wanted;
    // SAFETY: a valid rlimit for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) } != 0 {
        return Err(format!("setrlimit: {}", std::io::Error::last_os_error()).into());
    }
    Ok(())
}

// ---------------------------------------------------------------- DNS

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// A query for `name`/`qtype` with id `id`, recursion desired.
fn dns_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, Error> {
    let mut message = Vec::with_capacity(64);
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    message.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    message.extend_from_slice(&[0; 6]); // AN, NS, AR
    for label in name.trim_end_matches('.').split('.') {
        let length = u8::try_from(label.len())
            .ok()
            .filter(|length| (1..=63).contains(length))
            .ok_or_else(|| format!("bad label {label:?} in {name:?}"))?;
        message.push(length);
        message.extend_from_slice(label.as_bytes());
    }
    message.push(0);
    message.extend_from_slice(&qtype.to_be_bytes());
    message.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(message)
}

/// The end of the question of `message` (header + one question).
fn question_end(message: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        let length = usize::from(*message.get(at)?);
        if length == 0 {
            at += 1;
            break;
        }
        if length > 63 {
            return None;
        }
        at += 1 + length;
    }
    let end = at + 4;
    (end <= message.len()).then_some(end)
}

/// A response's id, rcode and answer count, when `response` answers one of
/// `sent` (same id and question).
fn dns_answer(response: &[u8], sent: &[(u16, Vec<u8>)]) -> Option<(u16, u8, u16)> {
    if response.len() < 12 || response[2] & 0x80 == 0 {
        return None;
    }
    let id = u16::from_be_bytes([response[0], response[1]]);
    let (_, query) = sent.iter().find(|(sent_id, _)| *sent_id == id)?;
    let end = question_end(query)?;
    if response.get(12..end)? != &query[12..end] {
        return None;
    }
    let rcode = response[3] & 0x0f;
    let answers = u16::from_be_bytes([response[6], response[7]]);
    Some((id, rcode, answers))
}

/// A fresh query id (xorshift seeded by pid and clock).
struct Ids(u64);

impl Ids {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.subsec_nanos())
            .unwrap_or(0);
        Self(u64::from(std::process::id()) << 32 | u64::from(nanos) | 1)
    }

    fn next(&mut self) -> u16 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 24) as u16
    }
}

fn dns(args: &Args) -> Result<(), Error> {
    let server = args.address(0)?;
    let name = args.positional(1, "NAME")?;
    let qtype = match args.option("--type").unwrap_or("A") {
        "A" | "a" => TYPE_A,
        "AAAA" | "aaaa" => TYPE_AAAA,
        other => return Err(format!("--type {other:?}: A or AAAA").into()),
    };
    // glibc's defaults: attempts:2 timeout:5.
    let tries = args.number("--tries")?.unwrap_or(2).max(1);
    let timeout = Duration::from_millis(args.number("--timeout-ms")?.unwrap_or(5000));
    let started = Instant::now();
    let mut ids = Ids::new();
    let mut sent: Vec<(u16, Vec<u8>)> = Vec::new();
    let report = |outcome: &str, local: &str, tries: usize, answer: Option<(u16, u8, u16)>| {
        let mut value = json!({
            "outcome": outcome,
            "tries": tries,
            "local": local,
            "server": server.to_string(),
            "elapsed_ms": elapsed_ms(started),
        });
        // Present (null) when unanswered too.
        value["id"] = json!(answer.map(|(id, _, _)| id));
        value["rcode"] = json!(answer.map(|(_, rcode, _)| rcode));
        value["answers"] = json!(answer.map(|(_, _, answers)| answers));
        print(&value)
    };
    if args.switch("--tcp") {
        let mut local = String::new();
        for _ in 0..tries {
            let id = ids.next();
            let query = dns_query(id, name, qtype)?;
            sent.push((id, query.clone()));
            let mut stream = match TcpStream::connect_timeout(&server, timeout) {
                Ok(stream) => stream,
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return report("refused", &local, sent.len(), None);
                }
                Err(error) if error.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(error) => return Err(format!("connecting to {server}: {error}").into()),
            };
            local = stream.local_addr()?.to_string();
            stream.set_read_timeout(Some(timeout))?;
            let length = u16::try_from(query.len())?;
            stream.write_all(&length.to_be_bytes())?;
            stream.write_all(&query)?;
            let mut length = [0; 2];
            let mut response = Vec::new();
            let read = stream.read_exact(&mut length).and_then(|()| {
                response.resize(usize::from(u16::from_be_bytes(length)), 0);
                stream.read_exact(&mut response)
            });
            match read {
                Ok(()) => {
                    if let Some(answer) = dns_answer(&response, &sent) {
                        return report("answered", &local, sent.len(), Some(answer));
                    }
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::UnexpectedEof
                            | std::io::ErrorKind::ConnectionReset
                    ) => {}
                Err(error) => return Err(format!("reading from {server}: {error}").into()),
            }
        }
        return report("timed_out", &local, sent.len(), None);
    }
    let any: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = UdpSocket::bind(any)?;
    // Connected, like a stub resolver: only the server's datagrams, and an
    // ICMP port unreachable shows as ECONNREFUSED.
    socket.connect(server)?;
    let local = socket.local_addr()?.to_string();
    let mut buffer = vec![0; 65536];
    for _ in 0..tries {
        let id = ids.next();
        let query = dns_query(id, name, qtype)?;
        socket.send(&query)?;
        sent.push((id, query));
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left))?;
            match socket.recv(&mut buffer) {
                Ok(length) => {
                    if let Some(answer) = dns_answer(&buffer[..length], &sent) {
                        return report("answered", &local, sent.len(), Some(answer));
                    }
                }
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return report("refused", &local, sent.len(), None);
                }
                Err(error) => return Err(format!("receiving from {server}: {error}").into()),
            }
        }
    }
    report("timed_out", &local, sent.len(), None)
}

/// What the DNS server answers.
#[derive(Clone, Copy)]
enum Answer {
    Rcode(u8),
    Address(IpAddr),
    Silent,
}

impl Answer {
    fn parse(text: &str) -> Result<Self, Error> {
        Ok(match text {
            "nxdomain" => Self::Rcode(3),
            "servfail" => Self::Rcode(2),
            "refused" => Self::Rcode(5),
            "silent" => Self::Silent,
            other => {
                let ip = other
                    .strip_prefix("a:")
                    .or_else(|| other.strip_prefix("aaaa:"))
                    .ok_or_else(|| {
                        format!(
                            "--answer {other:?}: nxdomain, servfail, refused, a:IP, aaaa:IP or silent"
                        )
                    })?;
                Self::Address(ip.parse().map_err(|error| format!("{other:?}: {error}"))?)
            }
        })
    }

    /// The response to `query`, if any.
    fn respond(self, query: &[u8]) -> Option<Vec<u8>> {
        if matches!(self, Self::Silent) || query.len() < 12 || query[2] & 0x80 != 0 {
            return None;
        }
        let end = question_end(query)?;
        let qtype = u16::from_be_bytes([query[end - 4], query[end - 3]]);
        let (rcode, record) = match self {
            Self::Rcode(rcode) => (rcode, None),
            Self::Address(IpAddr::V4(ip)) => (0, (qtype == TYPE_A).then(|| ip.octets().to_vec())),
            Self::Address(IpAddr::V6(ip)) => {
                (0, (qtype == TYPE_AAAA).then(|| ip.octets().to_vec()))
            }
            Self::Silent => return None,
        };
        let mut response = Vec::with_capacity(end + 32);
        response.extend_from_slice(&query[0..2]);
        // QR, the query's opcode, AA, its RD, RA, rcode.
        let flags = 0x8000 | (u16::from(query[2] & 0x79) << 8) | 0x0400 | 0x0080 | u16::from(rcode);
        response.extend_from_slice(&flags.to_be_bytes());
        response.extend_from_slice(&1u16.to_be_bytes());
        response.extend_from_slice(&u16::from(record.is_some()).to_be_bytes());
        response.extend_from_slice(&[0; 4]);
        response.extend_from_slice(&query[12..end]);
        if let Some(data) = record {
            response.extend_from_slice(&0xc00cu16.to_be_bytes()); // the question's name
            response.extend_from_slice(&qtype.to_be_bytes());
            response.extend_from_slice(&CLASS_IN.to_be_bytes());
            response.extend_from_slice(&30u32.to_be_bytes()); // TTL
            response.extend_from_slice(&(data.len() as u16).to_be_bytes());
            response.extend_from_slice(&data);
        }
        Some(response)
    }
}

fn dns_server(args: &Args) -> Result<(), Error> {
    let listen = args.address(0)?;
    let answer = Answer::parse(args.option("--answer").ok_or("dns-server needs --answer")?)?;
    let socket = UdpSocket::bind(listen)?;
    let bound = socket.local_addr()?;
    // TCP on the same port, for clients that retry over TCP.
    let tcp = TcpListener::bind(bound);
    let tcp_bound = tcp.is_ok();
    if let Ok(listener) = tcp {
        std::thread::spawn(move || serve_tcp(&listener, answer));
    }
    print(&json!({ "listening": bound.to_string(), "tcp": tcp_bound }))?;
    let mut buffer = vec![0; 65536];
    loop {
        let (length, from) = socket.recv_from(&mut buffer)?;
        if let Some(response) = answer.respond(&buffer[..length]) {
            socket.send_to(&response, from)?;
        }
    }
}

fn serve_tcp(listener: &TcpListener, answer: Answer) {
    for stream in listener.incoming().map_while(Result::ok) {
        std::thread::spawn(move || {
            let mut stream = stream;
            loop {
                let mut length = [0; 2];
                if stream.read_exact(&mut length).is_err() {
                    return;
                }
                let mut query = vec![0; usize::from(u16::from_be_bytes(length))];
                if stream.read_exact(&mut query).is_err() {
                    return;
                }
                if let Some(response) = answer.respond(&query) {
                    let length = (response.len() as u16).to_be_bytes();
                    if stream.write_all(&length).is_err() || stream.write_all(&response).is_err() {
                        return;
                    }
                }
            }
        });
    }
}
