//! An in-memory, deterministic Docker engine, so the step engine can be
//! crashed and faulted at every call of every scenario in milliseconds.
//!
//! It exists *in addition to, never instead of,* the tests against a real
//! Docker engine: it models only the behaviours swap depends on, as they were
//! measured on Docker Engine 20.10 (`docs/reliability.md` lists each with its
//! test on the real engine), and a bug in the model hides a bug in swap.
//! Where the real daemon is known to misbehave the model misbehaves the same
//! way:
//!
//! - moby#42351: renaming a *running* container attached to an overlay network
//!   fails ("Could not add service state for endpoint … already exists").
//! - moby PR#41011: right after the last running container on a node leaves
//!   an attachable overlay network, starting or connecting a container on it
//!   fails for a moment ("failed to get network during CreateEndpoint").
//! - Restart policies: a daemon restart starts `always` containers even when a
//!   user stopped them, and a container whose process exits is restarted by
//!   Docker (its restart count grows).
//! - Published ports: a host port held by a running container (or another
//!   process) makes a start fail, and the container stays stopped.
//! - A request whose client died is still carried out, later
//!   ([`CallFault::CrashInFlight`]).
//!
//! Faults are injected by call number: every trait call, whatever its method,
//! takes the next number starting at 1, so a schedule or a seed replays
//! exactly. A [`CallFault::Crash`] models the deploying process being killed
//! (SIGKILL): the call never returns, [`MemoryEngine::crashed`] turns true,
//! and the harness drops the whole operation, then runs the "restarted
//! process" against the same engine, whose containers persist like a real
//! daemon's. A [`CallFault::CrashInFlight`] kills it with the request on its
//! way: the daemon applies it later, as Docker finishes a request whose
//! client died, and the restarted process must not look too early.
//!
//! Time (health checks, simulated latency) is `tokio::time`, so tests run
//! with paused time and are deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use swap::docker::{
    Attachment, BuildProgress, Container, Definition, Engine, EngineError, EngineResult, Image, Mount, Network,
    PullEvent, PullProgress, RegistryAuth, RestartPolicy,
};

/// How the process in an image behaves once started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageBehaviour {
    /// Runs and serves; healthy once the health delay has passed (when it has
    /// a healthcheck).
    Serves,
    /// Exits at once with this code. With a restart policy that restarts it,
    /// Docker keeps restarting it (it flaps: `restarting`, restart count grows).
    ExitsAtOnce(i64),
    /// Runs, but its healthcheck never passes: `unhealthy` after the delay.
    NeverHealthy,
}

/// A fault injected into one engine call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFault {
    /// The daemon is not reached: the call fails with `Unreachable` and has
    /// no effect.
    Unreachable,
    /// The daemon refuses with this message: `Daemon` error, no effect.
    Daemon(String),
    /// The change happens but the answer is lost: effect applied, then the
    /// call fails with `Unreachable` (a timeout after the daemon acted).
    ErrorAfterEffect,
    /// The answer is lost with the request still on its way: the call fails
    /// with `Unreachable` at once, and the daemon applies the request later,
    /// as for [`CallFault::CrashInFlight`] (a socket dropped or a proxy timed
    /// out while Docker went on with it). The process lives on.
    ErrorInFlight,
    /// Just before the call takes effect, another client points the tag
    /// `reference` at the image `to` (an id): a `docker pull` or a build
    /// elsewhere moving a tag under a running deploy. The call then runs
    /// as usual.
    MoveTag {
        /// The tag moved.
        reference: String,
        /// The image id it names afterwards.
        to: String,
    },
    /// The calling process dies before the request leaves: no effect, the
    /// call never returns, [`MemoryEngine::crashed`] turns true.
    Crash,
    /// The calling process dies after the daemon acted: effect applied, the
    /// call never returns, [`MemoryEngine::crashed`] turns true.
    CrashAfterEffect,
    /// The calling process dies with the request on its way: the call never
    /// returns, [`MemoryEngine::crashed`] turns true, and the daemon applies
    /// the request later — half the engine's orphan grace after the call,
    /// plus the call's own wait (a stop's timeout) — so a restarted process
    /// that looks at once sees the world before it. It lands at the first
    /// call made after that time, or at [`MemoryEngine::land_orphans`].
    CrashInFlight,
}

/// Seeded random fault injection. Each call's fault is a pure function of
/// the seed and the call number, so a failing seed replays exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomFaults {
    /// The seed.
    pub seed: u64,
    /// Probability of [`CallFault::Unreachable`] per call.
    pub unreachable: f64,
    /// Probability of [`CallFault::ErrorAfterEffect`] per call.
    pub error_after_effect: f64,
    /// Probability of [`CallFault::Crash`] per call.
    pub crash: f64,
    /// Probability of [`CallFault::CrashAfterEffect`] per call.
    pub crash_after_effect: f64,
    /// Probability of [`CallFault::CrashInFlight`] per call.
    pub crash_in_flight: f64,
}

impl RandomFaults {
    /// No faults at all with this seed (set the probabilities you want).
    pub fn seeded(seed: u64) -> RandomFaults {
        RandomFaults {
            seed,
            unreachable: 0.0,
            error_after_effect: 0.0,
            crash: 0.0,
            crash_after_effect: 0.0,
            crash_in_flight: 0.0,
        }
    }

    /// The fault this seed injects at call `number`, if any.
    pub fn decide(&self, number: u64) -> Option<CallFault> {
        let h = splitmix64(self.seed ^ splitmix64(number));
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        let mut edge = 0.0;
        for (p, fault) in [
            (self.unreachable, CallFault::Unreachable),
            (self.error_after_effect, CallFault::ErrorAfterEffect),
            (self.crash, CallFault::Crash),
            (self.crash_after_effect, CallFault::CrashAfterEffect),
            (self.crash_in_flight, CallFault::CrashInFlight),
        ] {
            edge += p;
            if u < edge {
                return Some(fault);
            }
        }
        None
    }
}

/// One trait call, as logged by [`MemoryEngine::calls`].
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Its number (1 for the first call the engine received).
    pub number: u64,
    /// The trait method.
    pub method: &'static str,
    /// Its arguments, summarised.
    pub args: String,
    /// The fault injected into it, if any.
    pub fault: Option<CallFault>,
    /// `ok`, `err: …`, `crashed` or `pending` (still running or never returned).
    pub outcome: String,
}

/// What the next `build` does, set with [`MemoryEngine::set_build`].
#[derive(Debug, Clone, PartialEq)]
pub enum BuildOutcome {
    /// The build succeeds and produces a new image with this behaviour and
    /// `Config` object.
    Image {
        /// How containers of the built image behave.
        behaviour: ImageBehaviour,
        /// The built image's `Config` object.
        config: Map<String, Value>,
    },
    /// The build fails with this daemon message (e.g. a failing `RUN`).
    Fail(String),
}

/// A `build` the engine ran, for assertions.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildRecord {
    /// The call number of the build.
    pub call: u64,
    /// The Dockerfile path given.
    pub dockerfile: String,
    /// The tag given.
    pub tag: Option<String>,
    /// Size of the context tar.
    pub context_bytes: usize,
    /// The image id built, or the error message.
    pub result: Result<String, String>,
}

/// Returned by [`MemoryEngine::until_crash`] when the simulated process died.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the simulated process crashed")]
pub struct Crashed;

/// The in-memory engine. Clones share one daemon.
#[derive(Debug, Clone)]
pub struct MemoryEngine {
    /// The daemon's state and the fault machinery; never locked across an await.
    state: Arc<Mutex<State>>,
    /// Fires (turns true) when an injected crash kills the simulated process.
    crash: Arc<watch::Sender<bool>>,
}

/// A container's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    /// Created, never started.
    Created,
    /// Its process is running.
    Running,
    /// Its process exited and Docker's restart manager keeps restarting it.
    Restarting,
    /// Stopped (by a user, by itself, or by a daemon restart).
    Exited,
}

/// A container in the simulated daemon.
#[derive(Debug, Clone)]
struct Ctr {
    /// Full id.
    id: String,
    /// Name, without the leading slash.
    name: String,
    /// The image reference it was created from.
    image_ref: String,
    /// The image id that reference resolved to at creation.
    image_id: String,
    /// The definition as given to `create` (image defaults not merged).
    def: Definition,
    /// Networks attached.
    networks: Vec<Attachment>,
    /// Lifecycle state.
    run: Lifecycle,
    /// Exit code of the last run.
    exit_code: i64,
    /// Restarts by Docker's restart manager since the last user start.
    restart_count: i64,
    /// RFC 3339 time of the last start, empty if never.
    started_at: String,
    /// When the current run began, for health timing.
    started: Option<Instant>,
    /// Health status frozen when the container stopped.
    last_health: Option<String>,
    /// Docker's `HasBeenManuallyStopped`: a user stop, cleared by a user start.
    manually_stopped: bool,
    /// Current restart policy.
    policy: RestartPolicy,
    /// Its output.
    logs: Vec<String>,
    /// Its mounts, decided at create as Docker does.
    mounts: Vec<Mount>,
}

/// An image in the simulated daemon.
#[derive(Debug, Clone)]
struct Img {
    /// `sha256:…`.
    id: String,
    /// Normalised tags.
    tags: Vec<String>,
    /// Its `Config` object.
    config: Map<String, Value>,
    /// How its containers behave.
    behaviour: ImageBehaviour,
}

/// A network in the simulated daemon.
#[derive(Debug, Clone)]
struct Net {
    /// Id.
    id: String,
    /// Name.
    name: String,
    /// Driver: bridge, overlay…
    driver: String,
    /// moby PR#41011: the last call number at which a start/connect on this
    /// overlay still fails because the node-local network is being torn down.
    torn_down_until: u64,
}

/// The whole simulated daemon plus fault machinery.
#[derive(Debug)]
struct State {
    /// Calls received so far (the last call's number).
    calls: u64,
    /// Every call, in order.
    log: Vec<Call>,
    /// Faults by call number.
    schedule: BTreeMap<u64, CallFault>,
    /// Seeded random faults, consulted when the schedule has none.
    random: Option<RandomFaults>,
    /// Whether the simulated process is dead: every call hangs until cleared.
    crashed: bool,
    /// Counter for deterministic ids.
    next_id: u64,
    /// Containers, in creation order.
    containers: Vec<Ctr>,
    /// Images, in creation order.
    images: Vec<Img>,
    /// Networks.
    networks: Vec<Net>,
    /// Host ports held by processes outside Docker: (port, protocol).
    external_ports: BTreeSet<(u16, String)>,
    /// How long a healthcheck takes to report healthy/unhealthy after a start.
    health_delay: Duration,
    /// moby PR#41011: how many calls after an overlay's last container stops
    /// a start/connect on it fails.
    overlay_race_calls: u64,
    /// Latency added to every call (tokio time).
    latency: Duration,
    /// What `build` does.
    build: BuildOutcome,
    /// Builds run.
    builds: Vec<BuildRecord>,
    /// The instant the engine was made: the simulated clock's origin.
    epoch: Instant,
    /// Last timestamp handed out (ns since the epoch), to keep them unique.
    last_stamp: u128,
    /// How long a call may still land after its client died, beyond the
    /// call's own wait ([`Engine::orphan_bound`]).
    orphan_grace: Duration,
    /// Requests of a dead process still on their way.
    orphans: Orphans,
    /// The image registries `pull` copies from.
    registry: Registry,
}

/// Requests a dead process sent that the daemon has not applied yet: when
/// each lands, its call number, and its effect.
#[derive(Default)]
struct Orphans(Vec<(Instant, u64, Landing)>);

/// An orphaned request's effect; returns how it went, for the call log.
type Landing = Box<dyn FnOnce(&mut State) -> String + Send>;

impl std::fmt::Debug for Orphans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(at, n, _)| (at, n))).finish()
    }
}

/// What the path to a registry does to the next pull, set with
/// [`MemoryEngine::fail_pulls`]. The messages are the daemon's own (Docker
/// 20.10 answering `POST /images/create`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullFault {
    /// Nothing listens: "connect: connection refused".
    Refused,
    /// The connection is cut: "connection reset by peer".
    Reset,
    /// The registry answers 503.
    ServerError,
    /// The registry accepts and never answers: the call never returns.
    Stall,
}

/// The images "in a registry" that `pull` copies from.
#[derive(Debug, Default)]
struct Registry {
    /// Pushed images by normalised reference.
    images: BTreeMap<String, Pushed>,
    /// `(user, password)` a pull must present, when the registry needs a login.
    login: Option<(String, String)>,
    /// Faults for the next pulls, in order.
    faults: std::collections::VecDeque<PullFault>,
    /// Every pull's reference and whether it carried credentials.
    pulls: Vec<(String, bool)>,
}

/// An image pushed to the simulated registry.
#[derive(Debug, Clone)]
struct Pushed {
    /// The image id a pull creates.
    id: String,
    /// Its manifest digest.
    digest: String,
    /// Its `Config` object.
    config: Map<String, Value>,
    /// How its containers behave.
    behaviour: ImageBehaviour,
}

/// How a simulated pull ended inside the daemon.
enum PullEnd {
    /// The image is on the engine; the manifest digest.
    Pulled(String),
    /// The registry never answers.
    Stalled,
}

/// The `Config` a built or added image gets when none is given.
fn default_image_config() -> Map<String, Value> {
    let v = json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["/app"],
    });
    v.as_object().cloned().unwrap_or_default()
}

impl Default for MemoryEngine {
    fn default() -> Self {
        MemoryEngine::new()
    }
}

impl MemoryEngine {
    /// An empty daemon with Docker's default `bridge` network, a health delay
    /// of 2 s, an overlay tear-down window of 2 calls, and no faults.
    pub fn new() -> MemoryEngine {
        let mut state = State {
            calls: 0,
            log: Vec::new(),
            schedule: BTreeMap::new(),
            random: None,
            crashed: false,
            next_id: 0,
            containers: Vec::new(),
            images: Vec::new(),
            networks: Vec::new(),
            external_ports: BTreeSet::new(),
            health_delay: Duration::from_secs(2),
            overlay_race_calls: 2,
            latency: Duration::ZERO,
            build: BuildOutcome::Image { behaviour: ImageBehaviour::Serves, config: default_image_config() },
            builds: Vec::new(),
            epoch: Instant::now(),
            last_stamp: 0,
            orphan_grace: Duration::from_secs(3),
            orphans: Orphans::default(),
            registry: Registry::default(),
        };
        let id = state.new_hex();
        state.networks.push(Net { id, name: "bridge".into(), driver: "bridge".into(), torn_down_until: 0 });
        let (tx, _) = watch::channel(false);
        MemoryEngine { state: Arc::new(Mutex::new(state)), crash: Arc::new(tx) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in a test thread must not hide the daemon from the others.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- building the world -------------------------------------------

    /// Adds an image under `reference` with a default `Config` (Env PATH,
    /// Cmd `/app`, no healthcheck); returns its id. A reference already in
    /// use moves to the new image, as `docker build -t` does.
    pub fn add_image(&self, reference: &str, behaviour: ImageBehaviour) -> String {
        self.add_image_with_config(reference, behaviour, default_image_config())
    }

    /// Adds an image with this `Config` object (Env, Cmd, Healthcheck,
    /// Labels…); returns its id.
    pub fn add_image_with_config(
        &self,
        reference: &str,
        behaviour: ImageBehaviour,
        config: Map<String, Value>,
    ) -> String {
        self.lock().add_image(Some(reference), behaviour, config)
    }

    /// Puts an image in the simulated registry under `reference` (moving
    /// the tag there if it was pushed before); returns its manifest digest.
    /// The engine does not have it until a `pull`.
    pub fn push_to_registry(&self, reference: &str, behaviour: ImageBehaviour, config: Map<String, Value>) -> String {
        let mut s = self.lock();
        let (id, digest) = (format!("sha256:{}", s.new_hex()), format!("sha256:{}", s.new_hex()));
        s.registry.images.insert(normalise_ref(reference), Pushed { id, digest: digest.clone(), config, behaviour });
        digest
    }

    /// Makes the simulated registry refuse pulls without this login.
    pub fn require_login(&self, user: &str, password: &str) {
        self.lock().registry.login = Some((user.to_string(), password.to_string()));
    }

    /// Faults for the next pulls, one per pull, in order.
    pub fn fail_pulls(&self, faults: impl IntoIterator<Item = PullFault>) {
        self.lock().registry.faults.extend(faults);
    }

    /// Every pull so far: reference, and whether it carried credentials.
    pub fn pulls(&self) -> Vec<(String, bool)> {
        self.lock().registry.pulls.clone()
    }

    /// A healthcheck `Config` fragment: `{"Healthcheck": {"Test": ["CMD", "/app", "health"]}}`
    /// merged into the default image config.
    pub fn config_with_healthcheck() -> Map<String, Value> {
        let mut c = default_image_config();
        c.insert("Healthcheck".into(), json!({"Test": ["CMD", "/app", "health"], "Interval": 1_000_000_000u64}));
        c
    }

    /// Adds a network (`bridge` or `overlay`); returns its id.
    pub fn add_network(&self, name: &str, driver: &str) -> String {
        let mut s = self.lock();
        let id = s.new_hex();
        s.networks.push(Net { id: id.clone(), name: name.into(), driver: driver.into(), torn_down_until: 0 });
        id
    }

    /// Makes a network disappear (as if removed behind swap's back). Containers
    /// keep their attachment record; starting them then fails with NotFound.
    pub fn remove_network(&self, name: &str) -> bool {
        let mut s = self.lock();
        let before = s.networks.len();
        s.networks.retain(|n| n.name != name && n.id != name);
        before != s.networks.len()
    }

    /// Marks a TCP host port as held by a process outside Docker.
    pub fn occupy_port(&self, port: u16) {
        self.lock().external_ports.insert((port, "tcp".into()));
    }

    /// Releases a port taken with [`occupy_port`](Self::occupy_port).
    pub fn free_port(&self, port: u16) {
        self.lock().external_ports.remove(&(port, "tcp".into()));
    }

    /// Sets how long after a start a healthcheck turns `healthy` (or
    /// `unhealthy` for [`ImageBehaviour::NeverHealthy`]).
    pub fn set_health_delay(&self, delay: Duration) {
        self.lock().health_delay = delay;
    }

    /// Sets for how many calls after the last running container leaves an
    /// overlay network a start/connect on it fails (moby PR#41011); 0 disables.
    pub fn set_overlay_race_calls(&self, calls: u64) {
        self.lock().overlay_race_calls = calls;
    }

    /// Sets what every following `build` does.
    pub fn set_build(&self, outcome: BuildOutcome) {
        self.lock().build = outcome;
    }

    /// The builds run so far.
    pub fn builds(&self) -> Vec<BuildRecord> {
        self.lock().builds.clone()
    }

    // ---- things that happen on the host --------------------------------

    /// Restarts the daemon (or reboots the host): every running container is
    /// killed (exit code 255, as restored after an unclean stop), then Docker
    /// starts again the ones its restart policy revives: `always` (even if a
    /// user had stopped it), `unless-stopped` unless a user stopped it,
    /// `on-failure` after a non-zero exit within its retry limit. Never-started
    /// containers are not started. Revived containers start in creation order
    /// and can fail on a port conflict, like the real daemon. Not a trait call.
    pub fn restart_daemon(&self) {
        let mut s = self.lock();
        // Requests on their way are finished before the daemon goes down.
        s.land_orphans(None);
        let active = s.active_overlays();
        for i in 0..s.containers.len() {
            let health = s.health_now(i);
            let c = &mut s.containers[i];
            if matches!(c.run, Lifecycle::Running | Lifecycle::Restarting) {
                c.run = Lifecycle::Exited;
                c.exit_code = 255;
                c.started = None;
                c.last_health = health;
                c.logs.push("killed: daemon restart".into());
            }
        }
        s.mark_torn_down(&active);
        let ids: Vec<String> = s
            .containers
            .iter()
            .filter(|c| {
                !c.started_at.is_empty() && should_restart(&c.policy, c.exit_code, c.manually_stopped, c.restart_count)
            })
            .map(|c| c.id.clone())
            .collect();
        for id in ids {
            // The daemon's own start: the overlay race does not apply (the
            // network is created with it), a port conflict does.
            if let Err(e) = s.start(&id, false) {
                if let Some(c) = s.find_mut(&id) {
                    c.logs.push(format!("restart after daemon restart failed: {e}"));
                }
            }
        }
    }

    /// The process in a running container exits by itself with `code`;
    /// Docker's restart manager restarts it if its policy says so (restart
    /// count + 1). Not a trait call. Returns false if it was not running.
    pub fn exit_container(&self, name_or_id: &str, code: i64) -> bool {
        let mut s = self.lock();
        let Ok(i) = s.resolve(name_or_id) else {
            return false;
        };
        if s.containers[i].run != Lifecycle::Running {
            return false;
        }
        let active = s.active_overlays();
        let behaviour = s.behaviour_of(i);
        let health = s.health_now(i);
        let stamp = s.stamp();
        let c = &mut s.containers[i];
        c.exit_code = code;
        c.logs.push(format!("exited with code {code}"));
        if should_restart(&c.policy, code, false, c.restart_count) {
            c.restart_count += 1;
            match behaviour {
                ImageBehaviour::ExitsAtOnce(_) => c.run = Lifecycle::Restarting,
                _ => {
                    c.run = Lifecycle::Running;
                    c.started = Some(Instant::now());
                    c.started_at = stamp;
                    c.logs.push("restarted by its restart policy".into());
                }
            }
        } else {
            c.last_health = health;
            c.run = Lifecycle::Exited;
            c.started = None;
        }
        s.mark_torn_down(&active);
        true
    }

    // ---- faults --------------------------------------------------------

    /// Replaces the fault schedule (faults by call number).
    pub fn set_faults(&self, faults: impl IntoIterator<Item = (u64, CallFault)>) {
        self.lock().schedule = faults.into_iter().collect();
    }

    /// Adds one fault at call `number`.
    pub fn fault_at(&self, number: u64, fault: CallFault) {
        self.lock().schedule.insert(number, fault);
    }

    /// Turns on seeded random faults (the schedule still wins where it has an
    /// entry).
    pub fn set_random_faults(&self, random: RandomFaults) {
        self.lock().random = Some(random);
    }

    /// Removes every fault (schedule and random) and revives the simulated
    /// process if it crashed. The call counter keeps counting.
    pub fn clear_faults(&self) {
        let mut s = self.lock();
        s.schedule.clear();
        s.random = None;
        s.crashed = false;
        drop(s);
        self.crash.send_replace(false);
    }

    /// The simulated process was restarted after a crash: calls work again.
    /// Faults stay as set (so a recovery can be crashed in turn).
    pub fn restart_process(&self) {
        self.lock().crashed = false;
        self.crash.send_replace(false);
    }

    /// Whether an injected crash killed the simulated process.
    pub fn crashed(&self) -> bool {
        self.lock().crashed
    }

    /// A receiver that turns true when an injected crash fires.
    pub fn crash_signal(&self) -> watch::Receiver<bool> {
        self.crash.subscribe()
    }

    /// Runs `operation` until it finishes or an injected crash kills the
    /// simulated process, in which case the operation is dropped mid-call,
    /// as SIGKILL would leave it.
    pub async fn until_crash<F: Future>(&self, operation: F) -> Result<F::Output, Crashed> {
        let mut rx = self.crash.subscribe();
        tokio::select! {
            biased;
            _ = rx.wait_for(|c| *c) => Err(Crashed),
            out = operation => Ok(out),
        }
    }

    /// Every call received so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().log.clone()
    }

    /// How many calls were received (the last call's number).
    pub fn call_count(&self) -> u64 {
        self.lock().calls
    }

    /// The faults injected so far: replaying them with
    /// [`set_faults`](Self::set_faults) reproduces a random run.
    pub fn injected(&self) -> Vec<(u64, CallFault)> {
        self.lock().log.iter().filter_map(|c| c.fault.clone().map(|f| (c.number, f))).collect()
    }

    // ---- inspection for assertions (not trait calls, never faulted) -----

    /// Every container as `inspect` would show it, in creation order.
    pub fn containers(&self) -> Vec<Container> {
        let s = self.lock();
        (0..s.containers.len()).map(|i| s.view(i)).collect()
    }

    /// The container with exactly this name, as `inspect` would show it.
    pub fn by_name(&self, name: &str) -> Option<Container> {
        let s = self.lock();
        s.containers.iter().position(|c| c.name == name).map(|i| s.view(i))
    }

    // ---- the call protocol ---------------------------------------------

    /// Runs one trait call: numbers it, logs it, injects its fault, applies
    /// `op` to the daemon state. The lock is never held across an await.
    async fn call<T: Send + 'static>(
        &self,
        method: &'static str,
        args: String,
        op: impl FnOnce(&mut State) -> EngineResult<T> + Send + 'static,
    ) -> EngineResult<T> {
        self.call_waiting(method, args, Duration::ZERO, op).await
    }

    /// A call that may itself wait up to `waits` in the daemon (a stop).
    async fn call_waiting<T: Send + 'static>(
        &self,
        method: &'static str,
        args: String,
        waits: Duration,
        op: impl FnOnce(&mut State) -> EngineResult<T> + Send + 'static,
    ) -> EngineResult<T> {
        // A dead process makes no more calls.
        let Some((number, fault, latency)) = self.begin(method, args) else {
            return std::future::pending().await;
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if fault == Some(CallFault::CrashInFlight) {
            self.send_orphan(number, waits, op, true);
            self.crash.send_replace(true);
            return std::future::pending().await;
        }
        if fault == Some(CallFault::ErrorInFlight) {
            self.send_orphan(number, waits, op, false);
            return Err(unreachable(method, "reply lost"));
        }
        let (result, crash) = self.finish(number, method, fault, op);
        if crash {
            self.crash.send_replace(true);
            return std::future::pending().await;
        }
        result
    }

    /// Leaves call `number` on its way: its effect lands later (see
    /// [`CallFault::CrashInFlight`]); with `die`, the simulated process dies.
    fn send_orphan<T: 'static>(
        &self,
        number: u64,
        waits: Duration,
        op: impl FnOnce(&mut State) -> EngineResult<T> + Send + 'static,
        die: bool,
    ) {
        let mut s = self.lock();
        let at = Instant::now() + s.orphan_grace / 2 + waits;
        let effect = move |s: &mut State| match op(s) {
            Ok(_) => "landed: ok".to_string(),
            Err(e) => format!("landed: err: {e}"),
        };
        s.orphans.0.push((at, number, Box::new(effect)));
        if let Some(entry) = s.log.iter_mut().rev().find(|c| c.number == number) {
            entry.outcome = if die { "crashed (in flight)" } else { "reply lost (in flight)" }.into();
        }
        s.crashed |= die;
    }

    /// Applies every request of a dead process still on its way, as the
    /// daemon eventually does.
    pub fn land_orphans(&self) {
        let mut s = self.lock();
        s.land_orphans(None);
    }

    /// Numbers and logs a call and picks its fault; `None` if the simulated
    /// process is dead.
    fn begin(&self, method: &'static str, args: String) -> Option<(u64, Option<CallFault>, Duration)> {
        let mut s = self.lock();
        if s.crashed {
            return None;
        }
        s.land_orphans(Some(Instant::now()));
        s.calls += 1;
        let number = s.calls;
        let fault = s.schedule.get(&number).cloned().or_else(|| s.random.and_then(|r| r.decide(number)));
        s.log.push(Call { number, method, args, fault: fault.clone(), outcome: "pending".into() });
        Some((number, fault, s.latency))
    }

    /// Applies a call under its fault; returns its result and whether the
    /// simulated process died in it.
    fn finish<T>(
        &self,
        number: u64,
        method: &'static str,
        fault: Option<CallFault>,
        op: impl FnOnce(&mut State) -> EngineResult<T>,
    ) -> (EngineResult<T>, bool) {
        let mut s = self.lock();
        let (result, crash) = match fault {
            None => (op(&mut s), false),
            Some(CallFault::Unreachable) => (Err(unreachable(method, "injected")), false),
            Some(CallFault::Daemon(msg)) => (Err(EngineError::Daemon(msg)), false),
            Some(CallFault::ErrorAfterEffect) => {
                let _ = op(&mut s);
                (Err(unreachable(method, "injected after the effect")), false)
            }
            Some(CallFault::ErrorInFlight) => (Err(unreachable(method, "reply lost")), false),
            Some(CallFault::MoveTag { reference, to }) => {
                let tag = normalise_ref(&reference);
                for img in &mut s.images {
                    img.tags.retain(|t| *t != tag);
                }
                if let Some(img) = s.images.iter_mut().find(|i| i.id == to) {
                    img.tags.push(tag);
                }
                (op(&mut s), false)
            }
            // `call_waiting` sends these off before `finish`.
            Some(CallFault::Crash | CallFault::CrashInFlight) => (Err(unreachable(method, "crash")), true),
            Some(CallFault::CrashAfterEffect) => {
                let _ = op(&mut s);
                (Err(unreachable(method, "crash")), true)
            }
        };
        let outcome = match (&result, crash) {
            (_, true) => "crashed".to_string(),
            (Ok(_), _) => "ok".to_string(),
            (Err(e), _) => format!("err: {e}"),
        };
        if let Some(entry) = s.log.iter_mut().rev().find(|c| c.number == number) {
            entry.outcome = outcome;
        }
        if crash {
            s.crashed = true;
        }
        (result, crash)
    }
}

impl State {
    /// Applies the orphaned requests due by `now` (all with `None`), in the
    /// order they were sent.
    fn land_orphans(&mut self, now: Option<Instant>) {
        let pending = std::mem::take(&mut self.orphans.0);
        let (due, later): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(at, _, _)| now.is_none_or(|t| *at <= t));
        self.orphans.0 = later;
        for (_, number, effect) in due {
            let outcome = effect(self);
            if let Some(entry) = self.log.iter_mut().find(|c| c.number == number) {
                entry.outcome = format!("crashed (in flight), {outcome}");
            }
        }
    }

    fn new_hex(&mut self) -> String {
        self.next_id += 1;
        (0..4).map(|k| format!("{:016x}", splitmix64(self.next_id.wrapping_mul(4).wrapping_add(k)))).collect()
    }

    /// A unique RFC 3339 timestamp on the simulated clock (2026-01-01 plus
    /// tokio time elapsed since the engine was made).
    fn stamp(&mut self) -> String {
        let ns = Instant::now().duration_since(self.epoch).as_nanos().max(self.last_stamp + 1000);
        self.last_stamp = ns;
        rfc3339(1_767_225_600 + (ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as u32)
    }

    /// A pull as the daemon does it: reach the registry, authenticate,
    /// find the manifest, then tag the image locally.
    fn pull(&mut self, reference: &str, login: Option<(String, String)>) -> EngineResult<PullEnd> {
        let tag = normalise_ref(reference);
        let registry = reference.split('/').next().unwrap_or_default().to_string();
        self.registry.pulls.push((tag.clone(), login.is_some()));
        match self.registry.faults.pop_front() {
            Some(PullFault::Refused) => {
                return Err(EngineError::Daemon(format!(
                    "Get \"http://{registry}/v2/\": dial tcp {registry}: connect: connection refused"
                )))
            }
            Some(PullFault::Reset) => {
                return Err(EngineError::Daemon(format!(
                "Get \"http://{registry}/v2/\": read tcp 127.0.0.1:40000->{registry}: read: connection reset by peer"
            )))
            }
            Some(PullFault::ServerError) => {
                return Err(EngineError::Daemon("received unexpected HTTP status: 503 Service Unavailable".into()))
            }
            Some(PullFault::Stall) => return Ok(PullEnd::Stalled),
            None => {}
        }
        if self.registry.login.is_some() && self.registry.login != login {
            let path = tag.split_once('/').map(|(_, p)| p.replace(':', "/manifests/")).unwrap_or_default();
            return Err(EngineError::Daemon(format!(
                "Head \"http://{registry}/v2/{path}\": no basic auth credentials"
            )));
        }
        let Some(pushed) = self.registry.images.get(&tag).cloned() else {
            return Err(EngineError::NotFound(format!(
                "manifest for {tag} not found: manifest unknown: manifest unknown"
            )));
        };
        for img in &mut self.images {
            img.tags.retain(|t| *t != tag);
        }
        match self.images.iter_mut().find(|i| i.id == pushed.id) {
            Some(img) => img.tags.push(tag),
            None => self.images.push(Img {
                id: pushed.id.clone(),
                tags: vec![tag],
                config: pushed.config.clone(),
                behaviour: pushed.behaviour.clone(),
            }),
        }
        Ok(PullEnd::Pulled(pushed.digest))
    }

    fn add_image(&mut self, reference: Option<&str>, behaviour: ImageBehaviour, config: Map<String, Value>) -> String {
        let id = format!("sha256:{}", self.new_hex());
        let mut tags = Vec::new();
        if let Some(r) = reference {
            let tag = normalise_ref(r);
            for img in &mut self.images {
                img.tags.retain(|t| *t != tag);
            }
            tags.push(tag);
        }
        self.images.push(Img { id: id.clone(), tags, config, behaviour });
        id
    }

    fn image_index(&self, reference: &str) -> Option<usize> {
        if reference.is_empty() {
            return None;
        }
        let tag = normalise_ref(reference);
        if let Some(i) = self.images.iter().position(|i| i.tags.contains(&tag)) {
            return Some(i);
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() < 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let matches: Vec<usize> = (0..self.images.len()).filter(|&i| self.images[i].id[7..].starts_with(hex)).collect();
        (matches.len() == 1).then(|| matches[0])
    }

    fn network_index(&self, name: &str) -> Option<usize> {
        self.networks.iter().position(|n| n.name == name || n.id == name).or_else(|| {
            let m: Vec<usize> = (0..self.networks.len())
                .filter(|&i| name.len() >= 12 && self.networks[i].id.starts_with(name))
                .collect();
            (m.len() == 1).then(|| m[0])
        })
    }

    /// Docker's lookup: full id, then exact name, then unique id prefix.
    fn resolve(&self, name_or_id: &str) -> EngineResult<usize> {
        let key = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
        if key.is_empty() {
            return Err(no_such_container(name_or_id));
        }
        if let Some(i) = self.containers.iter().position(|c| c.id == key) {
            return Ok(i);
        }
        if let Some(i) = self.containers.iter().position(|c| c.name == key) {
            return Ok(i);
        }
        let m: Vec<usize> = (0..self.containers.len()).filter(|&i| self.containers[i].id.starts_with(key)).collect();
        match m.len() {
            1 => Ok(m[0]),
            0 => Err(no_such_container(name_or_id)),
            _ => Err(EngineError::Daemon(format!("multiple IDs found with provided prefix: {key}"))),
        }
    }

    fn find_mut(&mut self, id: &str) -> Option<&mut Ctr> {
        self.containers.iter_mut().find(|c| c.id == id)
    }

    fn behaviour_of(&self, i: usize) -> ImageBehaviour {
        let id = &self.containers[i].image_id;
        self.images.iter().find(|img| &img.id == id).map(|img| img.behaviour.clone()).unwrap_or(ImageBehaviour::Serves)
    }

    fn image_config_of(&self, i: usize) -> Map<String, Value> {
        let id = &self.containers[i].image_id;
        self.images.iter().find(|img| &img.id == id).map(|img| img.config.clone()).unwrap_or_default()
    }

    /// The health a running container reports now.
    fn health_now(&self, i: usize) -> Option<String> {
        let c = &self.containers[i];
        let has_hc = has_healthcheck(&self.image_config_of(i), &c.def.config);
        c.health(Instant::now(), &self.behaviour_of(i), has_hc, self.health_delay)
    }

    /// Overlay networks that have at least one running container.
    fn active_overlays(&self) -> BTreeSet<String> {
        self.networks
            .iter()
            .filter(|n| n.driver == "overlay" && self.running_on(&n.name) > 0)
            .map(|n| n.name.clone())
            .collect()
    }

    fn running_on(&self, network: &str) -> usize {
        self.containers
            .iter()
            .filter(|c| {
                matches!(c.run, Lifecycle::Running | Lifecycle::Restarting)
                    && c.networks.iter().any(|a| a.network == network)
            })
            .count()
    }

    /// moby PR#41011: an overlay that just lost its last running container
    /// is torn down asynchronously on this node; the next calls that need an
    /// endpoint on it fail.
    fn mark_torn_down(&mut self, was_active: &BTreeSet<String>) {
        let now_active = self.active_overlays();
        let until = self.calls + self.overlay_race_calls;
        for n in &mut self.networks {
            if was_active.contains(&n.name) && !now_active.contains(&n.name) && self.overlay_race_calls > 0 {
                n.torn_down_until = until;
            }
        }
    }

    /// The PR#41011 error if an endpoint on `network` cannot be made now.
    fn overlay_race(&self, network: &str) -> Option<EngineError> {
        let n = self.networks.iter().find(|n| n.name == network)?;
        (n.driver == "overlay" && self.calls <= n.torn_down_until && self.running_on(network) == 0).then(|| {
            EngineError::Daemon(format!("failed to get network during CreateEndpoint: network {} not found", n.id))
        })
    }

    /// Host ports (port, protocol) a container publishes.
    fn host_ports(def: &Definition) -> Vec<(u16, String)> {
        let mut out = Vec::new();
        let Some(Value::Object(bindings)) = def.host_config.get("PortBindings") else {
            return out;
        };
        for (key, list) in bindings {
            let proto = key.split_once('/').map(|(_, p)| p).unwrap_or("tcp").to_string();
            for b in list.as_array().into_iter().flatten() {
                if let Some(port) = b.get("HostPort").and_then(Value::as_str).and_then(|p| p.parse::<u16>().ok()) {
                    if port != 0 && !out.contains(&(port, proto.clone())) {
                        out.push((port, proto.clone()));
                    }
                }
            }
        }
        out
    }

    // ---- operations --------------------------------------------------------

    fn create(&mut self, name: &str, def: &Definition) -> EngineResult<String> {
        let name = name.strip_prefix('/').unwrap_or(name).to_string();
        let name = if name.is_empty() { format!("sim_{}", self.next_id + 1) } else { name };
        if !valid_name(&name) {
            return Err(EngineError::Daemon(format!(
                "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if let Some(other) = self.containers.iter().find(|c| c.name == name) {
            return Err(name_conflict(&name, &other.id));
        }
        let image_ref = def.image().to_string();
        let Some(img) = self.image_index(&image_ref) else {
            return Err(EngineError::NotFound(format!("No such image: {image_ref}")));
        };
        let first = match def.networks.first() {
            Some(a) => a.clone(),
            None => {
                let mode = def.host_config.get("NetworkMode").and_then(Value::as_str).unwrap_or("default");
                let mode = if mode.is_empty() || mode == "default" { "bridge" } else { mode };
                Attachment::to(mode)
            }
        };
        if self.network_index(&first.network).is_none() {
            return Err(EngineError::NotFound(format!("network {} not found", first.network)));
        }
        let policy = policy_from(&def.host_config);
        let id = self.new_hex();
        let image_id = self.images[img].id.clone();
        let merged = merge_image_config(&def.config, &self.images[img].config);
        let mounts = mounts_at_create(&merged, &def.host_config, || self.new_hex());
        self.containers.push(Ctr {
            id: id.clone(),
            name,
            image_ref,
            image_id,
            def: def.clone(),
            networks: vec![first],
            run: Lifecycle::Created,
            exit_code: 0,
            restart_count: 0,
            started_at: String::new(),
            started: None,
            last_health: None,
            manually_stopped: false,
            policy,
            logs: Vec::new(),
            mounts,
        });
        Ok(id)
    }

    fn connect(&mut self, id: &str, att: &Attachment) -> EngineResult<()> {
        let i = self.resolve(id)?;
        if self.network_index(&att.network).is_none() {
            return Err(EngineError::NotFound(format!("network {} not found", att.network)));
        }
        let c = &self.containers[i];
        if c.networks.iter().any(|a| a.network == att.network) {
            return Err(EngineError::Daemon(format!(
                "endpoint with name {} already exists in network {}",
                c.name, att.network
            )));
        }
        // Only a running container gets an endpoint now; a stopped one gets
        // it at start, where the race is checked.
        if matches!(c.run, Lifecycle::Running | Lifecycle::Restarting) {
            if let Some(e) = self.overlay_race(&att.network) {
                return Err(e);
            }
        }
        self.containers[i].networks.push(att.clone());
        Ok(())
    }

    /// Starts a container; `user` marks a start through the API (subject to
    /// the overlay race) rather than by the daemon itself.
    fn start(&mut self, id: &str, user: bool) -> EngineResult<()> {
        let i = self.resolve(id)?;
        if matches!(self.containers[i].run, Lifecycle::Running | Lifecycle::Restarting) {
            return Ok(()); // Docker answers 304 Not Modified.
        }
        for a in &self.containers[i].networks {
            if self.network_index(&a.network).is_none() {
                return Err(EngineError::NotFound(format!("network {} not found", a.network)));
            }
            if user {
                if let Some(e) = self.overlay_race(&a.network) {
                    return Err(e);
                }
            }
        }
        let name = self.containers[i].name.clone();
        for port in Self::host_ports(&self.containers[i].def) {
            let taken_by_container = self.containers.iter().enumerate().any(|(j, c)| {
                j != i
                    && matches!(c.run, Lifecycle::Running | Lifecycle::Restarting)
                    && Self::host_ports(&c.def).contains(&port)
            });
            if taken_by_container || self.external_ports.contains(&port) {
                let endpoint = &self.containers[i].id[..12];
                return Err(EngineError::Daemon(format!(
                    "driver failed programming external connectivity on endpoint {name} ({endpoint}): \
                     Bind for 0.0.0.0:{} failed: port is already allocated",
                    port.0
                )));
            }
        }
        let behaviour = self.behaviour_of(i);
        let stamp = self.stamp();
        let c = &mut self.containers[i];
        c.started_at = stamp;
        // Every start resets Docker's restart manager (count 0) and clears
        // "manually stopped" (moby `containerStart(…, resetRestartManager)`).
        c.restart_count = 0;
        c.manually_stopped = false;
        c.last_health = None;
        c.logs.push(format!("{name}: starting {}", c.image_ref));
        match behaviour {
            ImageBehaviour::ExitsAtOnce(code) => {
                c.exit_code = code;
                c.logs.push(format!("fatal: exiting with code {code}"));
                c.started = None;
                c.run =
                    if should_restart(&c.policy, code, false, 0) { Lifecycle::Restarting } else { Lifecycle::Exited };
            }
            _ => {
                c.exit_code = 0;
                c.started = Some(Instant::now());
                c.run = Lifecycle::Running;
                c.logs.push("listening".into());
            }
        }
        Ok(())
    }

    fn stop(&mut self, id: &str) -> EngineResult<()> {
        let i = self.resolve(id)?;
        if !matches!(self.containers[i].run, Lifecycle::Running | Lifecycle::Restarting) {
            return Ok(()); // 304 Not Modified; "manually stopped" unchanged.
        }
        let active = self.active_overlays();
        let health = self.health_now(i);
        let c = &mut self.containers[i];
        if c.run == Lifecycle::Running {
            c.exit_code = 0;
            c.last_health = health;
        }
        c.run = Lifecycle::Exited;
        c.started = None;
        c.manually_stopped = true;
        c.logs.push("received SIGTERM, exiting".into());
        self.mark_torn_down(&active);
        Ok(())
    }

    fn rename(&mut self, id: &str, new_name: &str) -> EngineResult<()> {
        let i = self.resolve(id)?;
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        if !valid_name(new_name) {
            return Err(EngineError::Daemon(format!(
                "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let c = &self.containers[i];
        if c.name == new_name {
            return Err(EngineError::Daemon("Renaming a container with the same name as its current name".into()));
        }
        if let Some(other) = self.containers.iter().find(|o| o.name == new_name) {
            return Err(name_conflict(new_name, &other.id));
        }
        // moby#42351: a running container's endpoints on a swarm-scoped
        // overlay are re-published under the new name, and the cluster's
        // endpoint table already holds the key; the daemon undoes the rename.
        if matches!(c.run, Lifecycle::Running | Lifecycle::Restarting) {
            let overlay = c.networks.iter().find_map(|a| {
                self.networks.iter().find(|n| n.name == a.network && n.driver == "overlay").map(|n| n.id.clone())
            });
            if let Some(net_id) = overlay {
                return Err(EngineError::Daemon(format!(
                    "Error when allocating new name: Could not add service state for endpoint {new_name} to cluster \
                     on rename: cannot create entry in table endpoint_table with network id {net_id} and key {}, \
                     already exists",
                    &c.id[..12]
                )));
            }
        }
        self.containers[i].name = new_name.to_string();
        Ok(())
    }

    fn remove(&mut self, id: &str) -> EngineResult<()> {
        let i = self.resolve(id)?;
        let active = self.active_overlays();
        self.containers.remove(i);
        self.mark_torn_down(&active);
        Ok(())
    }

    fn remove_image(&mut self, reference: &str) -> EngineResult<()> {
        let Some(i) = self.image_index(reference) else {
            return Err(EngineError::NotFound(format!("No such image: {reference}")));
        };
        let id = self.images[i].id.clone();
        if let Some(c) = self.containers.iter().find(|c| c.image_id == id) {
            return Err(EngineError::Conflict(format!(
                "conflict: unable to remove repository reference \"{reference}\" (must force) - container {} is using its referenced image {}",
                &c.id[..12],
                &id[7..19]
            )));
        }
        let tag = normalise_ref(reference);
        if self.images[i].tags.contains(&tag) {
            self.images[i].tags.retain(|t| *t != tag);
            if !self.images[i].tags.is_empty() {
                return Ok(());
            }
        } else if self.images[i].tags.len() > 1 {
            return Err(EngineError::Conflict(format!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                &id[7..19]
            )));
        }
        self.images.remove(i);
        Ok(())
    }

    fn set_restart_policy(&mut self, id: &str, policy: &RestartPolicy) -> EngineResult<()> {
        let i = self.resolve(id)?;
        let name = if policy.name.is_empty() { "no" } else { policy.name.as_str() };
        if !matches!(name, "no" | "always" | "unless-stopped" | "on-failure") {
            return Err(EngineError::Daemon(format!("invalid restart policy '{name}'")));
        }
        if policy.max_retries < 0 || (policy.max_retries > 0 && name != "on-failure") {
            return Err(EngineError::Daemon(format!(
                "maximum retry count cannot be used with restart policy '{name}'"
            )));
        }
        let c = &mut self.containers[i];
        c.policy = policy.clone();
        c.def
            .host_config
            .insert("RestartPolicy".into(), json!({"Name": name, "MaximumRetryCount": policy.max_retries}));
        if c.run == Lifecycle::Restarting && !should_restart(&c.policy, c.exit_code, false, c.restart_count) {
            c.run = Lifecycle::Exited;
        }
        Ok(())
    }

    fn logs_tail(&self, id: &str, lines: usize) -> EngineResult<Vec<String>> {
        let c = &self.containers[self.resolve(id)?];
        Ok(c.logs[c.logs.len().saturating_sub(lines)..].to_vec())
    }

    fn inspect(&mut self, name_or_id: &str) -> EngineResult<Option<Container>> {
        let i = match self.resolve(name_or_id) {
            Ok(i) => i,
            Err(EngineError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        // A flapping container: Docker's restart manager restarted it once
        // more since it was last looked at.
        let c = &mut self.containers[i];
        if c.run == Lifecycle::Restarting {
            if should_restart(&c.policy, c.exit_code, false, c.restart_count) {
                c.restart_count += 1;
                c.logs.push(format!("fatal: exiting with code {}", c.exit_code));
            }
            if !should_restart(&c.policy, c.exit_code, false, c.restart_count) {
                c.run = Lifecycle::Exited;
            }
        }
        Ok(Some(self.view(i)))
    }

    fn build(&mut self, call: u64, dockerfile: &str, tag: Option<&str>, context_bytes: usize) -> EngineResult<String> {
        let result = match self.build.clone() {
            BuildOutcome::Image { behaviour, config } => Ok(self.add_image(tag, behaviour, config)),
            BuildOutcome::Fail(msg) => Err(msg),
        };
        self.builds.push(BuildRecord {
            call,
            dockerfile: dockerfile.into(),
            tag: tag.map(str::to_string),
            context_bytes,
            result: result.clone(),
        });
        result.map_err(EngineError::Daemon)
    }

    /// The container as `inspect` shows it: image defaults merged into its
    /// `Config` (as Docker does at create), current networks and policy.
    fn view(&self, i: usize) -> Container {
        let c = &self.containers[i];
        let image_config = self.image_config_of(i);
        let behaviour = self.behaviour_of(i);
        let mut config = merge_image_config(&c.def.config, &image_config);
        if config.get("Hostname").and_then(Value::as_str).unwrap_or("").is_empty() {
            config.insert("Hostname".into(), json!(&c.id[..12]));
        }
        let labels: BTreeMap<String, String> = config
            .get("Labels")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        let has_hc = has_healthcheck(&image_config, &c.def.config);
        let health = match c.run {
            Lifecycle::Running => c.health(Instant::now(), &behaviour, has_hc, self.health_delay),
            Lifecycle::Restarting => has_hc.then(|| "starting".to_string()),
            Lifecycle::Created => None,
            Lifecycle::Exited => c.last_health.clone(),
        };
        let status = match c.run {
            Lifecycle::Created => "created",
            Lifecycle::Running => "running",
            Lifecycle::Restarting => "restarting",
            Lifecycle::Exited => "exited",
        };
        Container {
            id: c.id.clone(),
            name: c.name.clone(),
            image_id: c.image_id.clone(),
            image_ref: c.image_ref.clone(),
            // Docker reports State.Running = true while restarting.
            running: matches!(c.run, Lifecycle::Running | Lifecycle::Restarting),
            status: status.into(),
            exit_code: c.exit_code,
            restart_count: c.restart_count,
            health,
            started_at: if c.started_at.is_empty() { "0001-01-01T00:00:00Z".into() } else { c.started_at.clone() },
            labels,
            restart_policy: c.policy.clone(),
            networks: c.networks.clone(),
            mounts: c.mounts.clone(),
            unclonable: vec![],
            definition: Definition { config, host_config: c.def.host_config.clone(), networks: c.networks.clone() },
        }
    }
}

impl Ctr {
    /// Health of a running container with (`has_hc`) a healthcheck.
    fn health(&self, now: Instant, behaviour: &ImageBehaviour, has_hc: bool, delay: Duration) -> Option<String> {
        if !has_hc {
            return None;
        }
        let started = self.started?;
        let word = if now.duration_since(started) < delay {
            "starting"
        } else if *behaviour == ImageBehaviour::NeverHealthy {
            "unhealthy"
        } else {
            "healthy"
        };
        Some(word.into())
    }
}

impl Engine for MemoryEngine {
    /// See [`CallFault::CrashInFlight`]: an orphan lands well within this.
    fn orphan_bound(&self, waits: Duration) -> Duration {
        self.lock().orphan_grace + waits
    }

    async fn ping(&self) -> EngineResult<()> {
        self.call("ping", String::new(), |_| Ok(())).await
    }

    async fn container(&self, name_or_id: &str) -> EngineResult<Option<Container>> {
        let key = name_or_id.to_string();
        let found = self
            .call("container", key.clone(), move |s| match s.inspect(&key) {
                // Several ids start with the name: the real engine then
                // looks the name up in the container list.
                Err(EngineError::Daemon(m)) if m.contains("multiple IDs found") => {
                    match s.containers.iter().position(|c| c.name == key) {
                        Some(i) => Ok(Some(s.view(i))),
                        None => Ok(None),
                    }
                }
                other => other,
            })
            .await?;
        // Like the real engine: Docker's id-prefix fallback is not a match.
        Ok(found.filter(|c| c.id == name_or_id || c.name == name_or_id))
    }

    async fn containers_labelled(&self, key: &str, value: &str) -> EngineResult<Vec<String>> {
        let (k, v) = (key.to_string(), value.to_string());
        self.call("containers_labelled", format!("{k}={v}"), move |s| {
            Ok((0..s.containers.len())
                .map(|i| s.view(i))
                .filter(|c| c.labels.get(&k) == Some(&v))
                .map(|c| c.id)
                .collect())
        })
        .await
    }

    async fn container_names(&self) -> EngineResult<Vec<(String, String)>> {
        self.call("container_names", String::new(), |s| {
            Ok(s.containers.iter().map(|c| (c.name.clone(), c.id.clone())).collect())
        })
        .await
    }

    async fn image(&self, reference: &str) -> EngineResult<Option<Image>> {
        let r = reference.to_string();
        self.call("image", r.clone(), move |s| {
            Ok(s.image_index(&r).map(|i| {
                let img = &s.images[i];
                Image { id: img.id.clone(), tags: img.tags.clone(), config: img.config.clone() }
            }))
        })
        .await
    }

    async fn network(&self, name: &str) -> EngineResult<Option<Network>> {
        let n = name.to_string();
        self.call("network", n.clone(), move |s| {
            Ok(s.network_index(&n).map(|i| {
                let net = &s.networks[i];
                Network { id: net.id.clone(), name: net.name.clone(), driver: net.driver.clone() }
            }))
        })
        .await
    }

    async fn create(&self, name: &str, def: &Definition) -> EngineResult<String> {
        let (name, def) = (name.to_string(), def.clone());
        let networks: Vec<&str> = def.networks.iter().map(|a| a.network.as_str()).collect();
        let args = format!("{name} image={} networks={networks:?}", def.image());
        self.call("create", args, move |s| s.create(&name, &def)).await
    }

    async fn connect(&self, id: &str, attachment: &Attachment) -> EngineResult<()> {
        let (id, att) = (id.to_string(), attachment.clone());
        self.call("connect", format!("{id} {}", att.network), move |s| s.connect(&id, &att)).await
    }

    async fn start(&self, id: &str) -> EngineResult<()> {
        let id = id.to_string();
        self.call("start", id.clone(), move |s| s.start(&id, true)).await
    }

    async fn stop(&self, id: &str, timeout: Duration) -> EngineResult<()> {
        let id = id.to_string();
        self.call_waiting("stop", format!("{id} timeout={}s", timeout.as_secs()), timeout, move |s| s.stop(&id)).await
    }

    async fn rename(&self, id: &str, new_name: &str) -> EngineResult<()> {
        let (id, new_name) = (id.to_string(), new_name.to_string());
        self.call("rename", format!("{id} -> {new_name}"), move |s| s.rename(&id, &new_name)).await
    }

    async fn remove(&self, id: &str) -> EngineResult<()> {
        let id = id.to_string();
        self.call("remove", id.clone(), move |s| s.remove(&id)).await
    }

    async fn containers_using(&self, image_id: &str) -> EngineResult<Vec<String>> {
        let id = image_id.to_string();
        self.call("containers_using", id.clone(), move |s| {
            Ok(s.containers.iter().filter(|c| c.image_id == id).map(|c| c.id.clone()).collect())
        })
        .await
    }

    async fn remove_image(&self, reference: &str) -> EngineResult<()> {
        let r = reference.to_string();
        self.call("remove_image", r.clone(), move |s| s.remove_image(&r)).await
    }

    async fn set_restart_policy(&self, id: &str, policy: &RestartPolicy) -> EngineResult<()> {
        let (id, policy) = (id.to_string(), policy.clone());
        self.call("set_restart_policy", format!("{id} {}", policy.name), move |s| s.set_restart_policy(&id, &policy))
            .await
    }

    async fn logs_tail(&self, id: &str, lines: usize) -> EngineResult<Vec<String>> {
        let id = id.to_string();
        self.call("logs_tail", format!("{id} {lines}"), move |s| s.logs_tail(&id, lines)).await
    }

    async fn pull(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
        progress: PullProgress<'_>,
    ) -> EngineResult<Option<String>> {
        let reference = reference.to_string();
        let login = auth.map(|a| (a.username.clone().unwrap_or_default(), a.password.clone().unwrap_or_default()));
        let end = self.call("pull", reference.clone(), move |s| s.pull(&reference, login)).await?;
        match end {
            PullEnd::Pulled(digest) => {
                progress(&PullEvent { layer: None, status: format!("Digest: {digest}"), current: None, total: None });
                Ok(Some(digest))
            }
            PullEnd::Stalled => std::future::pending().await,
        }
    }

    async fn build(
        &self,
        context_tar: Vec<u8>,
        dockerfile: &str,
        tag: Option<&str>,
        progress: BuildProgress<'_>,
    ) -> EngineResult<String> {
        let (dockerfile, tag) = (dockerfile.to_string(), tag.map(str::to_string));
        let args = format!("{dockerfile} tag={} context={}B", tag.as_deref().unwrap_or("-"), context_tar.len());
        let number = self.call_count() + 1;
        let id =
            self.call("build", args, move |s| s.build(number, &dockerfile, tag.as_deref(), context_tar.len())).await?;
        progress("Step 1/1 : FROM scratch");
        progress(&format!("Successfully built {}", &id[7..19]));
        Ok(id)
    }
}

// ---- small pure helpers --------------------------------------------------------

/// Docker's restart manager decision (moby `restartmanager.ShouldRestart`).
fn should_restart(policy: &RestartPolicy, exit_code: i64, manually_stopped: bool, restart_count: i64) -> bool {
    match policy.name.as_str() {
        "always" => true,
        "unless-stopped" => !manually_stopped,
        "on-failure" => exit_code != 0 && (policy.max_retries == 0 || restart_count < policy.max_retries),
        _ => false,
    }
}

fn policy_from(host_config: &Map<String, Value>) -> RestartPolicy {
    let rp = host_config.get("RestartPolicy");
    let name = rp.and_then(|r| r.get("Name")).and_then(Value::as_str).unwrap_or("");
    RestartPolicy {
        name: if name.is_empty() { "no".into() } else { name.into() },
        max_retries: rp.and_then(|r| r.get("MaximumRetryCount")).and_then(Value::as_i64).unwrap_or(0),
    }
}

/// Whether the container has an active healthcheck: its own `Healthcheck`
/// wins over the image's; a test of `["NONE"]` disables it.
fn has_healthcheck(image_config: &Map<String, Value>, config: &Map<String, Value>) -> bool {
    let hc = config.get("Healthcheck").filter(|v| !v.is_null()).or_else(|| image_config.get("Healthcheck"));
    let test = hc.and_then(|h| h.get("Test")).and_then(Value::as_array);
    match test {
        Some(t) => !t.is_empty() && t[0].as_str() != Some("NONE"),
        None => false,
    }
}

/// What Docker stores as a container's `Config` at create: the request with
/// the image's defaults filled in (moby `daemon.merge`). Env: the request's
/// entries, then the image's whose keys it does not set; Labels, ExposedPorts,
/// Volumes: union, the request winning; Cmd/Entrypoint and scalars: the
/// image's when the request leaves them empty.
/// The mounts Docker gives a new container: its binds (`SRC:DST[:ro]`,
/// a volume when `SRC` is a name), its `Mounts`, then a fresh anonymous
/// volume for every declared volume (`Config.Volumes`, the image's merged
/// in) that neither covers.
fn mounts_at_create(
    config: &Map<String, Value>,
    host: &Map<String, Value>,
    mut new_name: impl FnMut() -> String,
) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for bind in host.get("Binds").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        let mut parts = bind.split(':');
        let (src, dst) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let rw = !parts.any(|o| o.split(',').any(|o| o == "ro"));
        let named = !src.starts_with('/');
        out.push(Mount {
            kind: if named { "volume" } else { "bind" }.into(),
            name: named.then(|| src.to_string()),
            source: src.to_string(),
            destination: dst.to_string(),
            rw,
        });
    }
    for m in host.get("Mounts").and_then(Value::as_array).into_iter().flatten() {
        let field = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let kind = field("Type");
        let source = field("Source");
        let name = (kind == "volume").then(|| if source.is_empty() { new_name() } else { source.clone() });
        let rw = !m.get("ReadOnly").and_then(Value::as_bool).unwrap_or(false);
        out.push(Mount { kind, name, source, destination: field("Target"), rw });
    }
    for dst in config.get("Volumes").and_then(Value::as_object).into_iter().flat_map(|v| v.keys()) {
        if !out.iter().any(|m| &m.destination == dst) {
            let name = new_name();
            out.push(Mount {
                kind: "volume".into(),
                name: Some(name),
                source: String::new(),
                destination: dst.clone(),
                rw: true,
            });
        }
    }
    out
}

fn merge_image_config(config: &Map<String, Value>, image: &Map<String, Value>) -> Map<String, Value> {
    let mut out = config.clone();
    let empty = |v: Option<&Value>| match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    };
    if let Some(Value::Array(ienv)) = image.get("Env") {
        let mut env: Vec<Value> = out.get("Env").and_then(Value::as_array).cloned().unwrap_or_default();
        let key = |v: &Value| v.as_str().unwrap_or("").split('=').next().unwrap_or("").to_string();
        let keys: BTreeSet<String> = env.iter().map(key).collect();
        env.extend(ienv.iter().filter(|v| !keys.contains(&key(v))).cloned());
        out.insert("Env".into(), Value::Array(env));
    }
    for field in ["Labels", "ExposedPorts", "Volumes"] {
        if let Some(Value::Object(theirs)) = image.get(field) {
            let mut mine = out.get(field).and_then(Value::as_object).cloned().unwrap_or_default();
            for (k, v) in theirs {
                mine.entry(k.clone()).or_insert_with(|| v.clone());
            }
            out.insert(field.into(), Value::Object(mine));
        }
    }
    if empty(out.get("Entrypoint")) {
        if empty(out.get("Cmd")) {
            if let Some(cmd) = image.get("Cmd") {
                out.insert("Cmd".into(), cmd.clone());
            }
        }
        if let Some(ep) = image.get("Entrypoint") {
            out.insert("Entrypoint".into(), ep.clone());
        }
    }
    for field in ["Healthcheck", "WorkingDir", "User", "StopSignal", "Shell", "OnBuild"] {
        if empty(out.get(field)) {
            if let Some(v) = image.get(field) {
                out.insert(field.into(), v.clone());
            }
        }
    }
    out
}

/// `name` → `name:latest`; digests and explicit tags unchanged.
fn normalise_ref(reference: &str) -> String {
    if reference.starts_with("sha256:") || reference.contains('@') {
        return reference.to_string();
    }
    let last = reference.rsplit('/').next().unwrap_or(reference);
    if last.contains(':') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    }
}

/// Docker's container name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..].iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn name_conflict(name: &str, holder: &str) -> EngineError {
    EngineError::Conflict(format!(
        "Conflict. The container name \"/{name}\" is already in use by container \"{holder}\". \
         You have to remove (or rename) that container to be able to reuse that name."
    ))
}

fn no_such_container(name_or_id: &str) -> EngineError {
    EngineError::NotFound(format!("No such container: {name_or_id}"))
}

fn unreachable(method: &str, why: &str) -> EngineError {
    EngineError::Unreachable(format!(
        "error during {method}: Cannot connect to the Docker daemon at unix:///var/run/docker.sock ({why})"
    ))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Formats seconds since the Unix epoch as RFC 3339 (UTC) with nanoseconds.
fn rfc3339(secs: i64, nanos: u32) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(image: &str, networks: &[&str], ports: &[(&str, &str)]) -> Definition {
        let mut d = Definition::default();
        d.config.insert("Image".into(), json!(image));
        d.config.insert("Labels".into(), json!({"swap.app": "web"}));
        let bindings: Map<String, Value> =
            ports.iter().map(|(c, h)| (c.to_string(), json!([{"HostIp": "", "HostPort": h}]))).collect();
        d.host_config.insert("PortBindings".into(), Value::Object(bindings));
        d.networks = networks.iter().map(|n| Attachment::to(n)).collect();
        d
    }

    fn with_policy(mut d: Definition, name: &str) -> Definition {
        d.host_config.insert("RestartPolicy".into(), json!({"Name": name, "MaximumRetryCount": 0}));
        d
    }

    #[tokio::test(start_paused = true)]
    async fn names_are_unique_on_create_and_rename() {
        let e = MemoryEngine::new();
        e.add_image("app:v1", ImageBehaviour::Serves);
        let a = e.create("web", &def("app:v1", &[], &[])).await.unwrap();
        let err = e.create("web", &def("app:v1", &[], &[])).await.unwrap_err();
        assert!(matches!(&err, EngineError::Conflict(m) if m.contains("\"/web\" is already in use") && m.contains(&a)));
        let b = e.create("web--swap-new", &def("app:v1", &[], &[])).await.unwrap();
        assert!(matches!(e.rename(&b, "web").await, Err(EngineError::Conflict(_))));
        e.rename(&a, "web--swap-old").await.unwrap();
        e.rename(&b, "web").await.unwrap();
        assert_eq!(e.by_name("web").unwrap().id, b);
        assert!(matches!(e.create("-bad", &def("app:v1", &[], &[])).await, Err(EngineError::Daemon(_))));
        assert!(matches!(e.create("x1", &def("nope:v1", &[], &[])).await, Err(EngineError::NotFound(_))));
        assert_eq!(e.container("missing").await.unwrap(), None);
        // Docker would resolve an id prefix; the engine boundary does not:
        // a name no container has means no container.
        assert_eq!(e.container(&a[..12]).await.unwrap(), None);
        assert_eq!(e.container(&a).await.unwrap().unwrap().name, "web--swap-old");
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_host_port_keeps_a_container_stopped() {
        let e = MemoryEngine::new();
        e.add_image("app:v1", ImageBehaviour::Serves);
        let a = e.create("a1", &def("app:v1", &[], &[("8080/tcp", "18080")])).await.unwrap();
        let b = e.create("b1", &def("app:v1", &[], &[("8080/tcp", "18080")])).await.unwrap();
        e.start(&a).await.unwrap();
        let err = e.start(&b).await.unwrap_err();
        assert!(err.to_string().contains("Bind for 0.0.0.0:18080 failed: port is already allocated"), "{err}");
        assert_eq!(e.by_name("b1").unwrap().status, "created");
        e.stop(&a, Duration::from_secs(10)).await.unwrap();
        e.start(&b).await.unwrap();
        e.stop(&b, Duration::from_secs(10)).await.unwrap();
        e.occupy_port(18080);
        assert!(e.start(&a).await.is_err());
        assert_eq!(e.by_name("a1").unwrap().status, "exited");
        e.free_port(18080);
        e.start(&a).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn renaming_a_running_container_on_an_overlay_fails_moby_42351() {
        let e = MemoryEngine::new();
        e.add_network("appnet", "overlay");
        e.add_network("plain", "bridge");
        e.add_image("app:v1", ImageBehaviour::Serves);
        let a = e.create("web", &def("app:v1", &["appnet"], &[])).await.unwrap();
        e.rename(&a, "web2").await.unwrap(); // created: fine
        e.start(&a).await.unwrap();
        let err = e.rename(&a, "web3").await.unwrap_err();
        assert!(err.to_string().contains("Could not add service state for endpoint"), "{err}");
        assert_eq!(e.by_name("web2").unwrap().id, a, "the failed rename has no effect");
        e.stop(&a, Duration::from_secs(1)).await.unwrap();
        e.rename(&a, "web3").await.unwrap(); // stopped: fine
        let b = e.create("other", &def("app:v1", &["plain"], &[])).await.unwrap();
        e.start(&b).await.unwrap();
        e.rename(&b, "other2").await.unwrap(); // running on a bridge: fine
    }

    #[tokio::test(start_paused = true)]
    async fn overlay_is_torn_down_after_its_last_container_leaves_pr_41011() {
        let e = MemoryEngine::new();
        e.add_network("appnet", "overlay");
        e.add_image("app:v1", ImageBehaviour::Serves);
        e.set_overlay_race_calls(2);
        let old = e.create("web", &def("app:v1", &["appnet"], &[])).await.unwrap();
        let new = e.create("web--swap-new", &def("app:v1", &["appnet"], &[])).await.unwrap();
        e.start(&old).await.unwrap();
        e.stop(&old, Duration::from_secs(1)).await.unwrap();
        let err = e.start(&new).await.unwrap_err();
        assert!(err.is_network_race(), "{err}");
        assert!(err.to_string().contains("failed to get network during CreateEndpoint"));
        assert!(e.start(&new).await.unwrap_err().is_network_race());
        e.start(&new).await.unwrap(); // third call after the stop: the window is over
                                      // Connecting a running container in the window fails the same way.
        let side = e.create("side", &def("app:v1", &[], &[])).await.unwrap();
        e.start(&side).await.unwrap();
        e.remove(&new).await.unwrap();
        let att = Attachment::to("appnet");
        assert!(e.connect(&side, &att).await.unwrap_err().is_network_race());
        e.ping().await.unwrap();
        e.connect(&side, &att).await.unwrap();
        // A network that is really gone is NotFound, not the race.
        e.remove_network("appnet");
        e.stop(&side, Duration::ZERO).await.unwrap();
        assert!(matches!(e.start(&side).await, Err(EngineError::NotFound(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn daemon_restart_revives_by_restart_policy() {
        let e = MemoryEngine::new();
        e.add_image("app:v1", ImageBehaviour::Serves);
        let mk = |name: &'static str, policy: &'static str| {
            let e = e.clone();
            async move { e.create(name, &with_policy(def("app:v1", &[], &[]), policy)).await.unwrap() }
        };
        let always_stopped = mk("always-stopped", "always").await;
        let always_running = mk("always-running", "always").await;
        let unless_stopped = mk("unless-stopped", "unless-stopped").await;
        let unless_running = mk("unless-running", "unless-stopped").await;
        let parked = mk("parked", "always").await;
        let never_started = mk("never-started", "always").await;
        let on_failure = mk("on-failure", "on-failure").await;
        for id in [&always_stopped, &always_running, &unless_stopped, &unless_running, &parked, &on_failure] {
            e.start(id).await.unwrap();
        }
        e.stop(&always_stopped, Duration::ZERO).await.unwrap();
        e.stop(&unless_stopped, Duration::ZERO).await.unwrap();
        e.set_restart_policy(&parked, &RestartPolicy::no()).await.unwrap();
        e.stop(&parked, Duration::ZERO).await.unwrap();
        e.restart_daemon();
        let running = |id: &str| e.containers().into_iter().find(|c| c.id == id).unwrap().running;
        assert!(running(&always_stopped), "always comes back even after a user stop");
        assert!(running(&always_running));
        assert!(!running(&unless_stopped));
        assert!(running(&unless_running));
        assert!(!running(&parked), "policy no keeps a parked container down");
        assert!(!running(&never_started));
        assert!(running(&on_failure), "killed by the restart: a failure");
        assert_eq!(e.by_name("parked").unwrap().definition.host_config["RestartPolicy"]["Name"], "no");
    }

    #[tokio::test(start_paused = true)]
    async fn daemon_restart_cannot_start_two_containers_on_one_port() {
        let e = MemoryEngine::new();
        e.add_image("app:v1", ImageBehaviour::Serves);
        let a = e.create("a1", &with_policy(def("app:v1", &[], &[("80/tcp", "8080")]), "always")).await.unwrap();
        let b = e.create("b1", &with_policy(def("app:v1", &[], &[("80/tcp", "8080")]), "always")).await.unwrap();
        e.start(&a).await.unwrap();
        e.stop(&a, Duration::ZERO).await.unwrap();
        e.start(&b).await.unwrap();
        e.restart_daemon();
        let up: Vec<String> = e.containers().into_iter().filter(|c| c.running).map(|c| c.name).collect();
        assert_eq!(up, vec!["a1"], "first in creation order wins the port");
    }

    #[tokio::test(start_paused = true)]
    async fn health_goes_from_starting_to_healthy_or_unhealthy() {
        let e = MemoryEngine::new();
        e.set_health_delay(Duration::from_secs(3));
        e.add_image_with_config("good:v1", ImageBehaviour::Serves, MemoryEngine::config_with_healthcheck());
        e.add_image_with_config("bad:v1", ImageBehaviour::NeverHealthy, MemoryEngine::config_with_healthcheck());
        e.add_image("plain:v1", ImageBehaviour::Serves);
        let good = e.create("good", &def("good:v1", &[], &[])).await.unwrap();
        let bad = e.create("bad", &def("bad:v1", &[], &[])).await.unwrap();
        let plain = e.create("plain", &def("plain:v1", &[], &[])).await.unwrap();
        assert_eq!(e.container(&good).await.unwrap().unwrap().health, None);
        for id in [&good, &bad, &plain] {
            e.start(id).await.unwrap();
        }
        let health = |id: String| {
            let e = e.clone();
            async move { e.container(&id).await.unwrap().unwrap().health }
        };
        assert_eq!(health(good.clone()).await.as_deref(), Some("starting"));
        assert_eq!(health(bad.clone()).await.as_deref(), Some("starting"));
        assert_eq!(health(plain.clone()).await, None);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(health(good.clone()).await.as_deref(), Some("healthy"));
        assert_eq!(health(bad.clone()).await.as_deref(), Some("unhealthy"));
        // The definition can disable the image's healthcheck, or add one.
        let mut d = def("good:v1", &[], &[]);
        d.config.insert("Healthcheck".into(), json!({"Test": ["NONE"]}));
        let none = e.create("none", &d).await.unwrap();
        e.start(&none).await.unwrap();
        assert_eq!(health(none).await, None);
        let mut d = def("plain:v1", &[], &[]);
        d.config.insert("Healthcheck".into(), json!({"Test": ["CMD", "true"]}));
        let added = e.create("added", &d).await.unwrap();
        e.start(&added).await.unwrap();
        assert_eq!(health(added).await.as_deref(), Some("starting"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_image_that_exits_flaps_under_a_restart_policy() {
        let e = MemoryEngine::new();
        e.add_image("crash:v1", ImageBehaviour::ExitsAtOnce(3));
        let once = e.create("once", &def("crash:v1", &[], &[])).await.unwrap();
        e.start(&once).await.unwrap();
        let c = e.container(&once).await.unwrap().unwrap();
        assert_eq!((c.running, c.status.as_str(), c.exit_code), (false, "exited", 3));
        assert!(c.ever_started());
        let flap = e.create("flap", &with_policy(def("crash:v1", &[], &[]), "always")).await.unwrap();
        e.start(&flap).await.unwrap();
        let c1 = e.container(&flap).await.unwrap().unwrap();
        let c2 = e.container(&flap).await.unwrap().unwrap();
        assert_eq!(c1.status, "restarting");
        assert!(c2.restart_count > c1.restart_count && c1.restart_count > 0);
        assert!(e.logs_tail(&flap, 1).await.unwrap()[0].contains("exiting with code 3"));
        e.stop(&flap, Duration::ZERO).await.unwrap();
        assert_eq!(e.container(&flap).await.unwrap().unwrap().status, "exited");
        // A serving container whose process dies is restarted by Docker.
        e.add_image("app:v1", ImageBehaviour::Serves);
        let svc = e.create("svc", &with_policy(def("app:v1", &[], &[]), "unless-stopped")).await.unwrap();
        e.start(&svc).await.unwrap();
        assert!(e.exit_container(&svc, 1));
        let c = e.container(&svc).await.unwrap().unwrap();
        assert!(c.running && c.restart_count == 1);
    }

    #[tokio::test(start_paused = true)]
    async fn inspect_merges_image_defaults_like_docker() {
        let e = MemoryEngine::new();
        let mut cfg = default_image_config();
        cfg.insert("Env".into(), json!(["PATH=/bin", "MODE=image"]));
        cfg.insert("Labels".into(), json!({"org.image": "yes"}));
        let img = e.add_image_with_config("app:v1", ImageBehaviour::Serves, cfg);
        let mut d = def("app:v1", &[], &[]);
        d.config.insert("Env".into(), json!(["MODE=mine"]));
        let id = e.create("web", &d).await.unwrap();
        let c = e.container("web").await.unwrap().unwrap();
        assert_eq!(c.id, id);
        assert_eq!(c.image_id, img);
        assert_eq!(c.definition.config["Env"], json!(["MODE=mine", "PATH=/bin"]));
        assert_eq!(c.definition.config["Cmd"], json!(["/app"]));
        assert_eq!(c.labels.get("org.image").map(String::as_str), Some("yes"));
        assert_eq!(c.networks[0].network, "bridge");
        assert_eq!(e.containers_labelled("swap.app", "web").await.unwrap(), vec![id.clone()]);
        // Created by image id, as the step engine does.
        let by_id = e.create("web2", &def(&img, &[], &[])).await.unwrap();
        assert_eq!(e.container(&by_id).await.unwrap().unwrap().image_id, img);
    }

    #[tokio::test(start_paused = true)]
    async fn build_records_and_tags() {
        let e = MemoryEngine::new();
        let mut lines = Vec::new();
        let mut progress = |l: &str| lines.push(l.to_string());
        let id = e.build(vec![0; 512], "Dockerfile", Some("app:v2"), &mut progress).await.unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(e.image("app:v2").await.unwrap().unwrap().id, id);
        e.set_build(BuildOutcome::Fail("RUN make: exit code 2".into()));
        let mut quiet = |_: &str| {};
        let err = e.build(vec![], "Dockerfile", None, &mut quiet).await.unwrap_err();
        assert!(err.to_string().contains("exit code 2"));
        let builds = e.builds();
        assert_eq!(builds.len(), 2);
        assert_eq!(builds[0].result, Ok(id));
        assert_eq!(builds[0].tag.as_deref(), Some("app:v2"));
    }

    #[tokio::test(start_paused = true)]
    async fn unreachable_and_error_after_effect() {
        let e = MemoryEngine::new();
        e.add_image("app:v1", ImageBehaviour::Serves);
        e.set_faults([
            (1, CallFault::Unreachable),
            (2, CallFault::ErrorAfterEffect),
            (3, CallFault::Daemon("no".into())),
        ]);
        assert!(e.create("web", &def("app:v1", &[], &[])).await.unwrap_err().is_unreachable());
        assert!(e.by_name("web").is_none(), "unreachable: no effect");
        assert!(e.create("web", &def("app:v1", &[], &[])).await.unwrap_err().is_unreachable());
        assert!(e.by_name("web").is_some(), "the effect happened");
        assert!(matches!(e.ping().await, Err(EngineError::Daemon(_))));
        e.ping().await.unwrap();
        let calls = e.calls();
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[1].fault, Some(CallFault::ErrorAfterEffect));
        assert!(calls[1].outcome.starts_with("err:"));
        assert_eq!(calls[3].outcome, "ok");
    }

    #[tokio::test(start_paused = true)]
    async fn crash_never_returns_and_the_daemon_state_persists() {
        let e = MemoryEngine::new();
        e.add_image("app:v1", ImageBehaviour::Serves);
        let id = e.create("web", &def("app:v1", &[], &[])).await.unwrap();
        e.set_faults([(2, CallFault::Crash), (4, CallFault::CrashAfterEffect)]);
        assert!(matches!(e.until_crash(e.start(&id)).await, Err(Crashed)));
        assert!(e.crashed());
        assert!(!e.by_name("web").unwrap().running, "crash before the effect");
        // The dead process makes no further calls.
        assert!(tokio::time::timeout(Duration::from_secs(5), e.ping()).await.is_err());
        assert_eq!(e.call_count(), 2);
        // The restarted process sees the same daemon.
        e.restart_process();
        assert!(!e.crashed());
        e.ping().await.unwrap();
        assert!(matches!(e.until_crash(e.start(&id)).await, Err(Crashed)));
        assert!(e.by_name("web").unwrap().running, "crash after the effect");
        assert_eq!(e.calls()[3].outcome, "crashed");
        e.clear_faults();
        assert!(matches!(e.until_crash(e.ping()).await, Ok(Ok(()))));
        // The signal fires for an observer too.
        e.fault_at(6, CallFault::Crash);
        let mut rx = e.crash_signal();
        let op = tokio::spawn({
            let e = e.clone();
            async move { e.ping().await }
        });
        rx.wait_for(|c| *c).await.unwrap();
        op.abort();
    }

    /// Runs a fixed sequence of calls, ignoring errors, stopping at a crash.
    async fn scripted(e: &MemoryEngine) {
        e.add_image("app:v1", ImageBehaviour::Serves);
        let run = async {
            for round in 0..20 {
                let name = format!("c{round}");
                let _ = e.create(&name, &def("app:v1", &[], &[])).await;
                let _ = e.start(&name).await;
                let _ = e.container(&name).await;
                let _ = e.stop(&name, Duration::ZERO).await;
                let _ = e.rename(&name, &format!("{name}-old")).await;
            }
        };
        let _ = e.until_crash(run).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_seed_replays_exactly() {
        let faults = RandomFaults {
            unreachable: 0.1,
            error_after_effect: 0.1,
            crash_after_effect: 0.01,
            ..RandomFaults::seeded(42)
        };
        let first = MemoryEngine::new();
        first.set_random_faults(faults);
        scripted(&first).await;
        let second = MemoryEngine::new();
        second.set_random_faults(faults);
        scripted(&second).await;
        assert_eq!(first.calls(), second.calls());
        assert_eq!(first.containers(), second.containers());
        assert!(!first.injected().is_empty());
        // The logged faults, replayed as a schedule, give the same run.
        let third = MemoryEngine::new();
        third.set_faults(first.injected());
        scripted(&third).await;
        assert_eq!(first.calls(), third.calls());
        // Another seed gives another run.
        let other = MemoryEngine::new();
        other.set_random_faults(RandomFaults { seed: 43, ..faults });
        scripted(&other).await;
        assert_ne!(first.injected(), other.injected());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(rfc3339(1_767_225_600, 5), "2026-01-01T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_795_824_000 + 3661, 0), "2026-11-28T01:01:01.000000000Z");
    }
}
