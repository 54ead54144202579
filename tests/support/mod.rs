//! Shared harness for swap's integration tests, which run against a real Docker
//! engine.
//!
//! The tests run under cargo-nextest, one process per test and several at once,
//! so every one-time fixture (the demo images, the swarm, the test networks) is
//! set up under an exclusive file lock and every fixture step tolerates having
//! been done already by another process — even one using another target dir,
//! whose lock files differ.
//!
//! The tests observe Docker through the `docker` CLI, independently of swap's
//! own Docker client, so a bug in that client cannot hide itself. Containers
//! are matched by exact name in Rust: `docker ps --filter name=X` is a regular
//! expression match and would also see `X2`.
//!
//! Docker being unreachable fails a test; it never skips one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod proxy;
pub mod registry;

/// Every image the demo build produces (`swap-demo:<tag>`), see
/// `demo/build-images.sh`.
pub const IMAGE_TAGS: [&str; 6] = ["v1", "v2", "crash", "unhealthy", "plain-v1", "plain-v2"];

/// The attachable overlay network shared by all tests (see [`overlay`]),
/// unless `SWAP_TEST_OVERLAY` names another (`.ci/run` gives each run its
/// own).
pub const OVERLAY: &str = "swap-test-overlay";

fn overlay_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| std::env::var("SWAP_TEST_OVERLAY").ok().filter(|n| !n.is_empty()).unwrap_or(OVERLAY.into()))
}

/// The user-defined bridge network shared by all tests (see [`bridge`]).
pub const BRIDGE: &str = "swap-test-bridge";

/// The port the demo app listens on inside its container.
pub const DEMO_PORT: u16 = 8080;

/// Full reference of a demo image, e.g. `image("v1")` is `swap-demo:v1`.
pub fn image(tag: &str) -> String {
    format!("swap-demo:{tag}")
}

/// Root of the repository (the `swap` package).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Scratch space inside the target dir, shared by every test process.
fn scratch_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("swap-it");
    std::fs::create_dir_all(&dir).expect("create the test scratch dir");
    dir
}

/// Runs `f` while holding an exclusive lock on `<scratch>/<name>.lock`, so one
/// test process at a time sets up a shared fixture. The lock file is never
/// removed; closing it releases the lock, also when the process dies.
fn with_lock<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let path = scratch_dir().join(format!("{name}.lock"));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open lock file {}: {e}", path.display()));
    // Fully qualified: std's inherent `File::lock_exclusive` would shadow it.
    fs2::FileExt::lock_exclusive(&file).unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    let result = f();
    drop(file);
    result
}

// ---------------------------------------------------------------------------
// The docker CLI
// ---------------------------------------------------------------------------

/// Runs `docker <args>` and returns its output, whatever the exit status.
pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().unwrap_or_else(|e| panic!("cannot run `docker {}`: {e}", args.join(" ")))
}

/// Runs `docker <args>`, panics unless it succeeds, and returns its trimmed stdout.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker_output(args);
    assert!(
        out.status.success(),
        "`docker {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Checks that the Docker engine answers; panics with a clear message if not.
/// These tests are about Docker, so no Docker is a failure, never a skip.
pub fn docker() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let out = Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output();
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "Docker is unreachable (`docker info` failed: {}). These tests need a \
                 running Docker engine; start one (e.g. `.ci/run` does) and re-run.",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => panic!(
                "cannot run the docker CLI ({e}). These tests need the docker CLI and a \
                 running Docker engine."
            ),
        }
    });
}

/// Installs Debian `packages` unless `present` says they are, so the test
/// command works on a fresh machine (as `.ci/run` does before the tests);
/// once per machine, under the fixture lock `lock`. A failed install is left
/// to the caller's clear panic.
fn install_packages(lock: &str, packages: &[&str], present: impl Fn() -> bool) {
    if present() {
        return;
    }
    with_lock(lock, || {
        if present() {
            return;
        }
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y"])
                .args(packages)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !install() {
            let _ = Command::new("apt-get").arg("update").output();
            install();
        }
    });
}

/// Force-removes a container no [`TestApp`] owns when dropped (one a test
/// started by hand).
#[derive(Debug)]
pub struct Removal(pub String);

impl Drop for Removal {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", &self.0]);
    }
}

// ---------------------------------------------------------------------------
// Fixtures: images and networks
// ---------------------------------------------------------------------------

/// A fingerprint of everything the demo images are built from, so a changed
/// demo app or Dockerfile triggers a rebuild without rebuilding on every test.
fn demo_fingerprint() -> String {
    use std::hash::{Hash, Hasher};
    let root = repo_root();
    let mut files = vec![root.join("demo/Cargo.toml"), root.join("demo/build-images.sh")];
    for tag in IMAGE_TAGS {
        files.push(root.join(format!("demo/image/{tag}/Dockerfile")));
    }
    let mut src: Vec<PathBuf> = std::fs::read_dir(root.join("demo/src"))
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    src.sort();
    files.extend(src);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for file in files {
        // Relative names: the same sources give the same fingerprint in
        // every checkout.
        file.strip_prefix(root).unwrap_or(&file).hash(&mut hasher);
        std::fs::read(&file).unwrap_or_default().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// Ids of the demo images, in [`IMAGE_TAGS`] order, or `None` if any is missing.
fn demo_image_ids() -> Option<Vec<String>> {
    let refs: Vec<String> = IMAGE_TAGS.iter().map(|t| image(t)).collect();
    let mut args = vec!["image", "inspect", "--format", "{{.Id}}"];
    args.extend(refs.iter().map(String::as_str));
    let out = docker_output(&args);
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect())
}

/// Ensures every `swap-demo:*` image exists and is built from the current
/// sources, running `demo/build-images.sh` (once, under the lock) if not.
pub fn images() {
    docker();
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let stamp_path = scratch_dir().join("demo-images.stamp");
        let fingerprint = demo_fingerprint();
        let up_to_date = || {
            let Some(ids) = demo_image_ids() else {
                return false;
            };
            let want = format!("{fingerprint}\n{}\n", ids.join("\n"));
            std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == want)
        };
        if up_to_date() {
            return;
        }
        with_lock("demo-images", || {
            if up_to_date() {
                return;
            }
            let script = repo_root().join("demo/build-images.sh");
            let out = Command::new(&script)
                .current_dir(repo_root())
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
            assert!(
                out.status.success(),
                "{} failed ({}):\n{}{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let ids = demo_image_ids().expect("demo images missing right after building them");
            std::fs::write(&stamp_path, format!("{fingerprint}\n{}\n", ids.join("\n")))
                .expect("write the demo image stamp");
        });
    });
}

/// Ensures the single-node swarm is active and the attachable overlay network
/// [`OVERLAY`] (or `SWAP_TEST_OVERLAY`) exists and is allocated; returns its
/// name.
///
/// The network gets the swarm's default address pool (a /24 of 10.0.0.0/8
/// not used by another network). A fixed `--subnet` is not used: in swarm
/// mode `docker network create` accepts an overlapping subnet and only the
/// allocator refuses it afterwards ("Pool overlaps with other one on this
/// address space"), leaving a network that exists but has no driver state.
pub fn overlay() -> &'static str {
    docker();
    let name = overlay_name();
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if network_driver(name).as_deref() == Some("overlay") {
            return;
        }
        with_lock("networks", || {
            let state = docker_ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
            if state != "active" {
                let out = docker_output(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    out.status.success() || err.contains("already part of a swarm"),
                    "`docker swarm init --advertise-addr 127.0.0.1` failed: {}",
                    err.trim()
                );
            }
            create_network(name, &["--driver", "overlay", "--attachable"]);
            // The swarm allocates the network after `create` returns; until
            // then `inspect` shows an empty driver.
            wait_until(Duration::from_secs(30), || network_driver(name).as_deref() != Some(""));
            assert_eq!(
                network_driver(name).as_deref(),
                Some("overlay"),
                "network {name} exists but the swarm has not allocated it as an overlay network \
                 (`grep -i allocation` the dockerd log); remove it and run again"
            );
        });
    });
    name
}

/// Ensures the user-defined bridge network [`BRIDGE`] exists; returns its name.
pub fn bridge() -> &'static str {
    docker();
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if network_driver(BRIDGE).as_deref() == Some("bridge") {
            return;
        }
        with_lock("networks", || {
            create_network(BRIDGE, &["--driver", "bridge"]);
            assert_eq!(
                network_driver(BRIDGE).as_deref(),
                Some("bridge"),
                "network {BRIDGE} exists but is not a bridge network"
            );
        });
    });
    BRIDGE
}

/// The driver of network `name`, or `None` if there is no such network.
fn network_driver(name: &str) -> Option<String> {
    let out = docker_output(&["network", "inspect", "--format", "{{.Driver}}", name]);
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Creates a network unless it exists (another target dir's test run may race us).
fn create_network(name: &str, opts: &[&str]) {
    if network_driver(name).is_some() {
        return;
    }
    let mut args = vec!["network", "create"];
    args.extend_from_slice(opts);
    args.push(name);
    let out = docker_output(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() || err.contains("already exists"),
        "`docker {}` failed: {}",
        args.join(" "),
        err.trim()
    );
}

// ---------------------------------------------------------------------------
// One app under test
// ---------------------------------------------------------------------------

/// One application name owned by one test, with its own swap state dir.
/// Dropping it removes every container of the app.
#[derive(Debug)]
pub struct TestApp {
    /// The app name passed to swap, unique per test process and call.
    pub name: String,
    /// The `--state-dir` given to every swap run; kept if the test panics, so
    /// its journal can be read post-mortem.
    pub state_dir: PathBuf,
}

impl TestApp {
    /// A fresh app named `t-<tag>-<pid>-<n>`. `tag` should say which test it
    /// belongs to; characters Docker does not allow in names become `-`.
    pub fn new(tag: &str) -> Self {
        docker();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let tag: String = tag
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c.to_ascii_lowercase() } else { '-' })
            .collect();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("t-{tag}-{}-{n}", std::process::id());
        let state_dir = scratch_dir().join("state").join(&name);
        // A previous run killed before its cleanup may have left the same name
        // behind (pids are reused).
        let _ = std::fs::remove_dir_all(&state_dir);
        std::fs::create_dir_all(&state_dir).expect("create the app's state dir");
        let app = TestApp { name, state_dir };
        app.remove_containers();
        app
    }

    /// The app name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The app's journal, `<state_dir>/<app>/journal.jsonl`.
    pub fn journal_path(&self) -> PathBuf {
        self.state_dir.join(&self.name).join("journal.jsonl")
    }

    /// Runs `swap --state-dir <dir> <args>` with every `SWAP_*` variable of
    /// this process removed from its environment.
    pub fn swap(&self, args: &[&str]) -> Output {
        self.swap_env(&[], args)
    }

    /// Like [`TestApp::swap`], with extra environment variables (e.g.
    /// `SWAP_CRASH_AT`).
    pub fn swap_env(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        self.command(env, args).output().expect("run the swap binary")
    }

    /// The `swap` command [`TestApp::swap_env`] runs, to spawn or adjust.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, env: &[(&str, &str)], args: &[S]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_swap"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SWAP_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(env.iter().copied());
        cmd.arg("--state-dir").arg(&self.state_dir).args(args);
        cmd
    }

    /// Starts `swap <args>` with stdout and stderr piped.
    pub fn spawn(&self, env: &[(&str, &str)], args: &[&str]) -> std::process::Child {
        let mut cmd = self.command(env, args);
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        cmd.spawn().expect("spawn swap")
    }

    /// Force-removes every container named `<app>` or `<app>--swap-*`, or
    /// labelled `swap.app=<app>`, with their anonymous volumes.
    pub fn remove_containers(&self) {
        let mut ids: Vec<String> = containers_of(&self.name).into_iter().map(|c| c.id).collect();
        let label = format!("label=swap.app={}", self.name);
        let out = docker_output(&["ps", "-aq", "--no-trunc", "--filter", &label]);
        ids.extend(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string));
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return;
        }
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids.iter().map(String::as_str));
        let _ = docker_output(&args);
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.remove_containers();
        if std::thread::panicking() {
            eprintln!("swap state of {} kept for inspection in {}", self.name, self.state_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
}

/// Human-readable rendering of a swap run, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------

/// One row of `docker ps -a`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// Full container id.
    pub id: String,
    /// Container name, without the leading `/`.
    pub name: String,
    /// The image as given when the container was created (tag or id).
    pub image: String,
    /// `created`, `running`, `exited`, `restarting`, `paused`, …
    pub state: String,
    /// Human status, e.g. `Up 3 seconds (healthy)`.
    pub status: String,
    /// The container's labels.
    pub labels: BTreeMap<String, String>,
}

/// All containers (running or not) named exactly `app` or `app--swap-*`,
/// sorted by name.
pub fn containers_of(app: &str) -> Vec<Container> {
    let prefix = format!("{app}--swap-");
    let mut found: Vec<Container> =
        all_containers().into_iter().filter(|c| c.name == app || c.name.starts_with(&prefix)).collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// Every container on the engine.
pub fn all_containers() -> Vec<Container> {
    let out = docker_ok(&["ps", "-a", "--no-trunc", "--format", "{{json .}}"]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let row: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("unparsable `docker ps` line {line:?}: {e}"));
            let field = |k: &str| row[k].as_str().unwrap_or_default().to_string();
            // `Labels` is one comma-joined string; good enough for the labels
            // tests look at, which hold no commas.
            let labels = field("Labels")
                .split(',')
                .filter(|kv| !kv.is_empty())
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.to_string(), String::new()),
                })
                .collect();
            Container {
                id: field("ID"),
                name: field("Names"),
                image: field("Image"),
                state: field("State"),
                status: field("Status"),
                labels,
            }
        })
        .collect()
}

/// `docker inspect` of one container (by exact name or id), or `None` if there
/// is none.
pub fn inspect(name: &str) -> Option<Value> {
    let out = docker_output(&["container", "inspect", name]);
    if !out.status.success() {
        return None;
    }
    let mut all: Vec<Value> = serde_json::from_slice(&out.stdout).expect("`docker inspect` printed invalid JSON");
    let found = all.pop()?;
    // `inspect` also accepts an id prefix; make sure a name means that name.
    let exact =
        found["Id"].as_str() == Some(name) || found["Name"].as_str().map(|n| n.trim_start_matches('/')) == Some(name);
    exact.then_some(found)
}

/// The id (`sha256:…`) of an image reference, or `None` if there is no such image.
pub fn image_id(reference: &str) -> Option<String> {
    let out = docker_output(&["image", "inspect", "--format", "{{.Id}}", reference]);
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The health status (`starting`, `healthy`, `unhealthy`) of a container, or
/// `None` if it has no health check or does not exist.
pub fn health(name: &str) -> Option<String> {
    let c = inspect(name)?;
    c["State"]["Health"]["Status"].as_str().map(str::to_string)
}

/// Waits until `cond` holds, polling every 50 ms; false on timeout.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// Waits until the container's health status is `want`; returns how long that
/// took, or `None` on timeout.
pub fn wait_health(name: &str, want: &str, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if health(name).as_deref() == Some(want) {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the container has exited; returns its exit code, or `None` on
/// timeout.
pub fn wait_exited(name: &str, timeout: Duration) -> Option<i64> {
    let start = Instant::now();
    loop {
        if let Some(c) = inspect(name) {
            if c["State"]["Status"].as_str() == Some("exited") {
                return c["State"]["ExitCode"].as_i64();
            }
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything the container wrote to stdout and stderr.
pub fn logs(name: &str) -> String {
    let out = docker_output(&["logs", name]);
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The networks a container is attached to, sorted.
pub fn networks_of(name: &str) -> Vec<String> {
    let Some(c) = inspect(name) else {
        return Vec::new();
    };
    let mut nets: Vec<String> =
        c["NetworkSettings"]["Networks"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
    nets.sort();
    nets
}

/// Why `app` is not settled on one of `images`, or which of them it runs.
///
/// Settled means: exactly one container named `<app>`, running (not
/// restarting), running one of `images` (tags or ids, compared by image id),
/// and no container named `<app>--swap-*`.
pub fn settled(app: &str, images: &[&str]) -> Result<String, String> {
    let all = containers_of(app);
    let listing = || {
        all.iter()
            .map(|c| format!("  {} {} {} ({})", c.name, c.image, c.state, c.status))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let leftovers: Vec<&Container> = all.iter().filter(|c| c.name != app).collect();
    if !leftovers.is_empty() {
        return Err(format!("{app}: swap leftovers remain:\n{}", listing()));
    }
    let Some(c) = inspect(app) else {
        return Err(format!("{app}: no container named {app}:\n{}", listing()));
    };
    let state = &c["State"];
    if state["Running"].as_bool() != Some(true) || state["Restarting"].as_bool() == Some(true) {
        return Err(format!("{app}: container is not running (status {}):\n{}", state["Status"], logs(app)));
    }
    let running = c["Image"].as_str().unwrap_or_default();
    for want in images {
        let want_id = if want.starts_with("sha256:") { Some(want.to_string()) } else { image_id(want) };
        if want_id.as_deref() == Some(running) {
            return Ok(want.to_string());
        }
    }
    Err(format!("{app}: runs image {running} ({}), expected one of {images:?}", c["Config"]["Image"]))
}

/// Asserts that `app` is settled (see [`settled`]) on `image` (tag or id).
pub fn assert_settled(app: &str, image: &str) {
    if let Err(why) = settled(app, &[image]) {
        panic!("not settled: {why}");
    }
}

/// Asserts that `app` is settled on one of `images`; returns the one it runs.
pub fn assert_settled_on_one_of(app: &str, images: &[&str]) -> String {
    settled(app, images).unwrap_or_else(|why| panic!("not settled: {why}"))
}

/// Runs a container by hand (e.g. the "old version" a test then replaces):
/// `docker run -d --name <name> <opts…> <image>`; returns its id. `opts` are
/// `docker run` options such as `["-p", "18080:8080", "--network", net]`.
///
/// On an overlay network, a start right after the last container left it can
/// fail with "failed to get network during CreateEndpoint" (moby PR#41011):
/// the start is retried with backoff.
pub fn run_container(name: &str, image: &str, opts: &[&str]) -> String {
    run_command(name, image, opts, &[])
}

/// Like [`run_container`], with `command` (the arguments after the image)
/// in place of the image's `CMD`.
pub fn run_command(name: &str, image: &str, opts: &[&str], command: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(opts);
    args.push(image);
    args.extend_from_slice(command);
    let out = docker_output(&args);
    if out.status.success() {
        return String::from_utf8_lossy(&out.stdout).trim().to_string();
    }
    let mut err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let mut delay = Duration::from_millis(100);
    for _ in 0..8 {
        if !is_transient_network_error(&err) || inspect(name).is_none() {
            break;
        }
        std::thread::sleep(delay);
        delay *= 2;
        let out = docker_output(&["start", name]);
        if out.status.success() {
            return inspect(name).expect("container vanished after start")["Id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
        }
        err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    }
    panic!("`docker {}` failed: {err}", args.join(" "));
}

fn is_transient_network_error(err: &str) -> bool {
    err.contains("failed to get network during CreateEndpoint")
        || (err.contains("network") && err.contains("not found"))
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// A container beside the app on its network that is not the app: it asks
/// Docker's DNS for the app's name and GETs what that resolves to, as a
/// client of a start-first app (one without published ports) does.
/// Removed on drop.
#[derive(Debug)]
pub struct Client {
    /// Its container name, `<app>-client`.
    pub name: String,
    _removal: Removal,
}

impl Client {
    /// Starts `<app>-client` (the demo image, serving nothing anyone asks
    /// for) on `network`.
    pub fn start(app: &str, network: &str) -> Client {
        let name = format!("{app}-client");
        let _ = docker_output(&["rm", "-f", &name]);
        run_container(&name, &image("v1"), &["--network", network]);
        Client { _removal: Removal(name.clone()), name }
    }

    /// The body the app's name answers with on the client's network (the
    /// first of its addresses that answers 200), or `None` with what the
    /// client saw.
    pub fn get(&self, app: &str) -> Result<String, String> {
        let out = docker_output(&["exec", &self.name, "/swap-demo", "get", app]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().replace('\n', "; "))
        }
    }
}

/// A TCP port that was free on 127.0.0.1 a moment ago. Tests running in
/// parallel processes could still collide; the kernel hands out ephemeral
/// ports in sequence, so that is unlikely.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("find a free port")
}

/// One HTTP/1.0 GET of `path` on 127.0.0.1:`port`: the body if it answered
/// 200, else what went wrong (refused, reset, timed out, another status).
pub fn get(port: u16, path: &str, timeout: Duration) -> Result<String, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(|e| format!("read: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP answer: {response:?}"))?;
    let status = head.lines().next().unwrap_or_default();
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(body.to_string()),
        _ if body.trim().is_empty() => Err(status.to_string()),
        _ => Err(format!("{status}: {}", body.trim())),
    }
}

/// GETs `/` on 127.0.0.1:`port`, retrying until it answers 200 or `timeout`
/// passes; returns the body (the demo app answers `<version>\n`).
pub fn http_get(port: u16, timeout: Duration) -> Option<String> {
    http_get_path(port, "/", timeout)
}

/// Like [`http_get`], for any path.
pub fn http_get_path(port: u16, path: &str, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(body) = get(port, path, left.clamp(Duration::from_millis(50), Duration::from_secs(1))) {
            return Some(body);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One request a [`Prober`] made.
#[derive(Debug, Clone)]
pub struct Probe {
    /// When it was sent.
    pub start: Instant,
    /// From sending it to its answer, its failure or its timeout.
    pub duration: Duration,
    /// The body of a 200 answer, or why it failed.
    pub answer: Result<String, String>,
}

impl Probe {
    /// Whether it was answered 200.
    pub fn ok(&self) -> bool {
        self.answer.is_ok()
    }

    /// The body of a 200 answer.
    pub fn body(&self) -> Option<&str> {
        self.answer.as_deref().ok()
    }
}

/// What a [`Prober`] saw.
#[derive(Debug, Clone, Default)]
pub struct ProbeReport {
    /// The longest stretch without a successful answer: between two successes,
    /// from the start to the first success, or from the last success to the end.
    pub longest_gap: Duration,
    /// Successful answers.
    pub successes: u64,
    /// Failed attempts (refused, reset, timed out, non-200).
    pub failures: u64,
    /// Distinct bodies in the order they were first seen, e.g. `["v1\n", "v2\n"]`.
    pub bodies: Vec<String>,
    /// Bodies seen after a different body had been seen (e.g. `v1` answering
    /// again after `v2`), a sign that two versions served at once.
    pub flip_backs: u64,
    /// How long the prober ran.
    pub duration: Duration,
    /// Every request, in the order they were made.
    pub requests: Vec<Probe>,
}

/// GETs `/` on 127.0.0.1:`port` in a background thread, one request at a
/// time with 5 ms between them, and measures the longest outage, e.g. while
/// a swap replaces the container behind the port; keeps every request, so a
/// test can also count failures and find the slowest per swap.
#[derive(Debug)]
pub struct Prober {
    /// Tells the thread to finish.
    stop: Arc<AtomicBool>,
    /// Every request so far, shared with the thread.
    requests: Arc<Mutex<Vec<Probe>>>,
    /// The polling thread; yields the report.
    thread: Option<JoinHandle<ProbeReport>>,
}

impl Prober {
    /// Starts polling `port` now, each request with a 500 ms timeout: right
    /// for a port the app publishes itself. Start it once the app is
    /// serving, or the time until the first answer counts as an outage.
    pub fn start(port: u16) -> Self {
        Prober::with_timeout(port, Duration::from_millis(500))
    }

    /// Like [`Prober::start`], each request with `timeout`: in front of a
    /// proxy that holds a request while it retries, a few seconds, so a held
    /// request is measured rather than cut.
    pub fn with_timeout(port: u16, timeout: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (flag, log) = (Arc::clone(&stop), Arc::clone(&requests));
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut report = ProbeReport::default();
            let mut last_ok = start;
            let mut last_body: Option<String> = None;
            while !flag.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let answer = get(port, "/", timeout);
                let now = Instant::now();
                match &answer {
                    Ok(body) => {
                        report.longest_gap = report.longest_gap.max(now - last_ok);
                        last_ok = now;
                        report.successes += 1;
                        if last_body.as_ref() != Some(body) {
                            if report.bodies.contains(body) {
                                report.flip_backs += 1;
                            } else {
                                report.bodies.push(body.clone());
                            }
                            last_body = Some(body.clone());
                        }
                    }
                    Err(_) => report.failures += 1,
                }
                log.lock().unwrap().push(Probe { start: sent, duration: now - sent, answer });
                std::thread::sleep(Duration::from_millis(5));
            }
            let end = Instant::now();
            report.longest_gap = report.longest_gap.max(end - last_ok);
            report.duration = end - start;
            report.requests = std::mem::take(&mut *log.lock().unwrap());
            report
        });
        Prober { stop, requests, thread: Some(thread) }
    }

    /// The requests made so far (while it keeps polling).
    pub fn requests(&self) -> Vec<Probe> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until a request sent at or after `since` is answered `body`;
    /// false if none is within `timeout`.
    pub fn wait_for(&self, body: &str, since: Instant, timeout: Duration) -> bool {
        wait_until(timeout, || self.requests.lock().unwrap().iter().any(|p| p.start >= since && p.body() == Some(body)))
    }

    /// Stops polling and returns what was seen.
    pub fn stop(mut self) -> ProbeReport {
        self.finish()
    }

    fn finish(&mut self) -> ProbeReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map(|t| t.join().expect("prober thread panicked")).unwrap_or_default()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Data in volumes
// ---------------------------------------------------------------------------

/// A database-shaped image: `swap-demo:<base>` plus `VOLUME /var/lib/db`, as
/// every database image declares one. Built (from the Dockerfile alone, no
/// context) on top of the current demo images; returns its reference.
pub fn db_image(base: &str) -> String {
    images();
    let reference = format!("swap-demo:db-{base}");
    let dockerfile = format!("FROM {}\nVOLUME /var/lib/db\nLABEL swap-demo.variant=db-{base}\n", image(base));
    with_lock("db-images", || {
        let mut child = Command::new("docker")
            .args(["build", "--quiet", "-t", &reference, "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run docker build");
        child.stdin.take().expect("stdin").write_all(dockerfile.as_bytes()).expect("send the Dockerfile");
        let out = child.wait_with_output().expect("wait for docker build");
        assert!(out.status.success(), "docker build {reference}: {}", String::from_utf8_lossy(&out.stderr));
    });
    reference
}

/// Writes `text` to `path` inside container `name` (running or not), through
/// the container's own view of its file system, so a path on a volume lands
/// in that volume.
pub fn write_in(name: &str, path: &str, text: &str) {
    let (dir, file) = path.rsplit_once('/').expect("an absolute path");
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(text.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, file, text.as_bytes()).expect("build the tar");
    let tar = tar.into_inner().expect("finish the tar");
    let target = format!("{name}:{}", if dir.is_empty() { "/" } else { dir });
    let mut child = Command::new("docker")
        .args(["cp", "-", &target])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run docker cp");
    child.stdin.take().expect("stdin").write_all(&tar).expect("send the tar");
    let out = child.wait_with_output().expect("wait for docker cp");
    assert!(out.status.success(), "docker cp to {target}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The content of `path` inside container `name`, or `None` if it has no
/// such file.
pub fn read_in(name: &str, path: &str) -> Option<String> {
    let out = docker_output(&["cp", &format!("{name}:{path}"), "-"]);
    if !out.status.success() {
        return None;
    }
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let mut entry = archive.entries().ok()?.next()?.ok()?;
    let mut text = String::new();
    entry.read_to_string(&mut text).ok()?;
    Some(text)
}

/// The container's mounts as `destination -> (type, volume name or source)`.
pub fn mounts_of(name: &str) -> BTreeMap<String, (String, String)> {
    let c = inspect(name).unwrap_or_else(|| panic!("no container {name}"));
    c["Mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let field = |k: &str| m[k].as_str().unwrap_or_default().to_string();
            let what = if field("Type") == "volume" { field("Name") } else { field("Source") };
            (field("Destination"), (field("Type"), what))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// A swap run's output and journal
// ---------------------------------------------------------------------------

/// The run's exit code (`None` when a signal killed it).
pub fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

/// The run's stdout, lossily decoded.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The run's stderr, lossily decoded.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Everything the run printed, stdout then stderr.
pub fn text(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

/// Asserts the run exited with `want`, showing all it printed otherwise.
#[track_caller]
pub fn assert_exit(out: &Output, want: i32) {
    assert_eq!(code(out), Some(want), "expected exit code {want}:\n{}", describe(out));
}

/// `HOST:8080`: `--publish` of the demo port on a host port.
pub fn publish(port: u16) -> String {
    format!("{port}:{DEMO_PORT}")
}

/// The records of the journal at `path`, parsed (every line must be JSON).
pub fn journal_at(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read journal {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("journal line is not JSON ({e}): {l}")))
        .collect()
}

/// The app's journal records (see [`journal_at`]).
pub fn journal(app: &TestApp) -> Vec<Value> {
    journal_at(&app.journal_path())
}

/// A record's kind (`begin`, `intent`, …), read from the JSON.
pub fn kind(r: &Value) -> &str {
    r["data"]["kind"].as_str().unwrap_or_default()
}

/// The id of the container named exactly `name`.
pub fn id_of(name: &str) -> String {
    inspect(name).unwrap_or_else(|| panic!("no container {name}"))["Id"].as_str().unwrap().to_string()
}
