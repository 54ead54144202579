//! Deterministic crash simulation:
//! the step engine (`deploy`, `recover_app`) against the in-memory engine,
//! crashed at every engine call of every scenario, crashed again during its
//! recovery, faulted with Docker errors at every call, and run under seeded
//! random schedules mixing faults, crashes, host reboots and candidate exits.
//!
//! A crash is a [`CallFault::Crash`] (the process dies before the call leaves: no
//! effect), a [`CallFault::CrashAfterEffect`] (it dies after the daemon acted) or a
//! [`CallFault::CrashInFlight`] (it dies with the request on its way, and the
//! daemon applies it seconds later, after a recovery that looked at once would
//! have looked) at call `k`: the whole operation's future is dropped, which is
//! what SIGKILL does between the journal's synchronous, durable appends and the
//! engine's calls. "Crash right after an append, before the Docker call" is
//! `Crash` at the next call. A torn journal tail (a crash in the middle of an
//! append) is modelled by cutting the journal's last line in half after the
//! crash, but only where that state can really arise: no engine call with an
//! effect may have happened since the last record was appended (an append is
//! durable before the next call, so an effect after a torn record is
//! impossible). The engine is wrapped in [`Probe`], which notes the journal's
//! length at every call to decide that.
//!
//! After the crash: `restart_process` (optionally `restart_daemon`, a host
//! reboot), `recover_app`, then the invariants of `docs/recovery.md`
//! (see [`check`]), then a second recovery that must change nothing.
//!
//! Bugs this simulation found, fixed, and now guards against (a failing run
//! prints its calls, journal and containers):
//! - A. Crash after the old container's restart policy was set to `no`
//!   (park) and before `stop old` was journaled, then a host reboot: the
//!   daemon kills the old container and, parked, does not revive it; the
//!   rollback restores the policy but never starts it, though `begin` says it
//!   was running. The app is down after `swap recover`. (Bridge, Overlay, Bad
//!   sweeps with `reboot=true`; most random-schedule failures.)
//! - B. A Docker refusal (not "unreachable") of `remove old` *after* the
//!   commit record makes `deploy` roll back a committed deploy: the new
//!   version is stopped and renamed away, the journal ends `rolled_back`
//!   after a `commit`, exit 1. With a crash inside that rollback, recovery
//!   goes forward and halts (exit 4: "the committed container … is named
//!   web--swap-new"). (`docker_errors_at_every_call`, random schedules.)
//! - C. Recovery going forward maps a Docker refusal (e.g. of the inspect
//!   that observes `remove old`) to exit 1 "rolled back", though nothing was
//!   rolled back and the new version serves with the deploy unfinished.
//! - D. A process killed with a Docker request on its way: Docker applies it
//!   after the restarted process has looked. A create lands after recovery
//!   found no candidate (left behind), an update after it restored the
//!   policy (policy `no` stays), a stop after it saw the old container
//!   running (rolled back with the app down), a rename after it saw the old
//!   name (the old container ends under its parking name). Recovery now
//!   waits out [`Engine::orphan_bound`] after a fresh intent. (Every
//!   `CrashInFlight` sweep point of a mutating call; found on the real
//!   engine by `tests/it/crash.rs::random_kills` first.)
//!
//! Environment: `SWAP_SIM_SEED` (base seed of the random schedules, decimal
//! or 0x-hex), `SWAP_SIM_SCHEDULES` (how many, default 10,000). A failing
//! schedule prints its seed and the faults injected, and replays with
//! `SWAP_SIM_SEED=<seed> SWAP_SIM_SCHEDULES=1 cargo nextest run --test sim random`.

mod memory;
mod pull;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use memory::{CallFault, ImageBehaviour, MemoryEngine, RandomFaults};
use swap::deploy::{deploy, Deployed, Request, Source};
use swap::docker::{
    Attachment, BuildProgress, Container, Definition, Engine, EngineResult, Image, Network, RestartPolicy,
};
use swap::error::Failure;
use swap::record::{Event, Outcome};
use swap::recover::{recover_app, Recovered};
use swap::report::Report;
use swap::spec::{Overrides, Publish};
use swap::state::StateDir;
use swap::step::{LABEL_APP, LABEL_DEPLOY};

const APP: &str = "web";
const STAGED: &str = "web--swap-";
const MUTATING: [&str; 8] = ["create", "connect", "start", "stop", "rename", "remove", "set_restart_policy", "build"];
/// How many failures are printed in full.
const SHOW: usize = 5;

// ---------------------------------------------------------------------------
// Scenarios and the world
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// No container yet: the deploy creates `web`.
    First,
    /// Old v1 on the bridge (restart `always`), re-deployed with v2.
    Bridge,
    /// Old v1 on the overlay `ovl` (restart `unless-stopped`), re-deployed with v2.
    Overlay,
    /// Old v1 on bridge and ovl (restart `no`): the candidate is connected to its second network.
    TwoNets,
    /// Old v1 on ovl (`always`); the candidate's image exits at once: rolled back.
    Bad,
    /// Old v1 on the bridge (`no`); the candidate never gets healthy: rolled back.
    Sick,
    /// Start-first: old v1 on the user-defined bridge network `app-net`
    /// (`always`, deployed start-first, so its label carries the strategy
    /// to the re-deploy with v2).
    StartBridge,
    /// Start-first on the overlay `ovl` (`unless-stopped`).
    StartOverlay,
    /// Start-first on `app-net` and `ovl` (`no`); the candidate never gets
    /// healthy: rolled back while the old version serves throughout.
    StartSick,
}

impl Scenario {
    const ALL: [Scenario; 9] = [
        Scenario::First,
        Scenario::Bridge,
        Scenario::Overlay,
        Scenario::TwoNets,
        Scenario::Bad,
        Scenario::Sick,
        Scenario::StartBridge,
        Scenario::StartOverlay,
        Scenario::StartSick,
    ];

    fn networks(self) -> &'static [&'static str] {
        match self {
            Scenario::First | Scenario::Bridge | Scenario::Sick => &["bridge"],
            Scenario::Overlay | Scenario::Bad | Scenario::StartOverlay => &["ovl"],
            Scenario::TwoNets => &["bridge", "ovl"],
            Scenario::StartBridge => &["app-net"],
            Scenario::StartSick => &["app-net", "ovl"],
        }
    }

    fn policy(self) -> &'static str {
        match self {
            Scenario::First | Scenario::Overlay | Scenario::StartOverlay => "unless-stopped",
            Scenario::Bridge | Scenario::Bad | Scenario::StartBridge => "always",
            Scenario::TwoNets | Scenario::Sick | Scenario::StartSick => "no",
        }
    }

    fn image(self) -> &'static str {
        match self {
            Scenario::Bad => "app:bad",
            Scenario::Sick | Scenario::StartSick => "app:sick",
            _ => "app:v2",
        }
    }

    /// Whether the candidate must fail its health gate.
    fn fails(self) -> bool {
        matches!(self, Scenario::Bad | Scenario::Sick | Scenario::StartSick)
    }

    fn start_first(self) -> bool {
        matches!(self, Scenario::StartBridge | Scenario::StartOverlay | Scenario::StartSick)
    }
}

/// The in-memory engine, noting the journal's length at every call (to tell
/// which torn tails are possible).
#[derive(Debug, Clone)]
struct Probe {
    mem: MemoryEngine,
    journal: PathBuf,
    /// Call number → journal length in bytes when the call was made.
    lens: Arc<Mutex<BTreeMap<u64, u64>>>,
    /// Remove the journal file just before this call, as someone cleaning
    /// up the state directory under a running deploy would.
    unlink_at: Arc<Mutex<Option<u64>>>,
    /// Start-first: the networks on which the app's name must resolve to a
    /// running container at every call, and the calls at which it did not.
    alias: Arc<Mutex<(Vec<String>, Vec<u64>)>>,
}

impl Probe {
    fn note(&self) {
        let n = self.mem.call_count() + 1;
        {
            let mut alias = self.alias.lock().unwrap_or_else(|e| e.into_inner());
            let (nets, gaps) = &mut *alias;
            if !nets.is_empty() && !resolves(&self.mem.containers(), nets) {
                gaps.push(n);
            }
        }
        if *self.unlink_at.lock().unwrap_or_else(|e| e.into_inner()) == Some(n) {
            let _ = std::fs::remove_file(&self.journal);
        }
        let len = file_len(&self.journal);
        self.lens.lock().unwrap_or_else(|e| e.into_inner()).insert(n, len);
    }
}

impl Engine for Probe {
    fn orphan_bound(&self, waits: std::time::Duration) -> std::time::Duration {
        self.mem.orphan_bound(waits)
    }
    async fn ping(&self) -> EngineResult<()> {
        self.note();
        self.mem.ping().await
    }
    async fn container(&self, name_or_id: &str) -> EngineResult<Option<Container>> {
        self.note();
        self.mem.container(name_or_id).await
    }
    async fn containers_labelled(&self, key: &str, value: &str) -> EngineResult<Vec<String>> {
        self.note();
        self.mem.containers_labelled(key, value).await
    }
    async fn container_names(&self) -> EngineResult<Vec<(String, String)>> {
        self.note();
        self.mem.container_names().await
    }
    async fn image(&self, reference: &str) -> EngineResult<Option<Image>> {
        self.note();
        self.mem.image(reference).await
    }
    async fn network(&self, name: &str) -> EngineResult<Option<Network>> {
        self.note();
        self.mem.network(name).await
    }
    async fn create(&self, name: &str, def: &Definition) -> EngineResult<String> {
        self.note();
        self.mem.create(name, def).await
    }
    async fn connect(&self, id: &str, attachment: &Attachment) -> EngineResult<()> {
        self.note();
        self.mem.connect(id, attachment).await
    }
    async fn start(&self, id: &str) -> EngineResult<()> {
        self.note();
        self.mem.start(id).await
    }
    async fn stop(&self, id: &str, timeout: Duration) -> EngineResult<()> {
        self.note();
        self.mem.stop(id, timeout).await
    }
    async fn rename(&self, id: &str, new_name: &str) -> EngineResult<()> {
        self.note();
        self.mem.rename(id, new_name).await
    }
    async fn remove(&self, id: &str) -> EngineResult<()> {
        self.note();
        self.mem.remove(id).await
    }
    async fn containers_using(&self, image_id: &str) -> EngineResult<Vec<String>> {
        self.note();
        self.mem.containers_using(image_id).await
    }
    async fn remove_image(&self, reference: &str) -> EngineResult<()> {
        self.note();
        self.mem.remove_image(reference).await
    }
    async fn set_restart_policy(&self, id: &str, policy: &RestartPolicy) -> EngineResult<()> {
        self.note();
        self.mem.set_restart_policy(id, policy).await
    }
    async fn logs_tail(&self, id: &str, lines: usize) -> EngineResult<Vec<String>> {
        self.note();
        self.mem.logs_tail(id, lines).await
    }
    async fn build(
        &self,
        context_tar: Vec<u8>,
        dockerfile: &str,
        tag: Option<&str>,
        progress: BuildProgress<'_>,
    ) -> EngineResult<String> {
        self.note();
        self.mem.build(context_tar, dockerfile, tag, progress).await
    }
    async fn pull(
        &self,
        reference: &str,
        auth: Option<&swap::docker::RegistryAuth>,
        progress: swap::docker::PullProgress<'_>,
    ) -> EngineResult<Option<String>> {
        self.note();
        self.mem.pull(reference, auth, progress).await
    }
}

/// Whether Docker's DNS answers the app's name on every one of `nets`: a
/// running container attached there is named `APP` or has it as an alias.
fn resolves(all: &[Container], nets: &[String]) -> bool {
    nets.iter().all(|n| {
        all.iter().any(|c| {
            c.running
                && c.networks.iter().any(|a| a.network == *n && (c.name == APP || a.aliases.iter().any(|x| x == APP)))
        })
    })
}

struct World {
    sc: Scenario,
    mem: MemoryEngine,
    probe: Probe,
    _dir: tempfile::TempDir,
    state: StateDir,
    /// The deploy that made the old container.
    world_deploy: Option<String>,
    /// The old container before the deploy under test.
    before: Option<Container>,
    /// The candidate's image id.
    cand_image: String,
    v1: String,
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn tempdir() -> tempfile::TempDir {
    // The journal fdatasyncs every record: keep it in memory where possible.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::Builder::new().prefix("swap-sim").tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

fn request(image: &str, overrides: Overrides) -> Request {
    Request {
        app: APP.into(),
        source: Source::Image(image.into()),
        overrides,
        health_timeout: Duration::from_secs(10),
        settle: Duration::from_secs(1),
        stop_timeout: Duration::from_secs(10),
        lock_wait: None,
        dry_run: false,
        command: "deploy".into(),
        pull: Default::default(),
        if_changed: false,
        keep_images: None,
        strategy: None,
        drain: Duration::from_secs(1),
    }
}

fn first_overrides(sc: Scenario) -> Overrides {
    Overrides {
        // Start-first refuses published ports: its clients reach it by name.
        publish: if sc.start_first() { vec![] } else { vec![Publish::parse("8080:80").expect("publish")] },
        networks: sc.networks().iter().map(|n| Attachment::to(n)).collect(),
        restart: Some(sc.policy().into()),
        ..Overrides::default()
    }
}

fn candidate_request(sc: Scenario) -> Request {
    match sc {
        Scenario::First => request(sc.image(), first_overrides(sc)),
        _ => request(sc.image(), Overrides::default()),
    }
}

/// Images, networks, and for a re-deploy the old container made by a first deploy.
async fn world(sc: Scenario) -> World {
    let mem = MemoryEngine::new();
    mem.set_health_delay(Duration::from_millis(500));
    let hc = MemoryEngine::config_with_healthcheck();
    let v1 = mem.add_image_with_config("app:v1", ImageBehaviour::Serves, hc.clone());
    let v2 = mem.add_image_with_config("app:v2", ImageBehaviour::Serves, hc.clone());
    let bad = mem.add_image_with_config("app:bad", ImageBehaviour::ExitsAtOnce(3), hc.clone());
    let sick = mem.add_image_with_config("app:sick", ImageBehaviour::NeverHealthy, hc);
    mem.add_network("ovl", "overlay");
    mem.add_network("app-net", "bridge");
    let dir = tempdir();
    let state = StateDir { root: dir.path().join("state") };
    let probe = Probe {
        mem: mem.clone(),
        journal: state.journal(APP),
        lens: Arc::default(),
        unlink_at: Arc::default(),
        alias: Arc::default(),
    };
    let mut world_deploy = None;
    if sc != Scenario::First {
        let mut req = request("app:v1", first_overrides(sc));
        if sc.start_first() {
            req.strategy = Some(swap::strategy::Strategy::StartFirst);
        }
        let d = deploy(&probe, &state, &req, &Report::silent(), None).await.expect("the world's first deploy");
        // Deploy ids have millisecond resolution (and the pid): the deploy
        // under test must not get the same one.
        while swap::record::new_deploy_id() == d.deploy {
            std::thread::sleep(Duration::from_micros(100));
        }
        world_deploy = Some(d.deploy);
    }
    let before = mem.by_name(APP);
    let cand_image = match sc.image() {
        "app:bad" => bad,
        "app:sick" => sick,
        _ => v2,
    };
    if sc.start_first() {
        probe.alias.lock().unwrap_or_else(|e| e.into_inner()).0 = sc.networks().iter().map(|n| n.to_string()).collect();
    }
    World { sc, mem, probe, _dir: dir, state, world_deploy, before, cand_image, v1 }
}

/// Start-first: the calls (of the deploy, its recoveries, and their checks)
/// at which the app's name resolved to no running container. A host reboot
/// stops every container, so it is only asked of runs without one.
fn alias_gaps(w: &World) -> Vec<u64> {
    w.probe.alias.lock().unwrap_or_else(|e| e.into_inner()).1.clone()
}

// ---------------------------------------------------------------------------
// Crashes, tears, invariants
// ---------------------------------------------------------------------------

/// Whether the journal's last record may be torn after a crash of the
/// operation that began after call `since` with the journal `pre_len` bytes
/// long: the operation appended it, and no call with an effect was made
/// after it.
fn tear_possible(w: &World, since: u64, pre_len: u64) -> bool {
    let path = w.state.journal(APP);
    let len = file_len(&path);
    if len <= pre_len {
        return false;
    }
    let Ok(bytes) = std::fs::read(&path) else { return false };
    if bytes.iter().filter(|b| **b == b'\n').count() < 2 {
        return false; // only the header
    }
    let first = {
        let lens = w.probe.lens.lock().unwrap_or_else(|e| e.into_inner());
        lens.range(since + 1..).find(|(_, l)| **l == len).map(|(n, _)| *n)
    };
    let Some(first) = first else { return false };
    w.mem
        .calls()
        .iter()
        .filter(|c| c.number >= first)
        .all(|c| !MUTATING.contains(&c.method) || c.fault == Some(CallFault::Crash))
}

/// Cuts the journal's last line in half.
fn tear(w: &World) {
    let path = w.state.journal(APP);
    let bytes = std::fs::read(&path).expect("read journal");
    let body = &bytes[..bytes.len() - 1];
    let start = body.iter().rposition(|b| *b == b'\n').map(|p| p + 1).unwrap_or(0);
    let cut = start + (bytes.len() - start) / 2;
    let f = std::fs::OpenOptions::new().write(true).open(&path).expect("open journal");
    f.set_len(cut as u64).expect("truncate journal");
}

fn records(w: &World) -> Result<Vec<journal::Record<Event>>, String> {
    let path = w.state.journal(APP);
    if !path.exists() {
        return Ok(vec![]);
    }
    journal::read::<Event>(&path).map(|r| r.records).map_err(|e| format!("journal unreadable: {e}"))
}

/// Runs where an old container with restart policy `no`, running when the
/// deploy began, was stopped by a reboot and not started by the rollback.
static DOWN_AFTER_REBOOT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The invariants after a completed recovery. `reboot`: the host was
/// rebooted at least once (an old container with restart policy `no` may
/// then legitimately be stopped if swap never touched it).
fn check(w: &World, ok: Option<&Deployed>, reboot: bool) -> Result<(), String> {
    let recs = records(w)?;
    let began = recs
        .iter()
        .rev()
        .find(|r| matches!(r.data, Event::Begin(_)))
        .map(|r| r.group.clone())
        .filter(|g| Some(g) != w.world_deploy.as_ref());
    let all = w.mem.containers();
    if let Some(c) = all.iter().find(|c| c.name.starts_with(STAGED)) {
        return Err(format!("leftover {} ({})", c.name, &c.id[..12]));
    }
    let named: Vec<&Container> = all.iter().filter(|c| c.name == APP).collect();
    let outcome = match &began {
        None => None,
        Some(d) => match recs.last() {
            Some(r) if r.group == *d => match &r.data {
                Event::End { outcome, .. } => Some(*outcome),
                other => return Err(format!("the journal's last record is {other:?}, not an end")),
            },
            _ => return Err(format!("the journal's last record is not deploy {d}'s")),
        },
    };
    if let Some(d) = &began {
        let committed = recs.iter().any(|r| r.group == *d && matches!(r.data, Event::Commit { .. }));
        if committed && outcome != Some(Outcome::Deployed) {
            return Err(format!(
                "deploy {d} committed, yet the journal ends with {outcome:?} (only forward after the commit point)"
            ));
        }
    }
    if let Some(d) = ok {
        if outcome != Some(Outcome::Deployed) || began.as_deref() != Some(&d.deploy) {
            return Err(format!("deploy {} returned Ok but the journal says {outcome:?}", d.deploy));
        }
    }
    let nets_ok = |c: &Container| w.sc.networks().iter().all(|n| c.networks.iter().any(|a| a.network == *n));
    match outcome {
        Some(Outcome::Deployed) => {
            let d = began.as_deref().unwrap_or_default();
            if w.sc.fails() {
                return Err("a failing candidate was deployed".into());
            }
            if all.len() != 1 || named.len() != 1 {
                return Err(format!("deployed: expected exactly one container, named {APP}; found {}", show(&all)));
            }
            let c = named[0];
            if c.image_id != w.cand_image || c.labels.get(LABEL_DEPLOY).map(String::as_str) != Some(d) {
                return Err(format!("deployed, but {APP} is not deploy {d}'s candidate: {}", show(&all)));
            }
            if !(c.running && c.status == "running") {
                return Err(format!("deployed, but {APP} is {} (exit {})", c.status, c.exit_code));
            }
            if !nets_ok(c) {
                return Err(format!("deployed, but {APP} is on {:?}", c.networks));
            }
            let want = RestartPolicy { name: w.sc.policy().into(), max_retries: 0 };
            if c.restart_policy != want {
                return Err(format!("deployed with restart policy {:?}, want {want:?}", c.restart_policy));
            }
            if let Some(d) = ok {
                if d.container != c.id {
                    return Err("the deploy that returned Ok is not the one serving".into());
                }
            }
        }
        None | Some(Outcome::RolledBack) => match &w.before {
            None => {
                if !all.is_empty() {
                    return Err(format!("first deploy rolled back, but containers remain: {}", show(&all)));
                }
            }
            Some(old) => {
                if all.len() != 1 || named.len() != 1 || named[0].id != old.id {
                    return Err(format!(
                        "rolled back: expected only the old container {} named {APP}; found {}",
                        &old.id[..12],
                        show(&all)
                    ));
                }
                let c = named[0];
                if c.image_id != w.v1 {
                    return Err("rolled back, but the old container's image changed".into());
                }
                let may_be_down = reboot && old.restart_policy.is_no();
                let down = !(c.running && c.status == "running");
                if down && may_be_down && began.is_some() {
                    // Not counted as a failure (policy `no`: a reboot stops it
                    // with or without swap), but counted and printed.
                    DOWN_AFTER_REBOOT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                if down && !may_be_down {
                    return Err(format!(
                        "rolled back, but the old container is {} (exit {}, policy {})",
                        c.status, c.exit_code, c.restart_policy.name
                    ));
                }
                if !nets_ok(c) {
                    return Err(format!("rolled back, but {APP} is on {:?}", c.networks));
                }
                if c.restart_policy != old.restart_policy {
                    return Err(format!(
                        "rolled back with restart policy {:?}, it was {:?}",
                        c.restart_policy, old.restart_policy
                    ));
                }
            }
        },
    }
    if let Some(d) = &began {
        let stray: Vec<&Container> = all
            .iter()
            .filter(|c| c.labels.get(LABEL_DEPLOY) == Some(d) && c.name != APP)
            .chain(all.iter().filter(|c| c.labels.get(LABEL_APP).map(String::as_str) == Some(APP) && c.name != APP))
            .collect();
        if !stray.is_empty() {
            return Err(format!("containers of deploy {d} besides the serving one: {}", show(&all)));
        }
    }
    Ok(())
}

fn show(all: &[Container]) -> String {
    let v: Vec<String> = all
        .iter()
        .map(|c| {
            format!(
                "{}={} {} {} policy={} deploy={}",
                &c.id[..12],
                c.name,
                c.image_ref,
                c.status,
                c.restart_policy.name,
                c.labels.get(LABEL_DEPLOY).map(String::as_str).unwrap_or("-")
            )
        })
        .collect();
    format!("[{}]", v.join("; "))
}

type Snapshot = Vec<(String, String, bool, String, String, Vec<String>)>;

fn snapshot(mem: &MemoryEngine) -> Snapshot {
    mem.containers()
        .into_iter()
        .map(|c| {
            (
                c.id,
                c.name,
                c.running,
                c.status,
                c.restart_policy.name,
                c.networks.into_iter().map(|a| a.network).collect(),
            )
        })
        .collect()
}

/// A second recovery changes nothing.
async fn check_idempotent(w: &World) -> Result<(), String> {
    let snap = snapshot(&w.mem);
    let n = w.mem.call_count();
    let r = recover_app(&w.probe, &w.state, APP, false, None, &Report::silent(), None).await;
    match r {
        Ok(Recovered::Clean) => {}
        other => return Err(format!("second recovery: {other:?}")),
    }
    if let Some(c) = w.mem.calls().iter().find(|c| c.number > n && MUTATING.contains(&c.method)) {
        return Err(format!("second recovery changed Docker: {} {}", c.method, c.args));
    }
    if snapshot(&w.mem) != snap {
        return Err("second recovery changed the containers".into());
    }
    Ok(())
}

/// Everything a failure report needs to replay and understand a run.
fn describe(w: &World) -> String {
    let mut s = String::from("engine calls:\n");
    for c in w.mem.calls() {
        let fault = c.fault.map(|f| format!(" [{f:?}]")).unwrap_or_default();
        let args: String = c.args.chars().take(90).collect();
        s.push_str(&format!("  {:>4} {} {args}{fault} -> {}\n", c.number, c.method, c.outcome));
    }
    s.push_str("journal:\n");
    match records(w) {
        Ok(recs) => {
            for r in recs {
                let what = record_line(&r.data);
                s.push_str(&format!("  {:>3} {} {what}\n", r.seq, r.group));
            }
        }
        Err(e) => s.push_str(&format!("  {e}\n")),
    }
    s.push_str(&format!("containers: {}\n", show(&w.mem.containers())));
    s
}

/// One journal record for a person (no group, no timings).
fn record_line(e: &Event) -> String {
    match e {
        Event::Intent { step } => format!("intent {}", step.describe()),
        Event::Done { step, .. } => format!("done {}", step.name()),
        Event::Failed { step, error, .. } => format!("failed {}: {error}", step.name()),
        Event::UndoIntent { step } => format!("undo_intent {}", step.describe()),
        Event::UndoDone { step, .. } => format!("undo_done {}", step.name()),
        Event::Health { passed, outcome, .. } => format!("health passed={passed} {outcome}"),
        Event::Commit { container } => format!("commit {}", &container[..12]),
        Event::Recovery { decision, .. } => format!("recovery {decision}"),
        Event::Halt { reason } => format!("halt {reason}"),
        Event::Hangup { .. } => "hangup".into(),
        Event::End { outcome, reason } => format!("end {outcome:?} {reason:?}"),
        Event::Begin(_) => "begin".into(),
    }
}

/// What a restarted process finds: the journal's records and Docker's
/// containers. Crash points that leave the same state recover the same way.
fn state_key(w: &World) -> String {
    let recs: Vec<String> = records(w).unwrap_or_default().iter().map(|r| record_line(&r.data)).collect();
    format!("{recs:?} {:?}", snapshot(&w.mem))
}

// ---------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Case {
    /// Crash the deploy at its k-th engine call.
    crash: Option<(u64, CallFault)>,
    /// Tear the journal's last record after the crash (where possible).
    torn: bool,
    /// Reboot the host (restart the daemon) after the crash.
    reboot: bool,
    /// Crash the first recovery at its k-th call.
    recovery_crash: Option<(u64, CallFault)>,
    /// Tear the journal after the recovery's crash (where possible).
    recovery_torn: bool,
    /// A Docker error (no crash) at the deploy's k-th call.
    fault: Option<(u64, CallFault)>,
}

#[derive(Debug, Default)]
struct Ran {
    deploy_calls: u64,
    first_recovery_calls: u64,
    crashed: bool,
    tear_possible: bool,
    recovery_tear_possible: bool,
    torn: bool,
    exit: Option<u8>,
    /// The state right after the deploy's crash (and tear).
    state_key: String,
}

async fn run_case(sc: Scenario, case: &Case) -> (World, Result<Ran, String>) {
    let w = world(sc).await;
    let r = run_on(&w, case).await;
    (w, r)
}

async fn run_on(w: &World, case: &Case) -> Result<Ran, String> {
    let mut ran = Ran::default();
    let base = w.mem.call_count();
    let pre_len = file_len(&w.state.journal(APP));
    for (k, f) in case.crash.iter().chain(case.fault.iter()) {
        w.mem.fault_at(base + k, f.clone());
    }
    let req = candidate_request(w.sc);
    let res = w.mem.until_crash(deploy(&w.probe, &w.state, &req, &Report::silent(), None)).await;
    ran.deploy_calls = w.mem.call_count() - base;
    let mut ok = None;
    match res {
        Ok(Ok(d)) => ok = Some(d),
        Ok(Err(f)) => {
            ran.exit = Some(f.exit_code());
            if !matches!(f, Failure::RolledBack(_) | Failure::Incomplete(_)) {
                return Err(format!("deploy ended with exit {}: {f}", f.exit_code()));
            }
        }
        Err(_) => {
            ran.crashed = true;
            w.mem.restart_process();
            ran.tear_possible = tear_possible(w, base, pre_len);
            if case.torn && ran.tear_possible {
                tear(w);
                ran.torn = true;
            }
            ran.state_key = state_key(w);
        }
    }
    w.mem.clear_faults();
    if case.reboot {
        w.mem.restart_daemon();
    }
    let base2 = w.mem.call_count();
    if let Some((k2, f2)) = &case.recovery_crash {
        let pre2 = file_len(&w.state.journal(APP));
        w.mem.fault_at(base2 + k2, f2.clone());
        let r = w.mem.until_crash(recover_app(&w.probe, &w.state, APP, false, None, &Report::silent(), None)).await;
        ran.first_recovery_calls = w.mem.call_count() - base2;
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(f)) => {
                return Err(format!("first recovery ended with exit {}: {f}", f.exit_code()));
            }
            Err(_) => {
                w.mem.restart_process();
                ran.recovery_tear_possible = tear_possible(w, base2, pre2);
                if case.recovery_torn && ran.recovery_tear_possible {
                    tear(w);
                    ran.torn = true;
                }
            }
        }
        w.mem.clear_faults();
    }
    let base3 = w.mem.call_count();
    let r = recover_app(&w.probe, &w.state, APP, false, None, &Report::silent(), None).await;
    if case.recovery_crash.is_none() {
        ran.first_recovery_calls = w.mem.call_count() - base3;
    }
    if let Err(f) = r {
        return Err(format!("recovery ended with exit {}: {f}", f.exit_code()));
    }
    // Whatever a dead process left on its way has landed by now.
    w.mem.land_orphans();
    check(w, ok.as_ref(), case.reboot)?;
    check_idempotent(w).await?;
    let gaps = alias_gaps(w);
    if w.sc.start_first() && !case.reboot && !gaps.is_empty() {
        return Err(format!("start-first: {APP} resolved to no running container at calls {gaps:?}"));
    }
    Ok(ran)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime")
}

#[derive(Default)]
struct Tally {
    runs: u64,
    passed: u64,
    failures: Vec<String>,
}

impl Tally {
    fn record(&mut self, label: String, w: &World, r: &Result<Ran, String>) {
        self.runs += 1;
        match r {
            Ok(_) => self.passed += 1,
            Err(e) => {
                let detail = if self.failures.len() < SHOW { format!("\n{}", describe(w)) } else { String::new() };
                self.failures.push(format!("{label}: {e}{detail}"));
            }
        }
    }

    fn finish(&self, what: &str) {
        eprintln!("{what}: {} runs, {} passed, {} failed", self.runs, self.passed, self.failures.len());
        assert!(self.runs > 0, "{what}: no case ran");
        if !self.failures.is_empty() {
            let mut msg = format!("{what}: {} of {} runs violated an invariant\n", self.failures.len(), self.runs);
            for f in self.failures.iter().take(SHOW) {
                msg.push_str(&format!("\n--- {f}\n"));
            }
            // One line for every failure, to see the pattern.
            msg.push_str("\nall failures (first line):\n");
            for f in &self.failures {
                msg.push_str(&format!("  {}\n", f.lines().next().unwrap_or_default()));
            }
            panic!("{msg}");
        }
    }
}

// ---------------------------------------------------------------------------
// Exhaustive single and double crashes
// ---------------------------------------------------------------------------

const CRASHES: [CallFault; 3] = [CallFault::Crash, CallFault::CrashAfterEffect, CallFault::CrashInFlight];

fn sweep(sc: Scenario) {
    let rt = runtime();
    let t = std::time::Instant::now();
    let (_, reference) = rt.block_on(run_case(sc, &Case::default()));
    let reference = reference.unwrap_or_else(|e| panic!("{sc:?}: the uncrashed run fails: {e}"));
    let n = reference.deploy_calls;
    let mut single = Tally::default();
    let mut torn_runs = 0;
    let mut recovery_calls = vec![];
    let mut seen = std::collections::BTreeSet::new();
    for k in 1..=n {
        for kind in CRASHES {
            for reboot in [false, true] {
                let case = Case { crash: Some((k, kind.clone())), reboot, ..Case::default() };
                let (w, r) = rt.block_on(run_case(sc, &case));
                single.record(format!("{sc:?} crash {kind:?} at deploy call {k} reboot={reboot}"), &w, &r);
                let Ok(ran) = r else { continue };
                if !reboot && seen.insert(ran.state_key.clone()) {
                    recovery_calls.push((k, kind.clone(), ran.first_recovery_calls));
                }
                if ran.tear_possible {
                    let case = Case { torn: true, ..case };
                    let (w, r) = rt.block_on(run_case(sc, &case));
                    torn_runs += 1;
                    single.record(format!("{sc:?} crash {kind:?} at deploy call {k} torn reboot={reboot}"), &w, &r);
                }
            }
        }
    }
    eprintln!(
        "{sc:?}: {n} deploy calls -> {} single-crash runs ({torn_runs} with a torn tail), {:.1} s",
        single.runs,
        t.elapsed().as_secs_f64()
    );
    let t = std::time::Instant::now();
    let mut double = Tally::default();
    for (k1, kind1, n2) in &recovery_calls {
        for k2 in 1..=*n2 {
            for kind2 in CRASHES {
                let case = Case {
                    crash: Some((*k1, kind1.clone())),
                    recovery_crash: Some((k2, kind2.clone())),
                    ..Case::default()
                };
                let label = format!("{sc:?} crash {kind1:?} at deploy call {k1}, {kind2:?} at recovery call {k2}");
                let (w, r) = rt.block_on(run_case(sc, &case));
                double.record(label.clone(), &w, &r);
                if matches!(&r, Ok(ran) if ran.recovery_tear_possible) {
                    let case = Case { recovery_torn: true, ..case };
                    let (w, r) = rt.block_on(run_case(sc, &case));
                    double.record(format!("{label} torn"), &w, &r);
                }
            }
        }
    }
    eprintln!(
        "{sc:?}: {} double-crash runs over {} first crash points leaving distinct states, {:.1} s",
        double.runs,
        recovery_calls.len(),
        t.elapsed().as_secs_f64()
    );
    let both = Tally {
        runs: single.runs + double.runs,
        passed: single.passed + double.passed,
        failures: single.failures.into_iter().chain(double.failures).collect(),
    };
    eprintln!(
        "{sc:?}: rollbacks leaving a policy-`no` old container stopped after a reboot (tolerated): {}",
        DOWN_AFTER_REBOOT.load(std::sync::atomic::Ordering::Relaxed)
    );
    both.finish(&format!("{sc:?} crash sweep"));
}

#[test]
fn crash_sweep_first_deploy() {
    sweep(Scenario::First);
}

#[test]
fn crash_sweep_redeploy_bridge() {
    sweep(Scenario::Bridge);
}

#[test]
fn crash_sweep_redeploy_overlay() {
    sweep(Scenario::Overlay);
}

#[test]
fn crash_sweep_redeploy_two_networks() {
    sweep(Scenario::TwoNets);
}

#[test]
fn crash_sweep_failing_candidate_exits() {
    sweep(Scenario::Bad);
}

#[test]
fn crash_sweep_failing_candidate_unhealthy() {
    sweep(Scenario::Sick);
}

#[test]
fn crash_sweep_start_first_bridge() {
    sweep(Scenario::StartBridge);
}

#[test]
fn crash_sweep_start_first_overlay() {
    sweep(Scenario::StartOverlay);
}

#[test]
fn crash_sweep_start_first_failing_candidate() {
    sweep(Scenario::StartSick);
}

// ---------------------------------------------------------------------------
// Docker errors without a crash
// ---------------------------------------------------------------------------

#[test]
fn docker_errors_at_every_call() {
    let rt = runtime();
    let t = std::time::Instant::now();
    let mut tally = Tally::default();
    let mut codes: BTreeMap<(String, Option<u8>), u64> = BTreeMap::new();
    for sc in Scenario::ALL {
        let (_, reference) = rt.block_on(run_case(sc, &Case::default()));
        let n = reference.unwrap_or_else(|e| panic!("{sc:?}: the unfaulted run fails: {e}")).deploy_calls;
        for k in 1..=n {
            for fault in [
                CallFault::Unreachable,
                CallFault::Daemon("injected refusal".into()),
                CallFault::ErrorAfterEffect,
                CallFault::ErrorInFlight,
            ] {
                let name = format!("{fault:?}").split('(').next().unwrap_or_default().to_string();
                let case = Case { fault: Some((k, fault.clone())), ..Case::default() };
                let (w, r) = rt.block_on(run_case(sc, &case));
                if let Ok(ran) = &r {
                    *codes.entry((name, ran.exit)).or_default() += 1;
                }
                tally.record(format!("{sc:?} {fault:?} at deploy call {k}"), &w, &r);
            }
        }
    }
    eprintln!("docker errors: deploy results by fault (None = exit 0): {codes:?}; {:.1} s", t.elapsed().as_secs_f64());
    tally.finish("docker errors at every call");
}

// ---------------------------------------------------------------------------
// A journal that cannot be written (full or failing disk), without a crash
// ---------------------------------------------------------------------------

/// Records the unfaulted deploy of `sc` appends.
async fn deploy_records(sc: Scenario) -> u64 {
    let w = world(sc).await;
    let before = records(&w).expect("journal").len();
    let _ = deploy(&w.probe, &w.state, &candidate_request(sc), &Report::silent(), None).await;
    (records(&w).expect("journal").len() - before) as u64
}

/// The append of record `n` of a re-deploy fails (`eio:N`: its
/// `fdatasync` reports EIO). Right after the deploy, without `swap
/// recover`: exit 5, the old or the new version serves under `APP` (the
/// old one, with its restart policy, unless the deploy had committed, and
/// always for a failing candidate), nothing named `APP--swap-*` runs, and
/// the journal reads. Then `swap recover` settles it and changes nothing
/// the second time.
async fn journal_failure_on(w: &World, n: u64) -> Result<(), String> {
    let req = candidate_request(w.sc);
    let res = deploy(&w.probe, &w.state, &req, &Report::silent(), Some(journal::Fault::Eio(n))).await;
    match &res {
        Err(Failure::Incomplete(_)) => {}
        other => return Err(format!("deploy ended with {other:?}, not exit 5")),
    }
    let recs = records(w)?;
    let committed =
        recs.iter().any(|r| Some(&r.group) != w.world_deploy.as_ref() && matches!(r.data, Event::Commit { .. }));
    let all = w.mem.containers();
    // Past its commit, a start-first deploy whose journal cannot be written
    // leaves its temporary instance (the new version too) serving beside
    // the final one until `swap recover` retires it: nothing is unjournaled
    // past the commit point.
    let temporary = |c: &Container| committed && w.sc.start_first() && c.image_id == w.cand_image;
    if let Some(c) = all.iter().find(|c| c.name.starts_with(STAGED) && c.running && !temporary(c)) {
        return Err(format!("{} is running: {}", c.name, show(&all)));
    }
    let named: Vec<&Container> = all.iter().filter(|c| c.name == APP).collect();
    let [c] = named[..] else { return Err(format!("not exactly one {APP}: {}", show(&all))) };
    if !(c.running && c.status == "running") {
        return Err(format!("{APP} is {}: {}", c.status, show(&all)));
    }
    let old = w.before.as_ref().ok_or("a re-deploy has an old container")?;
    if committed {
        if c.image_id != w.cand_image {
            return Err(format!("committed, but {APP} is not the candidate: {}", show(&all)));
        }
    } else if c.id != old.id || c.restart_policy != old.restart_policy {
        return Err(format!("not committed, but the old container is not restored: {}", show(&all)));
    }
    let r = recover_app(&w.probe, &w.state, APP, false, None, &Report::silent(), None).await;
    if let Err(f) = r {
        return Err(format!("recovery ended with exit {}: {f}", f.exit_code()));
    }
    check(w, None, false)?;
    check_idempotent(w).await
}

#[test]
fn journal_write_fails_at_every_record() {
    let rt = runtime();
    let t = std::time::Instant::now();
    let mut tally = Tally::default();
    let mut cases = 0;
    for sc in Scenario::ALL.into_iter().filter(|sc| *sc != Scenario::First) {
        let n = rt.block_on(deploy_records(sc));
        assert!(n >= 10, "{sc:?}: only {n} records");
        for k in 1..=n {
            let w = rt.block_on(world(sc));
            let r = rt.block_on(journal_failure_on(&w, k)).map(|()| Ran::default());
            tally.record(format!("{sc:?} journal write fails at record {k} of {n}"), &w, &r);
            cases += 1;
        }
    }
    eprintln!("journal write failures: {cases} runs, {:.1} s", t.elapsed().as_secs_f64());
    tally.finish("journal write fails at every record");
}

/// The journal is removed under a running re-deploy just before engine
/// call `k`. Before the commit record was written, the deploy must notice
/// at its next intent (or at the commit) and roll back: exit 1, the old
/// container serving as before. After it, it finishes forward: exit 0, the
/// candidate serving. Either way nothing is left over.
#[test]
fn journal_removed_under_a_running_deploy() {
    let rt = runtime();
    let mut tally = Tally::default();
    for sc in [Scenario::Bridge, Scenario::TwoNets, Scenario::Sick] {
        // Where the commit record lands in an undisturbed run.
        let (calls, commit_call) = rt.block_on(async {
            let w = world(sc).await;
            let base = w.mem.call_count();
            let _ = deploy(&w.probe, &w.state, &candidate_request(sc), &Report::silent(), None).await;
            let recs = records(&w).expect("journal");
            let commit = recs.iter().rev().find(|r| matches!(r.data, Event::Commit { .. })).map(|r| r.offset);
            let lens = w.probe.lens.lock().unwrap().clone();
            let commit_call =
                commit.and_then(|off| lens.range(base + 1..).find(|(_, l)| **l > off).map(|(n, _)| *n - base));
            (w.mem.call_count() - base, commit_call.unwrap_or(u64::MAX))
        });
        for k in 1..=calls {
            let w = rt.block_on(world(sc));
            *w.probe.unlink_at.lock().unwrap() = Some(w.mem.call_count() + k);
            let res = rt.block_on(deploy(&w.probe, &w.state, &candidate_request(sc), &Report::silent(), None));
            let all = w.mem.containers();
            let old = w.before.clone().expect("re-deploy");
            let r = match (&res, k < commit_call) {
                (Err(Failure::RolledBack(_)), true) => {
                    let ok = all.len() == 1
                        && all[0].id == old.id
                        && all[0].name == APP
                        && all[0].running
                        && all[0].restart_policy == old.restart_policy;
                    if ok {
                        Ok(Ran::default())
                    } else {
                        Err(format!("rolled back, but Docker holds {}", show(&all)))
                    }
                }
                (Ok(d), false) if !sc.fails() => {
                    let ok = all.len() == 1 && all[0].id == d.container && all[0].name == APP && all[0].running;
                    if ok {
                        Ok(Ran::default())
                    } else {
                        Err(format!("deployed, but Docker holds {}", show(&all)))
                    }
                }
                (Err(Failure::RolledBack(_)), false) if sc.fails() => Ok(Ran::default()),
                (other, before) => Err(format!(
                    "removed {} the commit, the deploy ended with {other:?}",
                    if before { "before" } else { "after" }
                )),
            };
            tally.record(format!("{sc:?} journal removed before call {k} (commit at {commit_call})"), &w, &r);
        }
    }
    tally.finish("journal removed under a running deploy");
}

/// The tag deployed moves to another (healthy) image at every call of a
/// re-deploy: before the plan resolves it, the new image is deployed as
/// planned; between the plan and the create, the candidate would run an
/// image nobody planned, so the create step refuses it and the deploy rolls
/// back; after the create, the planned image runs. Whatever the instant,
/// what serves is the old image or the planned one, never another.
#[test]
fn a_tag_moved_under_a_deploy_never_deploys_an_unplanned_image() {
    let rt = runtime();
    let (_, reference) = rt.block_on(run_case(Scenario::Bridge, &Case::default()));
    let n = reference.expect("the unfaulted run").deploy_calls;
    let mut tally = Tally::default();
    let mut rolled_back = 0;
    for k in 1..=n {
        let (w, r) = rt.block_on(async {
            let w = world(Scenario::Bridge).await;
            let base = w.mem.call_count();
            w.mem.fault_at(base + k, CallFault::MoveTag { reference: "app:v2".into(), to: w.v1.clone() });
            let out = deploy(&w.probe, &w.state, &candidate_request(Scenario::Bridge), &Report::silent(), None).await;
            let r = (|| {
                let serving = w.mem.by_name(APP).ok_or("nothing serves")?;
                let recs = records(&w)?;
                let planned = recs.iter().rev().find_map(|r| match &r.data {
                    Event::Intent { step: swap::step::Step::CreateCandidate { image, .. } } => Some(image.clone()),
                    _ => None,
                });
                match out {
                    Ok(_) if Some(&serving.image_id) == planned.as_ref() => Ok(false),
                    Ok(_) => Err(format!("deployed {} but planned {planned:?}", serving.image_id)),
                    Err(Failure::RolledBack(_)) if serving.image_id == w.v1 => Ok(true),
                    Err(f) => Err(format!("ended {f} with {} serving", serving.image_id)),
                }
            })();
            (w, r)
        });
        if r == Ok(true) {
            rolled_back += 1;
        }
        tally.record(format!("tag moved at deploy call {k}"), &w, &r.map(|_| Ran::default()));
    }
    eprintln!("moved tag: {n} calls, {rolled_back} rolled back");
    tally.finish("a tag moved at every call");
    assert!(rolled_back > 0, "no instant fell between the plan and the create");
}

// ---------------------------------------------------------------------------
// The restarted process is a new `swap deploy`: it recovers first
// ---------------------------------------------------------------------------

/// Crash the deploy at every call; the restarted process runs the same
/// `swap deploy` again, which must recover the unfinished deploy first and
/// then deploy (or, for a failing candidate, roll back to the old version).
async fn redeploy_case(sc: Scenario, k: u64, kind: CallFault) -> (World, Result<(), String>) {
    let w = world(sc).await;
    let r = redeploy_on(&w, k, kind).await;
    (w, r)
}

async fn redeploy_on(w: &World, k: u64, kind: CallFault) -> Result<(), String> {
    let base = w.mem.call_count();
    w.mem.fault_at(base + k, kind);
    let req = candidate_request(w.sc);
    let first = w.mem.until_crash(deploy(&w.probe, &w.state, &req, &Report::silent(), None)).await;
    if first.is_ok() {
        return Ok(()); // k is past the deploy's last call
    }
    w.mem.restart_process();
    w.mem.clear_faults();
    if let Some(last) = records(w)?.iter().rev().find(|r| matches!(r.data, Event::Begin(_))) {
        while swap::record::new_deploy_id() == last.group {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    let second = deploy(&w.probe, &w.state, &req, &Report::silent(), None).await;
    w.mem.land_orphans();
    let recs = records(w)?;
    for b in recs.iter().filter(|r| matches!(r.data, Event::Begin(_))) {
        if !recs.iter().any(|r| r.group == b.group && matches!(r.data, Event::End { .. })) {
            return Err(format!("deploy {} has no end after the second deploy", b.group));
        }
    }
    if !matches!(recs.last().map(|r| &r.data), Some(Event::End { .. })) {
        return Err("the journal does not end with an end record".into());
    }
    let all = w.mem.containers();
    if all.iter().any(|c| c.name.starts_with(STAGED)) {
        return Err(format!("leftovers: {}", show(&all)));
    }
    match (second, w.sc.fails()) {
        (Ok(d), false) => {
            let ok = all.len() == 1
                && all[0].id == d.container
                && all[0].name == APP
                && all[0].image_id == w.cand_image
                && all[0].running
                && all[0].status == "running";
            if !ok {
                return Err(format!("the second deploy returned Ok, but Docker holds {}", show(&all)));
            }
        }
        (Err(Failure::RolledBack(_)), true) => {
            let old = w.before.as_ref().ok_or("a failing scenario has an old container")?;
            let ok = all.len() == 1 && all[0].id == old.id && all[0].name == APP && all[0].running;
            if !ok || all[0].restart_policy != old.restart_policy {
                return Err(format!("rolled back, but Docker holds {}", show(&all)));
            }
        }
        (other, _) => return Err(format!("the second deploy ended with {other:?}")),
    }
    check_idempotent(w).await
}

#[test]
fn crash_then_deploy_again() {
    let rt = runtime();
    let t = std::time::Instant::now();
    let mut tally = Tally::default();
    for sc in Scenario::ALL {
        let (_, reference) = rt.block_on(run_case(sc, &Case::default()));
        let n = reference.unwrap_or_else(|e| panic!("{sc:?}: the uncrashed run fails: {e}")).deploy_calls;
        for k in 1..=n {
            for kind in CRASHES {
                let (w, r) = rt.block_on(redeploy_case(sc, k, kind.clone()));
                tally.runs += 1;
                match r {
                    Ok(()) => tally.passed += 1,
                    Err(e) => {
                        let detail =
                            if tally.failures.len() < SHOW { format!("\n{}", describe(&w)) } else { String::new() };
                        tally
                            .failures
                            .push(format!("{sc:?} crash {kind:?} at deploy call {k}, deploy again: {e}{detail}"));
                    }
                }
            }
        }
    }
    eprintln!("crash then deploy again: {} runs, {:.1} s", tally.runs, t.elapsed().as_secs_f64());
    tally.finish("crash then deploy again");
}

// ---------------------------------------------------------------------------
// Seeded random schedules
// ---------------------------------------------------------------------------

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(1);
        splitmix64(self.0)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// How many candidate exits the random schedules injected.
static EXITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Candidate exits while the deploy (or a recovery) runs, before the commit.
fn spawn_exiter(w: &World, rng: &mut Rng) -> Option<tokio::task::JoinHandle<()>> {
    if !rng.chance(0.3) {
        return None;
    }
    let delay = Duration::from_millis(rng.below(3000));
    let code = [0, 1, 137][rng.below(3) as usize];
    let mem = w.mem.clone();
    let path = w.state.journal(APP);
    let world_deploy = w.world_deploy.clone();
    Some(tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let committed = journal::read::<Event>(&path)
            .map(|r| {
                r.records
                    .iter()
                    .any(|r| matches!(r.data, Event::Commit { .. }) && Some(&r.group) != world_deploy.as_ref())
            })
            .unwrap_or(true);
        if committed {
            return;
        }
        let cand = mem
            .containers()
            .into_iter()
            .find(|c| c.labels.contains_key(LABEL_DEPLOY) && c.labels.get(LABEL_DEPLOY) != world_deploy.as_ref());
        if let Some(c) = cand {
            if mem.exit_container(&c.id, code) {
                EXITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }))
}

async fn random_schedule(seed: u64) -> (World, Result<String, String>) {
    let mut rng = Rng(seed);
    let sc = Scenario::ALL[rng.below(Scenario::ALL.len() as u64) as usize];
    let w = world(sc).await;
    let r = random_on(&w, &mut rng, seed).await;
    (w, r)
}

async fn random_on(w: &World, rng: &mut Rng, seed: u64) -> Result<String, String> {
    let intensity = rng.unit();
    let faults = RandomFaults {
        seed,
        unreachable: 0.04 * intensity,
        error_after_effect: 0.04 * intensity,
        crash: 0.03 * intensity,
        crash_after_effect: 0.03 * intensity,
        crash_in_flight: 0.02 * intensity,
    };
    let base = w.mem.call_count();
    w.mem.set_random_faults(faults);
    if rng.chance(0.3) {
        w.mem.fault_at(base + 1 + rng.below(60), CallFault::Daemon("injected refusal".into()));
    }
    let exiter = spawn_exiter(w, rng);
    let req = candidate_request(w.sc);
    let mut pre_len = file_len(&w.state.journal(APP));
    let res = w.mem.until_crash(deploy(&w.probe, &w.state, &req, &Report::silent(), None)).await;
    let mut ok = None;
    let mut crashed = false;
    let mut reboot = false;
    let mut story = String::new();
    match res {
        Ok(Ok(d)) => {
            story.push_str("deploy ok");
            ok = Some(d);
        }
        Ok(Err(f)) => {
            story.push_str(&format!("deploy exit {}", f.exit_code()));
            if !matches!(f, Failure::RolledBack(_) | Failure::Incomplete(_)) {
                return Err(format!("deploy ended with exit {}: {f}", f.exit_code()));
            }
        }
        Err(_) => {
            story.push_str("deploy crashed");
            crashed = true;
        }
    }
    let mut since = base;
    let mut recovered = false;
    for _ in 0..4 {
        if crashed {
            w.mem.restart_process();
            if rng.chance(0.5) && tear_possible(w, since, pre_len) {
                tear(w);
                story.push_str(", torn");
            }
            if rng.chance(0.3) {
                w.mem.restart_daemon();
                reboot = true;
                story.push_str(", reboot");
            }
        }
        since = w.mem.call_count();
        pre_len = file_len(&w.state.journal(APP));
        crashed = false;
        match w.mem.until_crash(recover_app(&w.probe, &w.state, APP, false, None, &Report::silent(), None)).await {
            Ok(Ok(_)) => {
                story.push_str(", recovered");
                recovered = true;
                break;
            }
            Ok(Err(Failure::Incomplete(_))) => story.push_str(", recovery incomplete"),
            Ok(Err(f)) => return Err(format!("{story}; recovery ended with exit {}: {f}", f.exit_code())),
            Err(_) => {
                story.push_str(", recovery crashed");
                crashed = true;
            }
        }
    }
    if let Some(h) = exiter {
        h.abort();
    }
    w.mem.clear_faults();
    if !recovered {
        let r = recover_app(&w.probe, &w.state, APP, false, None, &Report::silent(), None).await;
        if let Err(f) = r {
            return Err(format!("{story}; final recovery ended with exit {}: {f}", f.exit_code()));
        }
        story.push_str(", recovered without faults");
    }
    w.mem.land_orphans();
    check(w, ok.as_ref(), reboot).map_err(|e| format!("{story}: {e}"))?;
    check_idempotent(w).await.map_err(|e| format!("{story}: {e}"))?;
    Ok(story)
}

/// Runs, passes, failures, and how the deploys ended, of one thread.
type ThreadResult = (u64, u64, Vec<String>, BTreeMap<String, u64>);

#[test]
fn random_schedules() {
    let base = env_u64("SWAP_SIM_SEED").unwrap_or(0x5eed_2026);
    let count = env_u64("SWAP_SIM_SCHEDULES").unwrap_or(10_000);
    let threads = 4u64;
    let t = std::time::Instant::now();
    let results: Vec<ThreadResult> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                s.spawn(move || {
                    let rt = runtime();
                    let (mut runs, mut passed, mut failures, mut kinds) = (0, 0, vec![], BTreeMap::new());
                    let mut j = i;
                    while j < count {
                        // With one schedule, the seed is used as given (replay).
                        let seed = if count == 1 { base } else { splitmix64(base.wrapping_add(j)) };
                        let (w, r) = rt.block_on(random_schedule(seed));
                        runs += 1;
                        match r {
                            Ok(story) => {
                                passed += 1;
                                let first = story.split(',').next().unwrap_or_default().to_string();
                                *kinds.entry(first).or_insert(0u64) += 1;
                            }
                            Err(e) => {
                                let detail = if failures.len() < SHOW {
                                    format!("\ninjected: {:?}\n{}", w.mem.injected(), describe(&w))
                                } else {
                                    String::new()
                                };
                                failures.push(format!(
                                    "seed {seed:#x} ({:?}; replay: SWAP_SIM_SEED={seed:#x} SWAP_SIM_SCHEDULES=1): {e}{detail}",
                                    w.sc
                                ));
                            }
                        }
                        j += threads;
                    }
                    (runs, passed, failures, kinds)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("schedule thread")).collect()
    });
    let mut tally = Tally::default();
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for (runs, passed, failures, k) in results {
        tally.runs += runs;
        tally.passed += passed;
        tally.failures.extend(failures);
        for (key, v) in k {
            *kinds.entry(key).or_default() += v;
        }
    }
    eprintln!(
        "random schedules: base seed {base:#x}, {count} schedules in {:.1} s; deploy endings: {kinds:?}; \
         candidate exits injected: {}",
        t.elapsed().as_secs_f64(),
        EXITS.load(std::sync::atomic::Ordering::Relaxed)
    );
    tally.finish("random schedules");
}
