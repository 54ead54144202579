//! The environment failing under a deploy, on the real Docker engine: the
//! daemon unreachable at start and mid-deploy (a socket proxy in front of
//! the real daemon that the test cuts or stalls), the journal's disk full,
//! the state dir removed mid-deploy, a journal of a newer format version or
//! corrupt, SIGTERM during a deploy, twenty apps deployed at once, and the
//! privacy of state files and output. Each test checks the exit code, what
//! serves over HTTP, the journal, and that `swap recover` settles the app.
//!
//! The table in `docs/reliability.md` lists every fault with its test.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support;
use crate::support::{assert_exit, id_of, journal_at as records_at, kind, publish, text};
use crate::support::{describe, image, wait_until, TestApp};
use serde_json::Value;

/// How long a demo app may take to answer after a deploy returned.
const ANSWER: Duration = Duration::from_secs(10);

/// The real daemon's socket, which the proxy forwards to.
const DOCKER_SOCK: &str = "/var/run/docker.sock";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn records(app: &TestApp) -> Vec<Value> {
    records_at(&app.journal_path())
}

/// The records of the last deploy (the group of the last `begin`).
fn last_deploy(records: &[Value]) -> (String, Vec<Value>) {
    let Some(begin) = records.iter().rev().find(|r| kind(r) == "begin") else {
        return (String::new(), vec![]);
    };
    let group = begin["group"].as_str().unwrap_or_default().to_string();
    let mine = records.iter().filter(|r| r["group"] == group.as_str()).cloned().collect();
    (group, mine)
}

/// Names of the steps whose intent is durable in `records`.
fn intended(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter(|r| kind(r) == "intent")
        .filter_map(|r| r["data"]["step"]["step"].as_str().map(str::to_string))
        .collect()
}

#[track_caller]
fn assert_ends(app: &TestApp, outcome: &str) {
    let records = records(app);
    let last = records.last().expect("journal is empty");
    assert_eq!(kind(last), "end", "last journal record is not an end: {last}");
    assert_eq!(last["data"]["outcome"], outcome, "last journal record: {last}");
}

#[track_caller]
fn assert_unfinished(app: &TestApp) {
    let records = records(app);
    let last = records.last().expect("journal is empty");
    assert_ne!(kind(last), "end", "the deploy was finished, expected it left to `swap recover`: {last}");
}

/// What `port` answers, e.g. `Some("v1\n")`.
fn answer(port: u16) -> Option<String> {
    support::http_get(port, ANSWER)
}

#[track_caller]
fn assert_answers(port: u16, version: &str) {
    assert_eq!(answer(port).as_deref(), Some(format!("{version}\n").as_str()), "port {port} should answer {version}");
}

/// First deploy of v1 on the test bridge, publishing `port`, plus `extra`.
fn deploy_v1(app: &TestApp, port: u16, extra: &[&str]) {
    let p = publish(port);
    let mut args =
        vec!["deploy", app.name(), "--image", "swap-demo:v1", "--publish", &p, "--network", support::bridge()];
    args.extend_from_slice(extra);
    let out = app.swap(&args);
    assert_exit(&out, 0);
    assert_answers(port, "v1");
}

fn restart_policy(name: &str) -> String {
    let c = support::inspect(name).unwrap_or_else(|| panic!("no container {name}"));
    c["HostConfig"]["RestartPolicy"]["Name"].as_str().unwrap_or_default().to_string()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display())).permissions().mode() & 0o777
}

/// `swap recover APP` settles the app on `image_tag` with the journal
/// ending `outcome`; a second recover changes nothing.
#[track_caller]
fn recover_settles(app: &TestApp, image_tag: &str, outcome: &str) {
    let out = app.swap(&["recover", app.name()]);
    assert_exit(&out, 0);
    support::assert_settled(app.name(), &image(image_tag));
    assert_ends(app, outcome);
    let before = std::fs::read(app.journal_path()).unwrap();
    let out = app.swap(&["recover", app.name()]);
    assert_exit(&out, 0);
    assert_eq!(std::fs::read(app.journal_path()).unwrap(), before, "a second recover changed the journal");
}

/// `swap <args>` in the background, output captured.
fn spawn_swap(app: &TestApp, env: &[(&str, &str)], args: &[&str]) -> Child {
    app.spawn(env, args)
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child this process has not reaped.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({}, {sig}) failed: {}", child.id(), std::io::Error::last_os_error());
}

/// Waits until the container named `app` runs `tag`'s image: a re-deploy's
/// candidate has been started and the deploy waits in its health gate.
#[track_caller]
fn wait_for_candidate(app: &str, tag: &str, child: &mut Child) {
    let want = support::image_id(&image(tag)).expect("demo image");
    let ok = wait_until(Duration::from_secs(30), || {
        support::inspect(app).is_some_and(|c| c["Image"] == want.as_str() && c["State"]["Running"] == true)
    });
    if !ok {
        let _ = child.kill();
        panic!("the candidate never started under {app}");
    }
    assert!(child.try_wait().unwrap().is_none(), "swap ended before the health gate");
}

// ---------------------------------------------------------------------------
// A socket proxy in front of the real daemon, which the test cuts or stalls
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward byte for byte.
    Pass,
    /// Every connection closed, new ones closed at once.
    Cut,
    /// Connections accepted, nothing forwarded either way.
    Stall,
    /// The triggering request is forwarded, then every connection is cut
    /// (and new ones closed): the daemon acts on a call whose reply is lost.
    CutAfterForward,
}

struct Shared {
    mode: Mutex<Mode>,
    /// Both ends of every connection, to cut them.
    conns: Mutex<Vec<UnixStream>>,
    /// Request-line substrings still to be seen, in order; when the last is
    /// seen, the proxy switches to `fire` before forwarding that request.
    trigger: Mutex<Vec<String>>,
    fire: Mode,
    fired: AtomicBool,
    /// Run once when the trigger fires, before the request is forwarded.
    hook: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Every request line seen.
    requests: Mutex<Vec<String>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("mode", &self.mode()).field("fired", &self.fired).finish_non_exhaustive()
    }
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }

    fn cut_all(&self) {
        for s in self.conns.lock().unwrap().iter() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
        if mode == Mode::Cut {
            self.cut_all();
        }
    }

    /// Records the request lines in a client chunk; true if the trigger fired.
    fn inspect(&self, chunk: &[u8]) -> bool {
        let text = String::from_utf8_lossy(chunk);
        let mut fired = false;
        for line in text.split("\r\n") {
            if !["GET /", "POST /", "PUT /", "DELETE /", "HEAD /"].iter().any(|m| line.starts_with(m)) {
                continue;
            }
            self.requests.lock().unwrap().push(line.to_string());
            let mut trigger = self.trigger.lock().unwrap();
            if trigger.first().is_some_and(|p| line.contains(p.as_str())) {
                trigger.remove(0);
                if trigger.is_empty() && !self.fired.swap(true, Ordering::SeqCst) {
                    fired = true;
                }
            }
        }
        if fired {
            if let Some(hook) = self.hook.lock().unwrap().take() {
                hook();
            }
            self.set(self.fire);
        }
        fired
    }

    fn park(&self) {
        while !self.closed.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The proxy: a unix socket in a temp dir forwarding to [`DOCKER_SOCK`].
#[derive(Debug)]
struct DockerProxy {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    shared: Arc<Shared>,
}

impl DockerProxy {
    /// Starts forwarding; when requests matching each of `trigger` in turn
    /// have been seen, switches to `fire` before forwarding the last one.
    fn start(trigger: &[&str], fire: Mode) -> DockerProxy {
        Self::start_with_hook(trigger, fire, None)
    }

    /// As [`DockerProxy::start`], running `hook` when the trigger fires,
    /// before that request reaches the daemon.
    fn start_with_hook(trigger: &[&str], fire: Mode, hook: Option<Box<dyn FnOnce() + Send>>) -> DockerProxy {
        let dir = tempfile::tempdir().expect("temp dir for the proxy socket");
        let sock = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&sock).expect("bind the proxy socket");
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Pass),
            conns: Mutex::new(vec![]),
            trigger: Mutex::new(trigger.iter().map(|s| s.to_string()).collect()),
            fire,
            fired: AtomicBool::new(false),
            hook: Mutex::new(hook),
            requests: Mutex::new(vec![]),
            closed: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            while !s.closed.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        Self::serve(&s, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        DockerProxy { _dir: dir, sock, shared }
    }

    fn serve(s: &Arc<Shared>, client: UnixStream) {
        match s.mode() {
            Mode::Cut | Mode::CutAfterForward => drop(client),
            Mode::Stall => s.conns.lock().unwrap().push(client),
            Mode::Pass => {
                let upstream = UnixStream::connect(DOCKER_SOCK).expect("connect to the real daemon");
                {
                    let mut conns = s.conns.lock().unwrap();
                    conns.push(client.try_clone().unwrap());
                    conns.push(upstream.try_clone().unwrap());
                }
                let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let (sa, sb) = (Arc::clone(s), Arc::clone(s));
                std::thread::spawn(move || Self::pump(&sa, client, upstream, true));
                std::thread::spawn(move || Self::pump(&sb, u2, c2, false));
            }
        }
    }

    fn pump(s: &Shared, mut from: UnixStream, mut to: UnixStream, requests: bool) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown(std::net::Shutdown::Write);
                    return;
                }
                Ok(n) => n,
            };
            if requests {
                s.inspect(&buf[..n]);
            }
            match s.mode() {
                Mode::Pass => {
                    if to.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Mode::Cut => {
                    s.cut_all();
                    return;
                }
                Mode::CutAfterForward => {
                    let _ = to.write_all(&buf[..n]);
                    let _ = to.flush();
                    s.set(Mode::Cut);
                    return;
                }
                Mode::Stall => return s.park(),
            }
        }
    }

    /// `DOCKER_HOST` for swap.
    fn url(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// Forwards again, as a daemon back from a restart would answer.
    fn restore(&self) {
        self.shared.set(Mode::Pass);
    }

    fn fired(&self) -> bool {
        self.shared.fired.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.cut_all();
    }
}

// ---------------------------------------------------------------------------
// 1-2. Docker unreachable
// ---------------------------------------------------------------------------

#[test]
fn docker_unreachable_at_start_exits_5_and_changes_nothing() {
    support::images();
    let app = TestApp::new("unreach-start");
    let port = support::free_port();
    deploy_v1(&app, port, &[]);
    let id = id_of(app.name());
    let journal = std::fs::read(app.journal_path()).unwrap();
    let out = app
        .swap_env(&[("DOCKER_HOST", "unix:///nonexistent.sock")], &["deploy", app.name(), "--image", "swap-demo:v2"]);
    assert_exit(&out, 5);
    assert!(text(&out).contains("Docker is unreachable"), "{}", describe(&out));
    assert!(text(&out).contains("/nonexistent.sock"), "the socket from DOCKER_HOST is not named:\n{}", describe(&out));
    assert_eq!(std::fs::read(app.journal_path()).unwrap(), journal, "the journal changed");
    assert_eq!(id_of(app.name()), id);
    assert_answers(port, "v1");
    support::assert_settled(app.name(), "swap-demo:v1");
    // recover through the unreachable daemon: exit 5 too, nothing changed.
    let out = app.swap_env(&[("DOCKER_HOST", "unix:///nonexistent.sock")], &["recover", app.name()]);
    assert_exit(&out, 5);
    assert_eq!(std::fs::read(app.journal_path()).unwrap(), journal, "the journal changed");
    recover_settles(&app, "v1", "deployed");
}

/// Re-deploys v1 -> v2 through a proxy that cuts the daemon off when it sees
/// the requests `trigger`; expects exit 5, a sound unfinished journal, what
/// `serving_after_cut` answering meanwhile, and recovery settling on
/// `settle_on` with the journal ending `outcome`.
fn cut_mid_deploy(tag: &str, trigger: &[&str], serving_after_cut: &str, settle_on: &str, outcome: &str) {
    support::images();
    let app = TestApp::new(tag);
    let port = support::free_port();
    deploy_v1(&app, port, &[]);
    let proxy = DockerProxy::start(trigger, Mode::Cut);
    let out = app.swap_env(&[("DOCKER_HOST", &proxy.url())], &["deploy", app.name(), "--image", "swap-demo:v2"]);
    assert!(proxy.fired(), "the proxy never saw {trigger:?}; requests:\n{:#?}\n{}", proxy.requests(), describe(&out));
    assert_exit(&out, 5);
    assert!(text(&out).contains("Docker is unreachable"), "{}", describe(&out));
    // docs/exit-codes.md: exit 5 says the deploy is unfinished and to run
    // `swap recover`.
    assert!(text(&out).contains("swap recover"), "no hint to run `swap recover`:\n{}", describe(&out));
    drop(proxy);
    assert_unfinished(&app);
    let verify = app.swap(&["journal", "verify", app.name()]);
    assert_exit(&verify, 0);
    assert_answers(port, serving_after_cut);
    recover_settles(&app, settle_on, outcome);
    assert_answers(port, settle_on);
}

#[test]
fn docker_cut_before_stopping_the_old_container_exits_5_then_recover_rolls_back() {
    // The stop request never reaches Docker: v1 keeps serving throughout.
    cut_mid_deploy("cut-stop", &["/stop"], "v1", "v1", "rolled_back");
}

#[test]
fn docker_cut_in_the_health_gate_exits_5_then_recover_rolls_back() {
    // The candidate was started; the gate's first inspect is cut.
    cut_mid_deploy("cut-gate", &["/start", "/json"], "v2", "v1", "rolled_back");
}

#[test]
fn docker_cut_after_the_commit_exits_5_then_recover_finishes() {
    // The commit is durable; removing the old container is cut.
    cut_mid_deploy("cut-remove", &["DELETE /containers"], "v2", "v2", "deployed");
}

/// swap is killed (SIGKILL) with a Docker request in flight: the proxy,
/// on seeing `trigger`, kills swap and holds that request for a second
/// before it forwards it, so the request lands in Docker after swap died,
/// as an in-flight request does. `swap recover`, run at once, must wait for
/// it to land and then roll back: v1 serving on its port with its restart
/// policy, nothing left behind, also a few seconds later.
fn killed_with_a_request_in_flight(tag: &str, trigger: &str, cut_off: &str) {
    support::images();
    let app = TestApp::new(tag);
    let port = support::free_port();
    deploy_v1(&app, port, &["--restart", "unless-stopped"]);
    let pid = Arc::new(AtomicU32::new(0));
    let victim = Arc::clone(&pid);
    let hook: Box<dyn FnOnce() + Send> = Box::new(move || {
        while victim.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: kill(2) on the pid of the test's own unreaped child.
        unsafe { libc::kill(victim.load(Ordering::SeqCst) as libc::pid_t, libc::SIGKILL) };
        std::thread::sleep(Duration::from_secs(1));
    });
    let proxy = DockerProxy::start_with_hook(&[trigger], Mode::Pass, Some(hook));
    let child = spawn_swap(&app, &[("DOCKER_HOST", &proxy.url())], &["deploy", app.name(), "--image", "swap-demo:v2"]);
    pid.store(child.id(), Ordering::SeqCst);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "swap was not killed:\n{}", describe(&out));
    assert!(proxy.fired(), "the proxy never saw {trigger:?}; requests:\n{:#?}", proxy.requests());
    let recs = records(&app);
    let (_, mine) = last_deploy(&recs);
    let last = mine.last().unwrap();
    assert_eq!(
        (kind(last), last["data"]["step"]["step"].as_str()),
        ("intent", Some(cut_off)),
        "swap was not killed between the intent and the outcome of {cut_off}"
    );
    let out = app.swap(&["recover", app.name()]);
    assert_exit(&out, 0);
    assert!(text(&out).contains("waiting"), "recover did not wait for the request in flight:\n{}", describe(&out));
    assert_ends(&app, "rolled_back");
    let recs = records(&app);
    let (_, mine) = last_deploy(&recs);
    let recovery = mine.iter().find(|r| kind(r) == "recovery").expect("a recovery record");
    assert!(recovery["data"]["waited_ms"].as_u64().is_some_and(|ms| ms > 0), "the wait is not journaled: {recovery}");
    // The request lands about a second after the kill: recovery stops
    // waiting then, not at its bound (13 s for a stop with the default
    // timeout).
    let waited = recovery["data"]["waited_ms"].as_u64().unwrap_or_default();
    assert!(waited < 10_000, "recover waited {waited} ms, past the landing of the request");
    let show = app.swap(&["journal", "show", app.name()]);
    assert!(text(&show).contains("after waiting"), "`journal show` does not tell the wait:\n{}", describe(&show));
    for when in ["after recover", "3 s after recover"] {
        if let Err(why) = support::settled(app.name(), &[&image("v1")]) {
            panic!("{when}: {why}\n{}", describe(&out));
        }
        assert_answers(port, "v1");
        assert_eq!(restart_policy(app.name()), "unless-stopped", "{when}: the restart policy was not restored");
        std::thread::sleep(Duration::from_secs(3));
    }
    drop(proxy);
}

#[test]
fn killed_while_docker_creates_the_candidate_recover_waits_and_removes_it() {
    killed_with_a_request_in_flight("orphan-create", "/containers/create", "create_candidate");
}

#[test]
fn killed_while_docker_stops_the_old_container_recover_waits_and_restarts_it() {
    killed_with_a_request_in_flight("orphan-stop", "/stop", "stop_old");
}

/// Docker goes away for two seconds at the candidate's start (the old
/// container is stopped and parked, nothing serves) and comes back: the
/// deploy does not stop at exit 5 with the app down, it waits for Docker and
/// rolls back, exit 1, v1 serving again with its restart policy.
#[test]
fn docker_gone_briefly_mid_deploy_is_rolled_back_when_it_answers_again() {
    support::images();
    let app = TestApp::new("blip");
    let port = support::free_port();
    deploy_v1(&app, port, &["--restart", "unless-stopped"]);
    let proxy = DockerProxy::start(&["/stop", "/start"], Mode::Cut);
    let child = spawn_swap(&app, &[("DOCKER_HOST", &proxy.url())], &["deploy", app.name(), "--image", "swap-demo:v2"]);
    assert!(wait_until(Duration::from_secs(30), || proxy.fired()), "the deploy never sent the candidate's start");
    std::thread::sleep(Duration::from_secs(2));
    let down = support::http_get(port, Duration::from_millis(300));
    assert_eq!(down, None, "something answered while the old container was stopped and Docker cut off");
    proxy.restore();
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 1);
    assert!(text(&out).contains("rolled back"), "{}", describe(&out));
    assert_ends(&app, "rolled_back");
    support::assert_settled(app.name(), "swap-demo:v1");
    assert_answers(port, "v1");
    assert_eq!(restart_policy(app.name()), "unless-stopped", "the old container's restart policy was not restored");
    assert_exit(&app.swap(&["journal", "verify", app.name()]), 0);
}

/// The reply to the old container's stop is lost (the connection drops
/// right after the request reached the daemon), and the stop lands seconds
/// later: the old version ignores its stop signal, so Docker kills it only
/// at the end of the stop timeout. The rollback must wait for the call in
/// flight, as recovery does after a crash, or it sees the old container
/// still running, ends "rolled back", and the late stop then leaves the app
/// down.
#[test]
fn a_lost_reply_to_the_stop_is_waited_for_and_the_rollback_restarts_the_old_version() {
    support::images();
    let app = TestApp::new("lost-stop");
    let port = support::free_port();
    // PID 1 ignores a signal it has no handler for: SIGUSR1 stops nothing.
    support::run_container(
        app.name(),
        "swap-demo:v1",
        &["-p", &publish(port), "--stop-signal", "SIGUSR1", "--restart", "unless-stopped"],
    );
    assert_answers(port, "v1");
    let proxy = DockerProxy::start(&["/stop"], Mode::CutAfterForward);
    let shared = Arc::clone(&proxy.shared);
    let restorer = std::thread::spawn(move || {
        wait_until(Duration::from_secs(60), || shared.fired.load(Ordering::SeqCst));
        std::thread::sleep(Duration::from_millis(500));
        shared.set(Mode::Pass);
    });
    let out = app.swap_env(
        &[("DOCKER_HOST", &proxy.url())],
        &["deploy", app.name(), "--image", "swap-demo:v2", "--stop-timeout", "3"],
    );
    restorer.join().unwrap();
    assert!(proxy.fired(), "the deploy never sent the old container's stop");
    assert_exit(&out, 1);
    assert!(
        text(&out).contains("waiting up to"),
        "the rollback did not wait for the stop in flight:\n{}",
        describe(&out)
    );
    assert_ends(&app, "rolled_back");
    // Well past the moment the lost stop lands (its 3 s timeout).
    std::thread::sleep(Duration::from_secs(5));
    support::assert_settled(app.name(), "swap-demo:v1");
    assert_answers(port, "v1");
    assert_eq!(restart_policy(app.name()), "unless-stopped", "the old container's restart policy was not restored");
    let failed: Vec<Value> = records(&app).into_iter().filter(|r| kind(r) == "failed").collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["data"]["unreachable"], true, "the lost reply is not journaled as such: {}", failed[0]);
}

/// Docker goes away for two seconds right after the commit, at the old
/// container's removal: the new version serves, and the deploy finishes the
/// removal once Docker answers instead of leaving it to `swap recover`.
#[test]
fn docker_gone_briefly_after_the_commit_is_finished_when_it_answers_again() {
    support::images();
    let app = TestApp::new("blip-commit");
    let port = support::free_port();
    deploy_v1(&app, port, &[]);
    let proxy = DockerProxy::start(&["DELETE /containers"], Mode::Cut);
    let child = spawn_swap(&app, &[("DOCKER_HOST", &proxy.url())], &["deploy", app.name(), "--image", "swap-demo:v2"]);
    assert!(wait_until(Duration::from_secs(30), || proxy.fired()), "the deploy never sent the old container's removal");
    std::thread::sleep(Duration::from_secs(2));
    assert_answers(port, "v2");
    proxy.restore();
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 0);
    assert!(text(&out).contains("finishing as soon as Docker answers"), "{}", describe(&out));
    assert_ends(&app, "deployed");
    support::assert_settled(app.name(), "swap-demo:v2");
    assert_answers(port, "v2");
    assert_exit(&app.swap(&["journal", "verify", app.name()]), 0);
}

/// A network the candidate joins is deleted mid-deploy, after the candidate
/// was created and before it starts (the proxy runs `docker network rm`
/// when it sees the old container's stop request; a created container holds
/// no endpoint, so Docker lets the network go). The start fails "network …
/// not found", which swap retries as the moby PR#41011 race for a few
/// seconds, then gives up: the deploy rolls back, exit 1, v1 serves again on
/// its own network and port.
#[test]
fn network_deleted_mid_deploy_rolls_back_with_exit_1() {
    support::images();
    let app = TestApp::new("net-gone");
    let port = support::free_port();
    deploy_v1(&app, port, &["--restart", "unless-stopped"]);
    let net = format!("swap-fault-gone-{}", std::process::id());
    let _ = Command::new("docker").args(["network", "rm", &net]).output();
    support::docker_ok(&["network", "create", &net]);
    let hook_net = net.clone();
    let hook: Box<dyn FnOnce() + Send> = Box::new(move || {
        let out = Command::new("docker").args(["network", "rm", &hook_net]).output().unwrap();
        assert!(out.status.success(), "docker network rm: {}", String::from_utf8_lossy(&out.stderr));
    });
    let proxy = DockerProxy::start_with_hook(&["/stop"], Mode::Pass, Some(hook));
    let out = app.swap_env(
        &[("DOCKER_HOST", &proxy.url())],
        &["deploy", app.name(), "--image", "swap-demo:v2", "--network", &net],
    );
    assert!(proxy.fired(), "the proxy never saw the stop request:\n{:#?}\n{}", proxy.requests(), describe(&out));
    drop(proxy);
    let gone = Command::new("docker").args(["network", "inspect", &net]).output().unwrap();
    assert!(!gone.status.success(), "the network was not deleted mid-deploy");
    assert_exit(&out, 1);
    assert!(text(&out).contains("not found"), "the message does not say the network is gone:\n{}", describe(&out));
    assert_ends(&app, "rolled_back");
    let (_, mine) = last_deploy(&records(&app));
    assert!(intended(&mine).contains(&"start_candidate".to_string()), "{mine:#?}");
    support::assert_settled(app.name(), "swap-demo:v1");
    assert_answers(port, "v1");
    assert_eq!(restart_policy(app.name()), "unless-stopped", "the old container's restart policy was not restored");
}

/// A daemon that accepts the stop request and never answers: swap waits (up
/// to bollard's 120 s request timeout — too long for a test), a first
/// SIGTERM cannot interrupt the stalled call, the second stops at once with
/// exit 5, and recovery rolls back.
#[test]
fn docker_stalled_mid_deploy_then_two_sigterms_exit_5_and_recover_rolls_back() {
    support::images();
    let app = TestApp::new("stall");
    let port = support::free_port();
    deploy_v1(&app, port, &[]);
    let proxy = DockerProxy::start(&["/stop"], Mode::Stall);
    let mut child =
        spawn_swap(&app, &[("DOCKER_HOST", &proxy.url())], &["deploy", app.name(), "--image", "swap-demo:v2"]);
    assert!(wait_until(Duration::from_secs(30), || proxy.fired()), "the deploy never sent its stop request");
    std::thread::sleep(Duration::from_secs(2));
    assert!(child.try_wait().unwrap().is_none(), "swap gave up on a stalled daemon within 2 s");
    assert_answers(port, "v1");
    signal(&child, libc::SIGTERM);
    std::thread::sleep(Duration::from_secs(1));
    assert!(child.try_wait().unwrap().is_none(), "a first SIGTERM ended swap during a stalled call");
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 5);
    assert!(text(&out).contains("swap recover"), "{}", describe(&out));
    drop(proxy);
    assert_unfinished(&app);
    let (_, mine) = last_deploy(&records(&app));
    assert_eq!(intended(&mine).last().map(String::as_str), Some("stop_old"), "{mine:#?}");
    assert_exit(&app.swap(&["journal", "verify", app.name()]), 0);
    assert_answers(port, "v1");
    recover_settles(&app, "v1", "rolled_back");
    assert_answers(port, "v1");
}

// ---------------------------------------------------------------------------
// 3. The journal's disk full
// ---------------------------------------------------------------------------

/// A tmpfs mounted on a dir, unmounted when dropped (also on panic).
#[derive(Debug)]
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount a tmpfs on {} (needs root)", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with `dir/filler`.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = [0u8; 512];
    while f.write(&chunk).is_ok_and(|n| n > 0) {}
    path
}

/// The state dir's file system is full when a re-deploy starts: the deploy
/// cannot reserve the journal space it and its rollback need, so it
/// refuses before its `begin` (exit 1, saying how much space and where),
/// the old version serves untouched, the journal verifies clean and holds
/// nothing of the refused deploy. Once the disk has room the deploy goes
/// through.
#[test]
fn journal_disk_full_when_a_redeploy_starts_refuses_with_exit_1_and_changes_nothing() {
    support::images();
    let app = TestApp::new("disk-full");
    // Room for the first deploy's reservation (1 MiB), not for a second.
    let _fs = Tmpfs::mount(&app.state_dir, "2m");
    let port = support::free_port();
    deploy_v1(&app, port, &["--restart", "unless-stopped"]);
    let old = id_of(app.name());
    let journal_before = std::fs::read(app.journal_path()).unwrap();
    // The first deploy's reservation is still allocated past the journal's
    // end and would cover this deploy even on a full disk. Rewrite the
    // journal without it, as a compaction does (rename over it; the lock
    // file is what is locked, never the journal).
    let copy = app.journal_path().with_extension("copy");
    std::fs::copy(app.journal_path(), &copy).unwrap();
    std::fs::rename(&copy, app.journal_path()).unwrap();
    let filler = fill(&app.state_dir);
    let out = app.swap(&["deploy", app.name(), "--image", "swap-demo:v2"]);
    assert_exit(&out, 1);
    let msg = text(&out);
    let dir = app.journal_path().parent().unwrap().display().to_string();
    assert!(msg.contains("1048576 bytes") && msg.contains(&dir), "no size or place:\n{}", describe(&out));
    assert!(msg.contains("Nothing changed"), "{}", describe(&out));
    assert_eq!(std::fs::read(app.journal_path()).unwrap(), journal_before, "the refused deploy journaled");
    let verify = app.swap(&["journal", "verify", app.name()]);
    assert_exit(&verify, 0);
    support::assert_settled(app.name(), "swap-demo:v1");
    assert_eq!(id_of(app.name()), old);
    assert_eq!(restart_policy(app.name()), "unless-stopped");
    assert_answers(port, "v1");
    std::fs::remove_file(filler).unwrap();
    assert_exit(&app.swap(&["deploy", app.name(), "--image", "swap-demo:v2"]), 0);
    assert_answers(port, "v2");
    for f in std::fs::read_dir(app.state_dir.join(app.name())).unwrap() {
        let p = f.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{} has mode {:o}", p.display(), mode(&p));
    }
}

/// The journal's `fdatasync` fails (`SWAP_CRASH_AT=eio:N`, as a failing
/// disk does) at record `n` of a re-deploy, after the old container was
/// stopped. swap cannot journal, so it restores the old version without
/// journaling and exits 5: v1 answers at once, without `swap recover`,
/// with its restart policy back, and nothing named `APP--swap-*` runs. The
/// journal reads (the failed record was cut off); `swap recover` then
/// settles it as rolled back without changing Docker.
fn journal_fails_after_the_old_container_stopped(tag: &str, n: u32) {
    support::images();
    let app = TestApp::new(tag);
    let port = support::free_port();
    deploy_v1(&app, port, &["--restart", "unless-stopped"]);
    let old = id_of(app.name());
    let fault = format!("eio:{n}");
    let out = app.swap_env(&[("SWAP_CRASH_AT", &fault)], &["deploy", app.name(), "--image", "swap-demo:v2"]);
    assert_exit(&out, 5);
    let msg = text(&out);
    assert!(msg.contains("without journaling"), "{}", describe(&out));
    let (_, mine) = last_deploy(&records(&app));
    assert!(intended(&mine).iter().any(|s| s == "stop_old"), "the old container was not stopped: {mine:?}");
    support::assert_settled(app.name(), "swap-demo:v1");
    assert_eq!(id_of(app.name()), old);
    assert_eq!(restart_policy(app.name()), "unless-stopped");
    assert_answers(port, "v1");
    assert_exit(&app.swap(&["journal", "verify", app.name()]), 0);
    assert_unfinished(&app);
    recover_settles(&app, "v1", "rolled_back");
}

#[test]
fn journal_sync_fails_at_the_stop_done_record_restores_the_old_version_unjournaled() {
    // Records: 1 begin, 2-3 create, 4-5 park, 6-7 stop, 8-9 rename old.
    journal_fails_after_the_old_container_stopped("eio-stop", 7);
}

#[test]
fn journal_sync_fails_after_the_old_was_renamed_restores_the_old_version_unjournaled() {
    journal_fails_after_the_old_container_stopped("eio-rename", 10);
}

// ---------------------------------------------------------------------------
// 4. The state dir removed mid-deploy
// ---------------------------------------------------------------------------

#[test]
fn state_dir_removed_mid_deploy_rolls_back_before_the_commit() {
    support::images();
    let app = TestApp::new("rm-state");
    let port = support::free_port();
    deploy_v1(&app, port, &[]);
    // Longer than about 1 s and the demo's healthcheck (500 ms x 3 retries,
    // no start period) reports unhealthy before the app listens.
    let mut child =
        spawn_swap(&app, &[], &["deploy", app.name(), "--image", "swap-demo:v2", "--env", "DEMO_STARTUP_MS=1000"]);
    wait_for_candidate(app.name(), "v2", &mut child);
    std::fs::remove_dir_all(app.state_dir.join(app.name())).unwrap();
    let out = child.wait_with_output().unwrap();
    eprintln!("deploy after its state dir was removed:\n{}", describe(&out));
    // Appends would go to the unlinked file and never be read: the deploy
    // notices before its next intent (here: the commit) and rolls back.
    assert_exit(&out, 1);
    assert!(text(&out).contains("was removed or replaced"), "no word that the journal is gone:\n{}", describe(&out));
    support::assert_settled(app.name(), "swap-demo:v1");
    assert_answers(port, "v1");
    assert!(!app.journal_path().exists(), "swap re-created the removed journal");
    // The journal is gone with its history: status, history and recover
    // refuse with exit 2 ("no journal"), without crashing or changing Docker.
    for args in [&["status", app.name()][..], &["recover", app.name()], &["history", app.name()]] {
        let out = app.swap(args);
        eprintln!("swap {args:?} afterwards:\n{}", describe(&out));
        assert!(!text(&out).contains("panicked"), "{}", describe(&out));
        assert_exit(&out, 2);
        assert!(text(&out).contains("no journal"), "{}", describe(&out));
    }
    support::assert_settled(app.name(), "swap-demo:v1");
    // The next deploy starts a fresh journal.
    assert_exit(&app.swap(&["deploy", app.name(), "--image", "swap-demo:v2"]), 0);
    assert_answers(port, "v2");
    assert_ends(&app, "deployed");
}

// ---------------------------------------------------------------------------
// 5. A journal of a newer format version; a corrupt journal
// ---------------------------------------------------------------------------

/// Rewrites every line as format version 2, with a valid checksum chain
/// (docs/journal-format.md, "Checksum").
fn rewrite_as_v2(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut prev = "00000000".to_string();
    let mut out = String::new();
    for line in text.lines() {
        assert!(line.starts_with("{\"v\":1,"), "{line}");
        let old_prev = line.split("\"prev\":\"").nth(1).unwrap()[..8].to_string();
        let body = &line[..line.len() - 18];
        let body = body.replacen("{\"v\":1,", "{\"v\":2,", 1).replacen(
            &format!("\"prev\":\"{old_prev}\""),
            &format!("\"prev\":\"{prev}\""),
            1,
        );
        let crc = format!("{:08x}", crc32c::crc32c(format!("{body}}}").as_bytes()));
        out.push_str(&format!("{body},\"crc\":\"{crc}\"}}\n"));
        prev = crc;
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn journal_of_a_newer_format_version_halts_deploy_and_recover() {
    // The checksum rule, checked on the value the format document pins.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    support::images();
    let app = TestApp::new("newer-fmt");
    let port = support::free_port();
    deploy_v1(&app, port, &[]);
    let id = id_of(app.name());
    rewrite_as_v2(&app.journal_path());
    let journal = std::fs::read(app.journal_path()).unwrap();
    for args in [&["deploy", app.name(), "--image", "swap-demo:v2"][..], &["recover", app.name()]] {
        let out = app.swap(args);
        assert_exit(&out, 4);
        assert!(text(&out).contains("format version 2"), "{}", describe(&out));
        assert_eq!(std::fs::read(app.journal_path()).unwrap(), journal, "the journal changed");
        assert_eq!(id_of(app.name()), id);
        assert_answers(port, "v1");
        support::assert_settled(app.name(), "swap-demo:v1");
    }
}

#[test]
fn corrupt_journal_halts_naming_the_byte_offset_and_changes_nothing() {
    support::images();
    let app = TestApp::new("corrupt");
    let port = support::free_port();
    deploy_v1(&app, port, &[]);
    let id = id_of(app.name());
    let mut bytes = std::fs::read(app.journal_path()).unwrap();
    // A bit flip inside the second record (the first after the header).
    let offset = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
    bytes[offset + 40] ^= 0x04;
    std::fs::write(app.journal_path(), &bytes).unwrap();
    let needle = format!("byte {offset}");
    for args in [
        &["deploy", app.name(), "--image", "swap-demo:v2"][..],
        &["journal", "verify", app.name()],
        &["recover", app.name()],
    ] {
        let out = app.swap(args);
        assert_exit(&out, 4);
        assert!(
            text(&out).contains(&needle) && text(&out).contains("line 2"),
            "{args:?} should name {needle}:\n{}",
            describe(&out)
        );
        assert_eq!(std::fs::read(app.journal_path()).unwrap(), bytes, "the journal changed");
        assert_eq!(id_of(app.name()), id);
        assert_answers(port, "v1");
    }
    support::assert_settled(app.name(), "swap-demo:v1");
}

// ---------------------------------------------------------------------------
// 6. Signals
// ---------------------------------------------------------------------------

#[test]
fn sigterm_in_the_health_gate_rolls_back_exits_1_and_releases_the_lock() {
    support::images();
    let app = TestApp::new("sigterm");
    let port = support::free_port();
    deploy_v1(&app, port, &[]);
    let old = id_of(app.name());
    let mut child =
        spawn_swap(&app, &[], &["deploy", app.name(), "--image", "swap-demo:v2", "--env", "DEMO_STARTUP_MS=4000"]);
    wait_for_candidate(app.name(), "v2", &mut child);
    let t = Instant::now();
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    eprintln!("SIGTERM to exit: {:?}", t.elapsed());
    assert_exit(&out, 1);
    assert!(text(&out).contains("interrupted"), "{}", describe(&out));
    assert!(t.elapsed() < Duration::from_secs(4), "swap waited out the health gate: {:?}", t.elapsed());
    assert_answers(port, "v1");
    support::assert_settled(app.name(), "swap-demo:v1");
    assert_eq!(id_of(app.name()), old);
    assert_ends(&app, "rolled_back");
    let last = records(&app).pop().unwrap();
    assert!(last["data"]["reason"].as_str().unwrap_or_default().contains("interrupted"), "{last}");
    // The lock is free: a new deploy proceeds at once.
    let out = app.swap(&["deploy", app.name(), "--image", "swap-demo:v2", "--env", "DEMO_STARTUP_MS=0"]);
    assert_exit(&out, 0);
    assert_answers(port, "v2");
}

#[test]
fn two_sigterms_stop_at_once_with_exit_5_and_recover_completes() {
    support::images();
    let app = TestApp::new("sigterm2");
    let port = support::free_port();
    deploy_v1(&app, port, &[]);
    let mut child =
        spawn_swap(&app, &[], &["deploy", app.name(), "--image", "swap-demo:v2", "--env", "DEMO_STARTUP_MS=4000"]);
    wait_for_candidate(app.name(), "v2", &mut child);
    signal(&child, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(100));
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 5);
    assert!(text(&out).contains("swap recover"), "{}", describe(&out));
    assert_unfinished(&app);
    assert_exit(&app.swap(&["journal", "verify", app.name()]), 0);
    recover_settles(&app, "v1", "rolled_back");
    assert_answers(port, "v1");
}

// ---------------------------------------------------------------------------
// 7. Many apps
// ---------------------------------------------------------------------------

/// `swap --state-dir <root> <args>` in the background.
fn spawn_in(root: &Path, args: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swap"));
    cmd.arg("--state-dir").arg(root).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().expect("spawn swap")
}

#[test]
fn twenty_apps_deployed_concurrently_each_end_on_their_new_version() {
    const N: usize = 20;
    support::images();
    let net = support::bridge();
    let apps: Vec<TestApp> = (0..N).map(|i| TestApp::new(&format!("many{i}"))).collect();
    let ports: Vec<u16> = (0..N).map(|_| support::free_port()).collect();
    let shared = tempfile::tempdir().unwrap();
    let root = shared.path().join("state");
    // Twenty candidates start at once on two cores: the images' sub-second
    // probe (1 s timeout, 3 retries) can time out three times in a row from
    // load alone. This test is about locks and journals, not health, so the
    // apps get a patient probe, which re-deploys clone.
    let spec = shared.path().join("spec.json");
    std::fs::write(
        &spec,
        r#"{"healthcheck": {"test": ["CMD", "/swap-demo", "check"], "interval_ms": 1000, "timeout_ms": 10000, "retries": 10}}"#,
    )
    .unwrap();
    let spec = spec.display().to_string();
    let round = |tag: &str, first: bool| -> Duration {
        let t = Instant::now();
        let children: Vec<Child> = apps
            .iter()
            .zip(&ports)
            .map(|(app, port)| {
                let img = image(tag);
                let p = publish(*port);
                let mut args = vec!["deploy", app.name(), "--image", &img];
                if first {
                    args.extend_from_slice(&["--publish", &p, "--network", net, "--spec", &spec]);
                }
                spawn_in(&root, &args)
            })
            .collect();
        for (app, child) in apps.iter().zip(children) {
            let out = child.wait_with_output().unwrap();
            assert_exit(&out, 0);
            assert!(!text(&out).contains("another swap holds"), "{}: {}", app.name(), describe(&out));
        }
        t.elapsed()
    };
    let first = round("v1", true);
    let second = round("v2", false);
    eprintln!("{N} apps, {N} concurrent swap processes: first deploys {first:?}, re-deploys {second:?} (wall time)");
    println!("many-apps: {N} concurrent re-deploys took {:.2} s", second.as_secs_f64());
    for (app, port) in apps.iter().zip(&ports) {
        support::assert_settled(app.name(), "swap-demo:v2");
        assert_answers(*port, "v2");
        let journal = root.join(app.name()).join("journal.jsonl");
        let recs = records_at(&journal);
        let begins: Vec<&Value> = recs.iter().filter(|r| kind(r) == "begin").collect();
        assert_eq!(begins.len(), 2, "{}: {begins:#?}", app.name());
        assert!(begins.iter().all(|b| b["data"]["app"] == app.name()), "another app's deploy in {}", journal.display());
        assert!(journal::lock_path(&journal).exists());
        assert_eq!(recs.last().map(|r| r["data"]["outcome"].clone()), Some(Value::from("deployed")));
    }
    let mut dirs: Vec<String> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    dirs.sort();
    let mut names: Vec<String> = apps.iter().map(|a| a.name().to_string()).collect();
    names.sort();
    assert_eq!(dirs, names, "one state dir per app, nothing else");
}

// ---------------------------------------------------------------------------
// 8. Security
// ---------------------------------------------------------------------------

#[test]
fn state_is_private_env_values_never_printed_and_no_shell_or_cli_is_run() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("private");
    let tmp = tempfile::tempdir().unwrap();
    // A state dir swap creates itself, parents included.
    let root = tmp.path().join("a/b/state");
    let port = support::free_port();
    let secret = "tok-9f8e7d6c5b4a-SECRET";
    let env = format!("API_TOKEN={secret}");
    // No PATH: swap must reach Docker through its socket only, never via a
    // shell or the docker CLI.
    let run = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_swap"))
            .env_clear()
            .env("PATH", "/nonexistent")
            .arg("--state-dir")
            .arg(&root)
            .args(args)
            .output()
            .unwrap()
    };
    let p = publish(port);
    let mut outputs = vec![];
    let out =
        run(&["-v", "deploy", app.name(), "--image", "swap-demo:v1", "--publish", &p, "--network", net, "--env", &env]);
    assert_exit(&out, 0);
    outputs.push(out);
    assert_answers(port, "v1");
    // A failing candidate whose logs are printed, with the value passed anew.
    for json in [true, false] {
        let mut args = vec!["-v", "-v", "deploy", app.name(), "--image", "swap-demo:crash", "--env", &env];
        if json {
            args.insert(0, "--json");
        }
        let out = run(&args);
        assert_exit(&out, 1);
        assert!(
            text(&out).contains("log lines") || text(&out).contains("\"logs\":[\""),
            "the candidate's logs were not printed:\n{}",
            describe(&out)
        );
        outputs.push(out);
        assert_answers(port, "v1");
    }
    for args in
        [&["--json", "status", app.name()][..], &["recover", app.name()], &["--json", "journal", "show", app.name()]]
    {
        outputs.push(run(args));
    }
    for out in &outputs {
        assert!(!text(out).contains(secret), "the value is in swap's output:\n{}", describe(out));
    }
    let app_dir = root.join(app.name());
    assert_eq!(mode(&root), 0o700, "state dir root");
    assert_eq!(mode(root.parent().unwrap()), 0o700, "a parent swap created");
    assert_eq!(mode(&app_dir), 0o700, "app dir");
    let journal = app_dir.join("journal.jsonl");
    assert_eq!(mode(&journal), 0o600);
    assert_eq!(mode(&journal::lock_path(&journal)), 0o600);
    for f in std::fs::read_dir(&app_dir).unwrap() {
        let p = f.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        assert!(!String::from_utf8_lossy(&std::fs::read(&p).unwrap()).contains(secret), "{}", p.display());
    }
}

// ---------------------------------------------------------------------------
// 9. Hangups
// ---------------------------------------------------------------------------

/// Starts a re-deploy of `tag` whose stdout and stderr are pipes, waits until
/// its journal shows a record `at` matches, closes both pipes (so every
/// later write fails with EPIPE, as on a dead terminal) and sends SIGHUP.
/// Returns the exit status, without any `swap recover`.
fn hangup_when(app: &TestApp, tag: &str, at: &str, matches: impl Fn(&Value) -> bool) -> std::process::ExitStatus {
    let before = records(app).len();
    let img = image(tag);
    let mut child =
        spawn_swap(app, &[], &["--json", "deploy", app.name(), "--image", &img, "--env", "DEMO_STARTUP_MS=1500"]);
    let seen = wait_until(Duration::from_secs(60), || {
        records(app).iter().skip(before).any(&matches) || child.try_wait().ok().flatten().is_some()
    });
    assert!(seen, "the deploy never reached {at}");
    assert!(child.try_wait().unwrap().is_none(), "the deploy ended before {at}");
    drop(child.stdout.take());
    drop(child.stderr.take());
    signal(&child, libc::SIGHUP);
    let ended = wait_until(Duration::from_secs(120), || child.try_wait().ok().flatten().is_some());
    if !ended {
        let _ = child.kill();
        panic!("the deploy hung up at {at} never ended");
    }
    child.wait().unwrap()
}

/// The last deploy ended `outcome`, noted the hangup once, and never between
/// a step's intent and its outcome.
#[track_caller]
fn assert_hangup_noted(app: &TestApp, outcome: &str) {
    let (_, mine) = last_deploy(&records(app));
    let last = mine.last().expect("the last deploy has records");
    assert_eq!(kind(last), "end", "the last deploy did not end: {last}");
    assert_eq!(last["data"]["outcome"], outcome, "{last}");
    let at: Vec<usize> = mine.iter().enumerate().filter(|(_, r)| kind(r) == "hangup").map(|(i, _)| i).collect();
    assert_eq!(at.len(), 1, "expected one hangup record: {mine:#?}");
    let before = kind(&mine[at[0] - 1]);
    assert!(!matches!(before, "intent" | "undo_intent"), "the hangup record follows an open {before}: {mine:#?}");
    assert!(mine[at[0]]["data"]["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{}", mine[at[0]]);
}

#[test]
fn hangup_at_any_instant_of_a_redeploy_carries_on_to_its_end() {
    support::images();
    // (instant, image, the record that marks it: kind and step, exit, outcome)
    let instants = [
        ("right after the begin", "v2", ("begin", None), 0, "deployed"),
        ("after the candidate was created", "v2", ("done", Some("create_candidate")), 0, "deployed"),
        ("in the health gate", "v2", ("done", Some("start_candidate")), 0, "deployed"),
        ("in a failing health gate", "unhealthy", ("done", Some("start_candidate")), 1, "rolled_back"),
    ];
    for (at, tag, (k, step), want, outcome) in instants {
        let app = TestApp::new("hangup");
        let port = support::free_port();
        deploy_v1(&app, port, &[]);
        let matches = |r: &Value| kind(r) == k && step.is_none_or(|s| r["data"]["step"]["step"] == s);
        let status = hangup_when(&app, tag, at, matches);
        assert_eq!(status.code(), Some(want), "hangup {at}: {status:?} (not a panic, not killed by the signal)");
        let serving = if want == 0 { tag } else { "v1" };
        support::assert_settled(app.name(), &image(serving));
        assert_answers(port, serving);
        assert_hangup_noted(&app, outcome);
    }
}

// ---------------------------------------------------------------------------
// 10. Waiting for the lock
// ---------------------------------------------------------------------------

/// The journal's lock, taken by the test the way the journal crate takes it,
/// with a holder description a waiter should print.
struct HeldLock {
    _file: std::fs::File,
}

const HOLDER_WHAT: &str = "swap deploy by the lock test";

fn hold_lock(app: &TestApp) -> HeldLock {
    let path = journal::lock_path(&app.journal_path());
    let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).unwrap();
    fs2::FileExt::try_lock_exclusive(&file).expect("the lock is free");
    let since_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let holder = serde_json::json!({"pid": std::process::id(), "host": "lock-test-host", "since_ms": since_ms, "what": HOLDER_WHAT});
    file.set_len(0).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, format!("{holder}\n").as_bytes(), 0).unwrap();
    HeldLock { _file: file }
}

/// A running swap whose stderr the test reads as it comes.
struct Waiter {
    child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Waiter {
    fn spawn(app: &TestApp, args: &[&str]) -> Waiter {
        let mut child = spawn_swap(app, &[], args);
        let mut pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Waiter { child, stderr, reader: Some(reader) }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until it says it waits for the lock.
    #[track_caller]
    fn wait_for_the_lock_wait(&mut self) {
        let said = wait_until(Duration::from_secs(30), || {
            self.stderr().contains("waiting up to") || self.child.try_wait().ok().flatten().is_some()
        });
        if !said || !self.stderr().contains("waiting up to") {
            let _ = self.child.kill();
            panic!("swap never said it waits for the lock:\n{}", self.stderr());
        }
    }

    /// Its exit code and stderr, once it ends (killed after `bound`).
    fn end(mut self, bound: Duration) -> (Option<i32>, String) {
        if !wait_until(bound, || self.child.try_wait().ok().flatten().is_some()) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("swap did not end within {bound:?}:\n{}", self.stderr());
        }
        let status = self.child.wait().unwrap();
        self.reader.take().unwrap().join().unwrap();
        (status.code(), self.stderr())
    }
}

#[test]
fn a_signal_during_a_lock_wait_exits_3_at_once_with_nothing_journaled() {
    support::images();
    let app = TestApp::new("lockwait-signal");
    let port = support::free_port();
    deploy_v1(&app, port, &[]);
    let old = id_of(app.name());
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("Dockerfile"), "FROM swap-demo:v2\n").unwrap();
    let ctx = context.path().to_str().unwrap();
    let name = app.name();
    // A wait far longer than the test: only the signal can end it.
    let commands: [&[&str]; 5] = [
        &["deploy", name, "--image", "swap-demo:v2", "--lock-wait", "600"],
        &["deploy", name, "--build", ctx, "--tag", "swap-test-lockwait:never", "--lock-wait", "600"],
        &["rollback", name, "--lock-wait", "600"],
        &["recover", name, "--lock-wait", "600"],
        &["journal", "compact", name, "--lock-wait", "600"],
    ];
    let before = std::fs::read(app.journal_path()).unwrap();
    let lock = hold_lock(&app);
    for (i, args) in commands.iter().enumerate() {
        let sig = if i % 2 == 0 { libc::SIGTERM } else { libc::SIGINT };
        let mut waiter = Waiter::spawn(&app, args);
        waiter.wait_for_the_lock_wait();
        signal(&waiter.child, sig);
        let (code, stderr) = waiter.end(Duration::from_secs(30));
        assert_eq!(code, Some(3), "{args:?} after signal {sig}:\n{stderr}");
        let pid = std::process::id().to_string();
        assert!(stderr.contains(&pid) && stderr.contains(HOLDER_WHAT), "{args:?}: the holder is not named:\n{stderr}");
        assert!(stderr.contains("lock-test-host"), "{args:?}: the holder's host is not named:\n{stderr}");
        assert_eq!(stderr.matches("waiting up to").count(), 1, "{args:?}: not said once:\n{stderr}");
        assert!(stderr.contains("interrupted") && stderr.contains("nothing changed"), "{args:?}:\n{stderr}");
        assert_eq!(std::fs::read(app.journal_path()).unwrap(), before, "{args:?} journaled something");
        support::assert_settled(name, "swap-demo:v1");
        assert_eq!(id_of(name), old, "{args:?} changed the container");
    }
    drop(lock);
    assert!(support::image_id("swap-test-lockwait:never").is_none(), "the build ran");
    assert_answers(port, "v1");
}

#[test]
fn a_lock_waiter_proceeds_once_the_holder_lets_go() {
    support::images();
    let app = TestApp::new("lockwait-release");
    let port = support::free_port();
    deploy_v1(&app, port, &[]);
    let lock = hold_lock(&app);
    let mut waiter = Waiter::spawn(&app, &["deploy", app.name(), "--image", "swap-demo:v2", "--lock-wait", "600"]);
    waiter.wait_for_the_lock_wait();
    assert_answers(port, "v1");
    drop(lock);
    let (code, stderr) = waiter.end(Duration::from_secs(120));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stderr.matches("waiting up to").count(), 1, "not said once:\n{stderr}");
    support::assert_settled(app.name(), "swap-demo:v2");
    assert_answers(port, "v2");
    assert_ends(&app, "deployed");
}

#[test]
fn rollback_chooses_its_target_after_the_deploy_it_waited_for() {
    support::images();
    let app = TestApp::new("lockwait-rollback");
    let port = support::free_port();
    deploy_v1(&app, port, &[]);
    assert_exit(&app.swap(&["deploy", app.name(), "--image", "swap-demo:v2"]), 0);
    // The holder: a deploy of plain-v1 (no healthcheck) that must stay up 5 s
    // in its health gate. The last successful deploy is v1 -> v2 when the
    // rollback starts, v2 -> plain-v1 by the time it gets the lock: it must
    // go back to v2, not to v1.
    let mut holder = spawn_swap(&app, &[], &["deploy", app.name(), "--image", "swap-demo:plain-v1", "--settle", "5"]);
    let pid = holder.id();
    let began = wait_until(Duration::from_secs(30), || {
        records(&app).iter().any(|r| kind(r) == "begin" && r["data"]["run"]["pid"].as_u64() == Some(u64::from(pid)))
    });
    assert!(began, "the holder never began");
    let mut waiter = Waiter::spawn(&app, &["rollback", app.name(), "--lock-wait", "600"]);
    waiter.wait_for_the_lock_wait();
    assert!(holder.try_wait().unwrap().is_none(), "the holder ended before the rollback waited");
    let out = holder.wait_with_output().unwrap();
    assert_exit(&out, 0);
    let (code, stderr) = waiter.end(Duration::from_secs(120));
    assert_eq!(code, Some(0), "{stderr}");
    support::assert_settled(app.name(), "swap-demo:v2");
    assert_answers(port, "v2");
}

/// Every directory swap creates on the way to a first journal (the state
/// root's missing parents, the root, the app's directory) has its parent
/// fsynced, and so has the lock file's: otherwise a power loss can lose the
/// first deploy's journal with the directory entry that names it. Seen
/// with strace: an `openat` of the parent followed by an `fsync` of that
/// descriptor.
#[test]
fn first_deploy_syncs_every_directory_it_creates() {
    support::images();
    let app = TestApp::new("dir-sync");
    let root = app.state_dir.join("x").join("y");
    let log = app.state_dir.join("strace.log");
    let p = publish(support::free_port());
    let out = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=openat,fsync", "-o"])
        .arg(&log)
        .arg(env!("CARGO_BIN_EXE_swap"))
        .arg("--state-dir")
        .arg(&root)
        .args(["deploy", app.name(), "--image", "swap-demo:v1", "--publish", &p])
        .output()
        .expect("run strace (apt-get install strace)");
    assert_exit(&out, 0);
    let trace = std::fs::read_to_string(&log).unwrap();
    let synced = |dir: &Path| {
        let open = format!("openat(AT_FDCWD, \"{}\", ", dir.display());
        trace.lines().enumerate().any(|(i, l)| {
            let Some(fd) = l.contains(&open).then(|| l.rsplit(" = ").next().unwrap_or("").trim()) else { return false };
            let pid = l.split_whitespace().next().unwrap_or("");
            trace.lines().skip(i + 1).any(|m| m.starts_with(pid) && m.contains(&format!("fsync({fd})")))
        })
    };
    for dir in [app.state_dir.clone(), app.state_dir.join("x"), root.clone()] {
        assert!(synced(&dir), "{} was not fsynced after an entry was created in it:\n{trace}", dir.display());
    }
    let _ = std::fs::remove_dir_all(app.state_dir.join("x"));
}
