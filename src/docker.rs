//! The Docker engine as the step engine sees it: one small trait and the
//! plain types it speaks. The real implementation (`bollard_engine`) is the
//! only code that names bollard; an in-memory one in the simulation tests
//! (`tests/sim/memory.rs`) lets the step engine be crashed and faulted
//! exhaustively without a daemon.
//!
//! Container definitions travel as the Docker Engine API's own JSON shapes
//! (`Config`, `HostConfig`) so a clone keeps every field the old container had,
//! including ones swap does not know about.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An error from the engine, classified by what the caller can do about it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The daemon could not be reached or did not answer: retrying later may
    /// work; nothing can be concluded about whether a call took effect.
    #[error("Docker is unreachable: {0}")]
    Unreachable(String),
    /// The object does not exist (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The name is taken (409 on create or rename).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Any other refusal by the daemon, with its message.
    #[error("{0}")]
    Daemon(String),
}

impl EngineError {
    /// Whether the daemon may have been unreachable: such errors leave the
    /// effect of a call unknown and end a run with "incomplete" (exit 5).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, EngineError::Unreachable(_))
    }

    /// moby PR#41011: right after the last container on a node leaves an
    /// attachable overlay network, the node-local network is torn down
    /// asynchronously, and attaching to it fails for a moment. Docker says
    /// so in several ways: a 404 "network … not found" on start (never to be
    /// confused with a missing container), "failed to get network during
    /// CreateEndpoint", or a swarm attachment that timed out ("attaching to
    /// network failed … context deadline exceeded").
    pub fn is_network_race(&self) -> bool {
        let msg = self.to_string();
        if matches!(self, EngineError::Unreachable(_)) || msg.contains("No such container") {
            return false;
        }
        msg.contains("failed to get network during CreateEndpoint")
            || msg.contains("could not find a network matching network mode")
            || (msg.contains("attaching to network failed") && msg.contains("deadline exceeded"))
            || (msg.contains("network") && msg.contains("not found"))
    }
}

/// Result alias for engine calls.
pub type EngineResult<T> = Result<T, EngineError>;

/// A network attachment of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Network name.
    pub network: String,
    /// DNS aliases on that network (the container's own short id excluded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Static IPv4 address, when one was configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<String>,
    /// Static IPv6 address, when one was configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<String>,
    /// Links to other containers on that network (`--link NAME:ALIAS` on a
    /// user-defined network lives on the endpoint), as `NAME:ALIAS`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

impl Attachment {
    /// An attachment to `network` with nothing else set.
    pub fn to(network: &str) -> Attachment {
        Attachment { network: network.to_string(), aliases: vec![], ipv4: None, ipv6: None, links: vec![] }
    }
}

/// A mount of a container, as `inspect` shows it under `Mounts`: where its
/// data lives. Anonymous volumes appear here under their generated names,
/// and nowhere in the container's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// `volume`, `bind`, `tmpfs`…
    pub kind: String,
    /// The volume's name (for volumes; anonymous ones have a generated one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Host path (for binds; for volumes, where the driver keeps the data).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Path inside the container.
    pub destination: String,
    /// Whether it is mounted read-write.
    pub rw: bool,
}

/// Everything needed to create a container. Never journaled: `config` holds
/// environment values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Definition {
    /// The API's `Config` object (Image, Env, Cmd, Labels, Healthcheck…).
    pub config: serde_json::Map<String, Value>,
    /// The API's `HostConfig` object (PortBindings, Mounts, RestartPolicy…).
    pub host_config: serde_json::Map<String, Value>,
    /// Networks to attach, in order; the first is attached at creation.
    pub networks: Vec<Attachment>,
}

impl Definition {
    /// The image reference the container will run.
    pub fn image(&self) -> &str {
        self.config.get("Image").and_then(Value::as_str).unwrap_or("")
    }
}

/// A restart policy (`HostConfig.RestartPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RestartPolicy {
    /// `no`, `always`, `unless-stopped` or `on-failure` (empty means `no`).
    pub name: String,
    /// Retry limit for `on-failure`.
    #[serde(default)]
    pub max_retries: i64,
}

impl RestartPolicy {
    /// The policy that keeps Docker from starting a parked container.
    pub fn no() -> RestartPolicy {
        RestartPolicy { name: "no".into(), max_retries: 0 }
    }

    /// Whether Docker never restarts a container with this policy.
    pub fn is_no(&self) -> bool {
        self.name.is_empty() || self.name == "no"
    }
}

/// What `inspect` says about a container.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Container {
    /// Full container id.
    pub id: String,
    /// Name without Docker's leading slash.
    pub name: String,
    /// Id of the image it runs (`sha256:…`).
    pub image_id: String,
    /// The image reference it was created from (`Config.Image`).
    pub image_ref: String,
    /// Whether it is running (or restarting).
    pub running: bool,
    /// Docker's state word: created, running, exited…
    pub status: String,
    /// Exit code of the last run.
    pub exit_code: i64,
    /// How many times Docker restarted it.
    pub restart_count: i64,
    /// Health status when it has a healthcheck: starting, healthy, unhealthy.
    pub health: Option<String>,
    /// When it last started (RFC 3339), empty if never.
    pub started_at: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Current restart policy.
    pub restart_policy: RestartPolicy,
    /// Networks it is attached to.
    pub networks: Vec<Attachment>,
    /// What is mounted where: the volumes holding its data.
    pub mounts: Vec<Mount>,
    /// Settings it has that a clone cannot carry over, as `docker run`
    /// names them; a re-deploy refuses such a container.
    pub unclonable: Vec<String>,
    /// Its definition, for cloning.
    pub definition: Definition,
}

impl Container {
    /// Whether it was ever started (a created-only container was not).
    pub fn ever_started(&self) -> bool {
        !self.started_at.is_empty() && !self.started_at.starts_with("0001-01-01")
    }
}

/// What `inspect` says about an image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Image {
    /// Image id (`sha256:…`).
    pub id: String,
    /// Tags pointing at it.
    pub tags: Vec<String>,
    /// The image's `Config` object (the defaults a container inherits).
    pub config: serde_json::Map<String, Value>,
}

/// What swap needs to know about a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// Network id.
    pub id: String,
    /// Network name.
    pub name: String,
    /// Driver: bridge, overlay…
    pub driver: String,
}

/// A line of build output, passed to the caller as it arrives.
pub type BuildProgress<'a> = &'a mut (dyn FnMut(&str) + Send);

/// Credentials for one registry, handed to the daemon for a pull. `Debug`
/// never shows the secret: these must not reach a log, the journal or output.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct RegistryAuth {
    /// The registry they are for (`ghcr.io`, `127.0.0.1:5000`).
    pub server: String,
    /// User name, for a password login.
    pub username: Option<String>,
    /// Password or access token.
    pub password: Option<String>,
    /// An OAuth identity token (credential helpers return one instead of a
    /// password).
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("identity_token", &self.identity_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One progress message of a pull, as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullEvent {
    /// The layer it is about (short digest), absent for whole-image messages.
    pub layer: Option<String>,
    /// Docker's status text: `Pulling fs layer`, `Downloading`, `Pull complete`…
    pub status: String,
    /// Bytes done of this layer's current phase, when reported.
    pub current: Option<u64>,
    /// Bytes in all of this layer's current phase, when reported.
    pub total: Option<u64>,
}

/// Where a pull's progress messages go, as they arrive.
pub type PullProgress<'a> = &'a mut (dyn FnMut(&PullEvent) + Send);

/// The Docker engine operations swap performs. Every method is a single API
/// call (or a fixed short sequence), so a crash can only land between calls.
pub trait Engine: Send + Sync {
    /// How long a call may still be running inside the engine after the
    /// process that sent it died, for a call that itself waits up to
    /// `waits` (a stop's timeout). Docker finishes a request whose client is
    /// gone, so recovery waits this long after an unfinished step before it
    /// observes. An engine whose calls cannot outlive their caller returns
    /// zero.
    fn orphan_bound(&self, waits: Duration) -> Duration;

    /// Checks the daemon answers.
    fn ping(&self) -> impl Future<Output = EngineResult<()>> + Send;

    /// Inspects a container by exact name or full id; `None` when no
    /// container has that name or id. Docker itself falls back to an id
    /// prefix when no container has the name (`db` finds a container whose
    /// id starts with `db`): implementations must not.
    fn container(&self, name_or_id: &str) -> impl Future<Output = EngineResult<Option<Container>>> + Send;

    /// Ids of every container (running or not) carrying label `key=value`.
    fn containers_labelled(&self, key: &str, value: &str) -> impl Future<Output = EngineResult<Vec<String>>> + Send;

    /// Names of every container (without the leading slash), with their ids.
    fn container_names(&self) -> impl Future<Output = EngineResult<Vec<(String, String)>>> + Send;

    /// Inspects an image by reference or id; `None` when it is not present.
    fn image(&self, reference: &str) -> impl Future<Output = EngineResult<Option<Image>>> + Send;

    /// Inspects a network by name or id; `None` when it does not exist.
    fn network(&self, name: &str) -> impl Future<Output = EngineResult<Option<Network>>> + Send;

    /// Creates (does not start) a container attached to the definition's
    /// first network; returns its id.
    fn create(&self, name: &str, def: &Definition) -> impl Future<Output = EngineResult<String>> + Send;

    /// Attaches a container to a network.
    fn connect(&self, id: &str, attachment: &Attachment) -> impl Future<Output = EngineResult<()>> + Send;

    /// Starts a container.
    fn start(&self, id: &str) -> impl Future<Output = EngineResult<()>> + Send;

    /// Stops a container, waiting up to `timeout` before killing it.
    fn stop(&self, id: &str, timeout: Duration) -> impl Future<Output = EngineResult<()>> + Send;

    /// Renames a container.
    fn rename(&self, id: &str, new_name: &str) -> impl Future<Output = EngineResult<()>> + Send;

    /// Removes a container (forcibly, with its anonymous volumes kept).
    fn remove(&self, id: &str) -> impl Future<Output = EngineResult<()>> + Send;

    /// Ids of every container (running or not, anyone's) created from image
    /// `image_id`.
    fn containers_using(&self, image_id: &str) -> impl Future<Output = EngineResult<Vec<String>>> + Send;

    /// Removes an image reference: a tag (the image goes with its last
    /// tag) or an untagged image by id. Never forced: Docker refuses
    /// ([`EngineError::Conflict`]) while any container, running or not,
    /// uses the image.
    fn remove_image(&self, reference: &str) -> impl Future<Output = EngineResult<()>> + Send;

    /// Changes a container's restart policy.
    fn set_restart_policy(&self, id: &str, policy: &RestartPolicy) -> impl Future<Output = EngineResult<()>> + Send;

    /// The last `lines` lines of a container's stdout and stderr.
    fn logs_tail(&self, id: &str, lines: usize) -> impl Future<Output = EngineResult<Vec<String>>> + Send;

    /// Pulls an image reference from its registry, with `auth` when given,
    /// passing each progress message to `progress`; returns the manifest
    /// digest the daemon reported (`sha256:…`), if it did. The call has no
    /// time limit of its own: a caller that wants one drops the future.
    fn pull(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
        progress: PullProgress<'_>,
    ) -> impl Future<Output = EngineResult<Option<String>>> + Send;

    /// Builds an image from a tar of a build context; returns the image id.
    fn build(
        &self,
        context_tar: Vec<u8>,
        dockerfile: &str,
        tag: Option<&str>,
        progress: BuildProgress<'_>,
    ) -> impl Future<Output = EngineResult<String>> + Send;
}

#[cfg(test)]
mod tests {
    use super::EngineError;

    /// The messages are Docker's own, as measured on Docker 20.10 and 24.
    #[test]
    fn network_race_is_told_apart_from_a_missing_container() {
        let race = [
            EngineError::NotFound("network swap-test-overlay not found".into()),
            EngineError::Daemon("failed to get network during CreateEndpoint: network 4x5 not found".into()),
            EngineError::Daemon(
                "Could not attach to network app-net: rpc error: code = NotFound desc = network app-net not found"
                    .into(),
            ),
            EngineError::Daemon(
                "attaching to network failed, make sure your network options are correct and check manager logs: \
                 context deadline exceeded"
                    .into(),
            ),
        ];
        for e in race {
            assert!(e.is_network_race(), "{e}");
        }
        let not_race = [
            EngineError::NotFound("No such container: 0123456789ab".into()),
            EngineError::Unreachable("network unreachable: connection not found".into()),
            EngineError::Conflict("Conflict. The container name \"/app\" is already in use".into()),
            EngineError::Daemon("driver failed programming external connectivity: port is already allocated".into()),
        ];
        for e in not_race {
            assert!(!e.is_network_race(), "{e}");
        }
    }
}
