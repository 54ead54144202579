//! A real image registry for the tests that pull: Debian's `docker-registry`
//! (the CNCF distribution registry) served on a loopback port, one instance
//! per test with its storage in a temporary directory, optionally behind
//! htpasswd authentication; and a small TCP proxy that puts a flaky or
//! stalled network path in front of it.
//!
//! Docker pushes to and pulls from `127.0.0.1:PORT` over plain HTTP without
//! any daemon setting (loopback registries are insecure by default). Each
//! instance is started by the test that uses it, never the system service the
//! package may have started, so parallel test processes never share one.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{docker_ok, docker_output, free_port, image, images, wait_until};

/// A running registry on 127.0.0.1; killed and its storage removed on drop.
#[derive(Debug)]
pub struct Registry {
    /// The port it listens on.
    pub port: u16,
    /// `user:password` when it requires a login.
    pub auth: Option<(String, String)>,
    /// The `docker-registry serve` process, `None` once stopped.
    child: Option<Child>,
    /// Its config, htpasswd file and storage.
    dir: tempfile::TempDir,
    /// Local images the test built and pushed, removed on drop.
    built: Mutex<Vec<String>>,
}

impl Registry {
    /// Starts a registry that anyone may pull from and push to.
    pub fn start() -> Registry {
        Registry::launch(None)
    }

    /// Starts a registry that requires `user`/`password` (htpasswd, bcrypt).
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::launch(Some((user.to_string(), password.to_string())))
    }

    fn launch(auth: Option<(String, String)>) -> Registry {
        install_packages();
        let program = which("docker-registry").unwrap_or_else(|| {
            panic!(
                "docker-registry is not installed; the registry tests need Debian's docker-registry and \
                 apache2-utils packages (`apt-get install -y docker-registry apache2-utils`, as .ci/run does)"
            )
        });
        let dir = tempfile::tempdir().expect("create the registry's temp dir");
        let mut auth_section = String::new();
        if let Some((user, password)) = &auth {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("run htpasswd (package apache2-utils)");
            assert!(out.status.success(), "htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("write the htpasswd file");
            auth_section = format!("auth:\n  htpasswd:\n    realm: swap-test\n    path: {}\n", file.display());
        }
        // Another process may take the port between our probe and the
        // registry's bind: try a few.
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                     delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_section}",
                    dir.path().join("data").display()
                ),
            )
            .expect("write the registry config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("create the registry log");
            let mut child = Command::new(&program)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
            let up = wait_until(Duration::from_secs(20), || {
                matches!(child.try_wait(), Ok(Some(_))) || http_status(port, "/v2/").is_some()
            });
            if up && matches!(child.try_wait(), Ok(None)) {
                return Registry { port, auth, child: Some(child), dir, built: Mutex::new(vec![]) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default();
        panic!("docker-registry did not come up on a loopback port:\n{log}");
    }

    /// `127.0.0.1:PORT`, the registry part of its image references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/<repo_tag>`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.host())
    }

    /// Stops the registry (a registry that is down); its port then refuses.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Writes a Docker client config dir logged in to this registry
    /// (`docker --config DIR login`), as a user's `~/.docker` would be.
    pub fn login(&self, config_dir: &Path) {
        let (user, password) = self.auth.as_ref().expect("login to a registry without auth");
        let mut child = Command::new("docker")
            .arg("--config")
            .arg(config_dir)
            .args(["login", "--username", user, "--password-stdin", &self.host()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker login");
        child.stdin.take().expect("stdin").write_all(password.as_bytes()).expect("write the password");
        let out = child.wait_with_output().expect("wait for docker login");
        assert!(out.status.success(), "docker login failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Builds an image of its own from the demo image `swap-demo:<demo_tag>`
    /// (a new image id, sharing the demo's layers), pushes it as
    /// `127.0.0.1:PORT/<repo_tag>`, and removes it from the engine again, so
    /// that only the registry has it. Returns (reference, image id).
    ///
    /// A local tag of the same reference (an older push the test deployed)
    /// is put back afterwards, so the registry's tag moves and the engine's
    /// does not.
    pub fn push_fresh(&self, demo_tag: &str, repo_tag: &str) -> (String, String) {
        images();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let local = format!("swap-registry-test:{unique}");
        let mut child = Command::new("docker")
            .args(["build", "-q", "--label", &format!("swap.test.unique={unique}"), "-t", &local, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker build");
        let dockerfile = format!("FROM {}\n", image(demo_tag));
        child.stdin.take().expect("stdin").write_all(dockerfile.as_bytes()).expect("write the Dockerfile");
        let out = child.wait_with_output().expect("wait for docker build");
        assert!(out.status.success(), "docker build failed: {}", String::from_utf8_lossy(&out.stderr));
        let id = docker_ok(&["image", "inspect", "--format", "{{.Id}}", &local]);
        self.built.lock().unwrap().push(id.clone());
        let reference = self.reference(repo_tag);
        let before = super::image_id(&reference);
        docker_ok(&["tag", &local, &reference]);
        self.docker(&["push", &reference]);
        match before {
            Some(old) => docker_ok(&["tag", &old, &reference]),
            None => docker_ok(&["rmi", &reference]),
        };
        docker_ok(&["rmi", &local]);
        (reference, id)
    }

    /// Runs the docker CLI with a config logged in to this registry when it
    /// needs one.
    fn docker(&self, args: &[&str]) {
        let config = self.dir.path().join("docker-config");
        let mut all: Vec<String> = vec![];
        if self.auth.is_some() {
            if !config.join("config.json").exists() {
                self.login(&config);
            }
            all.extend(["--config".to_string(), config.display().to_string()]);
        }
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = docker_output(&refs);
        assert!(
            out.status.success(),
            "`docker {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }

    /// The registry's log, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        // Images a container still uses stay; the app's own drop removes its
        // containers first when it is declared after the registry.
        for id in self.built.lock().map(|b| b.clone()).unwrap_or_default() {
            let _ = docker_output(&["rmi", "-f", &id]);
        }
    }
}

/// Installs Debian's `docker-registry` and `apache2-utils` when either
/// program is missing.
fn install_packages() {
    let present = || which("docker-registry").is_some() && which("htpasswd").is_some();
    super::install_packages("registry-packages", &["docker-registry", "apache2-utils"], present);
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// The HTTP status of a GET on 127.0.0.1:`port`, or `None` if nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    std::str::from_utf8(&head[..n]).ok()?.split_whitespace().nth(1)?.parse().ok()
}

/// What a [`Proxy`] does with the connections it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Closes the first N connections as soon as they are accepted (the
    /// client sees the connection cut), then forwards every later one.
    CutFirst(usize),
    /// Answers the registry's `GET /v2/` ping itself and accepts every other
    /// request without ever answering it: a registry that stalls after the
    /// ping, where Docker has no timeout of its own.
    Stall,
}

/// A TCP proxy on 127.0.0.1 in front of a registry, in plain threads.
#[derive(Debug)]
pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    /// Tells the accept loop to end.
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts proxying 127.0.0.1:`port` -> 127.0.0.1:`upstream`.
    pub fn start(upstream: u16, mode: ProxyMode) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        listener.set_nonblocking(true).expect("nonblocking proxy listener");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, flag) = (Arc::clone(&accepted), Arc::clone(&stop));
        std::thread::spawn(move || {
            let held = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
            while !flag.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let _ = client.set_nonblocking(false);
                let n = count.fetch_add(1, Ordering::Relaxed);
                match mode {
                    ProxyMode::CutFirst(first) if n < first => {
                        let _ = client.shutdown(Shutdown::Both);
                    }
                    ProxyMode::CutFirst(_) => forward(client, upstream),
                    ProxyMode::Stall => {
                        let held = Arc::clone(&held);
                        std::thread::spawn(move || {
                            if let Some(c) = answer_ping_or_hold(client) {
                                held.lock().unwrap().push(c);
                            }
                        });
                    }
                }
            }
        });
        Proxy { port, accepted, stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn forward(client: TcpStream, upstream: u16) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        return;
    };
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || pipe(client, server));
    std::thread::spawn(move || pipe(s2, c2));
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// Reads one request head; answers the ping, returns any other connection
/// to be held open unanswered.
fn answer_ping_or_hold(mut client: TcpStream) -> Option<TcpStream> {
    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if head.starts_with(b"GET /v2/ ") {
        let _ = client.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
              Docker-Distribution-Api-Version: registry/2.0\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        );
        return None;
    }
    Some(client)
}
