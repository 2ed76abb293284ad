//! `dropscope-demo [--ci] [--only N]`: the runbooks' incidents replayed in
//! the lab (see `dropscope_e2e::demo`). Run it with `cargo xtask demo`,
//! which builds the agent and this binary and runs it as root.
//!
//! Ctrl-C (or SIGTERM) stops the demo: its child processes are told to
//! stop, the scenario being played unwinds, and its lab (namespaces,
//! cgroups, nftables, snapshot) is removed before the demo exits. A second
//! signal exits at once.

use std::{
    io::Read as _,
    os::fd::{FromRawFd as _, OwnedFd},
    process::ExitCode,
    sync::atomic::{AtomicI32, Ordering},
    time::{Duration, Instant},
};

use dropscope_e2e::demo::{self, INTERRUPTED, Options};

const USAGE: &str = "usage: dropscope-demo [--ci] [--only N]
  --ci       no pauses, no colours; a failed check fails the run
  --only N   only the N-th incident (1 to 4)";

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("dropscope-demo: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if let Err(error) = watch_signals() {
        eprintln!("dropscope-demo: {error}");
        return ExitCode::from(2);
    }
    let result = std::thread::spawn(move || demo::run(&options)).join();
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) if INTERRUPTED.load(Ordering::Relaxed) => {
            eprintln!("dropscope-demo: stopped ({error}); the lab was removed");
            ExitCode::from(130)
        }
        Ok(Err(error)) => {
            eprintln!("dropscope-demo: {error:#}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("dropscope-demo: the demo panicked; its lab was removed");
            ExitCode::FAILURE
        }
    }
}

/// The options, or `None` when help was asked for.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ci" => options.ci = true,
            "--only" => {
                let value = args.next().ok_or("--only needs a number")?;
                options.only = Some(
                    value
                        .parse()
                        .map_err(|_| format!("--only {value:?}: a number"))?,
                );
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(options))
}

/// The write end of the pipe the signal handler writes to.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

/// The handler of SIGINT and SIGTERM: one byte into the pipe (write(2) is
/// async-signal-safe). Children get the default handlers back at exec.
extern "C" fn on_signal(_: libc::c_int) {
    let byte = 1u8;
    // SAFETY: write(2) of one byte from the stack to a pipe we made.
    unsafe {
        libc::write(
            SIGNAL_PIPE.load(Ordering::Relaxed),
            (&raw const byte).cast(),
            1,
        )
    };
}

/// Catches SIGINT and SIGTERM and handles them on a thread of its own: the
/// first sets [`INTERRUPTED`] and stops this process's children, a second
/// (half a second later or more: a terminal's Ctrl-C may arrive twice)
/// exits at once.
fn watch_signals() -> Result<(), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two fds of the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", std::io::Error::last_os_error()));
    }
    SIGNAL_PIPE.store(fds[1], Ordering::Relaxed);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with our handler, installed for a
        // signal number libc defines.
        let installed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&raw mut action.sa_mask);
            libc::sigaction(signal, &raw const action, std::ptr::null_mut())
        };
        if installed != 0 {
            return Err(format!("sigaction: {}", std::io::Error::last_os_error()));
        }
    }
    // SAFETY: the read end is ours alone from here on.
    let mut signals = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fds[0]) });
    std::thread::spawn(move || {
        let mut first: Option<Instant> = None;
        let mut byte = [0u8; 1];
        while signals.read_exact(&mut byte).is_ok() {
            match first {
                Some(at) if at.elapsed() > Duration::from_millis(500) => {
                    eprintln!(
                        "\ndropscope-demo: stopped at once; the lab may remain (its namespaces are ds<N>-*)"
                    );
                    std::process::exit(130);
                }
                Some(_) => {}
                None => {
                    first = Some(Instant::now());
                    INTERRUPTED.store(true, Ordering::Relaxed);
                    eprintln!(
                        "\ndropscope-demo: stopping, removing the lab (again to stop at once)"
                    );
                    stop_children();
                }
            }
        }
    });
    Ok(())
}

/// Sends SIGTERM to every child of this process (the agent, lab clients
/// and servers), so that what the demo waits on ends now.
fn stop_children() {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
        let parent = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if parent == Some(me) {
            // SAFETY: kill(2) on a pid read from /proc; at worst ESRCH.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}
