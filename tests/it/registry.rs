//! Images from registries against the real Docker engine and a real
//! registry (tests/support/registry.rs): pulls of images only the registry
//! has, moved tags, logins from a Docker client config, and every way the
//! path to a registry fails (cut connections, a stall, a registry that is
//! down), each ending with the old version serving and nothing changed.
//!
//! Every test owns its app and its registry, with repositories named after
//! the test, so the tests run in parallel under nextest. The registry is
//! declared before the app, so the app's containers are gone before the
//! registry's drop removes the images the test built.

use std::time::Duration;

use crate::support;
use crate::support::registry::{http_status, Proxy, ProxyMode, Registry};
use crate::support::{assert_exit, journal, stderr};
use crate::support::{describe, docker_ok, image, image_id, TestApp, DEMO_PORT};
use serde_json::Value;

/// How long a demo app may take to answer after a deploy returned.
const ANSWER: Duration = Duration::from_secs(10);

/// Short retry waits so a failing registry does not slow the suite; the
/// attempts and the stall rule are the product's own.
const FAST_RETRY: (&str, &str) = ("SWAP_PULL_BACKOFF_MS", "100");

fn begins(app: &TestApp) -> Vec<Value> {
    journal(app).into_iter().filter(|r| r["data"]["kind"] == "begin").collect()
}

/// A first deploy of the local demo image `swap-demo:v1`, published on `port`.
fn serve_v1(app: &TestApp, port: u16) {
    let net = support::bridge();
    let publish = format!("{port}:{DEMO_PORT}");
    let out = app.swap(&["deploy", app.name(), "--image", &image("v1"), "--publish", &publish, "--network", net]);
    assert_exit(&out, 0);
    assert_answers(port, "v1");
}

#[track_caller]
fn assert_answers(port: u16, version: &str) {
    assert_eq!(support::http_get(port, ANSWER).as_deref(), Some(format!("{version}\n").as_str()));
}

/// The container serving the app, by id.
fn serving_id(app: &TestApp) -> String {
    support::inspect(app.name()).expect("the app's container")["Id"].as_str().unwrap_or_default().to_string()
}

/// The journal's size, the serving container and its image id: "nothing
/// changed" means all are as they were. (By id: another test process may
/// rebuild the demo images, moving their tags.)
fn snapshot(app: &TestApp) -> (u64, String, String) {
    let image =
        support::inspect(app.name()).expect("the app's container")["Image"].as_str().unwrap_or_default().to_string();
    (std::fs::metadata(app.journal_path()).expect("journal").len(), serving_id(app), image)
}

/// The fixture itself: a pushed image is in the registry and nowhere else,
/// and Docker pulls it back by the same reference.
#[test]
fn registry_fixture_serves_pushed_images() {
    let registry = Registry::start();
    let (reference, id) = registry.push_fresh("v1", "fixture/app:1");
    assert_eq!(image_id(&reference), None, "the pushed image is still on the engine");
    docker_ok(&["pull", &reference]);
    assert_eq!(image_id(&reference).as_deref(), Some(id.as_str()), "{}", registry.log());

    let locked = Registry::start_with_auth("ci", "s3cret-pw");
    assert_eq!(http_status(locked.port, "/v2/"), Some(401));
    let (locked_ref, _) = locked.push_fresh("v2", "fixture/locked:1");
    assert_eq!(image_id(&locked_ref), None);
}

/// `--pull missing` (the default) fetches an image only the registry has,
/// and `begin` records the reference, image id and repo digest; `--pull
/// never` refuses it, and a tag the registry lacks is refused: exit 2,
/// nothing changed.
#[test]
fn deploy_pulls_an_image_only_the_registry_has() {
    let registry = Registry::start();
    let app = TestApp::new("reg-only");
    let port = support::free_port();
    serve_v1(&app, port);
    let (reference, id) = registry.push_fresh("v2", "only/web:1");
    assert_eq!(image_id(&reference), None);

    let before = snapshot(&app);
    let out = app.swap(&["deploy", app.name(), "--image", &reference, "--pull", "never"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("--pull never"), "{}", describe(&out));
    let missing = registry.reference("only/web:nope");
    let out = app.swap(&["deploy", app.name(), "--image", &missing]);
    assert_exit(&out, 2);
    let msg = stderr(&out);
    assert!(msg.contains(&registry.host()) && msg.contains("manifest unknown"), "{}", describe(&out));
    assert_eq!(snapshot(&app), before, "a refused pull changed something");
    assert_answers(port, "v1");

    let out = app.swap(&["deploy", app.name(), "--image", &reference]);
    assert_exit(&out, 0);
    assert_answers(port, "v2");
    support::assert_settled(app.name(), &id);
    let begin = begins(&app).pop().expect("a begin record");
    let pulled = &begin["data"]["pulled"];
    assert_eq!(pulled["reference"], reference.as_str(), "{begin}");
    assert_eq!(pulled["image_id"], id.as_str(), "{begin}");
    let digest = pulled["repo_digest"].as_str().unwrap_or_default();
    assert!(digest.starts_with(&format!("{}/only/web@sha256:", registry.host())), "{begin}");
    let repo_digests = docker_ok(&["image", "inspect", "--format", "{{json .RepoDigests}}", &reference]);
    assert!(repo_digests.contains(digest), "{digest} not in {repo_digests}");
}

/// The registry's tag moved after the engine pulled it: `--pull always`
/// fetches and deploys the new image.
#[test]
fn pull_always_picks_up_a_moved_tag() {
    let registry = Registry::start();
    let app = TestApp::new("reg-moved");
    let port = support::free_port();
    let (reference, v1) = registry.push_fresh("v1", "moved/web:stable");
    let publish = format!("{port}:{DEMO_PORT}");
    let out = app.swap(&["deploy", app.name(), "--image", &reference, "--publish", &publish]);
    assert_exit(&out, 0);
    assert_answers(port, "v1");
    let (_, v2) = registry.push_fresh("v2", "moved/web:stable");
    assert_eq!(image_id(&reference).as_deref(), Some(v1.as_str()), "the engine's tag moved too");

    let out = app.swap(&["deploy", app.name(), "--image", &reference, "--pull", "always"]);
    assert_exit(&out, 0);
    assert_answers(port, "v2");
    support::assert_settled(app.name(), &v2);
    assert_eq!(begins(&app).pop().unwrap()["data"]["pulled"]["image_id"], v2.as_str());
}

/// A path that cuts the first connections to the registry: swap retries
/// and the deploy goes through.
#[test]
fn flaky_registry_path_is_retried_to_success() {
    let registry = Registry::start();
    let app = TestApp::new("reg-flaky");
    let port = support::free_port();
    serve_v1(&app, port);
    let (direct, id) = registry.push_fresh("v2", "flaky/web:1");
    let proxy = Proxy::start(registry.port, ProxyMode::CutFirst(2));
    let reference = direct.replace(&registry.host(), &format!("127.0.0.1:{}", proxy.port));

    let out = app.swap_env(&[FAST_RETRY], &["deploy", app.name(), "--image", &reference]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("attempt 2 of 5"), "no retry was reported:\n{}", describe(&out));
    assert_answers(port, "v2");
    support::assert_settled(app.name(), &id);
    let attempts = begins(&app).pop().unwrap()["data"]["pulled"]["attempts"].as_u64().unwrap_or_default();
    assert!(attempts >= 2, "the pull took {attempts} attempt(s)");
}

/// A registry that answers Docker's ping and then never answers: each
/// attempt is abandoned after the stall bound, and after the last one the
/// deploy ends with exit 6, nothing changed, the old version serving.
#[test]
fn stalled_registry_is_abandoned_and_nothing_changes() {
    let registry = Registry::start();
    let app = TestApp::new("reg-stall");
    let port = support::free_port();
    serve_v1(&app, port);
    let proxy = Proxy::start(registry.port, ProxyMode::Stall);
    let reference = format!("127.0.0.1:{}/stall/web:1", proxy.port);

    let before = snapshot(&app);
    let out =
        app.swap_env(&[FAST_RETRY, ("SWAP_PULL_STALL_SECS", "1")], &["deploy", app.name(), "--image", &reference]);
    assert_exit(&out, 6);
    let msg = stderr(&out);
    assert!(msg.contains(&format!("127.0.0.1:{}", proxy.port)) && msg.contains("no progress"), "{}", describe(&out));
    assert_eq!(snapshot(&app), before, "a stalled pull changed something");
    assert_answers(port, "v1");
    support::assert_settled(app.name(), &before.2);
    assert!(
        proxy.accepted.load(std::sync::atomic::Ordering::Relaxed) >= 5,
        "fewer than 5 attempts reached the registry"
    );
}

/// The registry is down: every attempt is refused, exit 6, nothing changed.
#[test]
fn registry_down_exits_6_and_nothing_changes() {
    let mut registry = Registry::start();
    let app = TestApp::new("reg-down");
    let port = support::free_port();
    serve_v1(&app, port);
    let (reference, _) = registry.push_fresh("v2", "down/web:1");
    registry.stop();

    let before = snapshot(&app);
    let out = app.swap_env(&[FAST_RETRY], &["--json", "deploy", app.name(), "--image", &reference]);
    assert_exit(&out, 6);
    let msg = stderr(&out);
    assert!(msg.contains(&registry.host()) && msg.contains("connection refused"), "{}", describe(&out));
    assert!(msg.contains("try again later"), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}")).unwrap();
    assert_eq!(last["outcome"], "unavailable", "{stdout}");
    assert_eq!(snapshot(&app), before, "a failed pull changed something");
    assert_answers(port, "v1");
    support::assert_settled(app.name(), &before.2);
}

/// A registry behind htpasswd: without a login in the Docker config the
/// pull is refused (exit 2, nothing changed); with the config `docker
/// login` wrote, the image is pulled and deployed. The password appears in
/// neither the journal nor any output.
#[test]
fn htpasswd_registry_login_comes_from_the_docker_config_and_never_shows() {
    const PASSWORD: &str = "pw-7f3a9c-never-shown";
    let registry = Registry::start_with_auth("swapci", PASSWORD);
    let app = TestApp::new("reg-auth");
    let port = support::free_port();
    serve_v1(&app, port);
    let (reference, id) = registry.push_fresh("v2", "auth/web:1");
    let mut outputs = vec![];

    let nobody = tempfile::tempdir().unwrap();
    let before = snapshot(&app);
    let config = ("DOCKER_CONFIG", nobody.path().to_str().unwrap());
    let out = app.swap_env(&[config], &["deploy", app.name(), "--image", &reference]);
    assert_exit(&out, 2);
    let msg = stderr(&out);
    assert!(msg.contains(&registry.host()) && msg.contains("no basic auth credentials"), "{}", describe(&out));
    assert_eq!(snapshot(&app), before, "a refused pull changed something");
    assert_answers(port, "v1");
    support::assert_settled(app.name(), &before.2);
    outputs.push(out);

    let logged_in = tempfile::tempdir().unwrap();
    registry.login(logged_in.path());
    let saved = std::fs::read_to_string(logged_in.path().join("config.json")).unwrap();
    assert!(saved.contains("\"auths\""), "docker login wrote no auths entry: {saved}");
    let config = ("DOCKER_CONFIG", logged_in.path().to_str().unwrap());
    let out = app.swap_env(&[config], &["-v", "--json", "deploy", app.name(), "--image", &reference]);
    assert_exit(&out, 0);
    assert_answers(port, "v2");
    support::assert_settled(app.name(), &id);
    outputs.push(out);
    outputs.push(app.swap(&["--json", "journal", "show", app.name()]));
    outputs.push(app.swap(&["-v", "history", app.name()]));

    let journal = std::fs::read_to_string(app.journal_path()).unwrap();
    assert!(journal.contains(&id), "the journal does not record the pulled image");
    let encoded = base64_free::encode(&format!("swapci:{PASSWORD}"));
    assert!(saved.contains(&encoded), "the leak check would not see Docker's encoding: {saved}");
    for text in outputs
        .iter()
        .flat_map(|o| [&o.stdout, &o.stderr])
        .map(|b| String::from_utf8_lossy(b).to_string())
        .chain([journal])
    {
        assert!(!text.contains(PASSWORD) && !text.contains(&encoded), "the password leaked:\n{text}");
    }
}

/// Base64 without a dependency, to look for the encoded `user:password`
/// Docker keeps in `auths`.
mod base64_free {
    pub fn encode(s: &str) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = (u32::from(chunk[0]) << 16)
                | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
                | u32::from(*chunk.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

/// Pull progress: with `--json`, `pull` events (start, one per layer status,
/// done with the image id and digest) on stdout; off a terminal nothing
/// transient on stderr; on a terminal (a pty from `script`) a total-bytes
/// line.
#[test]
fn pull_progress_is_json_on_stdout_and_a_line_only_on_a_terminal() {
    let registry = Registry::start();
    let app = TestApp::new("reg-progress");
    let (reference, id) = registry.push_fresh("v1", "progress/web:1");
    let publish = format!("{}:{DEMO_PORT}", support::free_port());
    let out = app.swap(&["--json", "deploy", app.name(), "--image", &reference, "--publish", &publish]);
    assert_exit(&out, 0);
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let pulls: Vec<&Value> = events.iter().filter(|e| e["event"] == "pull").collect();
    assert_eq!(pulls.first().map(|e| e["status"].clone()), Some("start".into()), "{pulls:?}");
    assert!(pulls.iter().any(|e| e["status"] == "layer" && e["layer"].is_string()), "{pulls:?}");
    let done = pulls.last().unwrap();
    assert_eq!(done["status"], "done");
    assert_eq!(done["image_id"], id.as_str());
    assert!(done["repo_digest"].as_str().unwrap_or_default().contains("@sha256:"), "{done}");
    assert_eq!(done["registry"], registry.host().as_str());
    let plan_at = events.iter().position(|e| e["event"] == "plan").expect("a plan event");
    assert!(pulls.len() <= plan_at, "pull events after the plan: the pull must come first");
    let err = stderr(&out);
    assert!(!err.contains("pulling:") && !err.contains('\r'), "transient progress off a terminal:\n{err}");

    let (moved, _) = registry.push_fresh("v2", "progress/web:1");
    let cmd = format!(
        "{} --state-dir {} deploy {} --image {moved} --pull always",
        env!("CARGO_BIN_EXE_swap"),
        app.state_dir.display(),
        app.name()
    );
    let tty = std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().expect("run script");
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{}", describe(&tty));
    assert!(shown.contains("pulling: ") && shown.contains(" layers)"), "no progress line on a terminal:\n{shown}");
}

/// `--if-changed`, as an unattended poll runs it: while the registry's tag
/// resolves to the image serving, exit 0 "up to date", the same container,
/// not a byte more journal; once the tag moves, a deploy as usual.
#[test]
fn if_changed_is_a_no_op_while_up_to_date_and_deploys_a_moved_tag() {
    let registry = Registry::start();
    let app = TestApp::new("reg-ifchanged");
    let port = support::free_port();
    let (reference, _) = registry.push_fresh("v1", "poll/web:stable");
    let publish = format!("{port}:{DEMO_PORT}");
    let out = app.swap(&["deploy", app.name(), "--image", &reference, "--publish", &publish]);
    assert_exit(&out, 0);
    assert_answers(port, "v1");

    let before = snapshot(&app);
    for _ in 0..2 {
        let out = app.swap(&["deploy", app.name(), "--image", &reference, "--if-changed"]);
        assert_exit(&out, 0);
        assert!(stderr(&out).contains("up to date"), "{}", describe(&out));
        assert_eq!(snapshot(&app), before, "an up-to-date poll changed something or grew the journal");
    }

    let (_, v2) = registry.push_fresh("v2", "poll/web:stable");
    let out = app.swap(&["--json", "deploy", app.name(), "--image", &reference, "--if-changed"]);
    assert_exit(&out, 0);
    assert_answers(port, "v2");
    support::assert_settled(app.name(), &v2);
    assert_eq!(begins(&app).len(), 2, "the moved tag was not deployed exactly once");
}

/// `credHelpers` and `credsStore`: the configured `docker-credential-*`
/// helper gives the login for the htpasswd registry; a helper that has no
/// login for a registry ("credentials not found", as the protocol says)
/// means an anonymous pull, as with the docker CLI.
#[test]
fn credential_helpers_give_the_login_and_none_means_anonymous() {
    use std::os::unix::fs::PermissionsExt;
    const PASSWORD: &str = "helper-pw-5d1e-never-shown";
    let locked = Registry::start_with_auth("swapci", PASSWORD);
    let open = Registry::start();
    let app = TestApp::new("reg-helper");
    let port = support::free_port();
    serve_v1(&app, port);
    let (locked_ref, v2) = locked.push_fresh("v2", "helper/web:1");
    let (open_ref, v1) = open.push_fresh("v1", "helper/web:1");

    let bin = tempfile::tempdir().unwrap();
    let helper = bin.path().join("docker-credential-swaptest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\nif [ \"$server\" = \"{}\" ]; then\n  \
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"swapci\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n\
             else\n  echo 'credentials not found in native keychain'\n  exit 1\nfi\n",
            locked.host()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.json"),
        format!(r#"{{"credsStore": "swaptest", "credHelpers": {{"{}": "swaptest"}}}}"#, locked.host()),
    )
    .unwrap();
    let env = [("PATH", path.as_str()), ("DOCKER_CONFIG", config.path().to_str().unwrap())];

    let first = app.swap_env(&env, &["-v", "deploy", app.name(), "--image", &locked_ref]);
    assert_exit(&first, 0);
    assert_answers(port, "v2");
    support::assert_settled(app.name(), &v2);
    let second = app.swap_env(&env, &["-v", "deploy", app.name(), "--image", &open_ref]);
    assert_exit(&second, 0);
    assert_answers(port, "v1");
    support::assert_settled(app.name(), &v1);

    let journal = std::fs::read_to_string(app.journal_path()).unwrap();
    for text in [&first.stdout, &first.stderr, &second.stdout, &second.stderr]
        .map(|b| String::from_utf8_lossy(b).to_string())
        .into_iter()
        .chain([journal])
    {
        assert!(!text.contains(PASSWORD), "the password leaked:\n{text}");
    }
}

/// Containers run the reference the user gave, and `history` and `status`
/// show it with the short id. After the registry's tag moved and a
/// `--pull always` deployed the new image, `swap rollback` restores the
/// exact earlier image by id (the tag no longer names it).
#[test]
fn rollback_after_the_tag_moved_restores_the_exact_earlier_image() {
    let registry = Registry::start();
    let app = TestApp::new("reg-rb-moved");
    let port = support::free_port();
    let (reference, v1) = registry.push_fresh("v1", "rbmoved/web:stable");
    let publish = format!("{port}:{DEMO_PORT}");
    assert_exit(&app.swap(&["deploy", app.name(), "--image", &reference, "--publish", &publish]), 0);
    let created_from = support::inspect(app.name()).unwrap()["Config"]["Image"].clone();
    assert_eq!(created_from, reference.as_str(), "not created from the reference given");
    let (_, v2) = registry.push_fresh("v2", "rbmoved/web:stable");
    assert_exit(&app.swap(&["deploy", app.name(), "--image", &reference, "--pull", "always"]), 0);
    support::assert_settled(app.name(), &v2);

    let history = app.swap(&["history", app.name()]);
    let want = format!("{reference} ({})", &v2["sha256:".len().."sha256:".len() + 12]);
    assert!(support::stdout(&history).contains(&want), "history lacks {want}:\n{}", describe(&history));
    let status = app.swap(&["status", app.name()]);
    assert!(support::stdout(&status).contains(&want), "status lacks {want}:\n{}", describe(&status));

    let out = app.swap(&["rollback", app.name()]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("by id"), "the moved tag is not explained:\n{}", describe(&out));
    assert_answers(port, "v1");
    support::assert_settled(app.name(), &v1);
}

/// The earlier image was removed from the engine (an image prune, a disk
/// clean-up): `swap rollback` pulls it back by the digest the journal
/// recorded, before changing anything, and restores it.
#[test]
fn rollback_pulls_a_removed_image_back_by_its_digest() {
    let registry = Registry::start();
    let app = TestApp::new("reg-rb-gone");
    let port = support::free_port();
    let (first, v1) = registry.push_fresh("v1", "rbgone/web:1");
    let (second, v2) = registry.push_fresh("v2", "rbgone/web:2");
    let publish = format!("{port}:{DEMO_PORT}");
    assert_exit(&app.swap(&["deploy", app.name(), "--image", &first, "--publish", &publish]), 0);
    assert_exit(&app.swap(&["deploy", app.name(), "--image", &second]), 0);
    support::assert_settled(app.name(), &v2);
    // Nothing uses v1 any more: remove it, tags and all.
    docker_ok(&["rmi", "-f", &v1]);
    assert_eq!(image_id(&v1), None);

    let out = app.swap(&["rollback", app.name()]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("pulling it back"), "{}", describe(&out));
    assert_answers(port, "v1");
    support::assert_settled(app.name(), &v1);
    // The rollback's begin says what it pulled back.
    let pulled = begins(&app).pop().unwrap()["data"]["pulled"].clone();
    assert_eq!(pulled["image_id"], v1.as_str(), "{pulled}");
    assert!(pulled["reference"].as_str().is_some_and(|r| r.contains("@sha256:")), "{pulled}");
}

/// An earlier image that was built here and then removed cannot be found
/// again: the rollback is refused with the reason, exit 2, and the current
/// version keeps serving.
#[test]
fn rollback_to_a_removed_local_image_is_refused_and_nothing_changes() {
    let registry = Registry::start();
    let app = TestApp::new("reg-rb-local");
    let port = support::free_port();
    // A local image of the app's own, never pushed anywhere.
    let local = format!("swap-rb-local:{}", std::process::id());
    let dockerfile = format!("FROM {}\nLABEL swap.test.local={}\n", image("v1"), app.name());
    let mut child = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &local, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), dockerfile.as_bytes()).unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let local_id = image_id(&local).unwrap();
    let (second, v2) = registry.push_fresh("v2", "rblocal/web:2");
    let publish = format!("{port}:{DEMO_PORT}");
    assert_exit(&app.swap(&["deploy", app.name(), "--image", &local, "--publish", &publish]), 0);
    assert_exit(&app.swap(&["deploy", app.name(), "--image", &second]), 0);
    docker_ok(&["rmi", "-f", &local_id]);
    let before = snapshot(&app);

    let out = app.swap(&["rollback", app.name()]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("never pulled from a registry"), "{}", describe(&out));
    assert_eq!(snapshot(&app), before, "a refused rollback changed something");
    support::assert_settled(app.name(), &v2);
}

/// An unattended poll that met a bad image (it failed its health gate and
/// was rolled back) does not deploy and roll it back again on every poll:
/// while the tag names that image, a poll changes nothing, journals
/// nothing and says why; once a new image is pushed it is deployed.
#[test]
fn if_changed_remembers_an_image_it_rolled_back() {
    let registry = Registry::start();
    let app = TestApp::new("reg-bad-digest");
    let port = support::free_port();
    serve_v1(&app, port);
    let (reference, _) = registry.push_fresh("crash", "baddigest/web:stable");
    let poll = || app.swap(&["deploy", app.name(), "--image", &reference, "--if-changed"]);

    assert_exit(&poll(), 1);
    assert_answers(port, "v1");
    let before = snapshot(&app);
    let out = poll();
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("not trying it again"), "{}", describe(&out));
    assert_eq!(snapshot(&app), before, "a held-back poll changed something or grew the journal");

    let (_, good) = registry.push_fresh("v2", "baddigest/web:stable");
    assert_exit(&poll(), 0);
    assert_answers(port, "v2");
    support::assert_settled(app.name(), &good);
}

/// `--keep-images 2`: after each successful deploy the images earlier
/// deploys brought are removed, but those of the last two deploys and any a
/// container uses (here a bystander's); each removal is journaled, and a
/// rollback to a removed image says so and pulls it back by digest.
#[test]
fn keep_images_removes_old_images_but_never_one_in_use() {
    let registry = Registry::start();
    let app = TestApp::new("reg-keep");
    let port = support::free_port();
    let images: Vec<(String, String)> =
        (0..4).map(|i| registry.push_fresh(if i % 2 == 0 { "v1" } else { "v2" }, &format!("keep/web:{i}"))).collect();
    let publish = format!("{port}:{DEMO_PORT}");
    let deploy = |i: usize| {
        let mut args = vec!["deploy", app.name(), "--image", &images[i].0, "--keep-images", "2"];
        if i == 0 {
            args.extend(["--publish", &publish]);
        }
        let out = app.swap(&args);
        assert_exit(&out, 0);
    };
    deploy(0);
    deploy(1);
    // A container that is not the app's runs image 1: it must keep it.
    let bystander = format!("{}-bystander", app.name());
    support::run_container(&bystander, &images[1].0, &[]);
    deploy(2);
    deploy(3);
    let present = |i: usize| image_id(&images[i].1).is_some();
    let _ = support::docker_output(&["rm", "-f", &bystander]);
    assert!(!present(0), "image 0 is beyond the last two deploys and unused, yet still there");
    assert!(present(1), "image 1 is used by another container and was removed");
    assert!(present(2) && present(3), "the last two deploys' images must stay");
    let removed: Vec<Value> = journal(&app)
        .into_iter()
        .filter(|r| r["data"]["kind"] == "done" && r["data"]["step"]["step"] == "remove_image")
        .collect();
    assert!(removed.iter().any(|r| r["data"]["step"]["image"] == images[0].1.as_str()), "{removed:?}");

    // The second deploy went from image 0 to image 1: going back to what
    // served before it means image 0, which the clean-up removed.
    let second = begins(&app)[1]["group"].as_str().unwrap().to_string();
    let out = app.swap(&["rollback", app.name(), "--to", &second]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("removed it (--keep-images)"), "{}", describe(&out));
    support::assert_settled(app.name(), &images[0].1);
}
