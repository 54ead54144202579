//! What an app's journal says happened: its deploys summarised, the
//! unfinished one, and what recovery needs to decide about it. Pure
//! functions of the records; the commands that print them are in
//! [`crate::query`], the recovery that acts on them in [`crate::recover`].

use serde::Serialize;

use crate::error::Failure;
use crate::record::{Begin, Event, Outcome};
use crate::state::StateDir;
use crate::step::Step;

/// The records of a journal, in order.
pub type Records = Vec<journal::Record<Event>>;

/// Reads an app's journal without the lock, tolerating a torn tail: what
/// the read-only commands show while a deploy runs.
pub fn load(state: &StateDir, app: &str) -> Result<Records, Failure> {
    crate::spec::validate_app(app).map_err(Failure::BadInput)?;
    let path = state.journal(app);
    if !path.exists() {
        return Err(Failure::BadInput(format!("no journal for {app} at {}", path.display())));
    }
    Ok(journal::read::<Event>(&path)?.records)
}

/// How a deploy stands, as its records tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// It ended with the candidate serving.
    Deployed,
    /// It ended with the old version serving again.
    RolledBack,
    /// Recovery halted on it; an operator is needed.
    Halted,
    /// It began and has not ended: `swap recover` finishes it.
    Unfinished,
}

impl Standing {
    /// The word shown and written to `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Deployed => "deployed",
            Standing::RolledBack => "rolled_back",
            Standing::Halted => "halted",
            Standing::Unfinished => "unfinished",
        }
    }
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
    /// The reference the container serving before ran (`web:1.4`).
    pub from_reference: Option<String>,
    /// Image id deployed (or the reference, until the id is known).
    pub to_image: String,
    /// The reference deployed (`web:1.5`), empty for an untagged build.
    pub to_reference: String,
    /// `repo@sha256:…` the deployed image was pulled as.
    pub to_digest: Option<String>,
    /// How it stands.
    pub outcome: Standing,
    /// Why it did not deploy.
    pub reason: Option<String>,
    /// Milliseconds from stopping the old container to the candidate
    /// started (stop-first; a start-first deploy has no such gap).
    pub outage_ms: Option<u64>,
    /// How the old container was replaced.
    pub strategy: crate::strategy::Strategy,
    /// Whether the candidate itself failed: its health gate, or its create
    /// or start refused by Docker (not a signal, a lost daemon or a journal
    /// that went away).
    pub candidate_failed: bool,
}

/// Summarises every deploy in a journal, oldest first.
pub fn summaries(records: &[journal::Record<Event>]) -> Vec<Summary> {
    let mut out: Vec<Summary> = vec![];
    for r in records {
        if let Event::Begin(b) = &r.data {
            out.push(Summary {
                deploy: r.group.clone(),
                began_ms: r.ts_ms,
                last_ms: r.ts_ms,
                command: b.run.command.clone(),
                from_image: b.old.as_ref().map(|o| o.image_id.clone()),
                from_reference: b.old.as_ref().map(|o| o.image.clone()),
                to_image: b.image_id.clone().unwrap_or_else(|| b.image.clone()),
                to_reference: b.image.clone(),
                to_digest: b.pulled.as_ref().and_then(|p| p.repo_digest.clone()),
                outcome: Standing::Unfinished,
                reason: None,
                outage_ms: None,
                strategy: b.strategy,
                candidate_failed: false,
            });
            continue;
        }
        let Some(s) = out.iter_mut().rev().find(|s| s.deploy == r.group) else { continue };
        s.last_ms = r.ts_ms;
        match &r.data {
            Event::Done { step: Step::Build { tag, .. }, output: Some(id), .. } => {
                s.to_image = id.clone();
                s.to_reference = tag.clone().unwrap_or_default();
            }
            Event::Done { step: Step::CreateCandidate { image, .. }, .. } => s.to_image = image.clone(),
            Event::Intent { step: Step::StopOld { .. } } if s.strategy.is_default() => s.outage_ms = Some(r.ts_ms),
            Event::Done { step: Step::StartCandidate { .. }, .. } => {
                if let Some(start) = s.outage_ms {
                    s.outage_ms = Some(r.ts_ms.saturating_sub(start));
                }
            }
            Event::Health { passed: false, .. } => s.candidate_failed = true,
            Event::Failed {
                step: Step::CreateCandidate { .. } | Step::StartCandidate { .. },
                unreachable: false,
                ..
            } => s.candidate_failed = true,
            Event::Halt { reason } => {
                s.outcome = Standing::Halted;
                s.reason = Some(reason.clone());
            }
            Event::End { outcome, reason } => {
                s.outcome = match outcome {
                    Outcome::Deployed => Standing::Deployed,
                    Outcome::RolledBack => Standing::RolledBack,
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

/// The unfinished deploy in a journal: the last one that began and did not end.
pub fn unfinished(records: &[journal::Record<Event>]) -> Option<String> {
    let last_begin = records.iter().rev().find(|r| matches!(r.data, Event::Begin(_)))?;
    let ended = records.iter().any(|r| r.group == last_begin.group && matches!(r.data, Event::End { .. }));
    (!ended).then(|| last_begin.group.clone())
}

/// What recovery decides an unfinished deploy from.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The deploy's plan.
    pub begin: Begin,
    /// Steps whose intent is durable, in order.
    pub intended: Vec<Step>,
    /// The committed candidate, when the commit record is durable.
    pub committed: Option<String>,
}

/// The decision inputs for deploy `deploy`.
pub fn decide(records: &[journal::Record<Event>], deploy: &str) -> Result<Decision, Failure> {
    let mine = records.iter().filter(|r| r.group == deploy);
    let mut begin = None;
    let mut intended: Vec<Step> = vec![];
    let mut committed = None;
    for r in mine {
        match &r.data {
            Event::Begin(b) => begin = Some(b.clone()),
            Event::Intent { step } if !intended.contains(step) => intended.push(step.clone()),
            Event::Commit { container } => committed = Some(container.clone()),
            _ => {}
        }
    }
    let begin = begin.ok_or_else(|| Failure::Halted(format!("deploy {deploy} has no begin record")))?;
    Ok(Decision { begin, intended, committed })
}

/// What `swap rollback` goes back to: the image that served before the
/// last successful deploy (or before the given one), by id, with what the
/// journal knows to find it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackTarget {
    /// The deploy it rolls back.
    pub deploy: String,
    /// The image id that served before it.
    pub image_id: String,
    /// The reference that image was deployed as (`web:1.4`), if known.
    pub reference: Option<String>,
    /// `repo@sha256:…` the image was pulled as, if it ever was.
    pub repo_digest: Option<String>,
    /// The deploy whose `--keep-images` clean-up removed the image, if one did.
    pub removed_by: Option<String>,
}

/// Picks the rollback target from the journal.
pub fn rollback_target(state: &StateDir, app: &str, to: Option<&str>) -> Result<RollbackTarget, Failure> {
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
            .find(|s| s.outcome == Standing::Deployed)
            .ok_or_else(|| Failure::BadInput(format!("{app} has no successful deploy to roll back")))?,
    };
    let image_id = pick.from_image.clone().ok_or_else(|| {
        Failure::BadInput(format!("deploy {} of {app} was a first deploy: there is no earlier image", pick.deploy))
    })?;
    // How that image came: the reference the old container ran, and a digest
    // from whichever deploy pulled it.
    let mut reference = pick.from_reference.clone().filter(|r| !r.is_empty() && !r.starts_with("sha256:"));
    let mut repo_digest = None;
    let mut removed_by = None;
    for r in records.iter() {
        match &r.data {
            Event::Begin(b) => {
                if let Some(p) = b.pulled.as_ref().filter(|p| p.image_id == image_id) {
                    repo_digest = p.repo_digest.clone().or(repo_digest);
                    reference = reference.or_else(|| Some(p.reference.clone()));
                }
            }
            Event::Done { step: Step::RemoveImage { image }, .. } if *image == image_id => {
                removed_by = Some(r.group.clone());
            }
            _ => {}
        }
    }
    Ok(RollbackTarget { deploy: pick.deploy.clone(), image_id, reference, repo_digest, removed_by })
}

/// `web:1.5 (abebb39c29dc)`: a reference with the short id it names; the
/// short id alone when there is no reference.
pub fn image_label(reference: Option<&str>, image_id: &str) -> String {
    match reference.filter(|r| !r.is_empty() && !r.starts_with("sha256:")) {
        Some(r) if !image_id.is_empty() => format!("{r} ({})", crate::step::short(image_id)),
        Some(r) => r.to_string(),
        None => crate::step::short(image_id).to_string(),
    }
}
