//! Outage and cost of replacing a running container, swap side by side with
//! what users would do instead (docs/benchmarks.md, "Outage").
//!
//! `cargo bench --bench outage` deploys the demo app back and forth (v1 → v2
//! → v1 …) with every method in turn, round by round, while a prober thread
//! GETs the app's published port every 5 ms, and records per swap the longest
//! stretch without a successful answer (the outage), the failed requests and
//! the deploy's wall time. Methods, each on its own app name and host port:
//!
//! - `swap`: `swap deploy APP --image NEW` (stop-first), on the bridge
//!   network `swap-test-bridge` and on the attachable overlay
//!   `swap-test-overlay`;
//! - `naive`: `benches/naive.sh` (stop, run under a temp name, disconnect,
//!   rename, reconnect, remove), on both networks;
//! - `service-update`: `docker service update --image NEW --update-order
//!   stop-first` of a one-replica swarm service publishing in host mode, on
//!   the overlay (a swarm service cannot join a local bridge network). Run
//!   detached; its wall time ends when the swarm reports the new task running
//!   (the CLI's own wait adds a fixed 5 s stability check);
//! - `floor`: one stop of a running container plus one start of a second,
//!   already-created one with the same port binding and network, through the
//!   Engine API directly, on both networks.
//!
//! And, for apps reached by name rather than on a published port, through a
//! real reverse proxy (`tests/support/proxy.rs`: Caddy 2.6, upstreams from
//! Docker's DNS every 100 ms) in front of an app that shuts down gracefully
//! on SIGTERM and answers each request in 20 ms:
//!
//! - `start-first`: `swap deploy APP --image NEW` of an app deployed
//!   `--strategy start-first`, on both networks;
//! - `stop-first`: the same app deployed stop-first (swap's default), on
//!   both networks.
//!
//! Each has two proxies in front, one retrying refused connections for up
//! to 2 s and one never retrying, each probed by its own thread (sequential
//! GETs, 5 s timeout each) during each swap: per swap and proxy, the failed
//! requests, the slowest request and the deploy's wall time.
//!
//! Afterwards it measures the journal's share of a deploy's wall time (the
//! records of a real deploy appended again on the same file system, timed per
//! append) and the latency of `swap status` / `swap journal show` on a
//! journal holding 1,000 deploys (those records copied 1,000× with fresh
//! deploy ids through `journal::Journal::<serde_json::Value>`).
//!
//! Options (environment variables):
//! - `SWAP_BENCH_ROUNDS` (10): swaps per method on a published port;
//! - `SWAP_BENCH_PROXY_ROUNDS` (20): swaps per method through the proxies;
//! - `SWAP_BENCH_OUT` (`target/bench-out`): output dir for `outage.csv`,
//!   `proxied.csv`, `steps.csv`, `outage.svg`, the journals (`state/`,
//!   `synth/`);
//! - `SWAP_BENCH_PORT_BASE` (18180): first of the 7 host ports used;
//! - `SWAP_BENCH_SETTLE_MS` (500): pause after each swap;
//! - `SWAP_BENCH_SYNTH_DEPLOYS` (1000): deploys in the synthetic journal;
//! - `SWAP_BENCH_QUERY_RUNS` (20): runs of each query command timed.
//!
//! Every container and service it creates is named `swapbench-*` and removed
//! at the start (leftovers) and at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

// The proxy fixture of the integration tests, so the bench measures through
// the same proxy the tests assert on. Most of the harness is unused here.
#[allow(dead_code)]
#[path = "../tests/support/mod.rs"]
mod support;

use support::proxy::{Retries, ReverseProxy, Window};

const OVERLAY: &str = "swap-test-overlay";
const BRIDGE: &str = "swap-test-bridge";
const PREFIX: &str = "swapbench-";
const SERVICE: &str = "swapbench-svc";
const APP_PORT: u16 = 8080;
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
const DOCKER_SOCKET: &str = "/var/run/docker.sock";
const API: &str = "/v1.41";

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let cfg = Config::from_env();
    std::fs::create_dir_all(&cfg.out).expect("create the output dir");
    println!("swap outage benchmark, output in {}", cfg.out.display());
    print_machine(&cfg);
    check_fixtures();
    cleanup();
    let _ = std::fs::remove_dir_all(cfg.out.join("state"));
    let _ = std::fs::remove_dir_all(cfg.out.join("synth"));

    let prober = Prober::start();
    let mut methods = methods(&cfg);
    let started = Instant::now();
    for m in &mut methods {
        m.setup(&cfg, &prober);
    }
    let rounds = cfg.rounds.max(cfg.proxy_rounds);
    println!(
        "setup done in {:.1} s; {} rounds of {} methods ({} through the proxies)",
        started.elapsed().as_secs_f64(),
        rounds,
        methods.len(),
        methods.iter().filter(|m| m.kind.proxied()).count()
    );

    let mut samples: Vec<Sample> = Vec::new();
    let mut proxied: Vec<ProxySample> = Vec::new();
    let mut steps: Vec<(String, String, usize, String, f64)> = Vec::new();
    for round in 0..rounds {
        let n = methods.len();
        for i in 0..n {
            // Rotate the order so no method always runs right after another.
            let m = &mut methods[(i + round) % n];
            if round >= if m.kind.proxied() { cfg.proxy_rounds } else { cfg.rounds } {
                continue;
            }
            match m.swap_once(&cfg, &prober, round) {
                Ok((outcome, st)) => {
                    for (step, ms) in st {
                        steps.push((m.kind.name().to_string(), m.net_label().to_string(), round, step, ms));
                    }
                    match outcome {
                        Outcome::Published(s) => samples.push(s),
                        Outcome::Proxied(s) => proxied.extend(s),
                    }
                }
                Err(e) => eprintln!("round {round} {} {}: FAILED: {e}", m.kind.name(), m.net_label()),
            }
            thread::sleep(Duration::from_millis(cfg.settle_ms));
        }
        eprintln!("round {}/{} done at {:.0} s", round + 1, rounds, started.elapsed().as_secs_f64());
    }
    prober.stop();

    write_csv(&cfg, &samples, &proxied, &steps);
    let order: Vec<(Kind, &str)> =
        methods.iter().filter(|m| !m.kind.proxied()).map(|m| (m.kind, m.net_label())).collect();
    write_svg(&cfg.out.join("outage.svg"), &order, &samples);
    summarize(&order, &samples, &steps);
    let order: Vec<(Kind, &str)> =
        methods.iter().filter(|m| m.kind.proxied()).map(|m| (m.kind, m.net_label())).collect();
    summarize_proxied(&order, &proxied, &steps);

    let ov = methods.iter().find(|m| m.kind == Kind::Swap && m.network == OVERLAY).expect("swap overlay method");
    let wall: Vec<f64> = samples.iter().filter(|s| s.kind == Kind::Swap).map(|s| s.wall_ms).collect();
    let wall_ov: Vec<f64> =
        samples.iter().filter(|s| s.kind == Kind::Swap && s.network == OVERLAY).map(|s| s.wall_ms).collect();
    let wall_br: Vec<f64> =
        samples.iter().filter(|s| s.kind == Kind::Swap && s.network == BRIDGE).map(|s| s.wall_ms).collect();
    journal_share_and_queries(&cfg, &ov.app, &wall, &wall_ov, &wall_br);

    cleanup();
    println!("\nfinished in {:.0} s; CSV, SVG and journals in {}", started.elapsed().as_secs_f64(), cfg.out.display());
}

// ---------------------------------------------------------------------------
// Configuration and machine
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Config {
    rounds: usize,
    proxy_rounds: usize,
    out: PathBuf,
    port_base: u16,
    settle_ms: u64,
    synth_deploys: usize,
    query_runs: usize,
    swap: PathBuf,
    root: PathBuf,
}

impl Config {
    fn from_env() -> Config {
        fn num<T: std::str::FromStr>(key: &str, default: T) -> T {
            match std::env::var(key) {
                Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{key}={v} is not a number")),
                Err(_) => default,
            }
        }
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out =
            std::env::var_os("SWAP_BENCH_OUT").map(PathBuf::from).unwrap_or_else(|| root.join("target/bench-out"));
        let out = if out.is_absolute() { out } else { root.join(out) };
        Config {
            rounds: num("SWAP_BENCH_ROUNDS", 10usize).max(1),
            proxy_rounds: num("SWAP_BENCH_PROXY_ROUNDS", 20usize).max(1),
            out,
            port_base: num("SWAP_BENCH_PORT_BASE", 18180u16),
            settle_ms: num("SWAP_BENCH_SETTLE_MS", 500u64),
            synth_deploys: num("SWAP_BENCH_SYNTH_DEPLOYS", 1000usize).max(1),
            query_runs: num("SWAP_BENCH_QUERY_RUNS", 20usize).max(1),
            swap: PathBuf::from(env!("CARGO_BIN_EXE_swap")),
            root,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.out.join("state")
    }
}

fn print_machine(cfg: &Config) {
    let sh = |c: &str| {
        Command::new("sh")
            .args(["-c", c])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    println!("date (UTC):  {}", sh("date -u '+%Y-%m-%d %H:%M:%S'"));
    println!(
        "machine:     {} CPUs, {}, kernel {}",
        sh("nproc"),
        sh("awk '/MemTotal/ {printf \"%.1f GiB RAM\", $2/1048576}' /proc/meminfo"),
        sh("uname -r")
    );
    println!("docker:      engine {}", docker(&["version", "--format", "{{.Server.Version}}"]).unwrap_or_default());
    std::fs::create_dir_all(cfg.out.join("state")).expect("create state dir");
    println!(
        "state dir:   {} ({})",
        cfg.state_dir().display(),
        sh(&format!("df -T '{}' | awk 'NR==2 {{print $2}}'", cfg.out.display()))
    );
    println!("swap binary: {}", cfg.swap.display());
}

// ---------------------------------------------------------------------------
// Docker
// ---------------------------------------------------------------------------

/// Runs `docker ARGS`; its trimmed stdout, or stderr as the error.
fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker").args(args).output().map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("`docker {}`: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// One Engine API call over the unix socket; HTTP/1.0 so the answer is
/// neither chunked nor kept alive. Returns (status, body).
fn api(method: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = UnixStream::connect(DOCKER_SOCKET).map_err(|e| format!("connect {DOCKER_SOCKET}: {e}"))?;
    write!(s, "{method} {API}{path} HTTP/1.0\r\nHost: docker\r\nContent-Length: 0\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(|e| e.to_string())?;
    let status = buf.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| format!("bad answer: {buf}"))?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

fn api_ok(method: &str, path: &str) -> Result<(), String> {
    match api(method, path)? {
        (s, _) if (200..300).contains(&s) || s == 304 => Ok(()),
        (s, b) => Err(format!("{method} {path}: {s} {}", b.trim())),
    }
}

fn check_fixtures() {
    docker(&["info", "--format", "{{.ServerVersion}}"]).expect("the Docker engine must answer");
    for tag in ["v1", "v2"] {
        docker(&["image", "inspect", "--format", "{{.Id}}", &format!("swap-demo:{tag}")])
            .unwrap_or_else(|e| panic!("image swap-demo:{tag} is missing (run demo/build-images.sh): {e}"));
    }
    let swarm = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]).unwrap_or_default();
    if swarm != "active" {
        docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]).expect("docker swarm init");
    }
    // Another process may create them at the same time: check again on failure.
    if docker(&["network", "inspect", OVERLAY]).is_err() {
        if let Err(e) = docker(&["network", "create", "-d", "overlay", "--attachable", OVERLAY]) {
            docker(&["network", "inspect", OVERLAY]).unwrap_or_else(|_| panic!("create {OVERLAY}: {e}"));
        }
    }
    if docker(&["network", "inspect", BRIDGE]).is_err() {
        if let Err(e) = docker(&["network", "create", "-d", "bridge", BRIDGE]) {
            docker(&["network", "inspect", BRIDGE]).unwrap_or_else(|_| panic!("create {BRIDGE}: {e}"));
        }
    }
}

/// Removes every `swapbench-*` container and the service.
fn cleanup() {
    let _ = docker(&["service", "rm", SERVICE]);
    let names = docker(&["container", "ls", "-a", "--format", "{{.Names}}"]).unwrap_or_default();
    let ours: Vec<&str> = names.lines().filter(|n| n.starts_with(PREFIX)).collect();
    if !ours.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(&ours);
        let _ = docker(&args);
    }
}

// ---------------------------------------------------------------------------
// The prober
// ---------------------------------------------------------------------------

/// One probe: when it finished, the port it probed, and the body of a
/// successful answer. The port tells a probe of the app under test from one
/// of the previous app that was in flight when the target changed.
type Probe = (Instant, u16, Option<String>);

/// A thread GETting `127.0.0.1:port` every 5 ms (port 0: idle).
#[derive(Debug)]
struct Prober {
    port: Arc<AtomicU16>,
    log: Arc<Mutex<Vec<Probe>>>,
    stop: Arc<AtomicBool>,
}

impl Prober {
    fn start() -> Prober {
        let p = Prober { port: Arc::default(), log: Arc::default(), stop: Arc::default() };
        let (port, log, stop) = (p.port.clone(), p.log.clone(), p.stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let began = Instant::now();
                let port = port.load(Ordering::Relaxed);
                if port != 0 {
                    let answer = probe(port);
                    log.lock().unwrap().push((Instant::now(), port, answer));
                }
                if let Some(rest) = PROBE_INTERVAL.checked_sub(began.elapsed()) {
                    thread::sleep(rest);
                }
            }
        });
        p
    }

    /// Probes `port` from now on, with an empty log.
    fn watch(&self, port: u16) {
        self.port.store(port, Ordering::Relaxed);
        self.log.lock().unwrap().clear();
    }

    /// The log of the port watched now.
    fn snapshot(&self) -> Vec<Probe> {
        let port = self.port.load(Ordering::Relaxed);
        self.log.lock().unwrap().iter().filter(|p| p.1 == port).cloned().collect()
    }

    /// Waits until `body` is answered after `since`; returns when.
    fn wait_for(&self, body: &str, since: Instant, limit: Duration) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            let port = self.port.load(Ordering::Relaxed);
            let hit = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|(t, p, a)| *p == port && *t >= since && a.as_deref() == Some(body))
                .map(|(t, _, _)| *t);
            if hit.is_some() || Instant::now() > deadline {
                return hit;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.port.store(0, Ordering::Relaxed);
    }
}

/// Connect + GET + read with short timeouts; the body of a 200 answer.
fn probe(port: u16) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(50)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
    s.set_write_timeout(Some(Duration::from_millis(50))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
        if buf.len() > 4096 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?;
    (status == "200" && !body.trim().is_empty()).then(|| body.trim().to_string())
}

/// (outage ms, failed requests) between `t0` and `end` from a probe log:
/// the longest gap between consecutive successful answers up to `end`,
/// counting from the last success before `t0`.
fn outage(log: &[Probe], t0: Instant, end: Instant) -> (f64, usize) {
    let mut last_ok: Option<Instant> = None;
    let mut longest = Duration::ZERO;
    let mut failed = 0;
    for (t, _, a) in log.iter().filter(|(t, _, _)| *t <= end) {
        match a {
            Some(_) => {
                if let Some(prev) = last_ok {
                    longest = longest.max(*t - prev);
                }
                last_ok = Some(*t);
            }
            None if *t >= t0 => failed += 1,
            None => {}
        }
    }
    (ms(longest), failed)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------
// Methods
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Swap,
    Naive,
    Service,
    Floor,
    /// swap, start-first, reached through the proxies.
    StartFirst,
    /// swap, stop-first, reached through the proxies.
    StopFirst,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Swap => "swap",
            Kind::Naive => "naive",
            Kind::Service => "service-update",
            Kind::Floor => "floor",
            Kind::StartFirst => "start-first",
            Kind::StopFirst => "stop-first",
        }
    }

    /// Whether clients reach it through the proxies, not a published port.
    fn proxied(self) -> bool {
        matches!(self, Kind::StartFirst | Kind::StopFirst)
    }
}

#[derive(Debug)]
struct Method {
    kind: Kind,
    network: &'static str,
    app: String,
    /// The published port (0 for the proxied methods: their proxies publish).
    port: u16,
    /// The proxied methods' proxies, retrying first; started in `setup`.
    proxies: Vec<ReverseProxy>,
}

/// What one swap of a proxied method cost the clients of one proxy.
#[derive(Debug, Clone)]
struct ProxySample {
    kind: Kind,
    network: &'static str,
    retries: Retries,
    round: usize,
    /// Requests sent from the deploy's start until the new version answered
    /// (plus a tail of 300 ms).
    requests: usize,
    failed: usize,
    slowest_ms: f64,
    wall_ms: f64,
    /// Successful answers by the old version after the deploy returned.
    stale: usize,
}

/// One swap's measurement.
#[derive(Debug)]
enum Outcome {
    Published(Sample),
    Proxied(Vec<ProxySample>),
}

/// The proxied methods' app: graceful on SIGTERM (finish what is in flight,
/// then exit) and 20 ms per answer, so requests are in flight whenever an
/// instance stops.
const PROXIED_ENV: [&str; 2] = ["DEMO_SIGTERM=graceful", "DEMO_SLOW_MS=20"];

/// Requests still probed after the new version first answered through a
/// proxy: a stopped instance leaves the proxy's DNS copy up to 100 ms later.
const PROXIED_TAIL: Duration = Duration::from_millis(300);

#[derive(Debug, Clone)]
struct Sample {
    kind: Kind,
    network: &'static str,
    round: usize,
    outage_ms: f64,
    failed: usize,
    wall_ms: f64,
}

fn methods(cfg: &Config) -> Vec<Method> {
    let list = [
        (Kind::Swap, BRIDGE),
        (Kind::Swap, OVERLAY),
        (Kind::Naive, BRIDGE),
        (Kind::Naive, OVERLAY),
        (Kind::Service, OVERLAY),
        (Kind::Floor, BRIDGE),
        (Kind::Floor, OVERLAY),
        (Kind::StartFirst, BRIDGE),
        (Kind::StartFirst, OVERLAY),
        (Kind::StopFirst, BRIDGE),
        (Kind::StopFirst, OVERLAY),
    ];
    list.iter()
        .enumerate()
        .map(|(i, (kind, network))| {
            let short = if *network == OVERLAY { "ov" } else { "br" };
            let app = match kind {
                Kind::Service => SERVICE.to_string(),
                _ => format!("{PREFIX}{}-{short}", kind.name()),
            };
            let port = if kind.proxied() { 0 } else { cfg.port_base + i as u16 };
            Method { kind: *kind, network, app, port, proxies: vec![] }
        })
        .collect()
}

fn image(version: &str) -> String {
    format!("swap-demo:{version}")
}

impl Method {
    fn net_label(&self) -> &'static str {
        if self.network == OVERLAY {
            "overlay"
        } else {
            "bridge"
        }
    }

    fn publish(&self) -> String {
        format!("{}:{APP_PORT}", self.port)
    }

    fn swap_cmd(&self, cfg: &Config) -> Command {
        let mut c = Command::new(&cfg.swap);
        c.env("SWAP_STATE_DIR", cfg.state_dir()).stdout(Stdio::null()).stderr(Stdio::piped());
        c
    }

    /// What the prober last saw and what Docker shows, for a failed swap.
    fn diagnose(&self, prober: &Prober) -> String {
        let log = prober.snapshot();
        let last: Vec<String> =
            log.iter().rev().take(3).map(|(_, _, a)| a.clone().unwrap_or_else(|| "no answer".to_string())).collect();
        let ps = docker(&["container", "ls", "-a", "--format", "{{.Names}} {{.Image}} {{.Status}} {{.Ports}}"])
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(&self.app))
            .collect::<Vec<_>>()
            .join("; ");
        format!("last probes: {}; containers: {ps}", last.join(", "))
    }

    /// Brings v1 up and waits until it answers.
    fn setup(&mut self, cfg: &Config, prober: &Prober) {
        prober.watch(self.port);
        let v1 = image("v1");
        match self.kind {
            Kind::Swap => {
                let out = self
                    .swap_cmd(cfg)
                    .args([
                        "deploy",
                        &self.app,
                        "--image",
                        &v1,
                        "--publish",
                        &self.publish(),
                        "--network",
                        self.network,
                    ])
                    .output()
                    .expect("run swap");
                assert!(
                    out.status.success(),
                    "first swap deploy of {}: {}",
                    self.app,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Kind::Naive => {
                docker(&["run", "-d", "--name", &self.app, "--network", self.network, "-p", &self.publish(), &v1])
                    .expect("run naive v1");
            }
            Kind::Service => {
                let publish = format!("mode=host,target={APP_PORT},published={}", self.port);
                docker(&[
                    "service",
                    "create",
                    "--detach",
                    "--quiet",
                    "--name",
                    SERVICE,
                    "--replicas",
                    "1",
                    "--update-order",
                    "stop-first",
                    "--publish",
                    &publish,
                    "--network",
                    self.network,
                    &v1,
                ])
                .expect("create the service");
            }
            Kind::StartFirst | Kind::StopFirst => {
                let mut args = vec!["deploy", &self.app, "--image", &v1, "--network", self.network];
                args.extend(["--strategy", if self.kind == Kind::StartFirst { "start-first" } else { "stop-first" }]);
                for env in PROXIED_ENV {
                    args.extend(["--env", env]);
                }
                let out = self.swap_cmd(cfg).args(&args).output().expect("run swap");
                assert!(
                    out.status.success(),
                    "first swap deploy of {}: {}",
                    self.app,
                    String::from_utf8_lossy(&out.stderr)
                );
                self.proxies = Retries::ALL.iter().map(|r| ReverseProxy::start(&self.app, self.network, *r)).collect();
                for proxy in &self.proxies {
                    let probe = proxy.prober();
                    let seen = probe.wait_for("v1\n", Instant::now(), Duration::from_secs(60));
                    assert!(seen, "{} never answered v1 through {}:\n{}", self.app, proxy.name, proxy.logs());
                }
                return;
            }
            Kind::Floor => {
                let v2 = image("v2");
                for (suffix, img) in [("a", &v1), ("b", &v2)] {
                    let name = format!("{}-{suffix}", self.app);
                    docker(&["create", "--name", &name, "--network", self.network, "-p", &self.publish(), img])
                        .expect("create floor container");
                }
                start_retrying(&format!("{}-a", self.app)).expect("start floor a");
            }
        }
        prober.wait_for("v1", Instant::now() - Duration::from_secs(1), Duration::from_secs(60)).unwrap_or_else(|| {
            panic!("{} {} never answered v1 on port {}", self.kind.name(), self.net_label(), self.port)
        });
    }

    /// One swap to the other version; the sample and per-step timings.
    #[allow(clippy::type_complexity)]
    fn swap_once(
        &mut self,
        cfg: &Config,
        prober: &Prober,
        round: usize,
    ) -> Result<(Outcome, Vec<(String, f64)>), String> {
        if self.kind.proxied() {
            prober.watch(0);
            return self.swap_proxied(cfg, round);
        }
        prober.watch(self.port);
        // What answers now decides the direction.
        let from = prober.wait_for("v1", Instant::now(), Duration::from_millis(300)).map(|_| "v1");
        let from = match from {
            Some(v) => v,
            None => prober
                .wait_for("v2", Instant::now() - Duration::from_millis(300), Duration::from_secs(5))
                .map(|_| "v2")
                .ok_or("app does not answer before the swap")?,
        };
        let to = if from == "v1" { "v2" } else { "v1" };
        thread::sleep(Duration::from_millis(30));
        let t0 = Instant::now();
        let mut steps = Vec::new();
        match self.kind {
            Kind::Swap => {
                let out = self
                    .swap_cmd(cfg)
                    .args(["deploy", &self.app, "--image", &image(to)])
                    .output()
                    .map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!("swap deploy: {}", String::from_utf8_lossy(&out.stderr)));
                }
            }
            Kind::Naive => {
                let script = cfg.root.join("benches/naive.sh");
                let out = Command::new("bash")
                    .arg(&script)
                    .args([&self.app, &image(to), &self.port.to_string(), self.network])
                    .output()
                    .map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!("naive.sh: {}", String::from_utf8_lossy(&out.stderr)));
                }
            }
            Kind::Service => {
                docker(&[
                    "service",
                    "update",
                    "--detach",
                    "--quiet",
                    "--image",
                    &image(to),
                    "--update-order",
                    "stop-first",
                    SERVICE,
                ])?;
                wait_service_running(&image(to), Duration::from_secs(60))?;
            }
            Kind::StartFirst | Kind::StopFirst => unreachable!("swap_proxied"),
            Kind::Floor => {
                // Container a runs v1, b runs v2.
                let (old, new) = if from == "v1" { ("a", "b") } else { ("b", "a") };
                let a = Instant::now();
                api_ok("POST", &format!("/containers/{}-{old}/stop?t=10", self.app))?;
                let b = Instant::now();
                start_retrying(&format!("{}-{new}", self.app))?;
                steps.push(("stop".to_string(), ms(b - a)));
                steps.push(("start".to_string(), ms(b.elapsed())));
            }
        }
        let t1 = Instant::now();
        let served = prober
            .wait_for(to, t1, Duration::from_secs(30))
            .ok_or_else(|| format!("{to} never answered after the deploy; {}", self.diagnose(prober)))?;
        let (outage_ms, failed) = outage(&prober.snapshot(), t0, served);
        if self.kind == Kind::Swap {
            steps.extend(swap_steps(&cfg.state_dir(), &self.app, ms(t1 - t0)));
        }
        let sample = Sample { kind: self.kind, network: self.network, round, outage_ms, failed, wall_ms: ms(t1 - t0) };
        Ok((Outcome::Published(sample), steps))
    }

    /// One swap of a proxied method, probed through each of its proxies
    /// from just before the deploy until the new version answered through
    /// it, plus [`PROXIED_TAIL`].
    fn swap_proxied(&self, cfg: &Config, round: usize) -> Result<(Outcome, Vec<(String, f64)>), String> {
        let probers: Vec<support::Prober> = self.proxies.iter().map(ReverseProxy::prober).collect();
        // What answers now decides the direction.
        let ready = |body: &str| probers[0].wait_for(body, Instant::now(), Duration::from_secs(1));
        let from = if ready("v1\n") {
            "v1"
        } else if ready("v2\n") {
            "v2"
        } else {
            return Err(format!("the app does not answer through {} before the swap", self.proxies[0].name));
        };
        let to = if from == "v1" { "v2" } else { "v1" };
        let t0 = Instant::now();
        // Every re-deploy names its network again: on the overlay a plain
        // re-deploy is refused start-first (Docker shows the allocated
        // address as if it were static, and swap's clone keeps it); the
        // bridge rows run the same command.
        let out = self
            .swap_cmd(cfg)
            .args(["deploy", &self.app, "--image", &image(to), "--network", self.network])
            .output()
            .map_err(|e| e.to_string())?;
        let t1 = Instant::now();
        if !out.status.success() {
            return Err(format!("swap deploy: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let want = format!("{to}\n");
        for (proxy, probe) in self.proxies.iter().zip(&probers) {
            if !probe.wait_for(&want, t1, Duration::from_secs(30)) {
                return Err(format!("{to} never answered through {} after the deploy", proxy.name));
            }
        }
        thread::sleep(PROXIED_TAIL);
        let end = Instant::now();
        let mut samples = vec![];
        for (proxy, probe) in self.proxies.iter().zip(probers) {
            let log = probe.stop().requests;
            let w = Window::of(&log, t0, end);
            let old = format!("{from}\n");
            let stale = log.iter().filter(|p| p.start >= t1 && p.body() == Some(old.as_str())).count();
            samples.push(ProxySample {
                kind: self.kind,
                network: self.network,
                retries: proxy.retries,
                round,
                requests: w.requests,
                failed: w.failed.len(),
                slowest_ms: ms(w.slowest),
                wall_ms: ms(t1 - t0),
                stale,
            });
        }
        let steps = swap_steps(&cfg.state_dir(), &self.app, ms(t1 - t0));
        Ok((Outcome::Proxied(samples), steps))
    }
}

/// Starts a container through the API, retrying the overlay's transient
/// "failed to get network during CreateEndpoint" (moby PR#41011).
fn start_retrying(name: &str) -> Result<(), String> {
    let mut tries = 0;
    loop {
        match api_ok("POST", &format!("/containers/{name}/start")) {
            Ok(()) => return Ok(()),
            Err(e) if tries < 10 => {
                eprintln!("start {name}: {e}; retrying");
                tries += 1;
                thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Polls the swarm until the service's task desired running has `image`
/// and is running.
fn wait_service_running(image: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let filters = format!("{{\"service\":[\"{SERVICE}\"],\"desired-state\":[\"running\"]}}");
    let path = format!("/tasks?filters={}", percent_encode(&filters));
    loop {
        let (status, body) = api("GET", &path)?;
        if status == 200 {
            let tasks: Value = serde_json::from_str(&body).map_err(|e| format!("tasks: {e}"))?;
            let ok = tasks.as_array().into_iter().flatten().any(|t| {
                let img = t["Spec"]["ContainerSpec"]["Image"].as_str().unwrap_or("");
                let img = img.split('@').next().unwrap_or("");
                img == image && t["Status"]["State"] == "running"
            });
            if ok {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("service never ran {image}"));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The step timings of the app's last deploy, from its journal, plus
/// `unaccounted`: wall time not spent in a step or the health gate.
fn swap_steps(state: &Path, app: &str, wall_ms: f64) -> Vec<(String, f64)> {
    let path = state.join(app).join("journal.jsonl");
    let Ok(replay) = journal::read::<Value>(&path) else { return Vec::new() };
    let Some(last) = replay.records.last().map(|r| r.group.clone()) else { return Vec::new() };
    let mut steps: Vec<(String, f64)> = Vec::new();
    // A start-first deploy creates, starts and gates two instances: the
    // second of a step's name is `<step> 2`.
    let mut push = |step: &str, ms: f64| {
        let name = if steps.iter().any(|(s, _)| s == step) { format!("{step} 2") } else { step.to_string() };
        steps.push((name, ms));
    };
    for r in replay.records.iter().filter(|r| r.group == last) {
        let d = &r.data;
        match d["kind"].as_str() {
            Some("done") => {
                if let (Some(step), Some(ms)) = (d["step"]["step"].as_str(), d["ms"].as_f64()) {
                    push(step, ms);
                }
            }
            Some("health") => {
                if let Some(ms) = d["ms"].as_f64() {
                    push("health", ms);
                }
            }
            _ => {}
        }
    }
    let accounted: f64 = steps.iter().map(|(_, ms)| ms).sum();
    steps.push(("unaccounted".to_string(), wall_ms - accounted));
    steps
}

// ---------------------------------------------------------------------------
// Statistics and output
// ---------------------------------------------------------------------------

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn median(v: &[f64]) -> f64 {
    let v = sorted(v);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn min_med_max(v: &[f64]) -> String {
    let s = sorted(v);
    match (s.first(), s.last()) {
        (Some(lo), Some(hi)) => format!("{lo:>6.0} {:>6.0} {hi:>6.0}", median(&s)),
        _ => format!("{:>20}", "no samples"),
    }
}

fn net_name(label: &str) -> &'static str {
    if label == "overlay" {
        OVERLAY
    } else {
        BRIDGE
    }
}

fn write_csv(
    cfg: &Config,
    samples: &[Sample],
    proxied: &[ProxySample],
    steps: &[(String, String, usize, String, f64)],
) {
    let mut csv = String::from("method,network,round,outage_ms,failed_requests,wall_ms\n");
    for s in samples {
        let net = if s.network == OVERLAY { "overlay" } else { "bridge" };
        let _ = writeln!(csv, "{},{net},{},{:.1},{},{:.1}", s.kind.name(), s.round, s.outage_ms, s.failed, s.wall_ms);
    }
    std::fs::write(cfg.out.join("outage.csv"), csv).expect("write outage.csv");
    let mut csv = String::from("method,network,proxy,round,requests,failed_requests,slowest_ms,wall_ms,stale\n");
    for s in proxied {
        let net = if s.network == OVERLAY { "overlay" } else { "bridge" };
        let _ = writeln!(
            csv,
            "{},{net},{},{},{},{},{:.1},{:.1},{}",
            s.kind.name(),
            s.retries.name(),
            s.round,
            s.requests,
            s.failed,
            s.slowest_ms,
            s.wall_ms,
            s.stale
        );
    }
    std::fs::write(cfg.out.join("proxied.csv"), csv).expect("write proxied.csv");
    let mut csv = String::from("method,network,round,step,ms\n");
    for (m, n, r, step, ms) in steps {
        let _ = writeln!(csv, "{m},{n},{r},{step},{ms:.1}");
    }
    std::fs::write(cfg.out.join("steps.csv"), csv).expect("write steps.csv");
}

fn summarize(order: &[(Kind, &str)], samples: &[Sample], steps: &[(String, String, usize, String, f64)]) {
    let pick = |k: Kind, net: &str, f: fn(&Sample) -> f64| -> Vec<f64> {
        samples.iter().filter(|s| s.kind == k && s.network == net_name(net)).map(f).collect()
    };
    println!(
        "\n{:<15} {:<8} {:>3}   {:^20}   {:^20}   {:>6}",
        "method", "network", "n", "outage ms min/med/max", "wall ms min/med/max", "failed"
    );
    for (k, net) in order {
        let o = pick(*k, net, |s| s.outage_ms);
        let w = pick(*k, net, |s| s.wall_ms);
        let f = pick(*k, net, |s| s.failed as f64);
        println!(
            "{:<15} {:<8} {:>3}   {}   {}   {:>6.0}",
            k.name(),
            net,
            o.len(),
            min_med_max(&o),
            min_med_max(&w),
            median(&f)
        );
    }
    let med = |k: Kind, net: &str, f: fn(&Sample) -> f64| median(&pick(k, net, f));
    println!("\nratios of medians (outage; wall), same run:");
    for net in ["overlay", "bridge"] {
        let so = med(Kind::Swap, net, |s| s.outage_ms);
        let sw = med(Kind::Swap, net, |s| s.wall_ms);
        for (k, knet) in [(Kind::Naive, net), (Kind::Service, "overlay"), (Kind::Floor, net)] {
            let note = if knet != net { " (service on overlay)" } else { "" };
            println!(
                "  {net:<8} swap/{:<15} outage {:>5.2}   wall {:>5.2}{note}",
                k.name(),
                so / med(k, knet, |s| s.outage_ms),
                sw / med(k, knet, |s| s.wall_ms)
            );
        }
    }
    let so = med(Kind::Swap, "overlay", |s| s.outage_ms);
    let fo = med(Kind::Floor, "overlay", |s| s.outage_ms);
    let no = med(Kind::Naive, "overlay", |s| s.outage_ms);
    println!(
        "target (overlay): outage median {so:.0} ms <= 1.1 x floor {fo:.0} ms = {:.0} ms: {}; below naive {no:.0} ms: {}",
        1.1 * fo,
        if so <= 1.1 * fo { "MET" } else { "MISSED" },
        if so < no { "MET" } else { "MISSED" }
    );

    println!("\nmedian step times, ms (swap: from its journal; floor: timed by the bench):");
    for (m, net) in [("swap", "overlay"), ("swap", "bridge"), ("floor", "overlay"), ("floor", "bridge")] {
        let mut by_step: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut first_seen: Vec<&str> = Vec::new();
        for (sm, sn, _, step, ms) in steps.iter().filter(|s| s.0 == m && s.1 == net) {
            let _ = (sm, sn);
            if !by_step.contains_key(step.as_str()) {
                first_seen.push(step);
            }
            by_step.entry(step).or_default().push(*ms);
        }
        let line: Vec<String> = first_seen.iter().map(|s| format!("{s} {:.0}", median(&by_step[s]))).collect();
        println!("  {m:<6} {net:<8} {}", line.join(", "));
    }
}

/// The proxied rows: per method, network and proxy, failed requests per
/// swap, the slowest request, the deploy's wall time; then the targets.
fn summarize_proxied(order: &[(Kind, &str)], samples: &[ProxySample], steps: &[(String, String, usize, String, f64)]) {
    let pick = |k: Kind, net: &str, r: Retries| -> Vec<&ProxySample> {
        samples.iter().filter(|s| s.kind == k && s.network == net_name(net) && s.retries == r).collect()
    };
    println!("\nthrough Caddy (dynamic a, refresh 100 ms), per swap:");
    println!(
        "{:<12} {:<8} {:<6} {:>3}   {:^20}  {:>6}   {:^20}   {:^20}",
        "method",
        "network",
        "proxy",
        "n",
        "failed min/med/max",
        "total",
        "slowest ms min/med/max",
        "wall ms min/med/max"
    );
    for (k, net) in order {
        for r in Retries::ALL {
            let s = pick(*k, net, r);
            let failed: Vec<f64> = s.iter().map(|s| s.failed as f64).collect();
            let slowest: Vec<f64> = s.iter().map(|s| s.slowest_ms).collect();
            let wall: Vec<f64> = s.iter().map(|s| s.wall_ms).collect();
            let total: usize = s.iter().map(|s| s.failed).sum();
            println!(
                "{:<12} {:<8} {:<6} {:>3}   {}  {:>6}   {}   {}",
                k.name(),
                net,
                r.name(),
                s.len(),
                min_med_max(&failed),
                total,
                min_med_max(&slowest),
                min_med_max(&wall)
            );
        }
    }
    let stale: usize = samples.iter().map(|s| s.stale).sum();
    println!("old version answering after a deploy returned: {stale} requests (expected 0)");
    for net in ["bridge", "overlay"] {
        let s = pick(Kind::StartFirst, net, Retries::UpTo2s);
        let failed: usize = s.iter().map(|s| s.failed).sum();
        let slowest = s.iter().map(|s| s.slowest_ms).fold(0.0, f64::max);
        println!(
            "target (start-first, retrying proxy, {net}): 0 failed over {} swaps (>= 20): {} ({failed} failed); \
             no request slower than 300 ms: {} (slowest {slowest:.0} ms)",
            s.len(),
            if failed == 0 && s.len() >= 20 { "MET" } else { "MISSED" },
            if slowest <= 300.0 && !s.is_empty() { "MET" } else { "MISSED" }
        );
    }
    println!("\nmedian step times, ms (from the journal):");
    for (k, net) in order {
        let mut by_step: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut first_seen: Vec<&str> = Vec::new();
        for (_, _, _, step, ms) in steps.iter().filter(|s| s.0 == k.name() && s.1 == *net) {
            if !by_step.contains_key(step.as_str()) {
                first_seen.push(step);
            }
            by_step.entry(step).or_default().push(*ms);
        }
        let line: Vec<String> = first_seen.iter().map(|s| format!("{s} {:.0}", median(&by_step[s]))).collect();
        println!("  {:<12} {net:<8} {}", k.name(), line.join(", "));
    }
}

/// A strip plot of outage per method: every sample a dot, the median a bar.
fn write_svg(path: &Path, order: &[(Kind, &str)], samples: &[Sample]) {
    let (w, h) = (760.0, 420.0);
    let (left, right, top, bottom) = (64.0, 16.0, 36.0, 70.0);
    let max = samples.iter().map(|s| s.outage_ms).fold(100.0_f64, f64::max);
    let step = [100.0, 200.0, 250.0, 500.0, 1000.0, 2000.0].into_iter().find(|s| max / s <= 8.0).unwrap_or(5000.0);
    let ymax = (max / step).ceil() * step;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / ymax);
    let col_w = (w - left - right) / order.len() as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">Outage per swap (ms): dots are swaps, bars are medians</text>"#,
        w / 2.0
    );
    let mut v = 0.0;
    while v <= ymax + 0.1 {
        let yy = y(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{v:.0}</text>"##,
            w - right,
            left - 6.0,
            yy + 4.0
        );
        v += step;
    }
    let colors = ["#1f77b4", "#1f77b4", "#d62728", "#d62728", "#9467bd", "#7f7f7f", "#7f7f7f"];
    for (i, (k, net)) in order.iter().enumerate() {
        let cx = left + col_w * (i as f64 + 0.5);
        let color = colors[i % colors.len()];
        let vals: Vec<f64> =
            samples.iter().filter(|s| s.kind == *k && s.network == net_name(net)).map(|s| s.outage_ms).collect();
        for (j, o) in vals.iter().enumerate() {
            // Deterministic jitter so equal values stay visible.
            let dx = ((j * 37) % 11) as f64 / 10.0 * 0.5 * col_w * 0.6 - 0.15 * col_w;
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}" fill-opacity="0.6"/>"#,
                cx + dx,
                y(*o)
            );
        }
        if !vals.is_empty() {
            let m = median(&vals);
            let _ = writeln!(
                svg,
                r#"<line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="black" stroke-width="2.5"/>"#,
                cx - col_w * 0.3,
                cx + col_w * 0.3,
                y(m),
                y(m)
            );
            let _ = writeln!(
                svg,
                r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="11">{m:.0}</text>"#,
                y(m) - 6.0
            );
        }
        let _ =
            writeln!(svg, r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, h - bottom + 18.0, k.name());
        let _ = writeln!(
            svg,
            r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" fill="#555">{net}</text>"##,
            h - bottom + 34.0
        );
    }
    let _ = writeln!(svg, r#"<line x1="{left}" x2="{left}" y1="{top}" y2="{}" stroke="black"/>"#, h - bottom);
    let _ = writeln!(
        svg,
        r#"<text x="16" y="{:.1}" transform="rotate(-90 16 {:.1})" text-anchor="middle">outage (ms)</text>"#,
        (h - bottom + top) / 2.0,
        (h - bottom + top) / 2.0
    );
    svg.push_str("</svg>\n");
    std::fs::write(path, svg).expect("write the SVG");
}

// ---------------------------------------------------------------------------
// Journal share and query latency
// ---------------------------------------------------------------------------

fn journal_share_and_queries(cfg: &Config, app: &str, wall_all: &[f64], wall_ov: &[f64], wall_br: &[f64]) {
    let real = cfg.state_dir().join(app).join("journal.jsonl");
    let replay = journal::read::<Value>(&real).expect("read the real journal");
    let last = replay.records.last().expect("a deploy in the journal").group.clone();
    let deploy: Vec<Value> = replay.records.iter().filter(|r| r.group == last).map(|r| r.data.clone()).collect();
    let deploys_in_real = {
        let mut g: Vec<&str> = replay.records.iter().map(|r| r.group.as_str()).collect();
        g.dedup();
        g.len()
    };

    // Opening the real journal (lock, read, check): done once per deploy.
    let copy_dir = cfg.out.join("synth/open-copy");
    std::fs::create_dir_all(&copy_dir).expect("create dir");
    std::fs::copy(&real, copy_dir.join("journal.jsonl")).expect("copy the journal");
    let t = Instant::now();
    let opened = journal::Journal::<Value>::open(&copy_dir.join("journal.jsonl"), &journal::OpenOptions::default());
    let open_ms = ms(t.elapsed());
    drop(opened.expect("open the copied journal"));

    // The synthetic journal: that deploy's records, N times, fresh ids,
    // every append timed. It lives where the state dir lives (same disk).
    let synth_state = cfg.out.join("synth/state");
    let path = synth_state.join(app).join("journal.jsonl");
    let (mut j, _) =
        journal::Journal::<Value>::open(&path, &journal::OpenOptions::default()).expect("create the synthetic journal");
    let base = last.rsplit_once('-').map(|(b, _)| b.to_string()).unwrap_or_else(|| last.clone());
    let mut per_deploy = Vec::with_capacity(cfg.synth_deploys);
    let mut expected: Vec<(String, Value)> = Vec::new();
    for i in 0..cfg.synth_deploys {
        // The last copy keeps the real id, so `status` matches what serves.
        let id = if i + 1 == cfg.synth_deploys { last.clone() } else { format!("{base}-{}", 1_000_000 + i) };
        let mut sum = Duration::ZERO;
        for data in &deploy {
            let text = serde_json::to_string(data).expect("encode").replace(&last, &id);
            let v: Value = serde_json::from_str(&text).expect("decode");
            let t = Instant::now();
            j.append(&id, v.clone()).expect("append");
            sum += t.elapsed();
            expected.push((id.clone(), v));
        }
        per_deploy.push(ms(sum));
    }
    drop(j);
    // Round trip: every payload reads back equal, and swap accepts the file.
    let back = journal::read::<Value>(&path).expect("read the synthetic journal");
    assert_eq!(back.records.len(), expected.len(), "synthetic journal record count");
    for (r, (g, v)) in back.records.iter().zip(&expected) {
        assert!(r.group == *g && r.data == *v, "record {} does not round-trip", r.seq);
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let verify = Command::new(&cfg.swap)
        .env("SWAP_STATE_DIR", &synth_state)
        .args(["journal", "verify", app])
        .output()
        .expect("run swap");
    assert!(verify.status.success(), "swap journal verify: {}", String::from_utf8_lossy(&verify.stderr));

    let append_ms = median(&per_deploy);
    let mean_ms = per_deploy.iter().sum::<f64>() / per_deploy.len() as f64;
    let by = sorted(&per_deploy);
    let p90 = by[(by.len() * 9 / 10).min(by.len() - 1)];
    println!("\njournal share of deploy wall time:");
    println!(
        "  one re-deploy = {} records; appending them (write+fdatasync each) on the state dir's disk, over {} copies:",
        deploy.len(),
        by.len()
    );
    println!(
        "    median {append_ms:.1} ms, mean {mean_ms:.1} ms, p90 {p90:.1} ms, min {:.1} ms, max {:.1} ms",
        by[0],
        by[by.len() - 1]
    );
    println!("  opening the real journal ({deploys_in_real} deploys, lock+read+check): {open_ms:.1} ms");
    for (label, w) in [("swap overlay", wall_ov), ("swap bridge", wall_br), ("swap all", wall_all)] {
        let m = median(w);
        println!(
            "  {label:<13} median wall {m:>6.0} ms: journal (median) {:.2}%, (mean) {:.2}%, (p90) {:.2}%  (target < 3%)",
            100.0 * (append_ms + open_ms) / m,
            100.0 * (mean_ms + open_ms) / m,
            100.0 * (p90 + open_ms) / m
        );
    }

    println!("\nquery latency, {} runs each (ms min/med/max):", cfg.query_runs);
    for (label, state) in [
        (format!("{deploys_in_real} deploys"), cfg.state_dir()),
        (format!("{} deploys, {:.1} MB", cfg.synth_deploys, size as f64 / 1e6), synth_state),
    ] {
        for args in [vec!["status", app], vec!["journal", "show", app], vec!["history", app]] {
            let mut times = Vec::new();
            for _ in 0..cfg.query_runs {
                let t = Instant::now();
                let out = Command::new(&cfg.swap).env("SWAP_STATE_DIR", &state).args(&args).output().expect("run swap");
                times.push(ms(t.elapsed()));
                assert!(out.status.success(), "swap {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
            }
            println!(
                "  {:<20} {:<24} {}",
                format!("swap {}", args[..args.len() - 1].join(" ")),
                label,
                min_med_max(&times)
            );
        }
    }
}
