//! The journaled execution of steps: every step's intent is durable before
//! its Docker call and its outcome before the next intent; compensations
//! are journaled the same way, so a crash during a rollback resumes the
//! rollback. Deploy and recovery both drive their steps through here.

use std::time::{Duration, Instant};

use journal::Journal;

use crate::docker::Engine;
use crate::error::Failure;
use crate::progress::{Progress, StepStatus};
use crate::record::{Event, OldContainer, Outcome};
use crate::report::Report;
use crate::retry::{retry, Backoff};
use crate::step::{Inputs, Step, StepError};

/// One deploy's journaled execution.
#[derive(Debug)]
pub struct Run<'a, E> {
    /// The Docker engine.
    pub engine: &'a E,
    /// The app's journal, locked.
    pub journal: &'a mut Journal<Event>,
    /// The deploy id: the journal group of every record written.
    pub deploy: String,
    /// Where progress goes.
    pub report: &'a Report,
    /// Steps whose intent is durable, in order: what a rollback undoes.
    intended: Vec<Step>,
    /// Where the run stands relative to the commit point.
    phase: Phase,
    /// Why the run lost the daemon, when a step or the health gate ended
    /// because Docker could not be reached (not because the journal could
    /// not be written).
    docker_lost: Option<String>,
    /// A step whose call may still be running inside Docker (its reply was
    /// lost), and when it was sent: a rollback waits for it first.
    /// (Tokio's clock, so a simulation with paused time waits no real time.)
    in_flight: Option<(Step, tokio::time::Instant)>,
    /// The container the commit record names, once it is written.
    committed: Option<String>,
}

/// Where a run stands, which decides what a failed step means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A live deploy before its commit point: a failure or a Ctrl-C rolls
    /// it back.
    BeforeCommit,
    /// Past the commit point, or a recovery: only forward. A failed step
    /// leaves the deploy unfinished for `swap recover` (exit 5); it is never
    /// rolled back.
    ForwardOnly,
}

impl<'a, E: Engine> Run<'a, E> {
    /// A run of deploy `deploy` appending to `journal`, nothing intended yet.
    pub fn new(engine: &'a E, journal: &'a mut Journal<Event>, deploy: &str, report: &'a Report, phase: Phase) -> Self {
        Run {
            engine,
            journal,
            deploy: deploy.to_string(),
            report,
            intended: vec![],
            phase,
            docker_lost: None,
            in_flight: None,
            committed: None,
        }
    }

    /// Appends a record of this deploy; a failure ends the run as incomplete
    /// and nothing further runs.
    ///
    /// Before a live deploy's next intent, and before its commit, the
    /// journal must still be the file at its path: if it was removed or
    /// replaced, nothing written from here on would ever be read, so the
    /// deploy stops where a rollback is still possible (exit 1).
    pub fn append(&mut self, event: Event) -> Result<(), Failure> {
        let commit = matches!(event, Event::Commit { .. });
        let intent = matches!(event, Event::Intent { .. }) && self.phase == Phase::BeforeCommit;
        if (commit || intent) && self.journal.detached().unwrap_or(false) {
            self.phase = Phase::BeforeCommit;
            return Err(Failure::RolledBack(format!(
                "the journal {} was removed or replaced while this deploy ran",
                self.journal.path().display()
            )));
        }
        // Recovery reads an intent as the journal's last word on a step in
        // flight, so the hangup note never goes between it and its outcome;
        // nor before a deploy's `begin`, which opens its group.
        // nor before the commit, whose failed append must leave the run before
        // its commit point (the note's own failure would not).
        if !matches!(
            event,
            Event::Begin(_) | Event::Done { .. } | Event::Failed { .. } | Event::UndoDone { .. } | Event::Commit { .. }
        ) {
            if let Some(at_ms) = crate::signal::take_hangup() {
                self.journal.append(&self.deploy, Event::Hangup { at: crate::record::rfc3339(at_ms) })?;
            }
        }
        let what = self.report.tracing().then(|| serde_json::to_string(&event).unwrap_or_default());
        if let Err(e) = self.journal.append(&self.deploy, event) {
            // The journal cuts off a record it could not make durable, so a
            // commit whose append failed is no commit: no reader will see it
            // and recovery will roll back, so the deploy is still before its
            // commit point.
            if commit && e.record_dropped() {
                self.phase = Phase::BeforeCommit;
            }
            return Err(e.into());
        }
        if let Some(what) = what {
            self.report.trace(format!("    journal: {what}"));
        }
        Ok(())
    }

    /// Runs a step: intent, apply, outcome. A live deploy applies without
    /// observing first: its intent was just written by the only process
    /// holding the lock, so nothing can have happened yet.
    pub async fn step(&mut self, step: Step, inputs: Inputs<'_>) -> Result<Option<String>, Failure> {
        let engine = self.engine;
        self.step_with(step.clone(), step.apply(engine, inputs)).await
    }

    /// Runs a step whose effect `work` produces (a build, which needs the
    /// context only the deploy holds), journaled like [`Run::step`].
    pub async fn step_with(
        &mut self,
        step: Step,
        work: impl std::future::Future<Output = Result<Option<String>, StepError>>,
    ) -> Result<Option<String>, Failure> {
        self.check_interrupt()?;
        self.append(Event::Intent { step: step.clone() })?;
        self.intended.push(step.clone());
        let t = Instant::now();
        let result = work.await;
        self.finish_step(step, t, result).await
    }

    /// Where the run stands relative to the commit point.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Why the run lost the daemon, if it did.
    pub fn docker_lost(&self) -> Option<&str> {
        self.docker_lost.as_deref()
    }

    /// Records that the daemon could not be reached (the health gate could
    /// not ask): the run ends by rolling back or finishing once it answers.
    pub fn lose_docker(&mut self, why: String) {
        self.docker_lost = Some(why);
    }

    /// The steps whose intent is durable, in order.
    pub fn intended(&self) -> &[Step] {
        &self.intended
    }

    /// Takes over the steps an earlier process intended, so a rollback
    /// undoes them (recovery).
    pub fn adopt(&mut self, intended: Vec<Step>) {
        self.intended = intended;
    }

    /// The commit point: from here on only forward. The phase changes
    /// before the record is written, and back if the record could not be
    /// made durable (see [`Run::append`]).
    pub fn commit(&mut self, container: &str) -> Result<(), Failure> {
        self.phase = Phase::ForwardOnly;
        self.committed = Some(container.to_string());
        self.append(Event::Commit { container: container.to_string() })
    }

    /// The container the commit names, once the run committed.
    pub fn committed(&self) -> Option<&str> {
        self.committed.as_deref()
    }

    /// Past the commit point, what is left of the deploy, each step
    /// observed first (a lost call may have done it): a start-first
    /// deploy's temporary instance retired (found by its labels), then the
    /// old container removed. Recovery finishes a deploy the same way.
    pub async fn finish(&mut self, old: Option<&OldContainer>, stop_timeout_s: u64) -> Result<(), Failure> {
        let (engine, deploy) = (self.engine, self.deploy.clone());
        let temporary = retry_unreachable(|| async {
            crate::step::created_by(engine, &deploy, Some(crate::step::Instance::Temporary))
                .await
                .map_err(StepError::from)
        })
        .await
        .map_err(|e| Failure::Incomplete(format!("{e}; the journal is intact, run `swap recover` again later")))?;
        for id in temporary {
            self.step_observed(Step::RetireTemporary { id, timeout_s: stop_timeout_s }).await?;
        }
        if let Some(old) = old {
            self.step_observed(Step::RemoveOld { id: old.id.clone() }).await?;
        }
        Ok(())
    }

    /// Ends the forward path when a first Ctrl-C or SIGTERM has arrived.
    pub fn check_interrupt(&self) -> Result<(), Failure> {
        if self.phase == Phase::BeforeCommit && crate::signal::interrupted() {
            return Err(Failure::RolledBack("interrupted by a signal".into()));
        }
        Ok(())
    }

    /// Runs a step only if observation says its effect is not in place yet
    /// (recovery going forward).
    pub async fn step_observed(&mut self, step: Step) -> Result<Option<String>, Failure> {
        self.append(Event::Intent { step: step.clone() })?;
        self.intended.push(step.clone());
        let t = Instant::now();
        let result = match retry_unreachable(|| step.observe(self.engine)).await {
            Ok(Some(out)) => Ok(Some(out)),
            Ok(None) => step.apply(self.engine, Inputs { app: "", definition: None }).await,
            Err(e) => Err(e),
        };
        self.finish_step(step, t, result).await
    }

    async fn finish_step(
        &mut self,
        step: Step,
        t: Instant,
        result: Result<Option<String>, StepError>,
    ) -> Result<Option<String>, Failure> {
        let ms = t.elapsed().as_millis() as u64;
        match result {
            Ok(output) => {
                let out = output.clone();
                let built = match (&step, &out) {
                    (Step::Build { .. }, Some(id)) => format!(" -> {}", crate::step::short(id)),
                    _ => String::new(),
                };
                self.report.emit(
                    Progress::Step {
                        step: step.name().into(),
                        description: step.describe(),
                        status: StepStatus::Done,
                        ms,
                        output: out.clone(),
                        error: None,
                    },
                    format!("  ✓ {}{built} ({ms} ms)", step.describe()),
                );
                self.append(Event::Done { step, output, ms })?;
                Ok(out)
            }
            Err(e) => {
                let error = e.to_string();
                self.report.emit(
                    Progress::Step {
                        step: step.name().into(),
                        description: step.describe(),
                        status: StepStatus::Failed,
                        ms,
                        output: None,
                        error: Some(error.clone()),
                    },
                    format!("  ✗ {} ({ms} ms): {error}", step.describe()),
                );
                let unreachable = e.is_unreachable();
                if unreachable {
                    let sent = tokio::time::Instant::now().checked_sub(t.elapsed());
                    self.in_flight = Some((step.clone(), sent.unwrap_or_else(tokio::time::Instant::now)));
                }
                let failure = match &e {
                    StepError::Unexplained(m) => Failure::Halted(m.clone()),
                    _ if self.phase == Phase::ForwardOnly => {
                        if e.is_unreachable() {
                            self.docker_lost = Some(format!("{} failed: {error}", step.name()));
                        }
                        Failure::Incomplete(format!(
                            "{} failed after the commit point: {error}; the deploy is unfinished, run `swap recover` to finish it",
                            step.name()
                        ))
                    }
                    e if e.is_unreachable() => {
                        self.docker_lost = Some(format!("{} failed: {error}", step.name()));
                        Failure::Incomplete(format!(
                            "{} failed: {error}; the deploy is unfinished, run `swap recover` once Docker answers",
                            step.name()
                        ))
                    }
                    _ => Failure::RolledBack(format!("{} failed: {error}", step.name())),
                };
                self.append(Event::Failed { step, error, ms, unreachable })?;
                Err(failure)
            }
        }
    }

    /// Undoes every intended step, newest first, each only where Docker
    /// shows its effect, then records the end. Stops at anything Docker
    /// holds that the journal cannot explain (halt) or an unreachable daemon
    /// (incomplete); a later `swap recover` resumes from there.
    ///
    /// `old` is the container that served when the deploy began: if it was
    /// running, the rollback leaves it running even when the deploy never got
    /// to stop it (a reboot while it was parked with policy `no` stops it).
    pub async fn rollback(&mut self, reason: &str, old: Option<&OldContainer>) -> Result<(), Failure> {
        // A step whose reply was lost may still land (a stop that kills the
        // old container after the rollback saw it running would leave the
        // app down under a journal that says rolled back): treated like an
        // intent a crash left behind, waited for before anything observes.
        if let Some((step, sent)) = self.in_flight.take() {
            if let Some(waits) = step.waits(false) {
                let left = self.engine.orphan_bound(waits).saturating_sub(sent.elapsed());
                wait_in_flight(self.engine, &step, false, left, self.report).await;
            }
        }
        match self.rollback_journaled(reason, old).await {
            // A journal that cannot be written must not leave the old
            // version stopped: finish the rollback without it.
            Err(Failure::Incomplete(why)) if self.journal.poisoned() => Err(self.restore_unjournaled(&why, old).await),
            other => other,
        }
    }

    /// The compensations a rollback runs, newest first.
    fn undo_order(&self, old: Option<&OldContainer>) -> Vec<Step> {
        let mut steps: Vec<Step> = self.intended.clone();
        if let Some(old) = old.filter(|o| o.running) {
            if !steps.iter().any(|s| matches!(s, Step::StopOld { .. })) {
                // Undone before the policy is restored, as if it had been stopped.
                let at = steps.iter().position(|s| matches!(s, Step::ParkOld { .. })).map_or(steps.len(), |i| i + 1);
                steps.insert(at, Step::StopOld { id: old.id.clone(), timeout_s: 10 });
            }
        }
        steps.retain(|s| !matches!(s, Step::Build { .. } | Step::StartOld { .. } | Step::RemoveOld { .. }));
        steps.reverse();
        steps
    }

    /// The one exception to "intent before effect" (ARCHITECTURE.md,
    /// invariant 1): the journal cannot be written (a full or failing disk)
    /// while the deploy is before its commit point, possibly with the old
    /// container stopped and parked. Waiting for a person to free the disk
    /// and run `swap recover` would keep the app down all that time, so the
    /// rollback's compensations run now, unjournaled. Each observes before
    /// it acts, so a later `swap recover` finds them done and only settles
    /// the journal; the journal never claims an effect that did not happen,
    /// it only misses undo records.
    pub async fn restore_unjournaled(&mut self, why: &str, old: Option<&OldContainer>) -> Failure {
        self.report
            .note(format!("{why}\nthe journal cannot be written: restoring the previous version without journaling"));
        for step in self.undo_order(old) {
            if let Err(e) = self.undo(&step, false).await {
                return Failure::Incomplete(format!(
                    "{why}; restoring the previous version without the journal, could not undo {}: {e}; \
                     free the disk, then run `swap recover`",
                    step.name()
                ));
            }
        }
        Failure::Incomplete(format!(
            "{why}; the previous version was restored and serves, without journaling (the journal could not be \
             written). Free the disk, then run `swap recover` to settle the journal"
        ))
    }

    /// Runs one compensation (retrying an unreachable daemon) and reports
    /// it; returns how long it took.
    async fn undo(&self, step: &Step, journaled: bool) -> Result<u64, StepError> {
        let t = Instant::now();
        retry_unreachable(|| async { step.compensate(self.engine).await }).await?;
        let ms = t.elapsed().as_millis() as u64;
        let note = if journaled { "" } else { ", not journaled" };
        self.report.emit(
            Progress::Undo {
                step: step.name().into(),
                description: step.describe(),
                status: StepStatus::Done,
                ms,
                journaled: (!journaled).then_some(false),
            },
            format!("  ↶ undo {} ({ms} ms{note})", step.describe()),
        );
        Ok(ms)
    }

    async fn rollback_journaled(&mut self, reason: &str, old: Option<&OldContainer>) -> Result<(), Failure> {
        for step in self.undo_order(old) {
            self.append(Event::UndoIntent { step: step.clone() })?;
            match self.undo(&step, true).await {
                Ok(ms) => {
                    self.append(Event::UndoDone { step, ms })?;
                }
                Err(StepError::Unexplained(why)) => return Err(self.halt(why)),
                Err(e) => {
                    let then = if e.is_unreachable() {
                        "run `swap recover` once Docker answers"
                    } else {
                        "the deploy is unfinished; see `swap journal show`, then run `swap recover`"
                    };
                    return Err(Failure::Incomplete(format!("rollback could not undo {}: {e}; {then}", step.name())));
                }
            }
        }
        self.append(Event::End { outcome: Outcome::RolledBack, reason: Some(reason.to_string()) })?;
        Ok(())
    }

    /// Records a halt; the deploy stays unfinished for the operator.
    pub fn halt(&mut self, why: String) -> Failure {
        let reason = format!(
            "{why}. swap changed nothing further; fix the containers by hand (see docs/operations.md, \"Recovery halted\"), then run `swap recover`"
        );
        if let Err(f) = self.append(Event::Halt { reason: reason.clone() }) {
            return f;
        }
        Failure::Halted(reason)
    }
}

/// Waits up to `wait` for the Docker call a step (or with `undo` its
/// compensation) may have left running to land: until the step's effect
/// shows (a step's call lands once, so nothing of it is left in flight
/// then), or its container is gone, or the time is up. A compensation has
/// no such observation and waits the whole time. Docker being unreachable
/// meanwhile only means waiting on. Returns how long it waited, if it did.
pub async fn wait_in_flight<E: Engine>(
    engine: &E,
    step: &Step,
    undo: bool,
    wait: Duration,
    report: &Report,
) -> Option<u64> {
    let landed =
        || async { !undo && matches!(step.observe(engine).await, Ok(Some(_)) | Err(StepError::Unexplained(_))) };
    if wait.is_zero() || landed().await {
        return None;
    }
    report.note(format!(
        "the last step ({}) was cut off moments ago; waiting up to {:.1} s for a Docker call it may have sent to land",
        step.describe(),
        wait.as_secs_f64()
    ));
    let start = tokio::time::Instant::now();
    let deadline = start + wait;
    let mut poll = Duration::from_millis(50);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(if undo { left } else { poll.min(left) }).await;
        poll = (poll * 2).min(Duration::from_secs(1));
        if landed().await {
            break;
        }
    }
    Some(start.elapsed().as_millis() as u64)
}

/// How long an operation is retried while the daemon is unreachable: six
/// retries, 250 ms doubling to 5 s, about 13 s in all.
pub const UNREACHABLE: Backoff = Backoff { first: Duration::from_millis(250), max: Duration::from_secs(5), retries: 6 };

/// Retries an engine operation while the daemon is unreachable
/// ([`UNREACHABLE`]).
pub async fn retry_unreachable<T, F, Fut>(op: F) -> Result<T, StepError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StepError>>,
{
    retry(UNREACHABLE, StepError::is_unreachable, op).await
}
