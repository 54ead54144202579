//! A real reverse proxy in front of an app deployed start-first: Caddy 2.6
//! from Debian's `caddy` package, in a `FROM scratch` image the tests build
//! themselves, sending every request to the app's network alias with
//! upstreams resolved through Docker's embedded DNS, as a proxy container
//! beside an app on a user-defined or overlay network does in production.
//! What clients of such an app see during a swap is what reaches this
//! proxy's published port, measured by a [`Prober`].
//!
//! The image holds the `caddy` binary, every shared library `ldd` lists for
//! it (libc and libzstd) with the loader, and one Caddyfile per [`Retries`]
//! variant. The name it proxies to comes from the container's environment
//! (`{$SWAP_PROXY_APP}`, expanded by Caddy when it reads the Caddyfile), so
//! one image serves every test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{docker_ok, docker_output, free_port, inspect, run_command, wait_until, Probe, Prober, DEMO_PORT};

/// The proxy image the tests build (see [`image`]).
pub const IMAGE: &str = "swap-test-caddy:2.6";

/// Where Debian's `caddy` package puts the binary.
const CADDY: &str = "/usr/bin/caddy";

/// The timeout of each request a proxy [`Prober`] makes: longer than the
/// retrying proxy's 2 s, so a request it holds is measured, not cut.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How the proxy handles an upstream that refuses or drops a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// `lb_try_duration 2s`: a request whose upstream refuses the connection
    /// (or, for a GET, drops it) is sent again, to an upstream picked anew
    /// from a fresh DNS answer, for up to 2 s.
    UpTo2s,
    /// One try: the client gets a 502 when the upstream picked fails.
    Off,
}

impl Retries {
    /// Both variants, retrying first.
    pub const ALL: [Retries; 2] = [Retries::UpTo2s, Retries::Off];

    /// A short name, for container names and reports.
    pub fn name(self) -> &'static str {
        match self {
            Retries::UpTo2s => "retry",
            Retries::Off => "once",
        }
    }

    /// The Caddyfile of this variant. Both share everything but the retries.
    ///
    /// `dynamic a` looks the app's name up at Docker's embedded DNS server
    /// (127.0.0.11, present in every container on a user-defined or overlay
    /// network) and keeps the answer for 100 ms: when both versions hold
    /// the alias, requests spread over both. `udp/`: Caddy 2.6 asks a
    /// resolver given without a network over TCP, and Docker forwards a
    /// TCP query for a name it does not hold (the app while no container
    /// has its name) to the host's resolvers, where it can hang for
    /// seconds; over UDP the same query is answered at once.
    ///
    /// Docker's DNS is not a list of reachable containers. A container that
    /// starts is in it some 300 ms before its interface is up; a connection
    /// tried then hangs, and keeps hanging for about a second after the
    /// interface is up (the first ARP request went unanswered, and the
    /// kernel asks again only after a second). One that exits stays in it
    /// some 50 ms after its interface is gone (bridge), and in the proxy's
    /// copy up to 100 ms longer. Hence, as a proxy for such an app needs:
    ///
    /// - `dial_timeout 50ms`: a container on the same host answers a
    ///   connection in well under a millisecond; one that does not answer in
    ///   50 ms is not reachable yet (or any more). Caddy's default, 3 s,
    ///   makes a request that picks it hang for 1–3 s, and then fail.
    /// - `lb_policy round_robin`: a retry goes to the next upstream of the
    ///   list, not a random one that may be the same unreachable one again
    ///   (Caddy 2.6 keeps no health state for dynamic upstreams, so
    ///   `fail_duration` cannot shun it). Docker shuffles the addresses in
    ///   each answer, so at a refresh the next may still be the same one:
    ///   about two failed dials per request at most, not a coin toss each.
    ///
    /// Retrying only: `lb_try_duration 2s` with `lb_try_interval 10ms`.
    /// Caddy waits the interval before each retry, and its default (250 ms)
    /// alone would make one retried request slower than the 300 ms a swap
    /// may cost a client. A refused connection fails at once and a hanging
    /// one after the dial timeout, so 10 ms keeps a retried request short,
    /// while a non-zero interval stops the loop from spinning when no
    /// upstream answers at all (the app down): at most 200 tries in 2 s.
    pub fn caddyfile(self) -> String {
        let retry = match self {
            Retries::UpTo2s => "\t\tlb_try_duration 2s\n\t\tlb_try_interval 10ms\n",
            Retries::Off => "",
        };
        format!(
            "{{\n\tadmin off\n\tauto_https off\n}}\n\
             :80 {{\n\
             \treverse_proxy {{\n\
             \t\tdynamic a {{\n\
             \t\t\tname {{$SWAP_PROXY_APP}}\n\
             \t\t\tport {DEMO_PORT}\n\
             \t\t\trefresh 100ms\n\
             \t\t\tresolvers udp/127.0.0.11:53\n\
             \t\t}}\n\
             \t\ttransport http {{\n\
             \t\t\tdial_timeout 50ms\n\
             \t\t}}\n\
             \t\tlb_policy round_robin\n\
             {retry}\
             \t}}\n\
             }}\n"
        )
    }

    /// The Caddyfile's path inside the image.
    fn config_path(self) -> String {
        format!("/etc/caddy/{}.Caddyfile", self.name())
    }
}

/// A running Caddy container on `network` proxying to the app's alias,
/// published on a free 127.0.0.1 port; removed on drop.
#[derive(Debug)]
pub struct ReverseProxy {
    /// The container's name, `<app>-proxy-<variant>`: visibly not the app,
    /// and not `<app>--swap-*` either, so nothing of swap's may touch it.
    pub name: String,
    /// The host port it is published on (127.0.0.1).
    pub port: u16,
    /// Its retry behaviour.
    pub retries: Retries,
    /// Its container id, to check that no swap touched it.
    pub id: String,
}

impl ReverseProxy {
    /// Starts a proxy on `network` for `app` (the name clients use, the
    /// app's alias under start-first) and waits until it answers at all.
    ///
    /// A 502 is an answer: the app may not be deployed yet.
    pub fn start(app: &str, network: &str, retries: Retries) -> ReverseProxy {
        image();
        let name = format!("{app}-proxy-{}", retries.name());
        let _ = docker_output(&["rm", "-f", &name]);
        let config = retries.config_path();
        let env = format!("SWAP_PROXY_APP={app}");
        let port = free_port();
        let publish = format!("127.0.0.1:{port}:80");
        let opts = ["--network", network, "-e", &env, "-p", &publish];
        let id = run_command(&name, IMAGE, &opts, &["run", "--config", &config, "--adapter", "caddyfile"]);
        let proxy = ReverseProxy { name, port, retries, id };
        let up = wait_until(Duration::from_secs(30), || super::registry::http_status(port, "/").is_some());
        assert!(up, "proxy {} never answered on port {port}:\n{}", proxy.name, proxy.logs());
        proxy
    }

    /// Starts probing through this proxy: sequential GETs, each with
    /// [`REQUEST_TIMEOUT`].
    pub fn prober(&self) -> Prober {
        Prober::with_timeout(self.port, REQUEST_TIMEOUT)
    }

    /// What Caddy logged (JSON lines), for assertion messages.
    pub fn logs(&self) -> String {
        super::logs(&self.name)
    }

    /// Whether the proxy container is still the one started, running, never
    /// restarted: a swap of the app behind it must not touch it.
    pub fn untouched(&self) -> Result<(), String> {
        untouched(&self.name, &self.id)
    }
}

impl Drop for ReverseProxy {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", &self.name]);
    }
}

/// Whether container `name` is still `id`, running, and never restarted.
pub fn untouched(name: &str, id: &str) -> Result<(), String> {
    let c = inspect(name).ok_or_else(|| format!("{name} is gone"))?;
    let state = &c["State"];
    if c["Id"].as_str() != Some(id) {
        return Err(format!("{name} is another container now ({} instead of {id})", c["Id"]));
    }
    if state["Running"].as_bool() != Some(true) || c["RestartCount"].as_u64() != Some(0) {
        return Err(format!("{name} was stopped or restarted: {state}"));
    }
    Ok(())
}

/// What the requests of one stretch (e.g. one swap) saw.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// Requests sent in the stretch.
    pub requests: usize,
    /// Of those, the ones that failed, with when they were sent (from the
    /// stretch's start) and why.
    pub failed: Vec<(Duration, String)>,
    /// How long the slowest request took.
    pub slowest: Duration,
    /// When the slowest request was sent, from the stretch's start.
    pub slowest_at: Duration,
    /// Distinct bodies answered, in order of first appearance.
    pub bodies: Vec<String>,
}

impl Window {
    /// The requests of `log` sent in `[from, to)`.
    pub fn of(log: &[Probe], from: Instant, to: Instant) -> Window {
        let mut w = Window::default();
        for p in log.iter().filter(|p| p.start >= from && p.start < to) {
            w.requests += 1;
            if p.duration > w.slowest {
                w.slowest = p.duration;
                w.slowest_at = p.start - from;
            }
            match &p.answer {
                Ok(body) if !w.bodies.contains(body) => w.bodies.push(body.clone()),
                Ok(_) => {}
                Err(why) => w.failed.push((p.start - from, why.clone())),
            }
        }
        w
    }

    /// One line: requests, failures (the first few, with when and why),
    /// slowest request.
    pub fn summary(&self) -> String {
        let mut line = format!(
            "{} requests, {} failed, slowest {} ms (at +{} ms)",
            self.requests,
            self.failed.len(),
            self.slowest.as_millis(),
            self.slowest_at.as_millis()
        );
        for (at, why) in self.failed.iter().take(3) {
            line.push_str(&format!("; +{} ms: {why}", at.as_millis()));
        }
        line
    }
}

/// Ensures the proxy image [`IMAGE`] exists and was built from the current
/// Caddyfiles and binary (a label holds their fingerprint), building it
/// once, under the fixture lock, when not.
pub fn image() {
    super::docker();
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        install_caddy();
        let fingerprint = fingerprint();
        let current = || {
            let out = docker_output(&[
                "image",
                "inspect",
                "--format",
                "{{index .Config.Labels \"swap-test.fingerprint\"}}",
                IMAGE,
            ]);
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == fingerprint
        };
        if current() {
            return;
        }
        super::with_lock("proxy-image", || {
            if !current() {
                build(&fingerprint);
            }
        });
    });
}

/// A fingerprint of what the image is built from: the binary's bytes and
/// both Caddyfiles.
fn fingerprint() -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    std::fs::read(CADDY).unwrap_or_default().hash(&mut hasher);
    for r in Retries::ALL {
        r.caddyfile().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

/// Builds the image from a context holding the binary, its libraries at the
/// paths `ldd` prints (the loader finds them there: no ld.so.cache in a
/// scratch image) and the Caddyfiles.
fn build(fingerprint: &str) {
    let dir = tempfile::tempdir().expect("create the proxy image's build context");
    let root = dir.path().join("root");
    let mut files = vec![PathBuf::from(CADDY)];
    files.extend(libraries(Path::new(CADDY)));
    for file in &files {
        let to = root.join(file.strip_prefix("/").expect("an absolute path"));
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("create a context dir");
        // `copy` follows links: the image gets the library itself.
        std::fs::copy(file, &to).unwrap_or_else(|e| panic!("copy {} into the context: {e}", file.display()));
    }
    std::fs::create_dir_all(root.join("etc/caddy")).expect("create etc/caddy");
    for r in Retries::ALL {
        std::fs::write(root.join(r.config_path().trim_start_matches('/')), r.caddyfile()).expect("write a Caddyfile");
    }
    // HOME: Caddy keeps its (here unused) certificate storage and config
    // autosave under it, and a scratch image sets none.
    let dockerfile = format!(
        "FROM scratch\nCOPY root/ /\nENV HOME=/\nLABEL swap-test.fingerprint={fingerprint}\nEXPOSE 80\n\
         ENTRYPOINT [\"{CADDY}\"]\nCMD [\"run\", \"--config\", \"{}\", \"--adapter\", \"caddyfile\"]\n",
        Retries::UpTo2s.config_path()
    );
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).expect("write the Dockerfile");
    let context = dir.path().to_str().expect("a UTF-8 temp path");
    docker_ok(&["build", "--quiet", "-t", IMAGE, context]);
}

/// The shared libraries and the loader `ldd` lists for `binary`.
fn libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().expect("run ldd");
    assert!(out.status.success(), "ldd {}: {}", binary.display(), String::from_utf8_lossy(&out.stderr));
    // Lines are `libc.so.6 => /lib/…/libc.so.6 (0x…)`, `/lib64/ld-linux-x86-64.so.2 (0x…)`
    // or, for the kernel's vDSO, no path at all.
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with('/')).map(PathBuf::from))
        .collect()
}

/// Installs Debian's `caddy` package when its binary is missing. The
/// package's own service may start on the host's port 80; the tests never
/// use it.
fn install_caddy() {
    super::install_packages("caddy-package", &["caddy"], || Path::new(CADDY).is_file());
    assert!(
        Path::new(CADDY).is_file(),
        "{CADDY} is missing; the proxy tests need Debian's caddy package (`apt-get install -y caddy`, as .ci/run does)"
    );
}
