//! Pulling the image a deploy names, under the app's lock and before the
//! deploy's `begin` record. A pull changes no container, so it needs no
//! compensation and no journal step: a failed pull changes nothing and the
//! old version keeps serving; `begin` records what was pulled.
//!
//! The path to a registry is the flakiest part of a deploy, so a pull is
//! retried when the failure is transient (connection refused or reset,
//! timeouts, DNS, 5xx), and abandoned and retried when its stream makes no
//! progress for [`Bounds::stall`]: Docker's own registry client has no
//! timeout once the registry's ping has answered, so a registry that stops
//! answering would hang the deploy forever. What is not transient (an image
//! or tag that does not exist, a missing or refused login) is bad input.

use std::time::Duration;

use tokio::time::Instant;

use crate::docker::{Engine, EngineError, PullEvent, RegistryAuth};
use crate::error::Failure;
use crate::progress::{Progress, PullProgress};
use crate::record::Pulled;
use crate::report::Report;

/// When `swap deploy` pulls the image (`--pull`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PullPolicy {
    /// Pull only when the engine does not have the reference.
    #[default]
    Missing,
    /// Pull every time, so a moved tag is picked up.
    Always,
    /// Never pull: an image the engine does not have is refused.
    Never,
}

/// How patient a pull is. The defaults are documented in
/// `docs/operations.md` ("Pulling images").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each later one.
    pub first_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// An attempt whose stream brings nothing new for this long is
    /// abandoned (and retried).
    pub stall: Duration,
}

impl Default for Bounds {
    /// 5 attempts, waiting 1, 2, 4 and 8 s between them (15 s in all), each
    /// abandoned after 60 s without progress.
    fn default() -> Bounds {
        Bounds {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
            stall: Duration::from_secs(60),
        }
    }
}

impl Bounds {
    /// The defaults, with `SWAP_PULL_STALL_SECS` (the stall bound, seconds)
    /// and `SWAP_PULL_BACKOFF_MS` (the first wait, milliseconds) applied:
    /// tests and slow links change them.
    pub fn from_env() -> Result<Bounds, String> {
        let mut b = Bounds::default();
        if let Ok(v) = std::env::var("SWAP_PULL_STALL_SECS") {
            let secs: f64 = v.parse().map_err(|_| format!("SWAP_PULL_STALL_SECS={v:?}: expected seconds"))?;
            if !(secs.is_finite() && secs > 0.0) {
                return Err(format!("SWAP_PULL_STALL_SECS={v:?}: expected seconds > 0"));
            }
            b.stall = Duration::from_secs_f64(secs);
        }
        if let Ok(v) = std::env::var("SWAP_PULL_BACKOFF_MS") {
            let ms: u64 = v.parse().map_err(|_| format!("SWAP_PULL_BACKOFF_MS={v:?}: expected milliseconds"))?;
            b.first_backoff = Duration::from_millis(ms);
        }
        Ok(b)
    }
}

/// A deploy's pull settings.
#[derive(Debug, Clone, Default)]
pub struct Pull {
    /// When to pull.
    pub policy: PullPolicy,
    /// How patiently.
    pub bounds: Bounds,
    /// Whether a pull without given credentials looks for a login in the
    /// Docker client config ([`crate::credentials`]).
    pub docker_config: bool,
}

/// What a failed attempt means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The registry refused: no such image or tag, no or a wrong login, a
    /// malformed reference. Retrying cannot help.
    Refused,
    /// The path to the registry failed; a later attempt may get through.
    Transient,
    /// The Docker daemon itself did not answer.
    DockerLost,
}

/// Classifies a failed pull by Docker's message, as Docker 20.10 words it
/// (see the unit tests for the measured messages).
pub fn classify(e: &EngineError) -> Cause {
    if e.is_unreachable() {
        return Cause::DockerLost;
    }
    let m = e.to_string();
    let lower = m.to_lowercase();
    let transient = [
        "connection refused",
        "connection reset",
        "broken pipe",
        "no such host",
        "temporary failure in name resolution",
        "network is unreachable",
        "i/o timeout",
        "timeout exceeded",
        "timed out",
        "deadline exceeded",
        "tls handshake timeout",
        "unexpected eof",
        "server misbehaving",
        "500 internal server error",
        "502 bad gateway",
        "503 service unavailable",
        "504 gateway timeout",
        "toomanyrequests",
    ];
    if transient.iter().any(|t| lower.contains(t)) || m.ends_with(": EOF") || m == "EOF" {
        return Cause::Transient;
    }
    Cause::Refused
}

/// The registry a reference is pulled from, as Docker decides it: the first
/// path component when it looks like a host (has a `.` or a `:`, or is
/// `localhost`), else Docker Hub.
pub fn registry_of(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first.to_string(),
        _ => "docker.io".to_string(),
    }
}

/// The reference with `:latest` added when it names neither tag nor digest
/// (Docker would otherwise pull every tag of the repository).
pub fn with_tag(reference: &str) -> String {
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if reference.contains('@') || last.contains(':') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    }
}

/// Pulls `reference` as the policy says; returns what was pulled, or
/// `None` when nothing was (policy `never`, an image id, or `missing` with
/// the image present).
pub async fn ensure<E: Engine>(
    engine: &E,
    reference: &str,
    pull: &Pull,
    auth: Option<&RegistryAuth>,
    report: &Report,
) -> Result<Option<Pulled>, Failure> {
    if pull.policy == PullPolicy::Never || reference.starts_with("sha256:") {
        return Ok(None);
    }
    if pull.policy == PullPolicy::Missing && present(engine, reference).await?.is_some() {
        return Ok(None);
    }
    let registry = registry_of(reference);
    let target = with_tag(reference);
    let found;
    let auth = match auth {
        Some(a) => Some(a),
        None if pull.docker_config => {
            found = crate::credentials::for_registry(&registry)
                .map_err(|e| Failure::BadInput(format!("cannot pull {reference}: {e}; nothing changed")))?;
            found.as_ref()
        }
        None => None,
    };
    report.emit(
        Progress::Pull(PullProgress::Start { reference: reference.to_string(), registry: registry.clone() }),
        format!("  ↓ pulling {reference} from {registry}"),
    );
    let t = std::time::Instant::now();
    let mut last = String::new();
    let attempts = pull.bounds.attempts.max(1);
    // The waits between attempts; the loop is this module's own because a
    // wait must end at a Ctrl-C and each retry is announced.
    let backoff =
        crate::retry::Backoff { first: pull.bounds.first_backoff, max: pull.bounds.max_backoff, retries: attempts - 1 };
    let mut waits = backoff.waits();
    for n in 1..=attempts {
        let mut meter = Meter::new(report);
        match attempt(engine, &target, auth, pull.bounds.stall, &mut meter).await {
            Ok(digest) => {
                meter.done();
                let Some(image) = present(engine, &target).await? else {
                    return Err(Failure::BadInput(format!(
                        "the pull of {reference} from {registry} finished but the image is not on the engine; \
                         nothing changed"
                    )));
                };
                let repo = target.split('@').next().unwrap_or(&target);
                let repo = repo.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map_or(repo, |(r, _)| r);
                let pulled = Pulled {
                    reference: reference.to_string(),
                    image_id: image.id.clone(),
                    repo_digest: digest.map(|d| format!("{repo}@{d}")),
                    attempts: n,
                    ms: t.elapsed().as_millis() as u64,
                };
                report.emit(
                    Progress::Pull(PullProgress::Done {
                        reference: reference.to_string(),
                        registry: registry.clone(),
                        image_id: pulled.image_id.clone(),
                        repo_digest: pulled.repo_digest.clone(),
                        bytes: meter.bytes(),
                        attempts: n,
                        ms: pulled.ms,
                    }),
                    format!(
                        "  ✓ pulled {reference} -> {} ({} ms{})",
                        crate::step::short(&pulled.image_id),
                        pulled.ms,
                        if n > 1 { format!(", attempt {n}") } else { String::new() }
                    ),
                );
                return Ok(Some(pulled));
            }
            Err(Attempt::Interrupted) => {
                meter.done();
                return Err(Failure::RolledBack(format!(
                    "interrupted by a signal while pulling {reference}; nothing changed"
                )));
            }
            Err(Attempt::Stalled(d)) => {
                meter.done();
                last = format!("no progress for {} s", d.as_secs_f64());
            }
            Err(Attempt::Failed(e)) => {
                meter.done();
                match classify(&e) {
                    Cause::Refused => {
                        return Err(Failure::BadInput(format!(
                            "cannot pull {reference} from registry {registry}: {e}; nothing changed \
                             (check the name and tag, and the login for {registry} in the Docker config)"
                        )))
                    }
                    Cause::DockerLost => return Err(Failure::Incomplete(format!("{e}; nothing changed"))),
                    Cause::Transient => last = e.to_string(),
                }
            }
        }
        if let Some(delay) = waits.next() {
            report.note(format!(
                "pull of {reference} from {registry} failed ({last}); attempt {} of {attempts} in {} ms",
                n + 1,
                delay.as_millis()
            ));
            sleep_or_interrupt(delay).await.map_err(|()| {
                Failure::RolledBack(format!("interrupted by a signal while pulling {reference}; nothing changed"))
            })?;
        }
    }
    Err(Failure::Unavailable(format!(
        "image {reference} is unavailable: registry {registry} still failing after {attempts} attempts \
         ({last}); nothing changed, the running version (if any) keeps serving; try again later"
    )))
}

async fn present<E: Engine>(engine: &E, reference: &str) -> Result<Option<crate::docker::Image>, Failure> {
    engine.image(reference).await.map_err(|e| Failure::Incomplete(format!("Docker: {e}; nothing changed")))
}

/// Why one attempt ended without the image.
enum Attempt {
    /// Docker reported an error.
    Failed(EngineError),
    /// Nothing new arrived for this long.
    Stalled(Duration),
    /// A first Ctrl-C or SIGTERM arrived.
    Interrupted,
}

/// How often the stall watchdog looks at the signal flag.
const TICK: Duration = Duration::from_millis(200);

/// One pull, abandoned (by dropping it, which closes the request and makes
/// the daemon cancel the pull) when its stream makes no progress for `stall`.
async fn attempt<E: Engine>(
    engine: &E,
    target: &str,
    auth: Option<&RegistryAuth>,
    stall: Duration,
    meter: &mut Meter<'_>,
) -> Result<Option<String>, Attempt> {
    let last = std::sync::Mutex::new(Instant::now());
    let mut relay = |ev: &PullEvent| {
        if let Ok(mut l) = last.lock() {
            *l = Instant::now();
        }
        meter.event(ev);
    };
    let pull = engine.pull(target, auth, &mut relay);
    tokio::pin!(pull);
    loop {
        let since = last.lock().map(|l| *l).unwrap_or_else(|_| Instant::now());
        let deadline = since + stall;
        tokio::select! {
            result = &mut pull => return result.map_err(Attempt::Failed),
            _ = tokio::time::sleep_until(deadline.min(Instant::now() + TICK)) => {
                if crate::signal::interrupted() {
                    return Err(Attempt::Interrupted);
                }
                let since = last.lock().map(|l| *l).unwrap_or_else(|_| Instant::now());
                if since.elapsed() >= stall {
                    return Err(Attempt::Stalled(stall));
                }
            }
        }
    }
}

async fn sleep_or_interrupt(delay: Duration) -> Result<(), ()> {
    let end = Instant::now() + delay;
    while Instant::now() < end {
        if crate::signal::interrupted() {
            return Err(());
        }
        tokio::time::sleep_until(end.min(Instant::now() + TICK)).await;
    }
    Ok(())
}

/// Pull progress for a person and for scripts: a total-bytes line that
/// rewrites itself on a terminal (nothing off one), and with `--json` one
/// `pull` event per layer status change.
struct Meter<'a> {
    /// Where progress goes.
    report: &'a Report,
    /// Per layer: (bytes downloaded, bytes in all, last status).
    layers: std::collections::BTreeMap<String, (u64, u64, String)>,
    /// When the terminal line was last redrawn.
    drawn: Option<std::time::Instant>,
}

impl<'a> Meter<'a> {
    fn new(report: &'a Report) -> Meter<'a> {
        Meter { report, layers: Default::default(), drawn: None }
    }

    fn event(&mut self, ev: &PullEvent) {
        // "Pulling from repo" carries the tag as its id; it is no layer.
        if let Some(layer) = ev.layer.as_ref().filter(|_| !ev.status.starts_with("Pulling from")) {
            let entry = self.layers.entry(layer.clone()).or_insert((0, 0, String::new()));
            if ev.status == "Downloading" {
                entry.0 = ev.current.unwrap_or(entry.0);
                entry.1 = ev.total.unwrap_or(entry.1);
            } else if ev.status == "Download complete" || ev.status == "Pull complete" {
                entry.0 = entry.1.max(entry.0);
            }
            if entry.2 != ev.status {
                entry.2 = ev.status.clone();
                if self.report.is_json() {
                    self.report.json_only(Progress::Pull(PullProgress::Layer {
                        layer: layer.to_string(),
                        layer_status: ev.status.clone(),
                        current: ev.current,
                        total: ev.total,
                    }));
                }
            }
        }
        let due = self.drawn.is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if due {
            self.drawn = Some(std::time::Instant::now());
            let (done, total) = self.totals();
            let done_layers =
                self.layers.values().filter(|l| l.2 == "Pull complete" || l.2 == "Already exists").count();
            self.report.waiting(&format!(
                "pulling: {} of {} ({done_layers}/{} layers)",
                human_bytes(done),
                human_bytes(total),
                self.layers.len()
            ));
        }
    }

    fn totals(&self) -> (u64, u64) {
        self.layers.values().fold((0, 0), |(d, t), l| (d + l.0, t + l.1))
    }

    fn bytes(&self) -> u64 {
        self.totals().0
    }

    fn done(&mut self) {
        if self.drawn.is_some() {
            self.report.waiting_done();
        }
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Docker 20.10's own messages for `POST /images/create`, as measured
    /// against a loopback registry and Docker Hub being unreachable.
    #[test]
    fn pull_failures_are_classified_by_what_can_be_done() {
        let transient = [
            r#"Get "http://127.0.0.1:45124/v2/": dial tcp 127.0.0.1:45124: connect: connection refused"#,
            r#"Get "http://127.0.0.1:45125/v2/": net/http: request canceled (Client.Timeout exceeded while awaiting headers)"#,
            r#"Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no such host"#,
            r#"Get "http://127.0.0.1:5000/v2/": EOF"#,
            "Get \"http://127.0.0.1:5000/v2/\": read tcp 127.0.0.1:1->127.0.0.1:5000: read: connection reset by peer",
            "received unexpected HTTP status: 503 Service Unavailable",
        ];
        for m in transient {
            assert_eq!(classify(&EngineError::Daemon(m.into())), Cause::Transient, "{m}");
        }
        let refused = [
            EngineError::NotFound(
                "manifest for 127.0.0.1:45123/probe/a:nope not found: manifest unknown: manifest unknown".into(),
            ),
            EngineError::Daemon(r#"Head "http://127.0.0.1:5000/v2/a/manifests/1": no basic auth credentials"#.into()),
            EngineError::Daemon("unauthorized: authentication required".into()),
            EngineError::Daemon("invalid reference format".into()),
        ];
        for e in refused {
            assert_eq!(classify(&e), Cause::Refused, "{e}");
        }
        assert_eq!(classify(&EngineError::Unreachable("Socket not found".into())), Cause::DockerLost);
    }

    #[test]
    fn registry_and_tag_are_read_as_docker_does() {
        assert_eq!(registry_of("ghcr.io/acme/web:1.5"), "ghcr.io");
        assert_eq!(registry_of("127.0.0.1:5000/web"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/web"), "localhost");
        assert_eq!(registry_of("acme/web:1"), "docker.io");
        assert_eq!(registry_of("nginx"), "docker.io");
        assert_eq!(with_tag("127.0.0.1:5000/web"), "127.0.0.1:5000/web:latest");
        assert_eq!(with_tag("127.0.0.1:5000/web:2"), "127.0.0.1:5000/web:2");
        assert_eq!(with_tag("web@sha256:abc"), "web@sha256:abc");
    }
}
