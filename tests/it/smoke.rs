//! Smoke tests of the test harness and the demo images, needing only Docker.
//!
//! Every real-Docker test of swap leans on these pieces: if the images do not
//! behave as their tags say, or the harness misreads Docker, those tests would
//! fail for the wrong reason. These tests fail (never skip) without Docker.

use std::time::Duration;

use crate::support::{self, image, Removal, TestApp, DEMO_PORT};

/// `-p <host>:8080` for a fresh host port; returns the port and the options.
fn published(net: &str) -> (u16, Vec<String>) {
    let port = support::free_port();
    let opts = vec!["-p".to_string(), format!("{port}:{DEMO_PORT}"), "--network".to_string(), net.to_string()];
    (port, opts)
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn docker_is_reachable() {
    support::docker();
}

#[test]
fn demo_images_exist_with_the_promised_config() {
    support::images();
    for tag in support::IMAGE_TAGS {
        assert!(support::image_id(&image(tag)).is_some(), "image {} missing", image(tag));
    }
    let config = |tag: &str| {
        let out = support::docker_ok(&["image", "inspect", &image(tag)]);
        let mut all: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        all.remove(0)["Config"].clone()
    };
    for (tag, version, healthcheck) in [
        ("v1", "v1", true),
        ("v2", "v2", true),
        ("crash", "v2", true),
        ("unhealthy", "v2", true),
        ("plain-v1", "v1", false),
        ("plain-v2", "v2", false),
    ] {
        let c = config(tag);
        assert_eq!(c["Labels"]["org.opencontainers.image.version"], version, "{tag}");
        assert!(
            c["Env"].as_array().unwrap().iter().any(|e| e == &format!("DEMO_VERSION={version}")),
            "{tag}: {}",
            c["Env"]
        );
        assert_eq!(c["Healthcheck"].is_object(), healthcheck, "{tag}: {c}");
        assert_eq!(c["Cmd"], serde_json::json!(["/swap-demo"]), "{tag}");
    }
}

#[test]
fn v1_answers_on_a_published_port_on_the_bridge() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("smoke-bridge");
    let (port, opts) = published(net);
    support::run_container(app.name(), &image("v1"), &strs(&opts));
    let body = support::http_get(port, Duration::from_secs(10));
    assert_eq!(body.as_deref(), Some("v1\n"), "{}", support::logs(app.name()));
    assert_eq!(support::networks_of(app.name()), vec![net.to_string()]);
    assert_settled_quietly(&app, "v1");
}

#[test]
fn v1_answers_on_a_published_port_on_the_overlay() {
    support::images();
    let net = support::overlay();
    let app = TestApp::new("smoke-overlay");
    let (port, opts) = published(net);
    support::run_container(app.name(), &image("v1"), &strs(&opts));
    let body = support::http_get(port, Duration::from_secs(10));
    assert_eq!(body.as_deref(), Some("v1\n"), "{}", support::logs(app.name()));
    assert_eq!(support::networks_of(app.name()), vec![net.to_string()]);
    assert_settled_quietly(&app, "v1");
}

fn assert_settled_quietly(app: &TestApp, tag: &str) {
    support::assert_settled(app.name(), &image(tag));
    let other = if tag == "v1" { "v2" } else { "v1" };
    assert!(support::settled(app.name(), &[&image(other)]).is_err());
}

#[test]
fn crash_image_exits_with_code_3() {
    support::images();
    let app = TestApp::new("smoke-crash");
    support::run_container(app.name(), &image("crash"), &[]);
    let code = support::wait_exited(app.name(), Duration::from_secs(10));
    assert_eq!(code, Some(3));
    assert!(support::logs(app.name()).contains("exiting with 3"));
    assert!(support::settled(app.name(), &[&image("crash")]).is_err());
}

#[test]
fn unhealthy_image_becomes_unhealthy() {
    support::images();
    let app = TestApp::new("smoke-unhealthy");
    support::run_container(app.name(), &image("unhealthy"), &[]);
    let took = support::wait_health(app.name(), "unhealthy", Duration::from_secs(15));
    assert!(took.is_some(), "health: {:?}", support::health(app.name()));
    eprintln!("swap-demo:unhealthy became unhealthy after {took:?}");
    // Unhealthy but running: only the health check tells it apart.
    assert_eq!(support::containers_of(app.name())[0].state, "running");
}

#[test]
fn v1_becomes_healthy_quickly() {
    support::images();
    let app = TestApp::new("smoke-healthy");
    support::run_container(app.name(), &image("v1"), &[]);
    let took = support::wait_health(app.name(), "healthy", Duration::from_secs(15));
    eprintln!("swap-demo:v1 became healthy after {took:?}");
    assert!(took.is_some(), "health: {:?}", support::health(app.name()));
    // Looking up by full id works as well as by name.
    let id = &support::containers_of(app.name())[0].id;
    assert_eq!(support::health(id).as_deref(), Some("healthy"));
}

#[test]
fn plain_image_has_no_health_status() {
    support::images();
    let app = TestApp::new("smoke-plain");
    support::run_container(app.name(), &image("plain-v2"), &[]);
    assert_eq!(support::health(app.name()), None);
    assert_settled_quietly(&app, "plain-v2");
}

#[test]
fn demo_app_stops_promptly_on_sigterm() {
    support::images();
    let app = TestApp::new("smoke-stop");
    support::run_container(app.name(), &image("plain-v1"), &[]);
    // The handler is installed before the app listens: wait for that, or a
    // loaded machine can deliver the signal before the app reached main.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !support::logs(app.name()).contains("listening") && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = std::time::Instant::now();
    // With no SIGTERM handler, PID 1 would ignore the signal and `docker stop`
    // would wait out the whole 10 s timeout before SIGKILL.
    support::docker_ok(&["stop", app.name()]);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "docker stop took {took:?}");
    assert_eq!(support::wait_exited(app.name(), Duration::from_secs(5)), Some(0));
}

#[test]
fn prober_measures_a_restart_outage() {
    support::images();
    let app = TestApp::new("smoke-prober");
    let (port, opts) = published(support::bridge());
    support::run_container(app.name(), &image("plain-v1"), &strs(&opts));
    assert_eq!(support::http_get(port, Duration::from_secs(10)).as_deref(), Some("v1\n"));

    let steady = support::Prober::start(port).stop();
    assert!(steady.longest_gap < Duration::from_millis(500), "{steady:?}");

    let prober = support::Prober::start(port);
    std::thread::sleep(Duration::from_millis(100));
    support::docker_ok(&["restart", "-t", "5", app.name()]);
    assert!(support::http_get(port, Duration::from_secs(10)).is_some());
    std::thread::sleep(Duration::from_millis(100));
    let report = prober.stop();
    eprintln!("restart outage (floor: one stop plus one start on a bridge): {report:?}");
    assert_eq!(report.bodies, vec!["v1\n".to_string()]);
    assert_eq!(report.flip_backs, 0);
    assert!(report.failures > 0, "{report:?}");
    assert!(report.longest_gap > Duration::from_millis(20), "{report:?}");
}

#[test]
fn harness_matches_names_exactly_and_cleans_up() {
    support::images();
    let app = TestApp::new("smoke-names");
    let name = app.name().to_string();
    // A name that docker's regex filter `name=<app>` would also match.
    let lookalike = format!("{name}x");
    let parked = format!("{name}--swap-old");
    let labelled = format!("{name}-other");
    let _lookalike_guard = Removal(lookalike.clone());
    support::run_container(&name, &image("plain-v1"), &[]);
    support::run_container(&parked, &image("plain-v1"), &[]);
    support::run_container(&lookalike, &image("plain-v1"), &[]);
    support::run_container(&labelled, &image("plain-v1"), &["--label", &format!("swap.app={name}")]);

    let names: Vec<String> = support::containers_of(&name).into_iter().map(|c| c.name).collect();
    assert_eq!(names, vec![name.clone(), parked.clone()]);
    assert!(support::inspect(&lookalike).is_some());
    assert!(support::settled(&name, &[&image("plain-v1")]).is_err(), "leftover not seen");

    drop(app);
    assert!(support::inspect(&name).is_none());
    assert!(support::inspect(&parked).is_none());
    assert!(support::inspect(&labelled).is_none());
    assert!(support::inspect(&lookalike).is_some(), "cleanup removed a lookalike");
}
