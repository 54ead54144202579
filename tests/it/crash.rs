//! The crash sweep on the real Docker engine (the invariants of
//! `docs/recovery.md`): a deploy is killed at its crash points
//! (`SWAP_CRASH_AT=after:N`, `before:N`, `torn:N` for N = 1, 2, … until it
//! completes uncrashed), then `swap recover` runs and the app must be settled:
//! exactly one container named `<APP>`, running, on its networks, answering
//! HTTP with the old or the new version (the one the journal's last `end`
//! record names), no `<APP>--swap-*` leftover, a sound journal ending with
//! `end`, and a second `swap recover` that changes nothing. A deploy that
//! exited 0 must be the one serving. A second part kills re-deploys with
//! SIGKILL at random instants.
//!
//! Every scenario is its own test, so nextest runs them side by side. Each
//! prints its counts (`CRASH SWEEP …` lines on stderr) and collects every
//! failing crash point before it fails, so one run shows them all; the
//! journal and swap's output of a failing point are kept under
//! `target/tmp/swap-crash-failures/`.
//!
//! By default (CI) each scenario runs a representative sample of its crash
//! points, a few minutes in all. The exhaustive sweep and the long random-kill
//! run:
//!
//! ```text
//! SWAP_SWEEP=full cargo nextest run --profile sweep --test it --no-capture crash::
//! SWAP_KILLS=500 cargo nextest run --profile sweep --test it --no-capture crash::random_kills
//! SWAP_KILL_SEED=<seed> cargo nextest run --test it --no-capture crash::random_kills   # replay
//! ```
//!
//! (`--profile sweep`, in `.config/nextest.toml`, only lifts the time limit.)
//! `SWAP_KILL_MAX_MS` changes the random kills' delay range (default 0..3000 ms).

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support;
use crate::support::{
    containers_of, describe, docker_output, free_port, http_get, image, inspect, networks_of, settled, TestApp,
    DEMO_PORT,
};
use serde_json::Value;

/// Whether the exhaustive sweep was asked for (`SWAP_SWEEP=full`).
fn full() -> bool {
    std::env::var("SWAP_SWEEP").is_ok_and(|v| v == "full")
}

/// Highest N tried: far above any deploy's record count, a guard against a
/// deploy that never stops crashing.
const MAX_N: u32 = 80;

// ---------------------------------------------------------------------------
// Crash modes and runs
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    After,
    Before,
    Torn,
}

const MODES: [Mode; 3] = [Mode::After, Mode::Before, Mode::Torn];

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::After => "after",
            Mode::Before => "before",
            Mode::Torn => "torn",
        }
    }

    fn at(self, n: u32) -> String {
        format!("{}:{n}", self.as_str())
    }
}

/// How a swap run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Killed by SIGKILL (its own crash injection or ours).
    Killed,
    /// Exited with this code.
    Exited(i32),
}

fn ended(out: &Output) -> Ended {
    match (out.status.code(), out.status.signal()) {
        (Some(code), _) => Ended::Exited(code),
        (None, Some(9)) => Ended::Killed,
        // Any other signal is a bug of its own; report it as a strange exit.
        (None, sig) => Ended::Exited(-(sig.unwrap_or(0))),
    }
}

/// `swap --state-dir <dir> <args>` as a command, with every `SWAP_*` variable
/// of this process removed (like `TestApp::swap_env`, but spawnable).
fn swap_command(app: &TestApp, env: &[(&str, &str)], args: &[String]) -> Command {
    app.command(env, args)
}

fn run_swap(app: &TestApp, env: &[(&str, &str)], args: &[String]) -> Output {
    swap_command(app, env, args).output().expect("run the swap binary")
}

fn strs(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// The journal, read independently of swap
// ---------------------------------------------------------------------------

/// The journal's lines, parsed; an empty list if there is no journal yet.
fn journal(app: &TestApp) -> Result<Vec<Value>, String> {
    let path = app.journal_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    text.lines()
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("journal line {} is not JSON ({e}): {l:?}", i + 1)))
        .collect()
}

fn kind(r: &Value) -> &str {
    r["data"]["kind"].as_str().unwrap_or("?")
}

fn begins(records: &[Value]) -> usize {
    records.iter().filter(|r| kind(r) == "begin").count()
}

/// A record by its kind and step: `intent:stop_old`, `done:stop_old`,
/// `health`, `commit`, `undo_done:rename_old`, `end:deployed`. Crash points
/// are chosen by these names, not by record numbers, so a sample keeps its
/// meaning when a deploy gains or loses a record.
fn label(r: &Value) -> String {
    let k = kind(r);
    match r["data"]["step"]["step"].as_str() {
        Some(s) => format!("{k}:{s}"),
        None if k == "end" => format!("end:{}", r["data"]["outcome"].as_str().unwrap_or("?")),
        None => k.to_string(),
    }
}

/// The journal as one line per record kind (with the step), for messages.
fn timeline(records: &[Value]) -> String {
    records.iter().map(label).collect::<Vec<_>>().join(" ")
}

/// The labels of the records a deploy appended: record N of the run is
/// element N - 1.
fn appended_labels(before: &[Value], after: &[Value]) -> Vec<String> {
    let payload = |rs: &[Value]| rs.iter().filter(|r| kind(r) != "header").count();
    after.iter().filter(|r| kind(r) != "header").skip(payload(before)).map(label).collect()
}

fn journal_bytes(app: &TestApp) -> Vec<u8> {
    std::fs::read(app.journal_path()).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

/// One deploy to crash, and the state it starts from.
#[derive(Debug, Clone, Copy)]
struct Scenario {
    /// Short name, in app names, messages and failure dirs.
    name: &'static str,
    /// The network the app lives on.
    network: fn() -> &'static str,
    /// The version serving before the swept deploy (deployed by swap, not
    /// crashed), or `None` for a first deploy.
    old: Option<&'static str>,
    /// The image tag the swept deploy deploys.
    new: &'static str,
    /// Whether the new image can never pass the health gate.
    new_fails: bool,
    /// The restart policy the app is deployed with (a parked old container
    /// must get it back on rollback; the new one inherits it).
    restart: Option<&'static str>,
    /// Extra `swap deploy` flags for the swept deploy.
    extra: &'static [&'static str],
    /// Whether the app keeps data in volumes (an anonymous `--volume /data`
    /// and its image's `VOLUME /var/lib/db`): a marker written there before
    /// the swept deploy must be read back from whichever version serves.
    data: bool,
    /// Deployed `--strategy start-first` (no published port: the app is
    /// reached by name through a client container on its network, and at
    /// every crash point, before recovery, the name must still answer).
    start_first: bool,
}

/// Where a data scenario leaves its markers, by path inside the container.
const MARKERS: [&str; 2] = ["/data/marker", "/var/lib/db/marker"];

/// The body the demo app answers for a tag.
fn body_of(tag: &str) -> &'static str {
    match tag {
        "v1" | "plain-v1" | "db-v1" => "v1",
        _ => "v2",
    }
}

/// A fresh app in the scenario's starting state.
struct Fixture {
    /// Start-first: the client that reaches the app by name.
    client: Option<support::Client>,
    app: TestApp,
    port: u16,
    net: &'static str,
}

impl Fixture {
    fn first_deploy_args(&self, sc: &Scenario, tag: &str) -> Vec<String> {
        let mut args = strs(&["deploy", self.app.name(), "--image", &image(tag)]);
        if sc.start_first {
            args.extend(strs(&["--strategy", "start-first", "--env", "DEMO_SIGTERM=graceful"]));
        } else {
            args.extend(strs(&["--publish", &format!("{}:{DEMO_PORT}", self.port)]));
        }
        args.extend(strs(&["--network", self.net]));
        if let Some(policy) = sc.restart {
            args.extend(strs(&["--restart", policy]));
        }
        if sc.data {
            args.extend(strs(&["--volume", "/data"]));
        }
        args
    }

    /// The swept deploy's command line.
    fn swept_args(&self, sc: &Scenario) -> Vec<String> {
        let mut args = match sc.old {
            Some(_) => strs(&["deploy", self.app.name(), "--image", &image(sc.new)]),
            None => self.first_deploy_args(sc, sc.new),
        };
        args.extend(strs(sc.extra));
        args
    }

    fn recover_args(&self) -> Vec<String> {
        strs(&["recover", self.app.name()])
    }
}

fn setup(sc: &Scenario) -> Result<Fixture, String> {
    let net = (sc.network)();
    let app = TestApp::new(&format!("crash-{}", sc.name));
    let client = sc.start_first.then(|| support::Client::start(app.name(), net));
    let fx = Fixture { client, app, port: free_port(), net };
    if sc.data {
        for tag in [sc.old, Some(sc.new)].into_iter().flatten() {
            if let Some(base) = tag.strip_prefix("db-") {
                support::db_image(base);
            }
        }
    }
    if let Some(old) = sc.old {
        let out = run_swap(&fx.app, &[], &fx.first_deploy_args(sc, old));
        if !out.status.success() {
            return Err(format!("setup: the deploy of {old} failed:\n{}", describe(&out)));
        }
        settled(fx.app.name(), &[&image(old)]).map_err(|e| format!("setup: {e}"))?;
        if sc.data {
            for path in MARKERS {
                support::write_in(fx.app.name(), path, &format!("kept at {path}"));
            }
        }
    }
    Ok(fx)
}

/// [`setup`] for one crash point; a failed setup is that point's failure.
fn setup_point(sc: &Scenario, tally: &mut Tally, point: &str, t: Instant) -> Option<Fixture> {
    match setup(sc) {
        Ok(fx) => Some(fx),
        Err(e) => {
            tally.record(point, t.elapsed(), Err(e));
            None
        }
    }
}

/// After a swept run (crashed or not): recover if it crashed, then check
/// everything the sweep promises. Returns the tag serving (or "none").
fn check(sc: &Scenario, fx: &Fixture, begins_before: usize, end: Ended, log: &mut String) -> Result<String, String> {
    let app = &fx.app;
    let name = app.name();
    if let (Ended::Killed, Some(client), Some(old)) = (end, &fx.client, sc.old) {
        // Start-first: a crash anywhere leaves the name answering, before
        // any recovery.
        let answer = client.get(name).map_err(|e| format!("killed start-first: {name} does not answer: {e}"))?;
        if answer != body_of(old) && answer != body_of(sc.new) {
            return Err(format!("killed start-first: {name} answers {answer:?}"));
        }
    }
    if end == Ended::Killed {
        let out = run_swap(app, &[], &fx.recover_args());
        log.push_str(&format!("=== swap recover\n{}\n", describe(&out)));
        if !out.status.success() {
            return Err(format!("`swap recover` failed: {}", first_error(&out)));
        }
    }
    let records = journal(app)?;
    let verify = run_swap(app, &[], &strs(&["journal", "verify", name]));
    if !verify.status.success() {
        return Err(format!("`swap journal verify` failed: {}", first_error(&verify)));
    }
    let began = begins(&records) > begins_before;
    // A candidate that can deploy must not have failed a step: a rollback
    // there would pass every other check while sweeping the wrong path.
    if !sc.new_fails {
        let first_new =
            records.iter().enumerate().filter(|(_, r)| kind(r) == "begin").nth(begins_before).map(|(i, _)| i);
        if let Some(failed) = first_new.and_then(|i| records[i..].iter().find(|r| matches!(kind(r), "failed"))) {
            let step = failed["data"]["step"]["step"].as_str().unwrap_or("?");
            let error = failed["data"]["error"].as_str().unwrap_or("?");
            return Err(format!("the deploy's step {step} failed (not injected): {error}"));
        }
    }
    let last = records.last().map(kind).unwrap_or("(empty journal)");
    let outcome = if began {
        if last != "end" {
            return Err(format!("the journal's last record is `{last}`, not `end`"));
        }
        records.last().and_then(|r| r["data"]["outcome"].as_str()).unwrap_or("?").to_string()
    } else {
        // Killed before its begin record was durable: nothing may have changed.
        "not begun".to_string()
    };
    let expect: Option<&str> = match outcome.as_str() {
        "deployed" => Some(sc.new),
        "rolled_back" | "not begun" => sc.old,
        other => return Err(format!("unknown outcome {other:?} in the last end record")),
    };
    if let Ended::Exited(code) = end {
        match (code, outcome.as_str()) {
            (0, "deployed") | (1, "rolled_back") => {}
            _ => return Err(format!("the deploy exited {code} but the journal says {outcome}")),
        }
    }
    if sc.new_fails && outcome == "deployed" {
        return Err(format!("{} can never pass its health gate but was deployed", sc.new));
    }
    match expect {
        None => {
            let left = containers_of(name);
            let labelled = labelled_containers(name);
            if !left.is_empty() || !labelled.is_empty() {
                return Err(format!(
                    "a first deploy that {outcome} must leave no container, found {:?} (labelled: {labelled:?})",
                    left.iter().map(|c| format!("{} {}", c.name, c.state)).collect::<Vec<_>>()
                ));
            }
        }
        Some(tag) => {
            settled(name, &[&image(tag)]).map_err(|e| format!("journal says {outcome}, want {tag}: {e}"))?;
            let labelled = labelled_containers(name);
            if labelled.len() != 1 {
                return Err(format!("containers labelled swap.app={name}: {labelled:?}, expected exactly one"));
            }
            let nets = networks_of(name);
            if !nets.iter().any(|n| n == fx.net) {
                return Err(format!("{name} is not on {}: on {nets:?}", fx.net));
            }
            if let Some(policy) = sc.restart {
                let c = inspect(name).unwrap_or_default();
                let got = c["HostConfig"]["RestartPolicy"]["Name"].as_str().unwrap_or_default().to_string();
                if got != policy {
                    return Err(format!("{name} has restart policy {got:?}, expected {policy:?} ({outcome})"));
                }
            }
            if sc.data && sc.old.is_some() {
                for path in MARKERS {
                    let want = format!("kept at {path}");
                    if support::read_in(name, path).as_deref() != Some(want.as_str()) {
                        return Err(format!(
                            "{name} serves {tag} ({outcome}) without the data at {path}: mounts {:?}",
                            support::mounts_of(name)
                        ));
                    }
                }
            }
            let answer = match &fx.client {
                Some(client) => {
                    let t = Instant::now();
                    let mut got = client.get(name);
                    // Docker's DNS may take a moment to list a container
                    // that recovery just started.
                    while got.as_deref().ok() != Some(body_of(tag)) && t.elapsed() < Duration::from_secs(15) {
                        std::thread::sleep(Duration::from_millis(200));
                        got = client.get(name);
                    }
                    got.ok()
                }
                None => http_get(fx.port, Duration::from_secs(15)),
            };
            match answer {
                Some(body) if body.trim() == body_of(tag) => {}
                Some(body) => {
                    return Err(format!(
                        "port {} answers {:?}, expected {:?} ({outcome})",
                        fx.port,
                        body.trim(),
                        body_of(tag)
                    ))
                }
                None => return Err(format!("port {} does not answer within 15 s ({outcome})", fx.port)),
            }
        }
    }
    // A second recover changes nothing.
    let id_before = inspect(name).and_then(|c| c["Id"].as_str().map(str::to_string));
    let bytes_before = journal_bytes(app);
    let again = run_swap(app, &[], &fx.recover_args());
    log.push_str(&format!("=== second swap recover\n{}\n", describe(&again)));
    // A journal-less first deploy (killed before it wrote anything) has
    // nothing to recover; any exit other than 0 there is only reported if
    // the journal exists.
    if !again.status.success() && app.journal_path().exists() {
        return Err(format!("the second `swap recover` failed: {}", first_error(&again)));
    }
    let id_after = inspect(name).and_then(|c| c["Id"].as_str().map(str::to_string));
    if id_before != id_after {
        return Err(format!("the second `swap recover` changed {name}: {id_before:?} -> {id_after:?}"));
    }
    if journal_bytes(app) != bytes_before {
        let now = journal(app).map(|r| timeline(&r)).unwrap_or_default();
        return Err(format!("the second `swap recover` wrote to the journal: {now}"));
    }
    if let Some(running) = inspect(name).map(|c| c["State"]["Running"].as_bool() == Some(true)) {
        if !running {
            return Err(format!("{name} is not running after the second recover"));
        }
    }
    Ok(expect.unwrap_or("none").to_string())
}

/// Ids of every container labelled as the app's (whatever its name).
fn labelled_containers(app: &str) -> Vec<String> {
    let label = format!("label=swap.app={app}");
    let out = docker_output(&["ps", "-aq", "--no-trunc", "--filter", &label]);
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// The first line of swap's stderr that says something, with the exit status.
fn first_error(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().rev().find(|l| l.starts_with("swap:")).or_else(|| err.lines().last()).unwrap_or("");
    format!("{} ({})", line.trim(), out.status)
}

/// Keeps a failing point's journal and output for post-mortem; returns where.
fn keep(fx: &Fixture, sc: &str, point: &str, log: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("swap-crash-failures").join(format!(
        "{sc}-{}-{}",
        point.replace([':', ' ', '/'], "_"),
        std::process::id()
    ));
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(entries) = std::fs::read_dir(fx.app.state_dir.join(fx.app.name())) {
        for e in entries.flatten() {
            let _ = std::fs::copy(e.path(), dir.join(e.file_name()));
        }
    }
    let _ = std::fs::write(dir.join("output.txt"), log);
    dir
}

// ---------------------------------------------------------------------------
// The sweep driver
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Tally {
    scenario: String,
    /// Records one uncrashed swept deploy appends (= crash points per mode).
    records: Option<usize>,
    ran: usize,
    passed: usize,
    failures: Vec<String>,
    times: Vec<Duration>,
    started: Option<Instant>,
}

impl Tally {
    fn new(scenario: &str) -> Self {
        Tally { scenario: scenario.to_string(), started: Some(Instant::now()), ..Tally::default() }
    }

    fn record(&mut self, point: &str, took: Duration, result: Result<String, String>) {
        self.ran += 1;
        self.times.push(took);
        match result {
            Ok(serving) => {
                self.passed += 1;
                eprintln!("  {} {point}: ok, serving {serving} ({:.1} s)", self.scenario, took.as_secs_f64());
            }
            Err(why) => {
                eprintln!("  {} {point}: FAILED ({:.1} s): {why}", self.scenario, took.as_secs_f64());
                self.failures.push(format!("{point}: {why}"));
            }
        }
    }

    /// Prints the counts and fails if any point failed.
    fn finish(self, total_points: Option<String>) {
        let total = self.started.map(|s| s.elapsed()).unwrap_or_default();
        let mean = if self.times.is_empty() {
            0.0
        } else {
            self.times.iter().map(Duration::as_secs_f64).sum::<f64>() / self.times.len() as f64
        };
        let max = self.times.iter().max().copied().unwrap_or_default();
        let points = total_points
            .or_else(|| self.records.map(|r| format!("{} per mode × 3 modes = {}", r, 3 * r)))
            .unwrap_or_else(|| "unknown".into());
        eprintln!(
            "CRASH SWEEP {} ({}): crash points {points}; ran {}, passed {}, failed {}; \
             {:.1} s per point (max {:.1} s), {:.0} s in all",
            self.scenario,
            if full() { "full" } else { "ci sample" },
            self.ran,
            self.passed,
            self.failures.len(),
            mean,
            max.as_secs_f64(),
            total.as_secs_f64()
        );
        for f in &self.failures {
            eprintln!("  FAILURE {}: {f}", self.scenario);
        }
        assert!(self.ran > 0, "{}: no crash point ran", self.scenario);
        assert!(
            self.failures.is_empty(),
            "{}: {} of {} crash points failed:\n{}",
            self.scenario,
            self.failures.len(),
            self.ran,
            self.failures.join("\n")
        );
    }
}

/// Runs the scenario's deploy uncrashed (checked like any point), then
/// crashed at every selected `mode:N`, N naming each record the uncrashed
/// deploy appended, recovering and checking after each. `select` gets the
/// mode and the record's label (see [`label`]); the full sweep takes all.
fn sweep(sc: &Scenario, select: impl Fn(Mode, &str) -> bool) {
    support::images();
    let mut tally = Tally::new(sc.name);
    let Some(points) = reference_run(sc, &mut tally) else {
        return tally.finish(None);
    };
    for mode in MODES {
        for (i, name) in points.iter().enumerate() {
            if !(full() || select(mode, name)) {
                continue;
            }
            let point = mode.at(i as u32 + 1);
            let t = Instant::now();
            let mut log = String::new();
            let Some(fx) = setup_point(sc, &mut tally, &point, t) else { continue };
            let before = journal(&fx.app).unwrap_or_default();
            let out = run_swap(&fx.app, &[("SWAP_CRASH_AT", &point)], &fx.swept_args(sc));
            log.push_str(&format!(
                "=== swap {} with SWAP_CRASH_AT={point} ({name})\n{}\n",
                fx.swept_args(sc).join(" "),
                describe(&out)
            ));
            let end = ended(&out);
            let result = check(sc, &fx, begins(&before), end, &mut log).and_then(|serving| match end {
                Ended::Killed => Ok(serving),
                // The uncrashed run appended more records than this one did.
                _ => Err(format!("the deploy did not crash at {point} ({name}): {}", first_error(&out))),
            });
            let result = result.map_err(|why| {
                let records = journal(&fx.app).map(|r| timeline(&r)).unwrap_or_else(|e| e);
                let kept = keep(&fx, sc.name, &point, &log);
                format!("{why}\n      journal: {records}\n      kept in {}", kept.display())
            });
            tally.record(&format!("{point} ({name})"), t.elapsed(), result);
        }
    }
    tally.finish(None);
}

/// The scenario's deploy without a crash, checked like any point; returns
/// the labels of the records it appended: the crash points.
fn reference_run(sc: &Scenario, tally: &mut Tally) -> Option<Vec<String>> {
    let t = Instant::now();
    let fx = setup_point(sc, tally, "uncrashed", t)?;
    let mut log = String::new();
    let before = journal(&fx.app).unwrap_or_default();
    let out = run_swap(&fx.app, &[], &fx.swept_args(sc));
    log.push_str(&describe(&out));
    let end = ended(&out);
    let result = check(sc, &fx, begins(&before), end, &mut log);
    let points = appended_labels(&before, &journal(&fx.app).unwrap_or_default());
    tally.records = Some(points.len());
    let result = result.map_err(|why| format!("{why} (kept in {})", keep(&fx, sc.name, "uncrashed", &log).display()));
    let ok = result.is_ok();
    tally.record("uncrashed", t.elapsed(), result);
    eprintln!("  {} crash points: {}", sc.name, points.join(" "));
    ok.then_some(points)
}

const FIRST: Scenario = Scenario {
    name: "first",
    network: support::bridge,
    old: None,
    new: "v1",
    new_fails: false,
    restart: None,
    extra: &[],
    data: false,
    start_first: false,
};

const BRIDGE: Scenario = Scenario {
    name: "bridge",
    network: support::bridge,
    old: Some("v1"),
    new: "v2",
    new_fails: false,
    restart: Some("unless-stopped"),
    extra: &[],
    data: false,
    start_first: false,
};

const OVERLAY: Scenario = Scenario {
    name: "overlay",
    network: support::overlay,
    old: Some("v1"),
    new: "v2",
    new_fails: false,
    restart: None,
    extra: &[],
    data: false,
    start_first: false,
};

/// The candidate exits at once: the gate fails fast and the crash points
/// after the health record land inside the rollback.
const FAILING: Scenario = Scenario {
    name: "failing",
    network: support::bridge,
    old: Some("v1"),
    new: "crash",
    new_fails: true,
    restart: Some("unless-stopped"),
    extra: &[],
    data: false,
    start_first: false,
};

/// The candidate runs but never gets healthy: the gate times out.
const UNHEALTHY: Scenario = Scenario {
    name: "unhealthy",
    network: support::bridge,
    old: Some("v1"),
    new: "unhealthy",
    new_fails: true,
    restart: None,
    extra: &["--health-timeout", "3"],
    data: false,
    start_first: false,
};

/// A re-deploy of an app holding data in an anonymous volume and in the
/// volume its image declares: at every crash point, the version serving
/// after recovery has the data.
const DATA: Scenario = Scenario {
    name: "data",
    network: support::bridge,
    old: Some("db-v1"),
    new: "db-v2",
    new_fails: false,
    restart: Some("unless-stopped"),
    extra: &[],
    data: true,
    start_first: false,
};

/// The same app with a candidate that exits at once: the rollback, crashed
/// at its points, gives the old version back with its data.
const DATA_FAILING: Scenario = Scenario {
    name: "data-failing",
    network: support::bridge,
    old: Some("db-v1"),
    new: "crash",
    new_fails: true,
    restart: None,
    extra: &[],
    data: true,
    start_first: false,
};

/// Start-first on the user-defined bridge network: the temporary instance
/// serves while the old one stops and is renamed, the final one is created
/// as the app.
const START_BRIDGE: Scenario = Scenario {
    name: "start-bridge",
    network: support::bridge,
    old: Some("v1"),
    new: "v2",
    new_fails: false,
    restart: Some("unless-stopped"),
    extra: &["--drain", "0.2"],
    data: false,
    start_first: true,
};

/// Start-first on the attachable overlay (moby#42351: nothing running is
/// ever renamed).
const START_OVERLAY: Scenario = Scenario {
    name: "start-overlay",
    network: support::overlay,
    old: Some("v1"),
    new: "v2",
    new_fails: false,
    restart: None,
    extra: &["--drain", "0.2"],
    data: false,
    start_first: true,
};

/// Start-first with a candidate that exits at once: the rollback never
/// touches the old container, which serves throughout.
const START_FAILING: Scenario = Scenario {
    name: "start-failing",
    network: support::bridge,
    old: Some("v1"),
    new: "crash",
    new_fails: true,
    restart: Some("unless-stopped"),
    extra: &[],
    data: false,
    start_first: true,
};

/// A step's `done` record: crashing right before it (`before:N`) leaves the
/// step's effect in place, unrecorded.
fn done(name: &str) -> bool {
    name.starts_with("done:")
}

fn intent(name: &str) -> bool {
    name.starts_with("intent:")
}

#[test]
fn sweep_first_deploy() {
    // CI: every after:N (cheap: nothing to set up); before every done
    // record and the commit, torn at every intent.
    sweep(&FIRST, |mode, name| match mode {
        Mode::After => true,
        Mode::Before => done(name) || name == "commit",
        Mode::Torn => intent(name),
    });
}

#[test]
fn sweep_redeploy_bridge() {
    // CI: every after:N; before the outage's done records; torn at the
    // outage's intents and the commit.
    sweep(&BRIDGE, |mode, name| match mode {
        Mode::After => true,
        Mode::Before => ["done:stop_old", "done:rename_old", "done:start_candidate", "done:remove_old"].contains(&name),
        Mode::Torn => ["intent:create_candidate", "intent:rename_candidate", "commit"].contains(&name),
    });
}

#[test]
fn sweep_redeploy_overlay() {
    // CI: every after:N; the overlay's own hazards (renames, the start)
    // before and torn.
    sweep(&OVERLAY, |mode, name| match mode {
        Mode::After => true,
        Mode::Before => ["done:park_old", "done:rename_candidate", "health"].contains(&name),
        Mode::Torn => ["intent:stop_old", "intent:start_candidate", "end:deployed"].contains(&name),
    });
}

#[test]
fn sweep_failing_candidate() {
    // CI: the rollback at every after:N, before its undo_done records, torn
    // at a few of its undo intents.
    sweep(&FAILING, |mode, name| match mode {
        Mode::After => {
            name == "done:start_candidate" || name == "health" || name.starts_with("undo") || name.starts_with("end")
        }
        Mode::Before => name.starts_with("undo_done") || name.starts_with("end"),
        Mode::Torn => {
            ["undo_intent:start_candidate", "undo_intent:rename_old", "undo_intent:park_old", "end:rolled_back"]
                .contains(&name)
        }
    });
}

#[test]
fn sweep_unhealthy_candidate() {
    // Each run waits out the health timeout: CI runs three points of the rollback.
    sweep(&UNHEALTHY, |mode, name| {
        mode == Mode::After && ["health", "undo_done:rename_candidate", "undo_done:stop_old"].contains(&name)
    });
}

#[test]
fn sweep_redeploy_with_data() {
    // CI: after every done record and the commit; before the steps that
    // move the data's container; torn at the start and the commit.
    sweep(&DATA, |mode, name| match mode {
        Mode::After => done(name) || name == "commit",
        Mode::Before => {
            ["done:create_candidate", "done:stop_old", "done:rename_old", "done:start_candidate"].contains(&name)
        }
        Mode::Torn => ["intent:start_candidate", "commit"].contains(&name),
    });
}

#[test]
fn sweep_failing_candidate_with_data() {
    // CI: a few points of the rollback.
    sweep(&DATA_FAILING, |mode, name| match mode {
        Mode::After => name == "health" || name.starts_with("undo_done"),
        Mode::Before => ["undo_done:stop_old", "undo_done:rename_old"].contains(&name),
        Mode::Torn => ["undo_intent:start_candidate", "undo_intent:rename_old"].contains(&name),
    });
}

#[test]
fn sweep_start_first_bridge() {
    // CI: after every done record and the commit; before the steps where
    // two instances trade places; torn at the creations and the commit.
    sweep(&START_BRIDGE, |mode, name| match mode {
        Mode::After => done(name) || name == "commit" || name == "health",
        Mode::Before => ["done:stop_old", "done:rename_old", "done:retire_temporary", "commit"].contains(&name),
        Mode::Torn => ["intent:create_candidate", "intent:retire_temporary", "commit"].contains(&name),
    });
}

#[test]
fn sweep_start_first_overlay() {
    // CI: after every intent (the calls in flight), before the starts.
    sweep(&START_OVERLAY, |mode, name| match mode {
        Mode::After => intent(name) || name == "commit",
        Mode::Before => ["done:start_candidate", "done:create_candidate", "health"].contains(&name),
        Mode::Torn => ["intent:stop_old", "end:deployed"].contains(&name),
    });
}

#[test]
fn sweep_start_first_failing_candidate() {
    // CI: the rollback at every after:N past the gate.
    sweep(&START_FAILING, |mode, name| match mode {
        Mode::After => name == "health" || name.starts_with("undo") || name.starts_with("end"),
        Mode::Before => name.starts_with("undo_done"),
        Mode::Torn => name == "undo_intent:start_candidate",
    });
}

// ---------------------------------------------------------------------------
// Recovery crashed again
// ---------------------------------------------------------------------------

/// Crashes the bridge re-deploy at `deploy_at`, then runs `swap recover`
/// crashed at `mode:M` for M = 1, 2, … until a recover completes uncrashed;
/// then a clean `swap recover` and the usual checks.
fn sweep_recovery(tally: &mut Tally, deploy_at: &str, modes: &[Mode], select: impl Fn(Mode, u32) -> bool) {
    let sc = BRIDGE;
    for &mode in modes {
        for m in 1..=MAX_N {
            if !select(mode, m) {
                continue;
            }
            let recover_at = mode.at(m);
            let point = format!("deploy {deploy_at} + recover {recover_at}");
            let t = Instant::now();
            let mut log = String::new();
            let Some(fx) = setup_point(&sc, tally, &point, t) else { continue };
            let before = journal(&fx.app).unwrap_or_default();
            let out = run_swap(&fx.app, &[("SWAP_CRASH_AT", deploy_at)], &fx.swept_args(&sc));
            log.push_str(&format!("=== deploy with SWAP_CRASH_AT={deploy_at}\n{}\n", describe(&out)));
            if ended(&out) != Ended::Killed {
                tally.record(&point, t.elapsed(), Err(format!("the deploy did not crash at {deploy_at}")));
                return;
            }
            let rec = run_swap(&fx.app, &[("SWAP_CRASH_AT", &recover_at)], &fx.recover_args());
            log.push_str(&format!("=== recover with SWAP_CRASH_AT={recover_at}\n{}\n", describe(&rec)));
            let rec_end = ended(&rec);
            let result = match rec_end {
                Ended::Killed | Ended::Exited(0) => check(&sc, &fx, begins(&before), Ended::Killed, &mut log),
                Ended::Exited(code) => Err(format!("the crash-injected recover exited {code}: {}", first_error(&rec))),
            };
            let result = result.map_err(|why| {
                let records = journal(&fx.app).map(|r| timeline(&r)).unwrap_or_else(|e| e);
                let kept = keep(&fx, "recovery", &point, &log);
                format!("{why}\n      journal: {records}\n      kept in {}", kept.display())
            });
            let label = if rec_end == Ended::Killed { point } else { format!("{point} (recover completed uncrashed)") };
            tally.record(&label, t.elapsed(), result);
            if rec_end != Ended::Killed {
                break;
            }
        }
    }
}

/// The deploy crash points the recovery sweeps start from: in full, every
/// `after:N` of the re-deploy; in CI, after the old container stopped
/// (rollback restarts it), after both renames (rollback renames both back)
/// and after the commit (recovery goes forward).
fn recovery_deploy_points(tally: &mut Tally) -> Vec<String> {
    let Some(points) = reference_run(&BRIDGE, tally) else { return vec![] };
    let wanted = ["done:stop_old", "done:rename_candidate", "commit"];
    let picked = points.iter().enumerate().filter(|(_, name)| full() || wanted.contains(&name.as_str()));
    picked.map(|(i, _)| Mode::After.at(i as u32 + 1)).collect()
}

/// Recovery crashed at every `mode:M` (CI: a sample), for each deploy crash
/// point; `sample` gets the deploy's crash point, whether it is the commit,
/// and M.
fn recovery_crashed_again(mode: Mode, sample: impl Fn(&str, bool, u32) -> bool) {
    support::images();
    let mut tally = Tally::new(&format!("recovery-{}", mode.as_str()));
    let points = recovery_deploy_points(&mut tally);
    let commit = points.last().cloned().unwrap_or_default();
    for deploy_at in &points {
        let at_commit = *deploy_at == commit;
        sweep_recovery(&mut tally, deploy_at, &[mode], |_, m| full() || sample(deploy_at, at_commit, m));
    }
    tally.finish(Some("see the list above".into()));
}

#[test]
fn sweep_recovery_crashed_after() {
    recovery_crashed_again(Mode::After, |_, _, _| true);
}

#[test]
fn sweep_recovery_crashed_before() {
    recovery_crashed_again(Mode::Before, |_, at_commit, m| at_commit || m % 3 == 1);
}

#[test]
fn sweep_recovery_crashed_torn() {
    recovery_crashed_again(Mode::Torn, |_, at_commit, m| at_commit || m % 2 == 0);
}

// ---------------------------------------------------------------------------
// A parked old container started by hand
// ---------------------------------------------------------------------------

/// Recovery must handle a container that Docker restarted or that a person
/// started by hand. The re-deploy is crashed while the old
/// container is stopped (after:7, still named `<APP>`) or stopped and parked
/// under `<APP>--swap-old` (after:9, after:11: candidate renamed, not started);
/// then someone runs `docker start` on the old container; then `swap recover`
/// must roll back to it. On the overlay, renaming the running parked
/// container back is what moby#42351 refuses.
#[test]
fn recover_after_parked_old_started_by_hand() {
    support::images();
    let mut tally = Tally::new("started-by-hand");
    for sc in [BRIDGE, OVERLAY] {
        for deploy_at in ["after:7", "after:9", "after:11"] {
            let point = format!("{} deploy {deploy_at} + docker start old", sc.name);
            let t = Instant::now();
            let Some(fx) = setup_point(&sc, &mut tally, &point, t) else { continue };
            let before = journal(&fx.app).unwrap_or_default();
            let old_id = inspect(fx.app.name()).and_then(|c| c["Id"].as_str().map(str::to_string)).unwrap_or_default();
            let out = run_swap(&fx.app, &[("SWAP_CRASH_AT", deploy_at)], &fx.swept_args(&sc));
            let mut log = format!("=== deploy with SWAP_CRASH_AT={deploy_at}\n{}\n", describe(&out));
            let result = if ended(&out) != Ended::Killed {
                Err(format!("the deploy did not crash at {deploy_at}"))
            } else {
                let started = docker_output(&["start", &old_id]);
                log.push_str(&format!("=== docker start {old_id}: {}\n", started.status));
                if started.status.success() {
                    check(&sc, &fx, begins(&before), Ended::Killed, &mut log)
                } else {
                    Err(format!(
                        "docker start of the old container failed: {}",
                        String::from_utf8_lossy(&started.stderr)
                    ))
                }
            };
            let result = result.map_err(|why| {
                let records = journal(&fx.app).map(|r| timeline(&r)).unwrap_or_else(|e| e);
                let kept = keep(&fx, "started-by-hand", &point, &log);
                format!("{why}\n      journal: {records}\n      kept in {}", kept.display())
            });
            tally.record(&point, t.elapsed(), result);
        }
    }
    tally.finish(Some("6 (3 crash points × bridge, overlay)".into()));
}

/// moby PR#41011 on swap's own path: a re-deploy on an overlay where the old
/// container is the only one attached. Stopping it tears the node-local
/// network down; the candidate's start right after must be retried, not
/// rolled back. A private overlay, so no other test keeps it alive.
#[test]
fn overlay_redeploy_alone_on_its_network() {
    support::images();
    support::overlay();
    let net = format!("swap-crash-alone-{}", std::process::id());
    let _ = docker_output(&["network", "rm", &net]);
    support::docker_ok(&["network", "create", "--driver", "overlay", "--attachable", &net]);
    let app = TestApp::new("crash-alone");
    let port = free_port();
    let mut failures = vec![];
    let first = strs(&["deploy", app.name(), "--image", &image("v1"), "--publish", &format!("{port}:{DEMO_PORT}")]);
    let out = run_swap(&app, &[], &[first, strs(&["--network", &net])].concat());
    if !out.status.success() {
        failures.push(format!("first deploy: {}", first_error(&out)));
    }
    for (i, tag) in ["v2", "v1", "v2"].iter().enumerate() {
        let out = run_swap(&app, &[], &strs(&["deploy", app.name(), "--image", &image(tag)]));
        eprintln!("  alone re-deploy #{i} -> {tag}: {}", first_error(&out));
        if !out.status.success() {
            failures.push(format!("re-deploy #{i} to {tag}: {}", first_error(&out)));
        }
    }
    drop(app);
    let _ = docker_output(&["network", "rm", &net]);
    assert!(failures.is_empty(), "re-deploys on an overlay the app has alone failed:\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// The next deploy recovers first
// ---------------------------------------------------------------------------

/// Crashes the bridge re-deploy v1 -> v2 at `mode:N`, then runs the same
/// deploy again without `swap recover`: it must recover the unfinished
/// deploy first, then deploy v2 and exit 0.
#[test]
fn sweep_next_deploy_recovers_first() {
    support::images();
    let sc = BRIDGE;
    let mut tally = Tally::new("next-deploy");
    for mode in MODES {
        for n in 1..=MAX_N {
            if !(full() || (mode == Mode::After && n % 2 == 1) || (mode != Mode::After && n % 5 == 2)) {
                continue;
            }
            let point = mode.at(n);
            let t = Instant::now();
            let Some(fx) = setup_point(&sc, &mut tally, &point, t) else { continue };
            let before = journal(&fx.app).unwrap_or_default();
            let out = run_swap(&fx.app, &[("SWAP_CRASH_AT", &point)], &fx.swept_args(&sc));
            let mut log = format!("=== deploy with SWAP_CRASH_AT={point}\n{}\n", describe(&out));
            if ended(&out) != Ended::Killed {
                if full() {
                    // Every point before this one crashed: that is how many there are.
                    tally.records = Some(n as usize - 1);
                }
                break;
            }
            let again = run_swap(&fx.app, &[], &fx.swept_args(&sc));
            log.push_str(&format!("=== the same deploy again\n{}\n", describe(&again)));
            let result = match ended(&again) {
                Ended::Exited(0) => check(&sc, &fx, begins(&before), Ended::Exited(0), &mut log),
                other => Err(format!("the next deploy ended {other:?}: {}", first_error(&again))),
            };
            let result = result.and_then(|serving| {
                let records = journal(&fx.app)?;
                let ends = records.iter().skip(before.len()).filter(|r| kind(r) == "end").count();
                let began = begins(&records) - begins(&before);
                // The crashed deploy (if it began) and the new one each end once.
                if ends != began {
                    return Err(format!("{began} deploys began since the setup but {ends} ended"));
                }
                Ok(serving)
            });
            let result = result.map_err(|why| {
                let records = journal(&fx.app).map(|r| timeline(&r)).unwrap_or_else(|e| e);
                let kept = keep(&fx, "next-deploy", &point, &log);
                format!("{why}\n      journal: {records}\n      kept in {}", kept.display())
            });
            tally.record(&point, t.elapsed(), result);
        }
    }
    tally.finish(None);
}

// ---------------------------------------------------------------------------
// Random kills
// ---------------------------------------------------------------------------

/// splitmix64: a tiny, good-enough seeded PRNG.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok())
}

/// Runs a re-deploy and SIGKILLs it after `delay` unless it finished first.
fn deploy_and_kill(fx: &Fixture, args: &[String], delay: Duration) -> Output {
    let mut child =
        swap_command(&fx.app, &[], args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn swap");
    let deadline = Instant::now() + delay;
    loop {
        // Not reaped until `wait`: the pid stays ours, so the kill cannot hit
        // another process.
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        if Instant::now() >= deadline {
            let pid = child.id() as libc::pid_t;
            // SAFETY: kill(2) on our own unreaped child; no memory is involved.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(2).min(deadline.saturating_duration_since(Instant::now())));
    }
    child.wait_with_output().expect("wait for swap")
}

#[test]
fn random_kills() {
    support::images();
    let seed = env_u64("SWAP_KILL_SEED")
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1));
    let kills = env_u64("SWAP_KILLS").unwrap_or(24);
    let max_ms = env_u64("SWAP_KILL_MAX_MS").unwrap_or(3000);
    eprintln!(
        "RANDOM KILLS: SWAP_KILL_SEED={seed} SWAP_KILLS={kills} SWAP_KILL_MAX_MS={max_ms} \
         (replay: SWAP_KILL_SEED={seed} SWAP_KILLS={kills} cargo nextest run --test it --no-capture crash::random_kills)"
    );
    let mut rng = SplitMix64(seed);
    let mut tally = Tally::new("random-kills");
    let mut sc = BRIDGE;
    sc.name = "kills";
    let mut fixture: Option<Fixture> = None;
    let mut serving = "v1".to_string();
    let (mut killed, mut finished) = (0, 0);
    for i in 0..kills {
        let delay = Duration::from_millis(rng.below(max_ms + 1));
        let t = Instant::now();
        let fx = match fixture.take() {
            Some(fx) => fx,
            // A fresh app serves v1, whatever the last point deployed.
            None => match setup(&Scenario { old: Some("v1"), ..sc }) {
                Ok(fx) => {
                    serving = "v1".into();
                    fx
                }
                Err(e) => {
                    tally.record(&format!("kill #{i}"), t.elapsed(), Err(e));
                    continue;
                }
            },
        };
        // Alternate: deploy whichever version is not serving.
        let target = if serving == "v1" { "v2" } else { "v1" };
        sc.old = Some(if target == "v1" { "v2" } else { "v1" });
        sc.new = if target == "v1" { "v1" } else { "v2" };
        let before = journal(&fx.app).unwrap_or_default();
        let args = strs(&["deploy", fx.app.name(), "--image", &image(target)]);
        let out = deploy_and_kill(&fx, &args, delay);
        let end = ended(&out);
        match end {
            Ended::Killed => killed += 1,
            Ended::Exited(_) => finished += 1,
        }
        let point =
            format!("kill #{i} after {} ms ({} -> {target}, {:?})", delay.as_millis(), sc.old.unwrap_or(""), end);
        let mut log = format!("=== swap {}\n{}\n", args.join(" "), describe(&out));
        let result = check(&sc, &fx, begins(&before), end, &mut log);
        match result {
            Ok(now) => {
                serving = now.clone();
                tally.record(&point, t.elapsed(), Ok(now));
                fixture = Some(fx);
            }
            Err(why) => {
                let records = journal(&fx.app).map(|r| timeline(&r)).unwrap_or_else(|e| e);
                let kept = keep(&fx, "kills", &format!("{i}"), &log);
                tally.record(
                    &point,
                    t.elapsed(),
                    Err(format!("{why}\n      journal: {records}\n      kept in {}", kept.display())),
                );
                // Start over from a fresh app.
                drop(fx);
            }
        }
    }
    eprintln!("RANDOM KILLS: seed {seed}: {killed} runs killed, {finished} finished before their kill");
    tally.finish(Some(format!("{kills} random kills (seed {seed})")));
}
