//! `swap deploy` against the real Docker engine: first deploys and re-deploys
//! on bridge and overlay networks, every way a candidate can fail (each rolled
//! back with the old version still answering), bad input refused before
//! anything changes, locking, dry runs, JSON output, secrets, builds, and
//! recovery after a crash.
//!
//! Every test owns one app (see `support::TestApp`), whose containers are
//! removed when the test ends, and picks free host ports, so the tests run in
//! parallel under nextest.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::{assert_exit, code, id_of, journal, kind, publish, stderr, stdout};
use crate::support::{describe, image, TestApp};
use serde_json::Value;

/// How long a demo app may take to answer after a deploy returned.
const ANSWER: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Records of one kind.
fn of_kind<'a>(records: &'a [Value], k: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| kind(r) == k).collect()
}

/// The deploy id (journal group) of the last `begin` record.
fn last_deploy_id(app: &TestApp) -> String {
    let records = journal(app);
    let begin = of_kind(&records, "begin").pop().expect("the journal has a begin record");
    begin["group"].as_str().expect("begin has a group").to_string()
}

/// Asserts the journal's last record is an `end` with `outcome`.
#[track_caller]
fn assert_journal_ends(app: &TestApp, outcome: &str) {
    let records = journal(app);
    let last = records.last().expect("journal is empty");
    assert_eq!(kind(last), "end", "last journal record is not an end: {last}");
    assert_eq!(last["data"]["outcome"], outcome, "last journal record: {last}");
}

/// Deploys `image` as a first deploy on `net`, publishing `port`, and checks
/// that it answers `version`.
fn first_deploy(app: &TestApp, tag: &str, port: u16, net: &str) -> Output {
    let out = app.swap(&["deploy", app.name(), "--image", &image(tag), "--publish", &publish(port), "--network", net]);
    assert_exit(&out, 0);
    let want = if tag.ends_with("v2") { "v2\n" } else { "v1\n" };
    assert_eq!(support::http_get(port, ANSWER).as_deref(), Some(want), "{}", support::logs(app.name()));
    out
}

/// The outage swap itself reports for the app's last deploy (`history --json`).
fn own_outage_ms(app: &TestApp) -> String {
    let out = app.swap(&["--json", "history", app.name()]);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    doc["deploys"][0]["outage_ms"].to_string()
}

/// Asserts the outage clients saw lies within the window swap journaled
/// (the old container's stop to the candidate's start), give or take the
/// app's own start-up and the prober's granularity: the app is never down
/// outside the steps that must take it down. How long that window is depends on Docker and the machine; the
/// outage benchmark (`cargo bench --bench outage`) measures it.
#[track_caller]
fn assert_outage_is_swaps_own(app: &TestApp, probe: &support::ProbeReport) {
    let own = own_outage_ms(app);
    let own_ms: u64 = own.parse().unwrap_or_else(|_| panic!("no outage_ms in `swap history`: {own}"));
    assert!(
        probe.longest_gap <= Duration::from_millis(own_ms + 2000),
        "clients saw an outage of {:?}, longer than swap's own {own_ms} ms: {probe:?}",
        probe.longest_gap
    );
}

/// Every container that belongs to the app: named `<app>`/`<app>--swap-*`
/// or labelled `swap.app=<app>`; sorted ids.
fn all_ids_of(app: &str) -> Vec<String> {
    let mut ids: Vec<String> = support::containers_of(app).into_iter().map(|c| c.id).collect();
    let label = format!("label=swap.app={app}");
    let out = support::docker_ok(&["ps", "-aq", "--no-trunc", "--filter", &label]);
    ids.extend(out.lines().map(str::to_string));
    ids.sort();
    ids.dedup();
    ids
}

/// Asserts that `app` is served by v1 on `port` and settled on it.
#[track_caller]
fn assert_serving(app: &str, port: u16, tag: &str) {
    let want = format!("{}\n", if tag.ends_with("v2") { "v2" } else { "v1" });
    assert_eq!(support::http_get(port, ANSWER).as_deref(), Some(want.as_str()), "{}", support::logs(app));
    support::assert_settled(app, &image(tag));
}

/// The network aliases of a container on `net`, minus its own short id
/// (which Docker adds by itself on user-defined networks).
fn aliases(name: &str, net: &str) -> BTreeSet<String> {
    let c = support::inspect(name).unwrap_or_else(|| panic!("no container {name}"));
    let short = &c["Id"].as_str().unwrap()[..12];
    c["NetworkSettings"]["Networks"][net]["Aliases"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).filter(|a| *a != short).map(str::to_string).collect())
        .unwrap_or_default()
}

fn env_of(name: &str) -> Vec<String> {
    let c = support::inspect(name).unwrap_or_else(|| panic!("no container {name}"));
    c["Config"]["Env"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn restart_policy(name: &str) -> String {
    let c = support::inspect(name).unwrap_or_else(|| panic!("no container {name}"));
    c["HostConfig"]["RestartPolicy"]["Name"].as_str().unwrap_or_default().to_string()
}

/// A swap process started in the background, with its output captured.
fn spawn_swap(app: &TestApp, args: &[&str]) -> Child {
    app.spawn(&[], args)
}

/// Waits for a child, returning its output and when it ended.
fn finish(child: Child) -> (Output, Instant) {
    let out = child.wait_with_output().expect("wait for swap");
    (out, Instant::now())
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("read_dir {}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Every directory under `dir`, recursively, excluding `dir`.
fn dirs_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.push(p.clone());
                stack.push(p);
            }
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display())).permissions().mode() & 0o777
}

/// A listener on 0.0.0.0:`port` held by the test, standing in for an
/// unrelated process that owns the host port.
fn occupy(port: u16) -> TcpListener {
    TcpListener::bind(("0.0.0.0", port)).unwrap_or_else(|e| panic!("bind 0.0.0.0:{port}: {e}"))
}

fn port_taken_message(text: &str) -> bool {
    text.contains("port is already allocated") || text.contains("address already in use")
}

// ---------------------------------------------------------------------------
// 1. First deploy
// ---------------------------------------------------------------------------

#[test]
fn first_deploy_on_bridge_serves_and_is_journaled() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("first-bridge");
    let port = support::free_port();
    first_deploy(&app, "v1", port, net);
    assert_serving(app.name(), port, "v1");
    assert_eq!(support::networks_of(app.name()), vec![net.to_string()]);

    let deploy = last_deploy_id(&app);
    let c = support::containers_of(app.name()).remove(0);
    assert_eq!(c.labels.get("swap.app").map(String::as_str), Some(app.name()), "labels: {:?}", c.labels);
    assert_eq!(c.labels.get("swap.deploy"), Some(&deploy), "labels: {:?}", c.labels);

    let records = journal(&app);
    assert_eq!(kind(&records[0]), "header", "first record: {}", records[0]);
    assert_eq!(of_kind(&records, "begin").len(), 1);
    assert_eq!(of_kind(&records, "commit").len(), 1);
    assert_journal_ends(&app, "deployed");
    assert!(records.iter().skip(1).all(|r| r["group"] == deploy.as_str()), "records of another deploy: {records:?}");
}

// ---------------------------------------------------------------------------
// 2, 3. Re-deploys with a prober
// ---------------------------------------------------------------------------

/// Re-deploys v1 to v2 while a prober polls `port`: exit 0, v2 serving,
/// clients saw v1 then v2 and never v1 again, and no outage beyond swap's
/// own journaled window. Prints what the prober saw.
fn redeploy_v2_probed(app: &TestApp, port: u16, what: &str) {
    let prober = support::Prober::start(port);
    std::thread::sleep(Duration::from_millis(100));
    let out = app.swap(&["deploy", app.name(), "--image", &image("v2")]);
    std::thread::sleep(Duration::from_millis(300));
    let probe = prober.stop();
    assert_exit(&out, 0);
    eprintln!(
        "OUTAGE {what} re-deploy: longest gap {:?} ({} ok, {} failed, bodies {:?}, flip-backs {}); swap's own estimate {} ms",
        probe.longest_gap, probe.successes, probe.failures, probe.bodies, probe.flip_backs, own_outage_ms(app)
    );
    assert_serving(app.name(), port, "v2");
    assert_eq!(probe.flip_backs, 0, "v1 answered again after v2: {probe:?}");
    assert_eq!(probe.bodies, vec!["v1\n".to_string(), "v2\n".to_string()], "{probe:?}");
    assert_outage_is_swaps_own(app, &probe);
}

#[test]
fn redeploy_on_bridge_swaps_v1_for_v2_without_flip_back() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("redeploy-bridge");
    let port = support::free_port();
    first_deploy(&app, "v1", port, net);
    let old_id = id_of(app.name());

    redeploy_v2_probed(&app, port, "bridge");
    assert!(support::inspect(&old_id).is_none(), "the old container was not removed");
    assert_eq!(support::networks_of(app.name()), vec![net.to_string()]);
    assert_journal_ends(&app, "deployed");
}

#[test]
fn redeploy_on_overlay_keeps_aliases_and_env_but_not_image_defaults() {
    support::images();
    let net = support::overlay();
    let app = TestApp::new("redeploy-overlay");
    let port = support::free_port();
    let alias = format!("alias-{}", app.name());
    let p = publish(port);
    support::run_container(
        app.name(),
        &image("v1"),
        &["-p", &p, "--network", net, "--network-alias", &alias, "-e", "DB_URL=postgres://db.example/app"],
    );
    assert_eq!(support::http_get(port, ANSWER).as_deref(), Some("v1\n"), "{}", support::logs(app.name()));
    let old_aliases = aliases(app.name(), net);
    assert!(old_aliases.contains(&alias), "{old_aliases:?}");
    let old_id = id_of(app.name());

    // "v2" also proves DEMO_VERSION=v1 of the old image was not frozen in.
    redeploy_v2_probed(&app, port, "overlay");

    assert_eq!(support::networks_of(app.name()), vec![net.to_string()]);
    assert_eq!(aliases(app.name(), net), old_aliases, "network aliases not cloned");
    let new = support::inspect(app.name()).unwrap();
    let new_aliases: Vec<&str> = new["NetworkSettings"]["Networks"][net]["Aliases"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        !new_aliases.contains(&&old_id[..12]),
        "the new container carries the old container's short id {} as an alias: {new_aliases:?}",
        &old_id[..12]
    );
    let env = env_of(app.name());
    assert!(env.contains(&"DB_URL=postgres://db.example/app".to_string()), "env not cloned: {env:?}");
    assert!(env.contains(&"DEMO_VERSION=v2".to_string()), "image default missing: {env:?}");
    assert!(!env.contains(&"DEMO_VERSION=v1".to_string()), "old image default frozen in: {env:?}");
    assert!(support::inspect(&old_id).is_none(), "the old container was not removed");
    assert_journal_ends(&app, "deployed");
}

// ---------------------------------------------------------------------------
// 4, 5, 6. Candidates that fail the health gate
// ---------------------------------------------------------------------------

#[test]
fn candidate_that_exits_at_once_is_rolled_back() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("cand-crash");
    let port = support::free_port();
    first_deploy(&app, "v1", port, net);
    let old_id = id_of(app.name());

    let out = app.swap(&["deploy", app.name(), "--image", &image("crash")]);
    assert_exit(&out, 1);
    assert_serving(app.name(), port, "v1");
    assert_eq!(id_of(app.name()), old_id, "a different container serves after the rollback");
    assert_eq!(all_ids_of(app.name()), vec![old_id.clone()], "leftover containers");
    assert!(stderr(&out).contains("exiting with 3"), "the candidate's log tail is not shown:\n{}", describe(&out));

    let records = journal(&app);
    let health = of_kind(&records, "health");
    let failed = health.last().expect("a health record");
    assert_eq!(failed["data"]["passed"], false, "{failed}");
    let logs = failed["data"]["logs"].as_array().cloned().unwrap_or_default();
    assert!(logs.iter().any(|l| l.as_str().is_some_and(|l| l.contains("exiting with 3"))), "logs: {logs:?}");
    assert_journal_ends(&app, "rolled_back");
}

#[test]
fn candidate_that_never_becomes_healthy_is_rolled_back() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("cand-unhealthy");
    let port = support::free_port();
    first_deploy(&app, "v1", port, net);
    let old_id = id_of(app.name());

    let t = Instant::now();
    let out = app.swap(&["deploy", app.name(), "--image", &image("unhealthy"), "--health-timeout", "10"]);
    assert_exit(&out, 1);
    eprintln!("unhealthy candidate rejected after {:?}", t.elapsed());
    assert_serving(app.name(), port, "v1");
    assert_eq!(id_of(app.name()), old_id);
    assert_eq!(all_ids_of(app.name()), vec![old_id]);
    let records = journal(&app);
    let failed = of_kind(&records, "health").pop().expect("a health record").clone();
    assert_eq!(failed["data"]["passed"], false, "{failed}");
    assert!(failed["data"]["outcome"].as_str().unwrap_or_default().contains("unhealthy"), "{failed}");
    assert_journal_ends(&app, "rolled_back");
}

#[test]
fn candidate_still_starting_at_the_health_timeout_is_rolled_back() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("cand-timeout");
    let port = support::free_port();
    first_deploy(&app, "v1", port, net);
    let old_id = id_of(app.name());

    // The app sleeps 30 s before listening; a long start period keeps its
    // failing probes from counting, so its health stays `starting`.
    let spec = app.state_dir.join("slow.json");
    std::fs::write(
        &spec,
        r#"{"healthcheck": {"test": ["CMD", "/swap-demo", "check"], "interval_ms": 500, "timeout_ms": 1000,
            "retries": 3, "start_period_ms": 120000}}"#,
    )
    .unwrap();
    let t = Instant::now();
    let out = app.swap(&[
        "deploy",
        app.name(),
        "--image",
        &image("v2"),
        "--env",
        "DEMO_STARTUP_MS=30000",
        "--spec",
        spec.to_str().unwrap(),
        "--health-timeout",
        "3",
        "--stop-timeout",
        "1",
    ]);
    let took = t.elapsed();
    assert_exit(&out, 1);
    eprintln!("starting candidate rejected after {took:?}");
    assert!(took < Duration::from_secs(20), "the health timeout of 3 s was not honoured: {took:?}");
    assert_serving(app.name(), port, "v1");
    assert_eq!(id_of(app.name()), old_id);
    assert_eq!(all_ids_of(app.name()), vec![old_id]);
    let records = journal(&app);
    let failed = of_kind(&records, "health").pop().expect("a health record").clone();
    assert_eq!(failed["data"]["passed"], false, "{failed}");
    let outcome = failed["data"]["outcome"].as_str().unwrap_or_default();
    assert!(outcome.contains("not healthy after 3 s") && outcome.contains("starting"), "{failed}");
    assert_journal_ends(&app, "rolled_back");
}

// ---------------------------------------------------------------------------
// 7. Host port taken by an unrelated process
// ---------------------------------------------------------------------------

#[test]
fn first_deploy_on_a_taken_port_fails_and_leaves_nothing() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("port-taken-first");
    let port = support::free_port();
    let _holder = occupy(port);
    let out = app.swap(&["deploy", app.name(), "--image", &image("v1"), "--publish", &publish(port), "--network", net]);
    assert_exit(&out, 1);
    assert!(port_taken_message(&stderr(&out)), "Docker's message is not shown:\n{}", describe(&out));
    assert!(all_ids_of(app.name()).is_empty(), "containers left: {:?}", support::containers_of(app.name()));
    let records = journal(&app);
    let failed = of_kind(&records, "failed");
    assert!(
        failed.iter().any(|r| port_taken_message(r["data"]["error"].as_str().unwrap_or_default())),
        "no failed step with Docker's message: {records:?}"
    );
    assert_journal_ends(&app, "rolled_back");
}

#[test]
fn redeploy_publishing_a_taken_extra_port_is_rolled_back() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("port-taken-extra");
    let port = support::free_port();
    first_deploy(&app, "v1", port, net);
    let old_id = id_of(app.name());
    let extra = support::free_port();
    let _holder = occupy(extra);

    let out = app.swap(&["deploy", app.name(), "--image", &image("v2"), "--publish", &format!("{extra}:9090")]);
    assert_exit(&out, 1);
    assert!(port_taken_message(&stderr(&out)), "Docker's message is not shown:\n{}", describe(&out));
    assert_serving(app.name(), port, "v1");
    assert_eq!(id_of(app.name()), old_id);
    assert_eq!(all_ids_of(app.name()), vec![old_id]);
    assert_journal_ends(&app, "rolled_back");
}

// ---------------------------------------------------------------------------
// 8, 9. Bad input: exit 2, nothing changed
// ---------------------------------------------------------------------------

#[test]
fn image_that_does_not_exist_is_refused_and_nothing_changes() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("no-image");
    let port = support::free_port();
    first_deploy(&app, "v1", port, net);
    let before = all_ids_of(app.name());
    let begins = of_kind(&journal(&app), "begin").len();

    let out = app.swap(&["deploy", app.name(), "--image", "swap-demo:nope", "--pull", "never"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("swap-demo:nope"), "{}", describe(&out));
    assert_serving(app.name(), port, "v1");
    assert_eq!(all_ids_of(app.name()), before);
    assert_eq!(of_kind(&journal(&app), "begin").len(), begins, "a deploy began for a missing image");
    assert_journal_ends(&app, "deployed");
}

#[test]
fn bad_input_is_refused_with_exit_2_before_anything_changes() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("bad-input");
    let port = support::free_port();
    first_deploy(&app, "v1", port, net);
    let before = all_ids_of(app.name());
    let journal_before = std::fs::read(app.journal_path()).unwrap();
    let v1 = image("v1");
    let name = app.name();

    let spec = app.state_dir.join("unknown-field.json");
    std::fs::write(&spec, r#"{"image": "swap-demo:v1", "envirnoment": {"A": "b"}}"#).unwrap();
    let spec = spec.to_str().unwrap().to_string();
    let no_dockerfile = tempfile::tempdir().unwrap();
    std::fs::write(no_dockerfile.path().join("README"), "no Dockerfile here").unwrap();
    let no_dockerfile = no_dockerfile.path().to_str().unwrap().to_string();
    let missing_net = format!("swap-no-such-net-{}", std::process::id());

    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("missing network", vec!["deploy", name, "--image", &v1, "--network", &missing_net], missing_net.as_str()),
        ("app name -x", vec!["deploy", "--image", &v1, "--", "-x"], "invalid app name"),
        ("app name a", vec!["deploy", "a", "--image", &v1], "invalid app name"),
        ("app name with --swap-", vec!["deploy", "web--swap-old", "--image", &v1], "--swap-"),
        ("publish abc", vec!["deploy", name, "--image", &v1, "--publish", "abc"], "--publish"),
        ("publish 99999:80", vec!["deploy", name, "--image", &v1, "--publish", "99999:80"], "--publish"),
        ("env without =", vec!["deploy", name, "--image", &v1, "--env", "NOEQUALS"], "--env"),
        ("spec unknown field", vec!["deploy", name, "--spec", &spec], "envirnoment"),
        ("build without Dockerfile", vec!["deploy", name, "--build", &no_dockerfile], "Dockerfile"),
        ("image and build", vec!["deploy", name, "--image", &v1, "--build", &no_dockerfile], "--build"),
        ("no image at all", vec!["deploy", name], "--image"),
        ("health timeout 0", vec!["deploy", name, "--image", &v1, "--health-timeout", "0"], "health-timeout"),
    ];
    let mut failures = vec![];
    for (what, args, mention) in &cases {
        let out = app.swap(args);
        if code(&out) != Some(2) || !stderr(&out).contains(mention) {
            failures.push(format!("{what}: expected exit 2 mentioning {mention:?}:\n{}", describe(&out)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_serving(app.name(), port, "v1");
    assert_eq!(all_ids_of(app.name()), before, "containers changed");
    assert_eq!(std::fs::read(app.journal_path()).unwrap(), journal_before, "the journal changed");
}

#[test]
fn malformed_env_does_not_echo_its_value() {
    support::images();
    let app = TestApp::new("env-echo");
    // A user who forgot `KEY=` passes the secret itself.
    let secret = "SECRETVALUEXYZ";
    let out = app.swap(&["deploy", app.name(), "--image", &image("v1"), "--env", secret]);
    assert_exit(&out, 2);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains(secret), "the value is echoed:\n{}", describe(&out));
    // Not even most of it: any 6 consecutive characters of it count as a leak.
    let chars: Vec<char> = secret.chars().collect();
    for w in chars.windows(6) {
        let piece: String = w.iter().collect();
        assert!(!text.contains(&piece), "part of the value ({piece:?}) is echoed:\n{}", describe(&out));
    }
    // A short value must not be shown whole either.
    let short = "hunter2pw";
    let out = app.swap(&["deploy", app.name(), "--image", &image("v1"), "--env", short]);
    assert_exit(&out, 2);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!text.contains(short), "the value is echoed:\n{}", describe(&out));
    assert!(all_ids_of(app.name()).is_empty());
}

// ---------------------------------------------------------------------------
// 10, 11. The old container's state: stopped, restart policy
// ---------------------------------------------------------------------------

#[test]
fn stopped_old_container_is_started_then_replaced() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("old-stopped");
    let port = support::free_port();
    first_deploy(&app, "v1", port, net);
    support::docker_ok(&["stop", "-t", "1", app.name()]);
    assert_eq!(support::http_get(port, Duration::from_millis(300)), None, "still answering after docker stop");

    let out = app.swap(&["deploy", app.name(), "--image", &image("v2")]);
    assert_exit(&out, 0);
    assert_serving(app.name(), port, "v2");
    let records = journal(&app);
    let deploy = last_deploy_id(&app);
    let started = records
        .iter()
        .any(|r| r["group"] == deploy.as_str() && kind(r) == "done" && r["data"]["step"]["step"] == "start_old");
    assert!(started, "no start_old step done in deploy {deploy}");
    assert_journal_ends(&app, "deployed");
}

#[test]
fn restart_policy_is_cloned_and_restored_on_rollback() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("restart-always");
    let port = support::free_port();
    let p = publish(port);
    support::run_container(app.name(), &image("v1"), &["-p", &p, "--network", net, "--restart", "always"]);
    assert_eq!(support::http_get(port, ANSWER).as_deref(), Some("v1\n"));

    // A rollback gives the old container its policy back.
    let out = app.swap(&["deploy", app.name(), "--image", &image("crash")]);
    assert_exit(&out, 1);
    assert_serving(app.name(), port, "v1");
    assert_eq!(restart_policy(app.name()), "always", "the rolled-back old container lost its restart policy");

    // A successful deploy clones it.
    let out = app.swap(&["deploy", app.name(), "--image", &image("v2")]);
    assert_exit(&out, 0);
    assert_serving(app.name(), port, "v2");
    assert_eq!(restart_policy(app.name()), "always", "the new container did not inherit the restart policy");
}

// ---------------------------------------------------------------------------
// 12. Concurrent deploys
// ---------------------------------------------------------------------------

#[test]
fn concurrent_deploys_one_proceeds_the_other_exits_3_or_waits() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("concurrent");
    let port = support::free_port();
    first_deploy(&app, "v1", port, net);
    let v2 = image("v2");
    let args = ["deploy", app.name(), "--image", v2.as_str()];

    let start = Instant::now();
    let a = spawn_swap(&app, &args);
    let b = spawn_swap(&app, &args);
    let (pid_a, pid_b) = (a.id(), b.id());
    let ta = std::thread::spawn(move || finish(a));
    let tb = std::thread::spawn(move || finish(b));
    let (out_a, end_a) = ta.join().unwrap();
    let (out_b, end_b) = tb.join().unwrap();
    let codes = (code(&out_a), code(&out_b));
    let (winner, loser, winner_pid, loser_end, winner_end) = match codes {
        (Some(0), Some(3)) => (&out_a, &out_b, pid_a, end_b, end_a),
        (Some(3), Some(0)) => (&out_b, &out_a, pid_b, end_a, end_b),
        _ => panic!("expected one exit 0 and one exit 3:\nA:\n{}\nB:\n{}", describe(&out_a), describe(&out_b)),
    };
    assert!(
        stderr(loser).contains(&winner_pid.to_string()),
        "the loser does not name the holder pid {winner_pid}:\n{}",
        describe(loser)
    );
    assert!(loser_end <= winner_end, "the loser did not exit at once ({:?})", loser_end - start);
    let _ = winner;
    assert_serving(app.name(), port, "v2");

    // With --lock-wait the second waits for the first and then deploys.
    let first = spawn_swap(&app, &["deploy", app.name(), "--image", &image("v1")]);
    let pid_first = first.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    let holds = || {
        journal(&app)
            .iter()
            .any(|r| kind(r) == "begin" && r["data"]["run"]["pid"].as_u64() == Some(u64::from(pid_first)))
    };
    while !holds() {
        assert!(Instant::now() < deadline, "the first deploy never began");
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = spawn_swap(&app, &["deploy", app.name(), "--image", &v2, "--lock-wait", "60"]);
    let (out_first, _) = finish(first);
    let (out_second, _) = finish(second);
    assert_exit(&out_first, 0);
    assert_exit(&out_second, 0);
    assert_serving(app.name(), port, "v2");
    // Not interleaved: each begin is followed by its own end before the next begin.
    let records = journal(&app);
    let mut open: Option<String> = None;
    for r in &records {
        match kind(r) {
            "begin" => {
                assert!(open.is_none(), "deploy began while {open:?} was running: {r}");
                open = Some(r["group"].as_str().unwrap().to_string());
            }
            "end" => open = None,
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// 13, 14. Dry run and JSON output
// ---------------------------------------------------------------------------

#[test]
fn dry_run_prints_a_plan_and_changes_nothing() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("dry-run");
    let port = support::free_port();
    first_deploy(&app, "v1", port, net);
    let before = all_ids_of(app.name());
    let journal_before = std::fs::read(app.journal_path()).unwrap();

    let out = app.swap(&["deploy", app.name(), "--image", &image("v2"), "--dry-run"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("plan"), "no plan shown:\n{}", describe(&out));
    assert!(stderr(&out).contains("stop old"), "the plan does not list the steps:\n{}", describe(&out));

    let out = app.swap(&["--json", "deploy", app.name(), "--image", &image("v2"), "--dry-run"]);
    assert_exit(&out, 0);
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}")))
        .collect();
    let plan = events.iter().find(|e| e["event"] == "plan").unwrap_or_else(|| panic!("no plan event: {events:?}"));
    assert_eq!(plan["app"], app.name());
    assert!(plan["steps"].as_array().is_some_and(|s| !s.is_empty()), "{plan}");
    assert!(events.iter().all(|e| e["event"] != "step"), "a dry run ran steps: {events:?}");

    assert_eq!(all_ids_of(app.name()), before, "a dry run changed containers");
    assert_eq!(std::fs::read(app.journal_path()).unwrap(), journal_before, "a dry run wrote to the journal");
    assert_serving(app.name(), port, "v1");
}

#[test]
fn json_deploy_prints_only_json_events() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("json");
    let port = support::free_port();
    let out = app.swap(&[
        "--json",
        "deploy",
        app.name(),
        "--image",
        &image("v1"),
        "--publish",
        &publish(port),
        "--network",
        net,
    ]);
    assert_exit(&out, 0);
    let mut events = vec![];
    for line in stdout(&out).lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
        assert!(v["event"].is_string(), "no event field: {line}");
        events.push(v);
    }
    assert!(events.iter().filter(|e| e["event"] == "step").count() >= 3, "too few step events: {events:?}");
    let last = events.last().expect("no events");
    assert_eq!(last["event"], "result", "{last}");
    assert_eq!(last["exit_code"], 0, "{last}");
    assert_eq!(events.iter().filter(|e| e["event"] == "result").count(), 1, "{events:?}");
    assert_serving(app.name(), port, "v1");
}

// ---------------------------------------------------------------------------
// 15. Secrets and file modes
// ---------------------------------------------------------------------------

#[test]
fn secrets_never_reach_state_files_or_output_and_modes_are_private() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("secrets");
    let port = support::free_port();
    let secret = "s3cr3t-VALUE-123";
    let env = format!("API_TOKEN={secret}");
    let mut outputs = vec![];
    let out = app.swap(&[
        "--json",
        "deploy",
        app.name(),
        "--image",
        &image("v1"),
        "--publish",
        &publish(port),
        "--network",
        net,
        "--env",
        &env,
    ]);
    assert_exit(&out, 0);
    outputs.push(out);
    assert!(env_of(app.name()).contains(&env), "the variable did not reach the container");
    // A re-deploy clones the secret; a failed one prints logs and rolls back.
    let out = app.swap(&["--json", "-v", "deploy", app.name(), "--image", &image("v2")]);
    assert_exit(&out, 0);
    outputs.push(out);
    assert!(env_of(app.name()).contains(&env), "the variable was not cloned");
    let out = app.swap(&["--json", "-v", "deploy", app.name(), "--image", &image("crash"), "--env", "OTHER=x"]);
    assert_exit(&out, 1);
    outputs.push(out);
    let out = app.swap(&["--json", "deploy", app.name(), "--image", &image("v1"), "--dry-run"]);
    assert_exit(&out, 0);
    outputs.push(out);
    for q in [&["status", app.name()][..], &["history", app.name()], &["journal", "show", app.name()]] {
        let mut args = vec!["--json"];
        args.extend_from_slice(q);
        outputs.push(app.swap(&args));
        outputs.push(app.swap(q));
    }
    for out in &outputs {
        let text = format!("{}{}", stdout(out), stderr(out));
        assert!(!text.contains(secret), "the secret is in swap's output:\n{}", describe(out));
    }
    let files = files_under(&app.state_dir);
    assert!(files.iter().any(|f| f.ends_with("journal.jsonl")), "{files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "the secret is in {}:\n{}",
            f.display(),
            String::from_utf8_lossy(&bytes)
        );
        if f.starts_with(app.state_dir.join(app.name())) {
            assert_eq!(mode(f), 0o600, "{} has mode {:o}", f.display(), mode(f));
        }
    }
    let lock = journal::lock_path(&app.journal_path());
    assert!(lock.exists(), "no lock file at {}", lock.display());
    assert_eq!(mode(&lock), 0o600, "lock file mode {:o}", mode(&lock));
    assert_eq!(mode(&app.journal_path()), 0o600);
    for d in dirs_under(&app.state_dir) {
        assert_eq!(mode(&d), 0o700, "{} has mode {:o}", d.display(), mode(&d));
    }
    // The keys may be journaled, never the values.
    let records = journal(&app);
    let begin = of_kind(&records, "begin")[0];
    assert!(begin["data"]["env_keys"].as_array().unwrap().iter().any(|k| k == "API_TOKEN"), "{begin}");
}

// ---------------------------------------------------------------------------
// 16. --build
// ---------------------------------------------------------------------------

/// Removes the app's containers, then the image tag, at the end of a test.
struct Untag<'a>(&'a TestApp, String);

impl Drop for Untag<'_> {
    fn drop(&mut self) {
        self.0.remove_containers();
        let _ = support::docker_output(&["image", "rm", &self.1]);
    }
}

#[test]
fn build_then_deploy() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("build");
    let port = support::free_port();
    let tag = format!("swap-demo:built-{}", std::process::id());
    let _untag = Untag(&app, tag.clone());
    let context = support::repo_root().join("demo/image/v2");
    let out = app.swap(&[
        "deploy",
        app.name(),
        "--build",
        context.to_str().unwrap(),
        "--tag",
        &tag,
        "--publish",
        &publish(port),
        "--network",
        net,
    ]);
    assert_exit(&out, 0);
    assert_eq!(support::http_get(port, ANSWER).as_deref(), Some("v2\n"), "{}", support::logs(app.name()));
    support::assert_settled(app.name(), &tag);
    let built = support::image_id(&tag).expect("the tag was not created");
    let records = journal(&app);
    let done = records
        .iter()
        .find(|r| kind(r) == "done" && r["data"]["step"]["step"] == "build")
        .unwrap_or_else(|| panic!("no build step done: {records:?}"));
    let output = done["data"]["output"].as_str().unwrap_or_default();
    assert!(output.starts_with("sha256:"), "build output is not an image id: {done}");
    assert_eq!(output, built, "the journaled image id is not the tag's");
    assert_journal_ends(&app, "deployed");

    // Without --tag the image is named after the app and the deploy, and the
    // container runs that name, not a bare id.
    let out = app.swap(&["deploy", app.name(), "--build", context.to_str().unwrap()]);
    assert_exit(&out, 0);
    let deploy = last_deploy_id(&app);
    let named = format!("swap/{}:{deploy}", app.name());
    let _untag_too = Untag(&app, named.clone());
    let runs = support::inspect(app.name()).unwrap()["Config"]["Image"].clone();
    assert_eq!(runs, named.as_str(), "an untagged build runs as {runs}");
    support::assert_settled(app.name(), &named);
}

// ---------------------------------------------------------------------------
// 17. Crash and recovery
// ---------------------------------------------------------------------------

#[test]
fn recover_after_a_crashed_redeploy_rolls_back_and_is_idempotent() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("crash-recover");
    let port = support::free_port();
    let out = app.swap(&[
        "deploy",
        app.name(),
        "--image",
        &image("v1"),
        "--publish",
        &publish(port),
        "--network",
        net,
        "--restart",
        "always",
    ]);
    assert_exit(&out, 0);
    assert_serving(app.name(), port, "v1");
    let old_id = id_of(app.name());
    assert_eq!(restart_policy(app.name()), "always");

    // Record 9 of a re-deploy is `done rename_old`: the old container is
    // stopped and parked, the candidate not started. The app is down.
    let out = app.swap_env(&[("SWAP_CRASH_AT", "after:9")], &["deploy", app.name(), "--image", &image("v2")]);
    assert_eq!(code(&out), None, "swap did not kill itself:\n{}", describe(&out));
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(9), "{}", describe(&out));
    }
    assert!(support::settled(app.name(), &[&image("v1"), &image("v2")]).is_err(), "settled right after a crash?");
    let parked = support::inspect(&old_id).expect("the old container is gone after the crash");
    assert_eq!(parked["Name"], format!("/{}--swap-old", app.name()), "old container not parked");
    assert_eq!(restart_policy(&old_id), "no", "the parked old container keeps its restart policy");
    let status = app.swap(&["--json", "status", app.name()]);
    assert_exit(&status, 0);
    let doc: Value = serde_json::from_str(stdout(&status).lines().next().unwrap_or_default()).expect("status JSON");
    assert!(!doc["apps"][0]["unfinished"].is_null(), "status does not show the unfinished deploy: {doc}");

    let out = app.swap(&["recover", app.name()]);
    assert_exit(&out, 0);
    assert_serving(app.name(), port, "v1");
    assert_eq!(id_of(app.name()), old_id);
    assert_eq!(all_ids_of(app.name()), vec![old_id.clone()]);
    assert_journal_ends(&app, "rolled_back");
    assert_eq!(restart_policy(app.name()), "always", "the parked restart policy was not restored");

    // A second recovery changes nothing.
    let size = std::fs::metadata(app.journal_path()).unwrap().len();
    let out = app.swap(&["recover", app.name()]);
    assert_exit(&out, 0);
    assert_eq!(id_of(app.name()), old_id);
    assert_eq!(std::fs::metadata(app.journal_path()).unwrap().len(), size, "the second recovery wrote records");
    assert_serving(app.name(), port, "v1");

    // A deploy after a crashed deploy recovers it first, then deploys.
    let out = app.swap_env(&[("SWAP_CRASH_AT", "after:9")], &["deploy", app.name(), "--image", &image("v2")]);
    assert_eq!(code(&out), None, "swap did not kill itself:\n{}", describe(&out));
    let out = app.swap(&["deploy", app.name(), "--image", &image("v2")]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("recovering it first"), "it does not say it recovers first:\n{}", describe(&out));
    assert_serving(app.name(), port, "v2");
    assert_journal_ends(&app, "deployed");
    let records = journal(&app);
    let ends: Vec<&str> = of_kind(&records, "end").iter().map(|r| r["data"]["outcome"].as_str().unwrap()).collect();
    assert_eq!(ends, ["deployed", "rolled_back", "rolled_back", "deployed"], "{records:?}");
}

// ---------------------------------------------------------------------------
// Queries after a deploy
// ---------------------------------------------------------------------------

#[test]
fn queries_after_a_deploy_name_it() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("queries");
    let port = support::free_port();
    first_deploy(&app, "v1", port, net);
    let deploy = last_deploy_id(&app);
    let queries: [&[&str]; 4] = [
        &["status", app.name()],
        &["history", app.name()],
        &["journal", "show", app.name()],
        &["journal", "verify", app.name()],
    ];
    for q in queries {
        let out = app.swap(q);
        assert_exit(&out, 0);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        // `verify` reports the journal as a whole; the others name the deploy.
        if q[0] != "journal" || q[1] != "verify" {
            assert!(text.contains(&deploy), "`swap {}` does not mention {deploy}:\n{}", q.join(" "), describe(&out));
        } else {
            assert!(text.contains("sound"), "{}", describe(&out));
        }

        let mut args = vec!["--json"];
        args.extend_from_slice(q);
        let out = app.swap(&args);
        assert_exit(&out, 0);
        let docs: Vec<Value> = stdout(&out)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("`swap {}` printed non-JSON ({e}): {l}", args.join(" ")))
            })
            .collect();
        assert!(!docs.is_empty(), "`swap {}` printed nothing", args.join(" "));
        if q[1] != "verify" {
            assert!(stdout(&out).contains(&deploy), "`swap {}` does not mention {deploy}", args.join(" "));
        } else {
            assert_eq!(docs[0]["sound"], true, "{docs:?}");
        }
    }
}

/// The contract: `--json` puts "one document for queries" on stdout.
#[test]
fn json_queries_print_exactly_one_document() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("json-queries");
    let port = support::free_port();
    first_deploy(&app, "v1", port, net);
    let mut problems = vec![];
    for q in [&["status", app.name()][..], &["history", app.name()], &["journal", "verify", app.name()]] {
        let mut args = vec!["--json"];
        args.extend_from_slice(q);
        let out = app.swap(&args);
        assert_exit(&out, 0);
        let text = stdout(&out);
        if serde_json::from_str::<Value>(text.trim()).is_err() {
            problems.push(format!("`swap {}` does not print one JSON document:\n{}", args.join(" "), describe(&out)));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
