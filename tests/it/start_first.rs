//! Start-first deploys as their clients see them: an app reached by name on
//! a user-defined bridge or a swarm overlay, a real reverse proxy (Caddy,
//! upstreams from Docker's DNS) in front, and repeated swaps v1 → v2 → v1 …
//! while a prober sends requests through the proxy one after another.
//!
//! Two proxies watch every swap at once: one that retries a refused
//! connection for up to 2 s, through which no request may fail, and one
//! that never retries, whose failures are only reported (Docker keeps a
//! stopping container in its DNS until it exits, so a proxy that does not
//! retry can still pick it in the moments after its listener closed). Both
//! must see the new version, and only it, once each deploy returned.
//! Timings are printed, never asserted.
//!
//! Each test then shows it can fail: a stop-first deploy through the same
//! proxies must cost the proxy without retries failed requests, and with
//! the app stopped the retrying one must fail too.
//!
//! `SWAP_PROXY_SWAPS` sets the number of start-first swaps per test (6).

use std::time::{Duration, Instant};

use crate::support::proxy::{untouched, Retries, ReverseProxy, Window};
use crate::support::{
    assert_exit, assert_settled, bridge, describe, docker_ok, image, images, inspect, overlay, run_container,
    wait_until, Probe, Prober, Removal, TestApp,
};

/// Start-first swaps per test unless `SWAP_PROXY_SWAPS` says otherwise.
const SWAPS: usize = 6;

/// The app's environment: graceful on SIGTERM (finish what is in flight,
/// then exit), and every answer takes 20 ms, so requests are in flight
/// whenever an instance is stopped.
const APP_ENV: [&str; 2] = ["DEMO_SIGTERM=graceful", "DEMO_SLOW_MS=20"];

/// How long a proxy may take to show the new version after a deploy
/// returned: its DNS answer is at most 100 ms old, so this is slack.
const NEW_VERSION_WITHIN: Duration = Duration::from_secs(10);

fn swaps() -> usize {
    match std::env::var("SWAP_PROXY_SWAPS") {
        Ok(n) => n.trim().parse().unwrap_or_else(|_| panic!("SWAP_PROXY_SWAPS={n} is not a number")),
        Err(_) => SWAPS,
    }
}

#[test]
fn start_first_through_caddy_on_a_bridge() {
    swaps_through_caddy(bridge());
}

#[test]
fn start_first_through_caddy_on_overlay() {
    swaps_through_caddy(overlay());
}

/// A re-deploy on an attachable overlay with nothing but the new image: the
/// definition comes from the running container alone, and the address
/// Docker allocated to it is no static address.
#[test]
fn start_first_redeploy_on_overlay_from_the_clone_alone() {
    images();
    let network = overlay();
    let app = TestApp::new("api");
    let name = app.name();
    let out = app.swap(&["deploy", name, "--image", "swap-demo:v1", "--strategy", "start-first", "--network", network]);
    assert_exit(&out, 0);
    let out = app.swap(&["deploy", name, "--image", "swap-demo:v2"]);
    assert_exit(&out, 0);
    assert_settled(name, &image("v2"));
}

/// One swap as the probers saw it.
#[derive(Debug)]
struct Swap {
    /// The version deployed.
    to: &'static str,
    /// When the deploy was started and when it returned.
    started: Instant,
    returned: Instant,
}

fn body(version: &str) -> String {
    format!("{version}\n")
}

fn swaps_through_caddy(network: &str) {
    images();
    let app = TestApp::new("api");
    let name = app.name().to_string();

    // Another container on the same network that is not the app: no swap
    // may stop, rename or remove it.
    let bystander = format!("{name}-worker");
    let bystander_id = run_container(&bystander, &image("v1"), &["--network", network]);
    let _bystander = Removal(bystander.clone());

    let mut first = vec!["deploy", &name, "--image", "swap-demo:v1", "--strategy", "start-first", "--network", network];
    for env in APP_ENV {
        first.extend(["--env", env]);
    }
    let out = app.swap(&first);
    assert_exit(&out, 0);
    assert_settled(&name, &image("v1"));

    let proxies: Vec<ReverseProxy> = Retries::ALL.iter().map(|r| ReverseProxy::start(&name, network, *r)).collect();
    let probers: Vec<Prober> = proxies.iter().map(ReverseProxy::prober).collect();
    for (proxy, prober) in proxies.iter().zip(&probers) {
        assert!(
            prober.wait_for(&body("v1"), Instant::now(), NEW_VERSION_WITHIN),
            "v1 never answered through {}:\n{}",
            proxy.name,
            proxy.logs()
        );
    }

    let mut done: Vec<Swap> = vec![];
    for i in 0..swaps() {
        let to = if i % 2 == 0 { "v2" } else { "v1" };
        let started = Instant::now();
        let reference = image(to);
        let out = app.swap(&["deploy", &name, "--image", &reference]);
        let returned = Instant::now();
        assert_exit(&out, 0);
        // Exactly one container named APP, on the new image, none APP--swap-*.
        assert_settled(&name, &image(to));
        let strategy = inspect(&name).expect("the app's container")["Config"]["Labels"]["swap.strategy"].clone();
        assert_eq!(strategy, "start-first", "the re-deploy did not keep the strategy:\n{}", describe(&out));
        for (proxy, prober) in proxies.iter().zip(&probers) {
            assert!(
                prober.wait_for(&body(to), returned, NEW_VERSION_WITHIN),
                "swap {i}: {to} never answered through {} after the deploy:\n{}",
                proxy.name,
                proxy.logs()
            );
        }
        done.push(Swap { to, started, returned });
        // Some requests after each deploy, so each window shows what
        // answers once it returned.
        std::thread::sleep(Duration::from_millis(300));
    }
    let swaps_end = Instant::now();

    // Can it fail? A stop-first deploy through the same proxies: the app is
    // gone from DNS between the old container's exit and the new one's start.
    let back = if done.last().is_some_and(|s| s.to == "v2") { "v1" } else { "v2" };
    let stop_first_started = Instant::now();
    let out = app.swap(&["deploy", &name, "--image", &image(back), "--strategy", "stop-first"]);
    let stop_first_returned = Instant::now();
    assert_exit(&out, 0);
    assert_settled(&name, &image(back));
    for (proxy, prober) in proxies.iter().zip(&probers) {
        assert!(
            prober.wait_for(&body(back), stop_first_returned, NEW_VERSION_WITHIN),
            "{back} never answered through {} after the stop-first deploy",
            proxy.name
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let stop_first_end = Instant::now();

    // And with the app down, even the retrying proxy fails: after its 2 s,
    // or later when Docker's DNS, which holds no container of that name
    // any more, takes its time to say so.
    docker_ok(&["stop", &name]);
    let down = Instant::now();
    let retrying = &probers[0];
    let seen_down = wait_until(Duration::from_secs(20), || {
        retrying.requests().iter().any(|p| p.start + p.duration > down && !p.ok())
    });

    for proxy in &proxies {
        proxy.untouched().unwrap_or_else(|why| panic!("proxy {} was touched: {why}", proxy.name));
    }
    untouched(&bystander, &bystander_id).unwrap_or_else(|why| panic!("the bystander was touched: {why}"));

    let logs: Vec<Vec<Probe>> = probers.into_iter().map(|p| p.stop().requests).collect();
    println!("start-first on {network}, {} swaps through Caddy (dynamic a, refresh 100 ms):", done.len());
    let mut problems = vec![];
    for (i, swap) in done.iter().enumerate() {
        let next = done.get(i + 1).map_or(swaps_end, |s| s.started);
        let wall = swap.returned - swap.started;
        println!("  swap {i} to {} (deploy {} ms):", swap.to, wall.as_millis());
        for (proxy, log) in proxies.iter().zip(&logs) {
            let whole = Window::of(log, swap.started, next);
            println!("    {:<5} {}", proxy.retries.name(), whole.summary());
            if proxy.retries == Retries::UpTo2s && !whole.failed.is_empty() {
                problems.push(format!("swap {i} through {}: {}", proxy.name, whole.summary()));
            }
            // Once the deploy returned, only the new version answers.
            let after = Window::of(log, swap.returned, next);
            if after.bodies != [body(swap.to)] {
                problems.push(format!(
                    "swap {i} through {}: after the deploy returned, answers were {:?}, expected only {:?}",
                    proxy.name,
                    after.bodies,
                    body(swap.to)
                ));
            }
        }
    }
    println!("  control: stop-first to {back} (deploy {} ms):", (stop_first_returned - stop_first_started).as_millis());
    let mut stop_first = vec![];
    for (proxy, log) in proxies.iter().zip(&logs) {
        let w = Window::of(log, stop_first_started, stop_first_end);
        println!("    {:<5} {}", proxy.retries.name(), w.summary());
        stop_first.push(w);
    }
    let once = &stop_first[1];
    assert!(
        !once.failed.is_empty(),
        "a stop-first deploy cost the proxy without retries no request: the counting cannot see an outage \
         ({})",
        once.summary()
    );
    assert!(seen_down, "with the app stopped, no request through the retrying proxy failed");
    assert!(problems.is_empty(), "start-first through Caddy on {network}:\n{}", problems.join("\n"));
}
