//! Progress output. A person reads one line per step on stderr; a script
//! reads one JSON object per line on stdout with `--json`. Every event is
//! built once with both forms, so the two never tell different stories.
//!
//! The events and their JSON form are [`crate::progress::Progress`];
//! `docs/json-output.md` specifies them and their stability promise.
//!
//! Every write here ignores its error: after a hangup stderr and stdout may
//! be a dead terminal (EIO) or a closed pipe (EPIPE), and a deploy must not
//! die of that (`eprintln!` would panic) when it can still finish.

use std::io::{IsTerminal, Write};

use crate::progress::Progress;

/// Writes one line to stderr; a failed write is dropped.
pub fn stderr_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Writes bytes to stdout and flushes; a failed write is dropped.
pub fn stdout_bytes(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

/// Where progress goes.
#[derive(Debug, Clone)]
pub struct Report {
    /// Machine output on stdout.
    json: bool,
    /// Human output level: 0 quiet, 1 normal, 2 `-v`, 3 `-vv`.
    verbosity: u8,
    /// Whether stderr is a terminal (for transient progress lines).
    tty: bool,
}

impl Report {
    /// A reporter for the given flags.
    pub fn new(json: bool, verbosity: u8) -> Report {
        Report { json, verbosity, tty: std::io::stderr().is_terminal() }
    }

    /// A reporter that prints nothing (tests and benchmarks).
    pub fn silent() -> Report {
        Report { json: false, verbosity: 0, tty: false }
    }

    /// Emits one event: its JSON object on stdout with `--json`, its human
    /// line on stderr unless quiet.
    pub fn emit(&self, event: Progress, human: impl AsRef<str>) {
        if self.json {
            let value = event.to_json();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{value}");
            let _ = out.flush();
        }
        if self.verbosity >= 1 {
            let _ = writeln!(std::io::stderr().lock(), "{}", human.as_ref());
        }
    }

    /// A JSON-only event (pull progress, the result of a failure), printed
    /// with `--json`.
    pub fn json_only(&self, event: Progress) {
        if self.json {
            let value = event.to_json();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{value}");
            let _ = out.flush();
        }
    }

    /// A human-only line (build output), shown unless quiet.
    pub fn human(&self, human: impl AsRef<str>) {
        if self.verbosity >= 1 {
            let _ = writeln!(std::io::stderr().lock(), "{}", human.as_ref());
        }
    }

    /// A human-only line shown with `-v`.
    pub fn detail(&self, human: impl AsRef<str>) {
        if self.verbosity >= 2 {
            let _ = writeln!(std::io::stderr().lock(), "{}", human.as_ref());
        }
    }

    /// A human-only line shown with `-vv`: the journal's records as they
    /// become durable.
    pub fn trace(&self, human: impl AsRef<str>) {
        if self.verbosity >= 3 {
            let _ = writeln!(std::io::stderr().lock(), "{}", human.as_ref());
        }
    }

    /// A transient "still waiting" line, only on a terminal.
    pub fn waiting(&self, human: &str) {
        if self.tty && self.verbosity >= 1 {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K  … {human}");
        }
    }

    /// Clears a transient line.
    pub fn waiting_done(&self) {
        if self.tty && self.verbosity >= 1 {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }

    /// A note for a person (and a `note` event for scripts).
    pub fn note(&self, message: impl AsRef<str>) {
        let m = message.as_ref();
        self.emit(Progress::Note { message: m.to_string() }, format!("swap: {m}"));
    }

    /// Whether `-vv` asked for [`Report::trace`] lines.
    pub fn tracing(&self) -> bool {
        self.verbosity >= 3
    }

    /// Whether JSON goes to stdout.
    pub fn is_json(&self) -> bool {
        self.json
    }
}
