//! `docs/reference/cli.md`: every subcommand, flag and environment variable
//! of `dropscope`, from the command line parser itself.

use std::fmt::Write as _;

use clap::CommandFactory as _;

use super::{cell, check_page, generated_from};
use crate::cli::Cli;

fn render() -> String {
    let mut out = generated_from("the command line parser (agent/src/cli)");
    out.push_str(
        "# Flags and environment variables\n\n\
         Every flag of every subcommand; a flag with an environment variable takes its value from it \
         when not given (the flag wins). `dropscope SUBCOMMAND --help` prints the same.\n",
    );
    let command = Cli::command();
    for sub in command.get_subcommands() {
        let _ = write!(out, "\n## `dropscope {}`\n\n", sub.get_name());
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            let _ = writeln!(out, "{}\n", about.to_string().trim());
        }
        out.push_str("| flag | environment | default | what it does |\n|---|---|---|---|\n");
        for arg in sub.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "help" || long == "version" {
                continue;
            }
            let value = arg
                .get_value_names()
                .map(|names| {
                    format!(
                        " {}",
                        names
                            .iter()
                            .map(|name| name.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    )
                })
                .unwrap_or_default();
            let takes_value = arg.get_num_args().is_some_and(|range| range.takes_values());
            let flag = if takes_value && value.is_empty() {
                format!("--{long} {}", arg.get_id().as_str().to_ascii_uppercase())
            } else {
                format!("--{long}{value}")
            };
            let environment = arg
                .get_env()
                .map(|name| format!("`{}`", name.to_string_lossy()))
                .unwrap_or_default();
            let default = arg
                .get_default_values()
                .iter()
                .map(|value| format!("`{}`", value.to_string_lossy()))
                .collect::<Vec<_>>()
                .join(", ");
            let help = arg
                .get_long_help()
                .or_else(|| arg.get_help())
                .map(|help| help.to_string())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| `{}` | {environment} | {default} | {} |",
                cell(&flag),
                cell(&help)
            );
        }
    }
    out
}

#[test]
fn cli_page_is_current() {
    check_page("cli.md", &render());
}

#[test]
fn every_flag_says_what_it_does() {
    for sub in Cli::command().get_subcommands() {
        for arg in sub.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            assert!(
                arg.get_help().is_some() || long == "help" || long == "version",
                "dropscope {} --{long} has no help",
                sub.get_name()
            );
        }
    }
}
