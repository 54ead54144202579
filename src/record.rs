//! What swap writes into an app's journal: the events of a deploy, from
//! `begin` to `end`. These types are the journal's payload; their JSON form
//! is part of the documented format (`docs/journal-format.md`, "Payload") and
//! must stay readable by later versions.
//!
//! Nothing here may hold an environment value or another secret: container
//! ids, names, image ids, networks, ports, step results, Docker's error
//! messages and the log tail of a failed candidate only.

use serde::{Deserialize, Serialize};

use crate::step::Step;

/// One journal record's payload. Records of one deploy share its id as the
/// journal group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A deploy starts: what it will do and who runs it.
    Begin(Begin),
    /// A step is about to run; its effect may or may not have happened.
    Intent {
        /// The step.
        step: Step,
    },
    /// A step's effect is in place.
    Done {
        /// The step.
        step: Step,
        /// What it produced: the candidate's container id, a built image id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
        /// How long it took, in milliseconds.
        ms: u64,
    },
    /// A step failed; its effect is unknown until observed.
    Failed {
        /// The step.
        step: Step,
        /// Docker's or swap's message.
        error: String,
        /// How long it ran, in milliseconds.
        ms: u64,
        /// Whether Docker could not be reached: the reply was lost, so the
        /// call may still land, as after a crash between intent and done.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        unreachable: bool,
    },
    /// The candidate's health gate ended.
    Health {
        /// The candidate's container id.
        container: String,
        /// `healthy`, `running` (no healthcheck, stayed up), or why it failed.
        outcome: String,
        /// Whether the candidate passed.
        passed: bool,
        /// The candidate's last log lines when it failed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        logs: Vec<String>,
        /// How long the gate took, in milliseconds.
        ms: u64,
    },
    /// The commit point: the candidate serves under the app's name, healthy,
    /// on its networks. From here on only forward.
    Commit {
        /// The new serving container's id.
        container: String,
    },
    /// A compensation is about to run.
    UndoIntent {
        /// The step being undone.
        step: Step,
    },
    /// A compensation's effect is in place (or was found already in place).
    UndoDone {
        /// The step undone.
        step: Step,
        /// How long it took, in milliseconds.
        ms: u64,
    },
    /// A recovery run takes over an unfinished deploy.
    Recovery {
        /// Who runs the recovery.
        run: RunInfo,
        /// `rollback`, `forward` or `settled`.
        decision: String,
        /// How long recovery waited, before it looked, for a Docker call the
        /// dead process may have left running (absent when it did not wait).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        waited_ms: Option<u64>,
    },
    /// Recovery found Docker in a state the journal cannot explain and
    /// stopped without changing anything; the deploy stays unfinished.
    Halt {
        /// What was found, and what the operator can do.
        reason: String,
    },
    /// The terminal hung up (SIGHUP: the ssh session dropped) while this
    /// run went on; it carried on to its end, its output from then on lost.
    /// Written before the run's next record that does not close a step, so
    /// it never sits between a step's intent and its outcome.
    Hangup {
        /// When the hangup arrived (RFC 3339, UTC, milliseconds).
        at: String,
    },
    /// The deploy is over.
    End {
        /// How it ended.
        outcome: Outcome,
        /// Why, when it did not deploy.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// How a deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The candidate serves; the old container is removed.
    Deployed,
    /// The old container serves again; the candidate is removed.
    RolledBack,
}

/// The `begin` record: the deploy's plan, minus anything secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Begin {
    /// The app (the serving container's name).
    pub app: String,
    /// Who runs the deploy.
    pub run: RunInfo,
    /// The container serving when the deploy began, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<OldContainer>,
    /// The image the candidate runs, as given (tag or id); empty until a
    /// build produces it.
    pub image: String,
    /// The image's id, when known before the deploy (not for `--build`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Networks the candidate joins.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Published ports, `HOST:CONTAINER/PROTO`.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Names (never values) of the candidate's environment variables.
    #[serde(default)]
    pub env_keys: Vec<String>,
    /// What the candidate mounts: volume names, bind paths, destinations
    /// (never contents). A volume without a name is a new anonymous one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::docker::Mount>,
    /// Health gate limit, seconds.
    pub health_timeout_s: u64,
    /// How the old container is replaced; absent means stop-first (and is
    /// what journals written before start-first existed hold).
    #[serde(default, skip_serializing_if = "crate::strategy::Strategy::is_default")]
    pub strategy: crate::strategy::Strategy,
    /// What was pulled for this deploy, before it began; absent when
    /// nothing was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pulled: Option<Pulled>,
}

/// An image pulled from its registry before a deploy began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pulled {
    /// The reference as given (`ghcr.io/acme/web:1.5`).
    pub reference: String,
    /// The image id it resolved to on the engine.
    pub image_id: String,
    /// `repository@sha256:…`, the manifest digest the registry served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_digest: Option<String>,
    /// Attempts it took.
    pub attempts: u32,
    /// How long the pull took, retries included, in milliseconds.
    pub ms: u64,
}

/// The previously serving container, as found at the start of a deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OldContainer {
    /// Its container id.
    pub id: String,
    /// Its image id.
    pub image_id: String,
    /// Its image reference.
    pub image: String,
    /// Whether it was running.
    pub running: bool,
    /// Its restart policy, restored on rollback.
    pub restart_policy: crate::docker::RestartPolicy,
    /// What it mounts (names and paths): the data a rollback keeps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<crate::docker::Mount>,
}

/// Who ran a deploy or a recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RunInfo {
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub host: String,
    /// User name (or uid).
    pub user: String,
    /// swap's version.
    pub version: String,
    /// The command (`deploy`, `recover`, `rollback`).
    pub command: String,
}

impl RunInfo {
    /// Describes this process.
    pub fn current(command: &str) -> RunInfo {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| format!("uid {}", unsafe_free_uid()));
        RunInfo {
            pid: std::process::id(),
            host: hostname(),
            user,
            version: env!("CARGO_PKG_VERSION").to_string(),
            command: command.to_string(),
        }
    }
}

fn unsafe_free_uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "?".into())
}

/// This host's name, for the journal and lock diagnostics.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// A new deploy id: UTC time to the millisecond plus the pid, so ids sort
/// by time and two processes never collide.
pub fn new_deploy_id() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let ms = now.as_millis() as u64;
    let (y, mo, d, h, mi, s) = civil(ms / 1000);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}.{:03}Z-{}", ms % 1000, std::process::id())
}

/// Formats milliseconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(ms: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(ms / 1000);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z", ms % 1000)
}

/// Seconds since the epoch to (year, month, day, hour, minute, second), UTC.
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, (rem / 3600) as u32, (rem % 3600 / 60) as u32, (rem % 60) as u32)
}
