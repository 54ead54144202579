//! The read-only commands: `status`, `history`, `journal show`, `journal
//! verify`, and the lookup behind `rollback`. They take no lock and tolerate
//! a torn tail, so they work while a deploy runs.

use serde_json::{json, Value};

use crate::docker::Engine;
use crate::error::Failure;
use crate::record::{rfc3339, Event, Outcome};
use crate::report::Report;
use crate::state::StateDir;
use crate::step::short;

type Records = Vec<journal::Record<Event>>;

/// Writes to stdout; a reader that closed the pipe (`| head`) ends the
/// output quietly instead of panicking.
fn write_out(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_fmt(text);
}

macro_rules! out {
    ($($arg:tt)*) => { write_out(format_args!($($arg)*)) };
}

macro_rules! outln {
    ($($arg:tt)*) => { write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

fn load(state: &StateDir, app: &str) -> Result<Records, Failure> {
    crate::spec::validate_app(app).map_err(Failure::BadInput)?;
    let path = state.journal(app);
    if !path.exists() {
        return Err(Failure::BadInput(format!("no journal for {app} at {}", path.display())));
    }
    Ok(journal::read::<Event>(&path)?.records)
}

/// One deploy, summarised from its records.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The deploy id.
    pub deploy: String,
    /// When it began (ms since the epoch).
    pub began_ms: u64,
    /// When its last record was written.
    pub last_ms: u64,
    /// The command that ran it.
    pub command: String,
    /// Image id serving before.
    pub from_image: Option<String>,
    /// Image deployed (reference and id as far as known).
    pub to_image: String,
    /// `deployed`, `rolled_back`, `halted` or `unfinished`.
    pub outcome: String,
    /// Why it did not deploy.
    pub reason: Option<String>,
    /// Milliseconds from stopping the old container to the candidate started.
    pub outage_ms: Option<u64>,
}

/// Summarises every deploy in a journal, oldest first.
pub fn summaries(records: &Records) -> Vec<Summary> {
    let mut out: Vec<Summary> = vec![];
    for r in records {
        if let Event::Begin(b) = &r.data {
            out.push(Summary {
                deploy: r.group.clone(),
                began_ms: r.ts_ms,
                last_ms: r.ts_ms,
                command: b.run.command.clone(),
                from_image: b.old.as_ref().map(|o| o.image_id.clone()),
                to_image: b.image_id.clone().unwrap_or_else(|| b.image.clone()),
                outcome: "unfinished".into(),
                reason: None,
                outage_ms: None,
            });
            continue;
        }
        let Some(s) = out.iter_mut().rev().find(|s| s.deploy == r.group) else { continue };
        s.last_ms = r.ts_ms;
        match &r.data {
            Event::Done { step: crate::step::Step::Build { .. }, output: Some(id), .. } => s.to_image = id.clone(),
            Event::Done { step: crate::step::Step::CreateCandidate { image, .. }, .. } => s.to_image = image.clone(),
            Event::Intent { step: crate::step::Step::StopOld { .. } } => s.outage_ms = Some(r.ts_ms),
            Event::Done { step: crate::step::Step::StartCandidate { .. }, .. } => {
                if let Some(start) = s.outage_ms {
                    s.outage_ms = Some(r.ts_ms.saturating_sub(start));
                }
            }
            Event::Halt { reason } => {
                s.outcome = "halted".into();
                s.reason = Some(reason.clone());
            }
            Event::End { outcome, reason } => {
                s.outcome = match outcome {
                    Outcome::Deployed => "deployed".into(),
                    Outcome::RolledBack => "rolled_back".into(),
                };
                s.reason = reason.clone();
            }
            _ => {}
        }
    }
    // An outage start never matched by a started candidate is no measurement.
    for s in &mut out {
        if s.outage_ms.is_some_and(|v| v > 1_000_000_000) {
            s.outage_ms = None;
        }
    }
    out
}

/// `swap history`.
pub fn history(state: &StateDir, app: &str, report: &Report) -> Result<String, Failure> {
    let records = load(state, app)?;
    let mut list = summaries(&records);
    list.reverse();
    let docs: Vec<Value> = list
        .iter()
        .map(|s| {
            json!({"deploy": s.deploy, "began": rfc3339(s.began_ms), "command": s.command, "from_image": s.from_image,
                   "to_image": s.to_image, "outcome": s.outcome, "reason": s.reason,
                   "duration_ms": s.last_ms - s.began_ms, "outage_ms": s.outage_ms})
        })
        .collect();
    let mut human = String::new();
    for s in &list {
        let from = s.from_image.as_deref().map(short).unwrap_or("-");
        let outage = s.outage_ms.map(|o| format!("outage {o} ms")).unwrap_or_default();
        human.push_str(&format!(
            "{}  {}  {} -> {}  {:<11} {:>6} ms  {outage}\n",
            s.deploy,
            &rfc3339(s.began_ms)[..19],
            from,
            short(&s.to_image),
            s.outcome,
            s.last_ms - s.began_ms
        ));
    }
    if report.is_json() {
        outln!("{}", json!({"app": app, "deploys": docs}));
    } else {
        out!("{human}");
    }
    Ok(String::new())
}

/// `swap journal show`.
pub fn show(state: &StateDir, app: &str, deploy: Option<&str>, report: &Report) -> Result<String, Failure> {
    let records = load(state, app)?;
    let target = match deploy {
        Some(d) => d.to_string(),
        None => records
            .iter()
            .rev()
            .find(|r| matches!(r.data, Event::Begin(_)))
            .map(|r| r.group.clone())
            .ok_or_else(|| Failure::BadInput(format!("the journal of {app} holds no deploy")))?,
    };
    let mine: Vec<&journal::Record<Event>> = records.iter().filter(|r| r.group == target).collect();
    if mine.is_empty() {
        return Err(Failure::BadInput(format!("no deploy {target} in the journal of {app}")));
    }
    if report.is_json() {
        for r in &mine {
            outln!("{}", json!({"seq": r.seq, "ts": rfc3339(r.ts_ms), "deploy": r.group, "record": r.data}));
        }
        return Ok(String::new());
    }
    let t0 = mine[0].ts_ms;
    let mut out = format!("deploy {target} of {app}\n");
    for r in &mine {
        let at = format!("+{:>5}ms", r.ts_ms - t0);
        let line = match &r.data {
            Event::Begin(b) => {
                let mut s = format!(
                    "begin by {}@{} pid {} (swap {}, {}): {} -> {}",
                    b.run.user,
                    b.run.host,
                    b.run.pid,
                    b.run.version,
                    b.run.command,
                    b.old.as_ref().map(|o| short(&o.id).to_string()).unwrap_or_else(|| "nothing".into()),
                    if b.image.is_empty() { "build" } else { &b.image }
                );
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
        let colour = match &r.data {
            Event::Done { .. } | Event::UndoDone { .. } | Event::Health { passed: true, .. } => GREEN,
            Event::Failed { .. } | Event::Halt { .. } | Event::Health { passed: false, .. } => RED,
            Event::Commit { .. } | Event::End { .. } | Event::Begin(_) | Event::Recovery { .. } => BOLD,
            _ => "",
        };
        for (i, part) in wrap(&line, WIDTH - at.len() - 2).iter().enumerate() {
            let lead = if i == 0 { at.clone() } else { " ".repeat(at.len()) };
            out.push_str(&format!("{lead}  {}\n", paint(colour, part)));
        }
    }
    if !mine.iter().any(|r| matches!(r.data, Event::End { .. })) {
        out.push_str("(unfinished: run `swap recover`)\n");
    }
    out!("{out}");
    Ok(String::new())
}

/// `journal show` fits an 80-column terminal without a pager.
const WIDTH: usize = 80;

/// Word-wraps a line (which may hold newlines) to `width` columns; the
/// continuation of a wrapped line keeps its indentation plus two.
fn wrap(text: &str, width: usize) -> Vec<String> {
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

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const BOLD: &str = "\x1b[1m";

/// Colours a line only for a person at a terminal, and never with `NO_COLOR`.
fn paint(colour: &str, text: &str) -> String {
    use std::io::IsTerminal;
    let wanted = !colour.is_empty()
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    if wanted {
        format!("{colour}{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// `swap journal verify`.
pub fn verify(state: &StateDir, app: &str, report: &Report) -> Result<String, Failure> {
    crate::spec::validate_app(app).map_err(Failure::BadInput)?;
    let path = state.journal(app);
    if !path.exists() {
        return Err(Failure::BadInput(format!("no journal for {app} at {}", path.display())));
    }
    let r = journal::verify(&path)?;
    let sound = r.tail == journal::Tail::Clean;
    if report.is_json() {
        let tail = match &r.tail {
            journal::Tail::Clean => json!("clean"),
            journal::Tail::Torn { offset, line, len } => json!({"torn": {"offset": offset, "line": line, "len": len}}),
        };
        outln!("{}", json!({"app": app, "records": r.records, "bytes": r.bytes, "tail": tail, "sound": sound}));
    }
    match r.tail {
        journal::Tail::Clean if report.is_json() => Ok(String::new()),
        journal::Tail::Clean => Ok(format!("{}: {} records, {} bytes, sound", path.display(), r.records, r.bytes)),
        journal::Tail::Torn { offset, line, len } => Err(Failure::Halted(format!(
            "{}: torn tail of {len} bytes at byte {offset} (line {line}) after {} sound records; `swap recover {app}` repairs it",
            path.display(),
            r.records
        ))),
    }
}

/// Docker's nanosecond timestamp cut to the milliseconds swap promises.
fn millis(ts: &str) -> Option<String> {
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

/// `swap status`.
pub async fn status<E: Engine>(
    engine: &E,
    state: &StateDir,
    app: Option<&str>,
    report: &Report,
) -> Result<String, Failure> {
    let apps = match app {
        Some(a) => vec![a.to_string()],
        None => state.apps()?,
    };
    let mut docs = vec![];
    let mut human = String::new();
    for app in apps {
        let records = load(state, &app)?;
        let last = summaries(&records).pop();
        let c = engine.container(&app).await.map_err(|e| Failure::Incomplete(e.to_string()))?;
        let unfinished = crate::recover::unfinished(&records);
        docs.push(json!({
            "app": app,
            "container": c.as_ref().map(|c| json!({"id": c.id, "image_id": c.image_id, "image": c.image_ref,
                "running": c.running, "started_at": millis(&c.started_at), "health": c.health})),
            "last_deploy": last.as_ref().map(|s| json!({"deploy": s.deploy, "outcome": s.outcome, "began": rfc3339(s.began_ms)})),
            "unfinished": unfinished,
        }));
        let serving = match &c {
            Some(c) => format!(
                "{} {} ({}, {})",
                short(&c.id),
                c.image_ref,
                if c.running { "running" } else { &c.status },
                c.health.as_deref().unwrap_or("no healthcheck")
            ),
            None => "no container".into(),
        };
        human.push_str(&format!("{app}: {serving}"));
        if let Some(s) = &last {
            human.push_str(&format!("; last deploy {} {}", s.deploy, s.outcome));
        }
        if let Some(d) = &unfinished {
            human.push_str(&format!("; deploy {d} UNFINISHED: run `swap recover {app}`"));
        }
        human.push('\n');
    }
    if report.is_json() {
        outln!("{}", json!({"apps": docs}));
    } else {
        out!("{human}");
    }
    Ok(String::new())
}

/// The image `swap rollback` deploys: the one serving before the last
/// successful deploy, or before the given one.
pub fn rollback_image(state: &StateDir, app: &str, to: Option<&str>) -> Result<String, Failure> {
    let records = load(state, app)?;
    let list = summaries(&records);
    let pick = match to {
        Some(d) => list
            .iter()
            .find(|s| s.deploy == d)
            .ok_or_else(|| Failure::BadInput(format!("no deploy {d} in the journal of {app}")))?,
        None => list
            .iter()
            .rev()
            .find(|s| s.outcome == "deployed")
            .ok_or_else(|| Failure::BadInput(format!("{app} has no successful deploy to roll back")))?,
    };
    pick.from_image.clone().ok_or_else(|| {
        Failure::BadInput(format!("deploy {} of {app} was a first deploy: there is no earlier image", pick.deploy))
    })
}

/// `swap journal compact`: keeps the last `keep` finished deploys (and any
/// unfinished one), atomically, under the lock.
pub async fn compact(
    state: &StateDir,
    app: &str,
    keep: usize,
    lock_wait: Option<std::time::Duration>,
    report: &Report,
) -> Result<String, Failure> {
    let path = state.journal(app);
    if !path.exists() {
        return Err(Failure::BadInput(format!("no journal for {app} at {}", path.display())));
    }
    let (mut journal, _) = state.open(app, lock_wait, &format!("swap journal compact {app}"), None, report).await?;
    let dropped = journal
        .compact(keep, |_, records| records.iter().any(|r| matches!(r.data, Event::End { .. })))
        .map_err(|e| Failure::Incomplete(format!("compaction failed, the journal is unchanged: {e}")))?;
    Ok(format!("{}: dropped {dropped} records, kept the last {keep} finished deploys", path.display()))
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
