//! Terminal rendering for the read-only commands: writing to stdout
//! without panicking on a closed pipe, `journal show`'s one line per
//! record, word wrapping to 80 columns, and colour for a person at a
//! terminal. What the lines say comes from the records; how they look is
//! decided here only.

use crate::record::{Event, Outcome};
use crate::step::short;

/// Writes to stdout; a reader that closed the pipe (`| head`) ends the
/// output quietly instead of panicking.
pub fn write_out(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_fmt(text);
}

/// `print!` that never panics (see [`write_out`]).
macro_rules! out {
    ($($arg:tt)*) => { $crate::render::write_out(format_args!($($arg)*)) };
}

/// `println!` that never panics (see [`write_out`]).
macro_rules! outln {
    ($($arg:tt)*) => { $crate::render::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {out, outln};

/// `journal show` fits an 80-column terminal without a pager.
pub const WIDTH: usize = 80;

/// A colour for a line, applied only at a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    /// No colour.
    Plain,
    /// Something done.
    Green,
    /// Something failed.
    Red,
    /// A milestone: begin, commit, end, recovery.
    Bold,
}

impl Colour {
    fn style(self) -> anstyle::Style {
        use anstyle::{AnsiColor, Style};
        match self {
            Colour::Plain => Style::new(),
            Colour::Green => AnsiColor::Green.on_default(),
            Colour::Red => AnsiColor::Red.on_default(),
            Colour::Bold => Style::new().bold(),
        }
    }
}

/// One record of `journal show`, for a person: its text (which may hold
/// indented continuation lines) and its colour.
pub fn record_line(app: &str, event: &Event) -> (String, Colour) {
    let line = match event {
        Event::Begin(b) => {
            let mut s = format!(
                "begin by {}@{} pid {} (swap {}, {}): {} -> {}",
                b.run.user,
                b.run.host,
                b.run.pid,
                b.run.version,
                b.run.command,
                b.old
                    .as_ref()
                    .map(|o| format!("{} {}", short(&o.id), crate::history::image_label(Some(&o.image), &o.image_id)))
                    .unwrap_or_else(|| "nothing".into()),
                if b.image.is_empty() {
                    "build".to_string()
                } else {
                    crate::history::image_label(Some(&b.image), b.image_id.as_deref().unwrap_or_default())
                }
            );
            if !b.strategy.is_default() {
                s.push_str(&format!(" ({})", b.strategy));
            }
            if let Some(p) = &b.pulled {
                s.push_str(&format!(
                    "\n             pulled {} as {}",
                    p.reference,
                    p.repo_digest.as_deref().unwrap_or(&p.image_id)
                ));
            }
            for m in b.old.iter().flat_map(|o| &o.volumes) {
                s.push_str(&format!("\n             old mounts {}", crate::spec::describe_mount(m)));
            }
            for m in &b.volumes {
                s.push_str(&format!("\n             new mounts {}", crate::spec::describe_mount(m)));
            }
            s
        }
        Event::Intent { step } => format!("  → {}", step.describe()),
        Event::Done { step, ms, .. } => format!("  ✓ {} ({ms} ms)", step.name()),
        Event::Failed { step, error, .. } => format!("  ✗ {}: {error}", step.name()),
        Event::Health { outcome, passed, logs, ms, .. } => {
            let mut s = format!("  {} health: {outcome} ({ms} ms)", if *passed { "✓" } else { "✗" });
            for l in logs {
                s.push_str(&format!("\n             | {l}"));
            }
            s
        }
        Event::Commit { container } => format!("● commit: {app} is {}", short(container)),
        Event::UndoIntent { step } => format!("  ↶ undo {}", step.describe()),
        Event::UndoDone { step, ms } => format!("  ↶ undone {} ({ms} ms)", step.name()),
        Event::Recovery { run, decision, waited_ms } => {
            let waited =
                waited_ms.map(|ms| format!(" (after waiting {ms} ms for a call in flight)")).unwrap_or_default();
            format!("recovery by {}@{} pid {}: {decision}{waited}", run.user, run.host, run.pid)
        }
        Event::Halt { reason } => format!("HALT: {reason}"),
        Event::Hangup { at } => format!("hangup at {at}: the terminal went away; carried on"),
        Event::End { outcome, reason } => format!(
            "end: {}{}",
            match outcome {
                Outcome::Deployed => "deployed",
                Outcome::RolledBack => "rolled back",
            },
            reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
        ),
    };
    let colour = match event {
        Event::Done { .. } | Event::UndoDone { .. } | Event::Health { passed: true, .. } => Colour::Green,
        Event::Failed { .. } | Event::Halt { .. } | Event::Health { passed: false, .. } => Colour::Red,
        Event::Commit { .. } | Event::End { .. } | Event::Begin(_) | Event::Recovery { .. } => Colour::Bold,
        _ => Colour::Plain,
    };
    (line, colour)
}

/// Word-wraps a line (which may hold newlines) to `width` columns; the
/// continuation of a wrapped line keeps its indentation plus two.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = vec![];
    for line in text.lines() {
        let lead = &line[..line.len() - line.trim_start().len()];
        let cont = format!("{lead}  ");
        let mut current = lead.to_string();
        let mut fresh = true;
        for word in line.trim_start().split(' ') {
            if !fresh && current.chars().count() + 1 + word.chars().count() > width {
                out.push(std::mem::take(&mut current));
                current.clone_from(&cont);
                fresh = true;
            }
            if !fresh {
                current.push(' ');
            }
            current.push_str(word);
            fresh = false;
        }
        out.push(current);
    }
    out
}

/// Sets `--color` for the rest of the process.
pub fn set_colour(choice: crate::cli::ColorChoice) {
    use crate::cli::ColorChoice;
    let choice = match choice {
        ColorChoice::Auto => anstream::ColorChoice::Auto,
        ColorChoice::Always => anstream::ColorChoice::Always,
        ColorChoice::Never => anstream::ColorChoice::Never,
    };
    choice.write_global();
}

/// Colours a line for stdout as `--color` says: with `auto` (the default)
/// only at a terminal, never with `NO_COLOR`, always with `CLICOLOR_FORCE`.
pub fn paint(colour: Colour, text: &str) -> String {
    let wanted = colour != Colour::Plain
        && !matches!(anstream::AutoStream::choice(&std::io::stdout()), anstream::ColorChoice::Never);
    if wanted {
        let style = colour.style();
        format!("{}{text}{}", style.render(), style.render_reset())
    } else {
        text.to_string()
    }
}

/// Docker's nanosecond timestamp cut to the milliseconds swap promises.
pub fn millis(ts: &str) -> Option<String> {
    if ts.is_empty() || ts.starts_with("0001-") {
        return None;
    }
    let (head, frac) = match ts.split_once('.') {
        Some((h, f)) => (h, f.trim_end_matches('Z')),
        None => (ts.trim_end_matches('Z'), ""),
    };
    let digits: String = frac.chars().filter(char::is_ascii_digit).chain(std::iter::repeat('0')).take(3).collect();
    Some(format!("{head}.{digits}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_lines_within_width_and_indents_continuations() {
        let line = "  → create a-rather-long-app-name--swap-new from image d46a68aef83b on swap-test-bridge";
        let parts = wrap(line, 40);
        assert!(parts.len() > 1, "{parts:?}");
        assert!(parts.iter().all(|p| p.chars().count() <= 40), "{parts:?}");
        assert!(parts[0].starts_with("  → create"));
        assert!(parts[1].starts_with("    "), "{parts:?}");
        assert_eq!(parts.join(" ").split_whitespace().collect::<Vec<_>>(), line.split_whitespace().collect::<Vec<_>>());
        assert_eq!(wrap("short", 40), vec!["short"]);
    }

    #[test]
    fn docker_times_are_cut_to_milliseconds() {
        assert_eq!(millis("2026-11-28T16:17:04.041235896Z").as_deref(), Some("2026-11-28T16:17:04.041Z"));
        assert_eq!(millis("2026-11-28T16:17:04Z").as_deref(), Some("2026-11-28T16:17:04.000Z"));
        assert_eq!(millis("0001-01-01T00:00:00Z"), None);
    }
}
