//! Real services, not lab images: containers started by hand with many
//! `docker run` flags, holding data in every kind of volume, next to
//! containers that are not the app's. A user judges swap by the first real
//! service it touches, so these check the two things it promises never to
//! do: lose data, and touch what is not the app's.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::support::assert_exit;
use crate::support::{self, describe, image, TestApp, DEMO_PORT};

/// The volumes, containers, networks and scratch directories a test owns,
/// removed at the end (after the app, so nothing is still attached).
struct Owned {
    volumes: Vec<String>,
    containers: Vec<String>,
    networks: Vec<String>,
    dirs: Vec<std::path::PathBuf>,
}

impl Owned {
    fn new() -> Owned {
        Owned { volumes: vec![], containers: vec![], networks: vec![], dirs: vec![] }
    }

    fn volume(&mut self, name: &str) -> String {
        support::docker_ok(&["volume", "create", name]);
        self.volumes.push(name.to_string());
        name.to_string()
    }

    fn dir(&mut self, name: &str) -> String {
        let dir = std::env::temp_dir().join(format!("swap-services-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a bind directory");
        self.dirs.push(dir.clone());
        dir.display().to_string()
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = support::docker_output(&["rm", "-f", c]);
        }
        for n in &self.networks {
            let _ = support::docker_output(&["network", "rm", n]);
        }
        for v in &self.volumes {
            let _ = support::docker_output(&["volume", "rm", "-f", v]);
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Every anonymous volume name the container mounts.
fn anonymous_volumes(name: &str) -> BTreeSet<String> {
    support::mounts_of(name).into_values().filter(|(t, n)| t == "volume" && n.len() == 64).map(|(_, n)| n).collect()
}

/// Names of all volumes on the engine.
fn all_volumes() -> BTreeSet<String> {
    support::docker_ok(&["volume", "ls", "-q"]).lines().map(str::to_string).collect()
}

/// The markers a test leaves, by path inside the container.
const MARKED: [&str; 5] = ["/var/lib/db/marker", "/cache/marker", "/named/marker", "/mnt/marker", "/bound/marker"];

/// Asserts every marker reads back from the container now named `app`.
#[track_caller]
fn assert_markers(app: &str, when: &str) {
    for path in MARKED {
        assert_eq!(
            support::read_in(app, path).as_deref(),
            Some(format!("data at {path}").as_str()),
            "{when}: the marker at {path} is not in the container serving as {app}; its mounts: {:?}",
            support::mounts_of(app)
        );
    }
}

/// A database-shaped service with data in every kind of volume: its image's
/// `VOLUME`, an anonymous `-v /cache`, a named volume, a `--mount` volume
/// without a source, a bind and a read-only bind. Every re-deploy, failed
/// re-deploy and rollback leaves the data where it was, in the same volumes.
#[test]
fn data_in_every_kind_of_volume_survives_redeploy_failure_and_rollback() {
    // Declared first, dropped last: its networks and volumes can go only
    // once the app's containers are gone.
    let mut owned = Owned::new();
    let app = TestApp::new("volumes");
    let (db1, db2) = (support::db_image("v1"), support::db_image("v2"));
    let named = owned.volume(&format!("{}-named", app.name()));
    let bound = owned.dir("bound");
    let ro = owned.dir("ro");
    std::fs::write(format!("{ro}/config"), "read-only config").unwrap();
    let port = support::free_port();
    support::run_container(
        app.name(),
        &db1,
        &[
            "-p",
            &format!("127.0.0.1:{port}:{DEMO_PORT}"),
            "--network",
            support::bridge(),
            "--restart",
            "unless-stopped",
            "-v",
            "/cache",
            "-v",
            &format!("{named}:/named"),
            "--mount",
            "type=volume,dst=/mnt",
            "-v",
            &format!("{bound}:/bound"),
            "-v",
            &format!("{ro}:/etc/app:ro"),
        ],
    );
    for path in MARKED {
        support::write_in(app.name(), path, &format!("data at {path}"));
    }
    let before = support::mounts_of(app.name());
    let anonymous = anonymous_volumes(app.name());
    assert_eq!(anonymous.len(), 3, "the image's VOLUME, -v /cache and the --mount volume: {before:?}");

    let out = app.swap(&["deploy", app.name(), "--image", &db2]);
    assert_exit(&out, 0);
    support::assert_settled(app.name(), &db2);
    assert_markers(app.name(), "after a re-deploy");
    assert_eq!(support::mounts_of(app.name()), before, "the new container mounts other volumes");
    assert_eq!(support::read_in(app.name(), "/etc/app/config").as_deref(), Some("read-only config"));
    let mounts = support::inspect(app.name()).unwrap()["Mounts"].clone();
    let ro_mount = mounts.as_array().unwrap().iter().find(|m| m["Destination"] == "/etc/app").unwrap();
    assert_eq!(ro_mount["RW"], false, "the read-only bind became writable: {ro_mount}");

    // The journal says which volumes, never what is in them.
    let journal = std::fs::read_to_string(app.journal_path()).unwrap();
    let begin: Value = journal
        .lines()
        .rev()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["data"]["kind"] == "begin")
        .unwrap();
    for name in &anonymous {
        assert!(begin["data"]["volumes"].to_string().contains(name.as_str()), "begin lacks volume {name}: {begin}");
        assert!(begin["data"]["old"]["volumes"].to_string().contains(name.as_str()), "{begin}");
    }
    assert!(!journal.contains("data at"), "a volume's content reached the journal");
    let show = app.swap(&["journal", "show", app.name()]);
    assert!(String::from_utf8_lossy(&show.stdout).contains("-> /var/lib/db"), "{}", describe(&show));

    // A candidate that crashes is rolled back onto the same data.
    let out = app.swap(&["deploy", app.name(), "--image", &image("crash")]);
    assert_exit(&out, 1);
    support::assert_settled(app.name(), &db2);
    assert_markers(app.name(), "after a failed re-deploy");
    assert_eq!(support::mounts_of(app.name()), before);

    // And back to the first version.
    let out = app.swap(&["rollback", app.name()]);
    assert_exit(&out, 0);
    support::assert_settled(app.name(), &db1);
    assert_markers(app.name(), "after a rollback");
    assert_eq!(support::mounts_of(app.name()), before);
    assert_eq!(
        support::inspect(app.name()).unwrap()["HostConfig"]["RestartPolicy"]["Name"],
        "unless-stopped",
        "the restart policy was not restored"
    );

    // Nothing removed a volume.
    let left = all_volumes();
    for v in anonymous.iter().chain([&named]) {
        assert!(left.contains(v), "volume {v} was removed");
    }
    // The anonymous volumes outlive the app too: swap never removes one.
    owned.volumes.extend(anonymous);
}

/// `--volume` on a first deploy, in `docker run -v` syntax, and in a spec
/// file; malformed ones are refused before anything changes.
#[test]
fn volume_flag_mounts_on_a_first_deploy_and_bad_ones_are_refused() {
    // Declared first, dropped last: its networks and volumes can go only
    // once the app's containers are gone.
    let mut owned = Owned::new();
    let app = TestApp::new("volflag");
    let named = format!("{}-data", app.name());
    owned.volumes.push(named.clone());
    let bound = owned.dir("flagbind");
    std::fs::write(format!("{bound}/seed"), "seeded").unwrap();
    for bad in ["relative/path", "x:/a:rw:extra", "/a:notabs", "bad name:/x", "/h:/c:sideways"] {
        let out = app.swap(&["deploy", app.name(), "--image", &image("v1"), "--volume", bad]);
        assert_exit(&out, 2);
        assert!(String::from_utf8_lossy(&out.stderr).contains("--volume"), "{}", describe(&out));
        assert!(support::inspect(app.name()).is_none());
    }
    let out = app.swap(&[
        "deploy",
        app.name(),
        "--image",
        &image("v1"),
        "--volume",
        "/scratch",
        "--volume",
        &format!("{named}:/data"),
        "--volume",
        &format!("{bound}:/seed:ro"),
    ]);
    assert_exit(&out, 0);
    let mounts = support::mounts_of(app.name());
    assert_eq!(mounts.get("/data"), Some(&("volume".to_string(), named.clone())), "{mounts:?}");
    assert_eq!(mounts.get("/seed").map(|m| m.0.as_str()), Some("bind"), "{mounts:?}");
    assert_eq!(mounts.get("/scratch").map(|m| m.0.as_str()), Some("volume"), "{mounts:?}");
    assert_eq!(support::read_in(app.name(), "/seed/seed").as_deref(), Some("seeded"));
    support::write_in(app.name(), "/scratch/marker", "kept");
    owned.volumes.extend(anonymous_volumes(app.name()));

    // A re-deploy keeps the anonymous volume the first deploy created.
    let out = app.swap(&["deploy", app.name(), "--image", &image("v2")]);
    assert_exit(&out, 0);
    assert_eq!(support::mounts_of(app.name()), mounts);
    assert_eq!(support::read_in(app.name(), "/scratch/marker").as_deref(), Some("kept"));
}

/// An app named like a real one (`db`, `cafe`) is made of hex letters, and
/// Docker resolves a name no container has as an id prefix. A container
/// that is not the app's, whose id starts with the app's name, is never
/// taken for the app: not by a first deploy, a re-deploy, a failed deploy,
/// a crash and its recovery, a rollback or a status query.
#[test]
fn a_container_whose_id_starts_with_the_app_name_is_never_touched() {
    let mut owned = Owned::new();
    let bystander = format!("bystander-{}", std::process::id());
    let _ = support::docker_output(&["rm", "-f", &bystander]);
    let id = support::run_container(&bystander, &image("v1"), &["--restart", "always"]);
    owned.containers.push(bystander.clone());
    // The app's name is the bystander's id prefix: all of Docker's name
    // lookups for it would find the bystander.
    let state = TestApp::new("prefix");
    let app = TestApp { name: id[..6].to_string(), state_dir: state.state_dir.clone() };
    app.remove_containers();
    assert!(support::inspect(app.name()).is_none());
    let found = support::docker_output(&["inspect", "--format", "{{.Name}}", app.name()]);
    assert!(
        String::from_utf8_lossy(&found.stdout).contains(&bystander),
        "Docker should resolve {} to the bystander by id prefix: {}",
        app.name(),
        describe(&found)
    );
    let fingerprint = || {
        let c = support::inspect(&id).expect("the bystander is gone");
        (
            c["Name"].clone(),
            c["State"]["Running"].clone(),
            c["State"]["StartedAt"].clone(),
            c["HostConfig"]["RestartPolicy"].clone(),
            c["Config"]["Labels"].clone(),
        )
    };
    let untouched = fingerprint();
    let check = |when: &str| assert_eq!(fingerprint(), untouched, "{when}: the bystander was touched");

    let out = app.swap(&["deploy", app.name(), "--image", &image("crash")]);
    assert_exit(&out, 1);
    check("failed first deploy");
    assert!(support::inspect(app.name()).is_none());

    let out = app.swap(&["deploy", app.name(), "--image", &image("v1")]);
    assert_exit(&out, 0);
    check("first deploy");
    support::assert_settled(app.name(), &image("v1"));

    let out = app.swap(&["deploy", app.name(), "--image", &image("v2")]);
    assert_exit(&out, 0);
    check("re-deploy");

    let out = app.swap(&["deploy", app.name(), "--image", &image("crash")]);
    assert_exit(&out, 1);
    check("failed re-deploy");

    let out = app.swap_env(&[("SWAP_CRASH_AT", "after:6")], &["deploy", app.name(), "--image", &image("v1")]);
    assert_eq!(out.status.code(), None, "the crash injection should kill swap: {}", describe(&out));
    let out = app.swap(&["recover", app.name()]);
    assert_exit(&out, 0);
    check("crash and recovery");
    support::assert_settled_on_one_of(app.name(), &[&image("v1"), &image("v2")]);

    let out = app.swap(&["rollback", app.name()]);
    assert!(out.status.code() == Some(0), "{}", describe(&out));
    check("rollback");

    let out = app.swap(&["status", app.name()]);
    assert_exit(&out, 0);
    check("status");
    drop(app);
    check("cleanup");
}

/// Settings a clone cannot carry are refused by name, before anything
/// changes.
#[test]
fn a_setting_swap_cannot_clone_is_refused_by_name() {
    // Declared first, dropped last: its networks and volumes can go only
    // once the app's containers are gone.
    let mut owned = Owned::new();
    let app = TestApp::new("unclonable");
    let net = format!("{}-net", app.name());
    support::docker_ok(&["network", "create", &net]);
    owned.networks.push(net.clone());
    let id = support::run_container(app.name(), &image("v1"), &["--network", &net, "--link-local-ip", "169.254.7.7"]);
    let out = app.swap(&["deploy", app.name(), "--image", &image("v2")]);
    assert_exit(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--link-local-ip"), "{}", describe(&out));
    support::assert_settled(app.name(), &image("v1"));
    assert_eq!(support::inspect(app.name()).unwrap()["Id"], id.as_str());
}

/// The settings of a container as a flat map from a JSON path to its value,
/// for comparing two inspects field by field.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// The user's settings of a container: `Config`, `HostConfig`, and per
/// network the endpoint settings a user gives.
fn settings(name: &str) -> BTreeMap<String, Value> {
    let c = support::inspect(name).unwrap_or_else(|| panic!("no container {name}"));
    let short_id = c["Id"].as_str().unwrap()[..12].to_string();
    let mut out = BTreeMap::new();
    flatten("Config", &c["Config"], &mut out);
    flatten("HostConfig", &c["HostConfig"], &mut out);
    for (net, ep) in c["NetworkSettings"]["Networks"].as_object().unwrap() {
        let aliases: Vec<&Value> = ep["Aliases"].as_array().into_iter().flatten().filter(|a| **a != short_id).collect();
        out.insert(format!("Network.{net}.Aliases"), serde_json::json!(aliases));
        for k in ["IPAMConfig", "Links", "DriverOpts"] {
            flatten(&format!("Network.{net}.{k}"), &ep[k], &mut out);
        }
        out.insert(format!("Network.{net}.MacAddress"), ep["MacAddress"].clone());
        out.insert(format!("Network.{net}.IPAddress"), ep["IPAddress"].clone());
    }
    out
}

/// A service started by hand with dozens of `docker run` flags comes out of
/// a re-deploy the same service: the two `docker inspect`s differ only in
/// what the new image supplies, the image itself, swap's labels, and the
/// anonymous volumes the new container mounts by name.
#[test]
fn a_service_started_with_many_flags_is_cloned_field_by_field() {
    // Declared first, dropped last: its networks and volumes can go only
    // once the app's containers are gone.
    let mut owned = Owned::new();
    let app = TestApp::new("faithful");
    // A subnet of its own for the static IP: the first /24 no other network
    // holds (parallel tests, or networks another run left behind).
    let net = format!("{}-net", app.name());
    let octet = (0..100)
        .map(|i| 100 + (std::process::id() + i) % 150)
        .find(|o| {
            let subnet = format!("10.231.{o}.0/24");
            support::docker_output(&["network", "create", "--subnet", &subnet, &net]).status.success()
        })
        .expect("no free 10.231.x.0/24 subnet for the test network");
    owned.networks.push(net.clone());
    let other = format!("{}-other", app.name());
    support::run_container(&other, &image("v1"), &["--network", &net, "-v", "/shared"]);
    owned.containers.push(other.clone());
    let named = owned.volume(&format!("{}-vol", app.name()));
    let bind = owned.dir("faithful");
    let (tcp, udp) = (support::free_port(), support::free_port());
    let flags: Vec<String> = [
        "--env=DATABASE_URL=postgres://db/app",
        "--env=MODE=production",
        "--label=com.example.team=payments",
        "--label=com.example.tier=backend",
        "--user=1000:1000",
        "--workdir=/srv",
        "--hostname=api-host",
        "--domainname=example.org",
        "--restart=on-failure:3",
        "--stop-signal=SIGINT",
        "--stop-timeout=7",
        "--init",
        "--interactive",
        "--tty",
        "--log-driver=json-file",
        "--log-opt=max-size=1m",
        "--log-opt=max-file=2",
        "--memory=256m",
        "--memory-reservation=128m",
        "--memory-swap=512m",
        "--cpus=0.5",
        "--cpu-shares=512",
        "--pids-limit=100",
        "--ulimit=nofile=1024:2048",
        "--cap-drop=NET_RAW",
        "--cap-add=SYS_PTRACE",
        "--security-opt=no-new-privileges",
        "--sysctl=net.ipv4.ip_unprivileged_port_start=0",
        "--tmpfs=/run:size=1m",
        "--shm-size=32m",
        "--read-only",
        "--add-host=upstream:10.1.2.3",
        "--dns=10.231.0.53",
        "--dns-search=example.org",
        "--dns-option=ndots:2",
        "--expose=9100",
        "--health-interval=1s",
        "--health-retries=5",
        "--group-add=123",
        "--oom-score-adj=100",
        "--entrypoint=/swap-demo",
        "--device=/dev/null:/dev/xnull",
        "--volume=/cache",
        "--mount=type=volume,dst=/mnt",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        format!("--publish=127.0.0.1:{tcp}:{DEMO_PORT}/tcp"),
        format!("--publish={udp}:9000/udp"),
        format!("--network={net}"),
        "--network-alias=api-alias".into(),
        format!("--ip=10.231.{octet}.50"),
        format!("--link={other}:upstream-db"),
        format!("--volume={named}:/named"),
        format!("--volume={bind}:/bound:ro"),
        format!("--volumes-from={other}"),
    ])
    .collect();
    let flags_ref: Vec<&str> = flags.iter().map(String::as_str).collect();
    support::run_container(app.name(), &image("v1"), &flags_ref);
    assert!(flags.len() >= 50, "{} flags", flags.len());
    assert!(
        support::wait_until(Duration::from_secs(20), || support::health(app.name()).as_deref() == Some("healthy")),
        "the hand-started service never became healthy: {}",
        support::logs(app.name())
    );
    let before = settings(app.name());
    let mounts = support::mounts_of(app.name());
    assert!(mounts.contains_key("/shared"), "--volumes-from brought no volume: {mounts:?}");

    let out = app.swap(&["deploy", app.name(), "--image", &image("v2"), "--stop-timeout", "2"]);
    assert_exit(&out, 0);
    support::assert_settled(app.name(), &image("v2"));
    let after = settings(app.name());

    // What may differ: the image and what it supplies, and swap's labels.
    let image_derived = |k: &str, old: Option<&Value>, new: Option<&Value>| match k {
        "Config.Image" => true,
        "Config.Labels.swap.app" | "Config.Labels.swap.deploy" | "Config.Labels.swap.strategy" => true,
        "Config.Labels.org.opencontainers.image.version" | "Config.Labels.swap-demo.variant" => true,
        "Config.Env" => {
            let strip = |v: Option<&Value>| -> Vec<String> {
                v.and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter(|e| !e.starts_with("DEMO_VERSION="))
                    .map(str::to_string)
                    .collect()
            };
            strip(old) == strip(new)
        }
        _ => false,
    };
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut differences = Vec::new();
    for k in keys {
        let (old, new) = (before.get(k), after.get(k));
        if old != new && !image_derived(k, old, new) {
            differences.push(format!("{k}: {} -> {}", show(old), show(new)));
        }
    }
    // The anonymous volumes are pinned by name in Binds; nothing else differs.
    let binds_old = before.get("HostConfig.Binds").cloned().unwrap_or(Value::Null);
    let binds_new = after.get("HostConfig.Binds").cloned().unwrap_or(Value::Null);
    let added: Vec<&Value> = binds_new
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| !binds_old.to_string().contains(&b.to_string()))
        .collect();
    for b in &added {
        let b = b.as_str().unwrap_or_default();
        assert!(b.ends_with(":/cache") && b.len() == 64 + ":/cache".len(), "unexpected bind {b}");
    }
    differences.retain(|d| !d.starts_with("HostConfig.Binds:"));
    // `--mount type=volume` without a source gets the old volume's name.
    differences.retain(|d| !d.starts_with("HostConfig.Mounts:"));
    assert!(differences.is_empty(), "the clone differs from the original:\n  {}", differences.join("\n  "));
    assert_eq!(support::mounts_of(app.name()), mounts, "the new container mounts other volumes");
    owned.volumes.extend(anonymous_volumes(app.name()));
}

fn show(v: Option<&Value>) -> String {
    v.map(Value::to_string).unwrap_or_else(|| "(absent)".into())
}
