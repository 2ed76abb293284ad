//! `cargo xtask COMMAND`: the project's own build tool. It is compiled by
//! whatever cargo the machine has; it installs the pinned toolchains and
//! calls `cargo +TOOLCHAIN` for everything else.

mod bench;
mod bootstrap;
mod build;
mod demo;
mod docs;
mod fuzz;
mod process;
mod run;
mod test;
mod toolchain;
mod vm;

use anyhow::{bail, Result};

const USAGE: &str = "usage: cargo xtask <command> [options]

commands:
  bootstrap              install what is missing (toolchains, bpf-linker, apt packages, tracefs)
  build                  bootstrap, then build target/release/dropscope
  run [-- ARGS]          build, then run `dropscope agent ARGS` as root (Ctrl-C to stop)
  demo [--ci] [--only N]  build, then replay the runbooks' four silent drops in a lab and
                         show what dropscope says about each, then the fix working
  docs                   regenerate docs/reference/ (events, hints, metrics, flags)
  test [--unit|--e2e] [-- FILTER]
                         bootstrap, then fmt, clippy, unit and end-to-end tests
  bench [--quick]        benchmarks against baselines measured in the same run
  vm [--kernel 6.1|6.12] the same agent on other kernels, booted under qemu
  fuzz [TARGET] [--time SECONDS]
                         cargo-fuzz on the pinned nightly: each target (drop_record,
                         socket_record, dns_message, snapshot, filter) or TARGET for
                         SECONDS (default 60), from the seeds in fuzz/corpus/; crashes
                         go to fuzz/artifacts/
";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "bootstrap" => bootstrap::run(),
        "build" => build::run(),
        "run" => run::run(&rest),
        "demo" => demo::run(&rest),
        "docs" => docs::run(),
        "test" => test::run(&rest),
        "bench" => bench::run(&rest),
        "vm" => vm::run(&rest),
        "fuzz" => fuzz::run(&rest),
        "" | "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}
