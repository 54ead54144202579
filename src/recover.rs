//! `swap recover`: finish or reverse a deploy that a crash left unfinished.
//!
//! The journal says what was intended and in which order; Docker, observed
//! by container id and labels, says what happened. Before the commit record
//! every intended step is undone where its effect shows (rollback); after
//! it, the deploy is finished (forward). Anything Docker holds that the
//! journal cannot explain halts recovery without changing anything.
//! `docs/recovery.md` has the decision table.

use std::time::Duration;

use serde_json::json;

use crate::docker::Engine;
use crate::error::Failure;
use crate::history::{decide, unfinished, Decision};
use crate::progress::Progress;
use crate::record::{Event, Outcome, RunInfo};
use crate::report::Report;
use crate::run::{retry_unreachable, Phase, Run};
use crate::state::StateDir;
use crate::step::{short, Step, StepError, LABEL_DEPLOY};

/// What recovery found and did for one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// The journal ends with a finished deploy: nothing to do.
    Clean,
    /// The unfinished deploy was rolled back.
    RolledBack(String),
    /// The unfinished deploy was finished.
    Forward(String),
    /// `--dry-run`: the decision was printed, nothing changed.
    DryRun,
}

/// Resumes an unfinished deploy under the journal's lock.
pub async fn resume<E: Engine>(
    engine: &E,
    journal: &mut journal::Journal<Event>,
    records: &[journal::Record<Event>],
    deploy: &str,
    report: &Report,
) -> Result<Recovered, Failure> {
    let d = decide(records, deploy)?;
    retry_unreachable(|| async { engine.ping().await.map_err(StepError::from) })
        .await
        .map_err(|e| Failure::Incomplete(format!("{e}; the journal is intact, run `swap recover` again later")))?;
    let waited_ms = settle_orphan(engine, records, deploy, report).await;
    let mut run = Run::new(engine, journal, deploy, report, Phase::ForwardOnly);
    let app = d.begin.app.clone();
    match &d.committed {
        Some(cand) => {
            run.append(Event::Recovery { run: RunInfo::current("recover"), decision: "forward".into(), waited_ms })?;
            report.note(format!("deploy {deploy} had committed; finishing it"));
            let c = observe(engine, cand).await?;
            let Some(c) = c else {
                return Err(run.halt(format!("the committed container {} of {app} is gone", short(cand))));
            };
            if c.name != app {
                return Err(run.halt(format!(
                    "the committed container {} is named {}, not {app}",
                    short(cand),
                    c.name
                )));
            }
            if !c.running {
                run.step_observed(Step::StartCandidate { id: cand.clone(), timeout_s: 10 }).await?;
            }
            run.finish(d.begin.old.as_ref(), 10).await?;
            run.append(Event::End { outcome: Outcome::Deployed, reason: Some("finished by recovery".into()) })?;
            Ok(Recovered::Forward(deploy.to_string()))
        }
        None => {
            match examine(engine, &d, deploy).await? {
                Before::Explained => {}
                Before::Unexplained(why) => return Err(run.halt(why)),
                Before::Settled(outcome, reason) => {
                    run.append(Event::Recovery {
                        run: RunInfo::current("recover"),
                        decision: "settled".into(),
                        waited_ms,
                    })?;
                    report.note(format!("deploy {deploy}: {reason}; recording its end"));
                    run.append(Event::End { outcome, reason: Some(reason) })?;
                    return Ok(match outcome {
                        Outcome::Deployed => Recovered::Forward(deploy.to_string()),
                        Outcome::RolledBack => Recovered::RolledBack(deploy.to_string()),
                    });
                }
            }
            run.append(Event::Recovery { run: RunInfo::current("recover"), decision: "rollback".into(), waited_ms })?;
            report.note(format!("deploy {deploy} had not committed; rolling it back"));
            run.adopt(d.intended);
            run.rollback("interrupted before the commit point; rolled back by recovery", d.begin.old.as_ref()).await?;
            Ok(Recovered::RolledBack(deploy.to_string()))
        }
    }
}

/// Waits, when the deploy's last record is a step's intent (or undo intent)
/// written moments ago, or a step that failed because Docker could not be
/// reached (its reply was lost), until the Docker call the dead process may
/// have sent for it must have landed. Docker finishes a request whose client
/// was killed or cut off: observed too early, a create lands after recovery
/// looked for the candidate and is left behind, a stop lands after recovery
/// saw the old container running and leaves the app down. A journal whose
/// last intent is older than the bound costs no wait, and neither does a
/// step whose effect already shows ([`crate::run::wait_in_flight`]).
/// Returns how long it waited, if it did.
async fn settle_orphan<E: Engine>(
    engine: &E,
    records: &[journal::Record<Event>],
    deploy: &str,
    report: &Report,
) -> Option<u64> {
    // A hangup note is written just before the record it precedes and says
    // nothing about a step.
    let mut mine = records.iter().rev().filter(|r| r.group == deploy && !matches!(r.data, Event::Hangup { .. }));
    let last = mine.next()?;
    let (step, undo, sent_ms) = match &last.data {
        Event::Intent { step } => (step, false, last.ts_ms),
        Event::UndoIntent { step } => (step, true, last.ts_ms),
        // The call was sent when its intent was written, just before.
        Event::Failed { step, unreachable: true, .. } => match mine.next() {
            Some(r) if matches!(&r.data, Event::Intent { step: s } if s == step) => (step, false, r.ts_ms),
            _ => (step, false, last.ts_ms),
        },
        _ => return None,
    };
    let bound = engine.orphan_bound(step.waits(undo)?);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let until_ms = sent_ms.saturating_add(bound.as_millis() as u64);
    // A clock set back since the record was written waits at most the bound.
    let wait = Duration::from_millis(until_ms.saturating_sub(now_ms)).min(bound);
    crate::run::wait_in_flight(engine, step, undo, wait, report).await
}

async fn observe<E: Engine>(engine: &E, id: &str) -> Result<Option<crate::docker::Container>, Failure> {
    retry_unreachable(|| async { engine.container(id).await.map_err(StepError::from) })
        .await
        .map_err(|e| Failure::Incomplete(format!("{e}; the journal is intact, run `swap recover` again later")))
}

/// What Docker shows about an uncommitted deploy, before rolling it back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Before {
    /// Everything is explained: roll back.
    Explained,
    /// The old container is gone and an operator settled the app by hand:
    /// end the deploy with this outcome and reason, changing nothing.
    Settled(Outcome, String),
    /// Something is unexplained: halt with this reason.
    Unexplained(String),
}

/// Checks, before rolling back, that Docker holds nothing the journal cannot
/// explain: the old container must still exist, and the app's name may only
/// be held by the old container or this deploy's candidate.
///
/// Once the old container is gone there is nothing to roll back to, so
/// recovery halts — until an operator has settled the app the way
/// `docs/operations.md` says: with this deploy's containers removed (the
/// deploy ends rolled back), or with this deploy's candidate serving under
/// the app's name (the deploy ends deployed). Either way swap only writes
/// the end of the deploy and touches no container.
async fn examine<E: Engine>(engine: &E, d: &Decision, deploy: &str) -> Result<Before, Failure> {
    let app = &d.begin.app;
    let holder = observe(engine, app).await?;
    let is_candidate = |c: &crate::docker::Container| c.labels.get(LABEL_DEPLOY).map(String::as_str) == Some(deploy);
    if let Some(old) = &d.begin.old {
        if observe(engine, &old.id).await?.is_none() {
            let mine = retry_unreachable(|| async {
                engine.containers_labelled(LABEL_DEPLOY, deploy).await.map_err(StepError::from)
            })
            .await
            .map_err(|e| Failure::Incomplete(format!("{e}; the journal is intact, run `swap recover` again later")))?;
            if mine.is_empty() {
                return Ok(Before::Settled(
                    Outcome::RolledBack,
                    format!(
                        "the old container {} was removed outside swap; an operator removed the candidate",
                        short(&old.id)
                    ),
                ));
            }
            if let Some(h) = holder.as_ref().filter(|h| is_candidate(h) && h.running && mine.len() == 1) {
                return Ok(Before::Settled(
                    Outcome::Deployed,
                    format!(
                        "the old container was removed outside swap; an operator put the candidate {} in service",
                        short(&h.id)
                    ),
                ));
            }
            return Ok(Before::Unexplained(format!(
                "the old container {} of {app} is gone: it was removed outside swap before the deploy committed \
                 (its image {} is kept). Either remove this deploy's candidate ({}) or rename it to {app} and start it",
                short(&old.id),
                short(&old.image_id),
                mine.iter().map(|id| short(id)).collect::<Vec<_>>().join(", ")
            )));
        }
    }
    if let Some(holder) = &holder {
        let is_old = d.begin.old.as_ref().is_some_and(|o| o.id == holder.id);
        if !is_old && !is_candidate(holder) {
            return Ok(Before::Unexplained(format!(
                "container {} ({}) holds the name {app} but is neither the old container nor this deploy's candidate; \
                 rename or remove it",
                short(&holder.id),
                holder.image_ref
            )));
        }
    }
    Ok(Before::Explained)
}

/// Runs `swap recover` for one app.
pub async fn recover_app<E: Engine>(
    engine: &E,
    state: &StateDir,
    app: &str,
    dry_run: bool,
    lock_wait: Option<std::time::Duration>,
    report: &Report,
    fault: Option<journal::Fault>,
) -> Result<Recovered, Failure> {
    let path = state.journal(app);
    if dry_run {
        if !path.exists() {
            return Err(Failure::BadInput(format!("no journal for {app} at {}", path.display())));
        }
        let replay = journal::read::<Event>(&path)?;
        return explain(engine, &replay.records, app, report).await;
    }
    if !path.exists() {
        return Err(Failure::BadInput(format!("no journal for {app} at {}; nothing to recover", path.display())));
    }
    let (mut journal, opened) = state.open(app, lock_wait, &format!("swap recover {app}"), fault, report).await?;
    if let Some((tail, copy)) = &opened.repaired {
        report.note(format!("repaired a torn journal tail ({tail:?}; original kept at {})", copy.display()));
    }
    match unfinished(&opened.records) {
        None => Ok(Recovered::Clean),
        Some(deploy) => resume(engine, &mut journal, &opened.records, &deploy, report).await,
    }
}

/// `recover --dry-run`: prints the decision, the evidence and the plan.
async fn explain<E: Engine>(
    engine: &E,
    records: &[journal::Record<Event>],
    app: &str,
    report: &Report,
) -> Result<Recovered, Failure> {
    let Some(deploy) = unfinished(records) else {
        report.emit(
            Progress::Decision {
                app: app.to_string(),
                deploy: None,
                decision: "none".into(),
                why: Some("no unfinished deploy".into()),
                evidence: vec![],
            },
            format!("{app}: no unfinished deploy; nothing to do"),
        );
        return Ok(Recovered::DryRun);
    };
    let d = decide(records, &deploy)?;
    let mut evidence = vec![];
    let mut human = String::new();
    for step in &d.intended {
        let observed = match step.observe(engine).await {
            Ok(Some(_)) => "in effect",
            Ok(None) => "not in effect",
            Err(StepError::Unexplained(_)) => "container gone",
            Err(_) => "unknown (Docker error)",
        };
        human.push_str(&format!("\n  - {}: {observed}", step.describe()));
        evidence.push(json!({"step": step.name(), "description": step.describe(), "observed": observed}));
    }
    let (decision, why) = match &d.committed {
        Some(c) => ("forward", format!("the commit record for {} is durable", short(c))),
        None => match examine(engine, &d, &deploy).await? {
            Before::Unexplained(why) => ("halt", why),
            Before::Settled(_, why) => ("settled", why),
            Before::Explained => ("rollback", "no commit record: undo every step in effect, newest first".to_string()),
        },
    };
    report.emit(
        Progress::Decision {
            app: app.to_string(),
            deploy: Some(deploy.to_string()),
            decision: decision.to_string(),
            why: Some(why.to_string()),
            evidence,
        },
        format!("{app}: deploy {deploy} is unfinished; decision: {decision} ({why}); steps intended:{human}"),
    );
    Ok(Recovered::DryRun)
}
