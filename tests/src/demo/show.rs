//! The demo's terminal output: headings, wrapped prose, commands and their
//! output indented under them, coloured on a terminal (not under `--ci`,
//! nor with `NO_COLOR`).

use std::io::Write as _;

/// Where and how the demo writes.
#[derive(Clone, Copy, Debug)]
pub struct Printer {
    color: bool,
}

/// Width prose is wrapped to.
const WIDTH: usize = 78;

impl Printer {
    /// Colours only when stdout is a terminal and `plain` is false.
    pub fn new(plain: bool) -> Self {
        use std::io::IsTerminal as _;
        Self {
            color: !plain
                && std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn out(self, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }

    /// A scenario's heading: `━━ 1/4  Title ━━━…`.
    pub fn heading(self, number: usize, total: usize, title: &str) {
        let head = format!("━━ {number}/{total}  {title} ");
        let fill = WIDTH.saturating_sub(head.chars().count());
        self.out("");
        self.out(&self.paint("1;36", &format!("{head}{}", "━".repeat(fill))));
    }

    /// A part of a scenario: `Without dropscope`, `With dropscope`, …
    pub fn part(self, title: &str) {
        self.out("");
        self.out(&self.paint("1", title));
    }

    /// Prose wrapped at the output width, indented by `indent`.
    pub fn prose(self, indent: usize, text: &str) {
        let pad = " ".repeat(indent);
        let mut line = String::new();
        for word in text.split_whitespace() {
            if !line.is_empty() && pad.len() + line.len() + 1 + word.len() > WIDTH {
                self.out(&format!("{pad}{line}"));
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            self.out(&format!("{pad}{line}"));
        }
    }

    /// `  label  text`, the label dimmed and padded to `width`.
    pub fn field(self, label: &str, width: usize, text: &str) {
        let label = format!("{label:width$}");
        self.out(&format!("  {}  {text}", self.paint("2", &label)));
    }

    /// A command as typed, then its output indented under it.
    pub fn command(self, prompt: &str, command: &str, output: &str) {
        self.out(&format!(
            "  {} {}",
            self.paint("2", prompt),
            self.paint("1", command)
        ));
        for line in output.lines() {
            self.out(&format!("    {line}"));
        }
    }

    /// A workload's action and what came of it, on one line.
    pub fn action(self, who: &str, what: &str, succeeded: bool, seen: &str) {
        let seen = if succeeded {
            self.paint("32", seen)
        } else {
            self.paint("31", seen)
        };
        self.out(&format!(
            "  {} {what}",
            self.paint("2", &format!("{who} $"))
        ));
        self.out(&format!("      → {seen}"));
    }

    /// A block of text (YAML, say) indented by four.
    pub fn block(self, text: &str) {
        for line in text.lines() {
            self.out(&format!("    {line}"));
        }
    }

    /// An empty line.
    pub fn out_blank(self) {
        self.out("");
    }

    /// A plain line, indented by two.
    pub fn line(self, text: &str) {
        self.out(&format!("  {text}"));
    }

    /// A check that held (`✔`) or failed (`✘`), with what it says.
    pub fn verdict(self, held: bool, text: &str) {
        let mark = if held {
            self.paint("1;32", "✔")
        } else {
            self.paint("1;31", "✘")
        };
        self.out(&format!("{mark} {text}"));
    }
}
