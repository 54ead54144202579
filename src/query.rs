//! The read-only commands: `status`, `history`, `journal show` and
//! `journal verify`. They take no lock and tolerate a torn tail, so they
//! work while a deploy runs. What the journal says comes from
//! [`crate::history`]; how it looks on a terminal from [`crate::render`].

use serde_json::{json, Value};

use crate::docker::Engine;
use crate::error::Failure;
use crate::history::{image_label, load, summaries};
use crate::record::{rfc3339, Event};
use crate::render::{millis, out, outln, paint, record_line, wrap, WIDTH};
use crate::report::Report;
use crate::state::StateDir;
use crate::step::short;

/// `swap history`.
pub fn history(state: &StateDir, app: &str, report: &Report) -> Result<String, Failure> {
    let records = load(state, app)?;
    let mut list = summaries(&records);
    list.reverse();
    let docs: Vec<Value> = list
        .iter()
        .map(|s| {
            json!({"deploy": s.deploy, "began": rfc3339(s.began_ms), "command": s.command, "from_image": s.from_image,
                   "from_reference": s.from_reference, "to_image": s.to_image, "to_reference": s.to_reference,
                   "to_digest": s.to_digest, "outcome": s.outcome.as_str(), "reason": s.reason,
                   "duration_ms": s.last_ms - s.began_ms, "outage_ms": s.outage_ms,
                   "strategy": s.strategy.as_str()})
        })
        .collect();
    let mut human = String::new();
    for s in &list {
        let from = match &s.from_image {
            Some(id) => image_label(s.from_reference.as_deref(), id),
            None => "-".to_string(),
        };
        let outage = match (s.strategy.is_default(), s.outage_ms) {
            (false, _) => s.strategy.as_str().to_string(),
            (true, Some(o)) => format!("outage {o} ms"),
            (true, None) => String::new(),
        };
        human.push_str(&format!(
            "{}  {}  {} -> {}  {:<11} {:>6} ms  {outage}\n",
            s.deploy,
            &rfc3339(s.began_ms)[..19],
            from,
            image_label(Some(&s.to_reference), &s.to_image),
            s.outcome.as_str(),
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
        let (line, colour) = record_line(app, &r.data);
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
        journal::Tail::Clean => {
            outln!("{}: {} records, {} bytes, sound", path.display(), r.records, r.bytes);
            Ok(String::new())
        }
        journal::Tail::Torn { offset, line, len } => Err(Failure::Halted(format!(
            "{}: torn tail of {len} bytes at byte {offset} (line {line}) after {} sound records; `swap recover {app}` repairs it",
            path.display(),
            r.records
        ))),
    }
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
        let unfinished = crate::history::unfinished(&records);
        docs.push(json!({
            "app": app,
            "container": c.as_ref().map(|c| json!({"id": c.id, "image_id": c.image_id, "image": c.image_ref,
                "running": c.running, "started_at": millis(&c.started_at), "health": c.health,
                "strategy": c.labels.get(crate::strategy::LABEL_STRATEGY)})),
            "last_deploy": last.as_ref().map(|s| json!({"deploy": s.deploy, "outcome": s.outcome.as_str(), "began": rfc3339(s.began_ms)})),
            "unfinished": unfinished,
        }));
        let serving = match &c {
            Some(c) => format!(
                "{} {} ({}, {})",
                short(&c.id),
                image_label(Some(&c.image_ref), &c.image_id),
                if c.running { "running" } else { &c.status },
                c.health.as_deref().unwrap_or("no healthcheck")
            ),
            None => "no container".into(),
        };
        human.push_str(&format!("{app}: {serving}"));
        if let Some(s) = &last {
            human.push_str(&format!("; last deploy {} {}", s.deploy, s.outcome.as_str()));
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
