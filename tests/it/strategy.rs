//! `--strategy start-first` on the real engine: what it refuses (before any
//! change), what it keeps (the old container untouched until the new
//! version answers, a bystander never touched, the strategy remembered by
//! the app's label), and what a failing candidate leaves (the old one never
//! stopped). The proxy in front and the crash sweep are in `start_first.rs`
//! and `crash.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::support::{self, assert_exit, describe, image, inspect, journal, kind, Client, TestApp, DEMO_PORT};

/// `State.StartedAt` and `RestartCount` of a container: they change if it
/// was stopped or restarted in between.
fn started(name: &str) -> (String, String, i64) {
    let c = inspect(name).unwrap_or_else(|| panic!("{name} exists"));
    (
        c["Id"].as_str().unwrap_or_default().to_string(),
        c["State"]["StartedAt"].as_str().unwrap_or_default().to_string(),
        c["RestartCount"].as_i64().unwrap_or(-1),
    )
}

/// Asks for `app` through `client` until `stop` is set; returns the
/// answers in order, with an error for every request nothing answered.
fn ask_until(client: &Client, app: &str, stop: &AtomicBool) -> Vec<Result<String, String>> {
    let mut answers = vec![];
    while !stop.load(Ordering::SeqCst) {
        answers.push(client.get(app));
        std::thread::sleep(Duration::from_millis(20));
    }
    answers
}

fn begin_strategy(app: &TestApp) -> String {
    let records = journal(app);
    let begin = records.iter().rev().find(|r| kind(r) == "begin").expect("a begin record");
    begin["data"]["strategy"].as_str().unwrap_or("stop-first").to_string()
}

fn label(name: &str, key: &str) -> Option<String> {
    inspect(name).and_then(|c| c["Config"]["Labels"][key].as_str().map(str::to_string))
}

fn aliases(name: &str, network: &str) -> Vec<String> {
    let c = inspect(name).unwrap_or_default();
    let list = c["NetworkSettings"]["Networks"][network]["Aliases"].as_array().cloned().unwrap_or_default();
    list.iter().filter_map(Value::as_str).map(str::to_string).collect()
}

/// Start-first refuses what two live instances cannot share, and what has
/// no DNS alias to share, with exit 2, naming the reason, the serving
/// container untouched and nothing journaled.
#[test]
fn start_first_refuses_what_two_instances_cannot_share() {
    support::images();
    let net = support::bridge();
    let cases: [(&str, Vec<String>, &str); 4] = [
        (
            "published",
            vec!["-p".into(), format!("127.0.0.1:{}:{DEMO_PORT}", support::free_port())],
            "publishes host ports",
        ),
        ("default-bridge", vec![], "default bridge"),
        (
            "host-net",
            vec!["--network".into(), "host".into(), "-e".into(), format!("PORT={}", support::free_port())],
            "network mode is host",
        ),
        ("none-net", vec!["--network".into(), "none".into()], "network mode is none"),
    ];
    for (tag, opts, why) in cases {
        let app = TestApp::new(&format!("refuse-{tag}"));
        let mut opts: Vec<&str> = opts.iter().map(String::as_str).collect();
        opts.extend(["--restart", "unless-stopped", "-e", "DEMO_SIGTERM=graceful"]);
        support::run_container(app.name(), &image("v1"), &opts);
        let before = started(app.name());
        let out = app.swap(&["deploy", app.name(), "--image", &image("v2"), "--strategy", "start-first"]);
        assert_exit(&out, 2);
        let err = support::stderr(&out);
        assert!(err.contains(why) && err.contains("nothing changed"), "{tag}: {}", describe(&out));
        assert_eq!(started(app.name()), before, "{tag}: the serving container was touched");
        assert!(!app.journal_path().exists() || journal(&app).iter().all(|r| kind(r) != "begin"), "{tag}: journaled");
        assert_eq!(support::containers_of(app.name()).len(), 1, "{tag}: a container was left");
    }
    // A first deploy is refused the same way, creating nothing.
    let app = TestApp::new("refuse-first");
    let port = support::free_port();
    let out = app.swap(&[
        "deploy",
        app.name(),
        "--image",
        &image("v1"),
        "--network",
        net,
        "--publish",
        &format!("{port}:{DEMO_PORT}"),
        "--strategy",
        "start-first",
    ]);
    assert_exit(&out, 2);
    assert!(support::containers_of(app.name()).is_empty(), "{}", describe(&out));
}

/// A hand-started service re-deployed start-first: a client beside it gets
/// an answer at every request while the versions trade places, the old
/// container is not stopped before the new version passed its gate, a
/// bystander on the same network is never touched, and the app keeps its
/// aliases and gains its name as one. The next deploy keeps the strategy
/// from the label; `--strategy stop-first` changes it back.
#[test]
fn start_first_redeploy_answers_throughout_and_is_remembered() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("api");
    let name = app.name().to_string();
    let client = Client::start(&name, net);
    let bystander = format!("{name}-worker");
    let _ = support::docker_output(&["rm", "-f", &bystander]);
    let _bystander = support::Removal(bystander.clone());
    support::run_container(&bystander, &image("v1"), &["--network", net, "--restart", "always"]);
    let bystander_before = started(&bystander);
    let alias = format!("{name}-v");
    support::run_container(
        &name,
        &image("v1"),
        &[
            "--network",
            net,
            "--network-alias",
            &alias,
            "--restart",
            "unless-stopped",
            "-e",
            "DEMO_SIGTERM=graceful",
            "-e",
            "DEMO_SLOW_MS=20",
            "-v",
            "/cache",
            "--label",
            "team=payments",
            "--stop-timeout",
            "5",
        ],
    );
    assert!(support::wait_health(&name, "healthy", Duration::from_secs(20)).is_some());
    assert_eq!(client.get(&name).as_deref(), Ok("v1"));
    let old = started(&name);

    let stop = AtomicBool::new(false);
    let (out, answers) = std::thread::scope(|scope| {
        let asking = scope.spawn(|| ask_until(&client, &name, &stop));
        let out = app.swap(&["deploy", &name, "--image", &image("v2"), "--strategy", "start-first", "--drain", "0.5"]);
        stop.store(true, Ordering::SeqCst);
        (out, asking.join().expect("the asking thread"))
    });
    assert_exit(&out, 0);
    let failed: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(failed.is_empty(), "{} of {} requests failed: {failed:?}\n{}", failed.len(), answers.len(), describe(&out));
    assert!(
        answers.iter().any(|a| a.as_deref() == Ok("v1")) && answers.last().is_some_and(|a| a.as_deref() == Ok("v2")),
        "the answers went from v1 to v2: {answers:?}"
    );

    // The journal: the old container stopped only after the new version's gate.
    let records = journal(&app);
    let order: Vec<String> = records
        .iter()
        .filter(|r| matches!(kind(r), "done" | "health" | "commit"))
        .map(|r| format!("{}:{}", kind(r), r["data"]["step"]["step"].as_str().unwrap_or("")))
        .collect();
    let at = |what: &str| order.iter().position(|s| s == what).unwrap_or_else(|| panic!("{what} in {order:?}"));
    assert!(at("health:") < at("done:stop_old"), "{order:?}");
    assert!(at("done:retire_temporary") > at("commit:"), "{order:?}");
    assert_eq!(begin_strategy(&app), "start-first");

    support::assert_settled(&name, &image("v2"));
    assert!(support::containers_of(&name).iter().all(|c| c.name == name), "a --swap-* container is left");
    assert_ne!(started(&name).0, old.0, "a new container serves");
    assert_eq!(label(&name, "swap.strategy").as_deref(), Some("start-first"));
    assert_eq!(label(&name, "team").as_deref(), Some("payments"));
    let got = aliases(&name, net);
    assert!(got.contains(&name) && got.contains(&alias), "aliases on {net}: {got:?}");
    assert_eq!(started(&bystander), bystander_before, "the bystander was touched");

    // The label carries the strategy to the next deploy.
    let out = app.swap(&["deploy", &name, "--image", &image("v1"), "--drain", "0"]);
    assert_exit(&out, 0);
    assert_eq!(begin_strategy(&app), "start-first", "{}", describe(&out));
    assert_eq!(client.get(&name).as_deref(), Ok("v1"));
    // And the flag changes it.
    let out = app.swap(&["deploy", &name, "--image", &image("v2"), "--strategy", "stop-first"]);
    assert_exit(&out, 0);
    assert_eq!(begin_strategy(&app), "stop-first");
    assert_eq!(label(&name, "swap.strategy").as_deref(), Some("stop-first"));
    assert_eq!(started(&bystander), bystander_before, "the bystander was touched");
    let history = app.swap(&["history", &name]);
    assert!(support::stdout(&history).contains("start-first"), "{}", describe(&history));
}

/// A start-first candidate that fails its gate is rolled back without the
/// old container ever being stopped, parked or renamed.
#[test]
fn start_first_failing_candidate_never_touches_the_old_container() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("cafe");
    let name = app.name().to_string();
    let out = app.swap(&[
        "deploy",
        &name,
        "--image",
        &image("v1"),
        "--network",
        net,
        "--restart",
        "always",
        "--strategy",
        "start-first",
    ]);
    assert_exit(&out, 0);
    let before = started(&name);
    let out = app.swap(&["deploy", &name, "--image", &image("crash")]);
    assert_exit(&out, 1);
    assert_eq!(started(&name), before, "the old container was stopped or restarted\n{}", describe(&out));
    let c = inspect(&name).expect("the old container");
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "always");
    let steps: Vec<String> = journal(&app)
        .iter()
        .filter(|r| kind(r) == "intent")
        .filter_map(|r| r["data"]["step"]["step"].as_str().map(str::to_string))
        .collect();
    assert!(!steps.iter().any(|s| s.ends_with("_old")), "the rollback touched the old container: {steps:?}");
    assert!(support::containers_of(&name).len() == 1, "leftovers");
    // The dry run of a start-first re-deploy says what it would do.
    let out = app.swap(&["deploy", &name, "--image", &image("v2"), "--dry-run"]);
    assert_exit(&out, 0);
    let text = support::text(&out);
    assert!(text.contains("temporary instance") && text.contains("final instance"), "{}", describe(&out));
}
