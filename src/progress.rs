//! The progress events of `deploy`, `rollback` and `recover`: one type, so
//! what `--json` prints is what this enum says and nothing built by hand.
//! `docs/json-output.md` specifies each event for scripts (and the schema
//! test in `tests/it/ops.rs` checks real output against it); a person reads
//! the human line [`crate::report::Report::emit`] prints beside each.

use serde::Serialize;
use serde_json::Value;

use crate::docker::Mount;

/// One progress event, printed as one JSON object per line with `--json`,
/// tagged by its `event` field.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Progress {
    /// Something a person should know.
    Note {
        /// The message.
        message: String,
    },
    /// The plan, before anything changes (alone with `--dry-run`).
    Plan {
        /// The app.
        app: String,
        /// The deploy id.
        deploy: String,
        /// The container serving now.
        old: Option<String>,
        /// The image reference deployed.
        image: String,
        /// Networks the candidate joins.
        networks: Vec<String>,
        /// Published ports.
        ports: Vec<String>,
        /// How the old container is replaced.
        strategy: crate::strategy::Strategy,
        /// What the candidate mounts (names and paths).
        volumes: Vec<Mount>,
        /// The steps, for a person.
        steps: Vec<String>,
    },
    /// A pull, before the deploy begins.
    Pull(PullProgress),
    /// A step ended.
    Step {
        /// The step's name.
        step: String,
        /// The step, for a person.
        description: String,
        /// How it ended.
        status: StepStatus,
        /// How long it took.
        ms: u64,
        /// Its output: the candidate's id, a built image's id.
        output: Option<String>,
        /// Why it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A compensation ended.
    Undo {
        /// The step undone.
        step: String,
        /// The step, for a person.
        description: String,
        /// Always `done`: a compensation that fails ends the run.
        status: StepStatus,
        /// How long it took.
        ms: u64,
        /// `false` when the journal could not be written and the
        /// compensation ran without it (absent otherwise).
        #[serde(skip_serializing_if = "Option::is_none")]
        journaled: Option<bool>,
    },
    /// The health gate ended.
    Health {
        /// Whether the candidate passed.
        passed: bool,
        /// `healthy`, `running`, or why it failed.
        outcome: String,
        /// How long the gate took.
        ms: u64,
        /// The candidate's last log lines, when it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        logs: Option<Vec<String>>,
    },
    /// The commit point.
    Commit {
        /// The new serving container.
        container: String,
    },
    /// `recover --dry-run`: what recovery would do and why.
    Decision {
        /// The app.
        app: String,
        /// The unfinished deploy, if any.
        deploy: Option<String>,
        /// `rollback`, `forward`, `settled`, `halt` or `none`.
        decision: String,
        /// Why.
        why: Option<String>,
        /// Each intended step and what Docker shows of it.
        evidence: Vec<Value>,
    },
    /// The end of the command, last.
    Result {
        /// `ok` or the failure's kind (`rolled_back`, `bad_input`, …).
        outcome: String,
        /// The process's exit code.
        exit_code: u8,
        /// What happened.
        message: String,
    },
}

/// How a step or a compensation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Its effect is in place.
    Done,
    /// It failed; its effect is unknown until observed.
    Failed,
}

/// A pull's progress, tagged by `status`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PullProgress {
    /// The pull starts.
    Start {
        /// The reference pulled.
        reference: String,
        /// Its registry.
        registry: String,
    },
    /// A layer changed status.
    Layer {
        /// The layer's short digest.
        layer: String,
        /// Docker's words: `Downloading`, `Pull complete`…
        layer_status: String,
        /// Bytes so far.
        current: Option<u64>,
        /// Bytes in all.
        total: Option<u64>,
    },
    /// The pull landed.
    Done {
        /// The reference pulled.
        reference: String,
        /// Its registry.
        registry: String,
        /// The image id it resolved to.
        image_id: String,
        /// `repo@sha256:…`.
        repo_digest: Option<String>,
        /// Bytes downloaded.
        bytes: u64,
        /// Attempts it took.
        attempts: u32,
        /// How long it took.
        ms: u64,
    },
}

impl Progress {
    /// The JSON object `--json` prints.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_as_the_docs_say() {
        let e = Progress::Pull(PullProgress::Start { reference: "r".into(), registry: "g".into() });
        assert_eq!(
            e.to_json(),
            serde_json::json!({"event": "pull", "status": "start", "reference": "r", "registry": "g"})
        );
        let e = Progress::Step {
            step: "stop_old".into(),
            description: "stop old".into(),
            status: StepStatus::Done,
            ms: 3,
            output: None,
            error: None,
        };
        assert_eq!(
            e.to_json(),
            serde_json::json!({"event": "step", "step": "stop_old", "description": "stop old", "status": "done", "ms": 3, "output": null})
        );
    }
}
