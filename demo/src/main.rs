//! `swap-demo`: the tiny HTTP application that swap's tests and demo deploy.
//!
//! No registry is reachable where swap is tested, so every image is built
//! locally `FROM scratch` around this one statically linked binary. Its
//! behaviour is steered by environment variables baked into each image, so one
//! binary plays every part a deploy needs: a good version (`DEMO_VERSION`), a
//! candidate that crashes on start (`DEMO_EXIT`), one that never becomes
//! healthy (`DEMO_HEALTH=fail`) and one that starts slowly (`DEMO_STARTUP_MS`).
//!
//! # Behaviour
//! - `swap-demo` / `swap-demo serve`: listen on `0.0.0.0:$PORT` (default 8080);
//!   `GET /health` answers 200 (500 with `DEMO_HEALTH=fail`), every other GET
//!   answers 200 with body `$DEMO_VERSION\n`.
//! - `swap-demo check`: GET `127.0.0.1:$PORT/health` with a 1 s timeout; exit
//!   0 on 200, 1 otherwise. It is the image's HEALTHCHECK, since a scratch
//!   image has neither a shell nor curl.
//! - SIGTERM and SIGINT exit 0 at once. The binary runs as PID 1 in its
//!   container, and the kernel ignores default-disposition signals for PID 1,
//!   so without handlers `docker stop` would wait out its whole timeout.
//! - With `DEMO_SIGTERM=graceful` it shuts down the way well-behaved servers
//!   do: on SIGTERM it keeps serving for `DEMO_LINGER_MS` (default 0), then
//!   closes its listening socket (new connections are refused), finishes the
//!   requests in flight and exits 0.
//! - `DEMO_SLOW_MS` makes every answer but `/health` take that long, so
//!   requests are in flight when a deploy stops the container.
//! - `swap-demo get NAME`: ask the container's DNS server (the first
//!   `nameserver` of /etc/resolv.conf: Docker's embedded DNS on a
//!   user-defined network) for NAME's addresses, GET `/` on port `$PORT` of
//!   each in turn, print the first 200 answer's body and exit 0; exit 1 when
//!   the name resolves to nothing or nothing answers. Run with `docker exec`
//!   in a container beside the app, it is what a client of the app sees
//!   (the static binary cannot use the C library's resolver: there is no
//!   NSS in a scratch image).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a connection may stay silent or stall a write before it is dropped,
/// so a slow or stuck client never pins a thread for long.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest request head read; the demo only ever needs the request line.
const MAX_REQUEST: usize = 8 * 1024;

/// Linux signal numbers (the binary is only ever built for Linux containers).
const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

// std already links the C library; declaring the two functions needed here
// keeps the crate free of dependencies.
unsafe extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
    fn _exit(status: i32) -> !;
}

/// Set by the graceful SIGTERM handler; the accept loop watches it.
static TERMINATING: AtomicBool = AtomicBool::new(false);

/// Runs inside the signal handler: `_exit` is async-signal-safe, whereas
/// `std::process::exit` (which runs atexit handlers) is not.
extern "C" fn exit_on_signal(_signum: i32) {
    // SAFETY: `_exit` is async-signal-safe and never returns.
    unsafe { _exit(0) }
}

/// Runs inside the signal handler: storing to an atomic is signal-safe.
extern "C" fn begin_shutdown(_signum: i32) {
    TERMINATING.store(true, Ordering::SeqCst);
}

fn graceful() -> bool {
    std::env::var("DEMO_SIGTERM").is_ok_and(|v| v == "graceful")
}

fn install_signal_handlers() {
    let term: extern "C" fn(i32) = if graceful() { begin_shutdown } else { exit_on_signal };
    // SAFETY: both handlers only do async-signal-safe things.
    unsafe {
        signal(SIGTERM, term as usize);
        signal(SIGINT, exit_on_signal as extern "C" fn(i32) as usize);
    }
}

fn millis_env(key: &str) -> u64 {
    std::env::var(key).ok().and_then(|ms| ms.trim().parse().ok()).unwrap_or(0)
}

fn port() -> u16 {
    std::env::var("PORT").ok().and_then(|p| p.trim().parse().ok()).unwrap_or(8080)
}

fn version() -> String {
    std::env::var("DEMO_VERSION").unwrap_or_else(|_| "unknown".to_string())
}

fn main() -> ExitCode {
    install_signal_handlers();
    match std::env::args().nth(1).as_deref() {
        None | Some("serve") => serve(),
        Some("check") => check(),
        Some("get") => match std::env::args().nth(2) {
            Some(name) => get(&name),
            None => {
                eprintln!("swap-demo get: expected a name");
                ExitCode::from(2)
            }
        },
        Some(other) => {
            eprintln!("swap-demo: unknown command {other:?} (expected `serve`, `check` or `get NAME`)");
            ExitCode::from(2)
        }
    }
}

fn serve() -> ExitCode {
    if let Ok(code) = std::env::var("DEMO_EXIT") {
        let code: i32 = code.trim().parse().unwrap_or(1);
        eprintln!("exiting with {code}");
        std::process::exit(code);
    }
    if let Some(ms) = std::env::var("DEMO_STARTUP_MS").ok().and_then(|ms| ms.trim().parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    let version = version();
    let healthy = std::env::var("DEMO_HEALTH").map_or(true, |h| h != "fail");
    let addr = SocketAddr::from(([0, 0, 0, 0], port()));
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("swap-demo: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    println!("swap-demo {version} listening on {addr} (health: {})", if healthy { "ok" } else { "fail" });
    let slow = Duration::from_millis(millis_env("DEMO_SLOW_MS"));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let graceful = graceful();
    if graceful {
        // Polled, so the loop notices SIGTERM between connections.
        let _ = listener.set_nonblocking(true);
    }
    let mut term_at: Option<Instant> = None;
    let linger = Duration::from_millis(millis_env("DEMO_LINGER_MS"));
    loop {
        if TERMINATING.load(Ordering::SeqCst) {
            let at = *term_at.get_or_insert_with(|| {
                println!("swap-demo {version}: SIGTERM, serving {} ms more", linger.as_millis());
                Instant::now()
            });
            if at.elapsed() >= linger {
                break;
            }
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(_) => continue,
        };
        let _ = stream.set_nonblocking(false);
        let version = version.clone();
        let in_flight = Arc::clone(&in_flight);
        in_flight.fetch_add(1, Ordering::SeqCst);
        // One thread per connection: a client that never sends its request
        // cannot hold up the next one.
        std::thread::spawn(move || {
            answer(stream, &version, healthy, slow);
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
    // Graceful shutdown: refuse new connections, finish the ones in flight.
    drop(listener);
    let open = in_flight.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    println!("swap-demo {version}: stopped accepting; finished {open} request(s) in flight; exiting");
    ExitCode::SUCCESS
}

/// Reads one request head and writes one response; errors just drop the client.
fn answer(mut stream: TcpStream, version: &str, healthy: bool, slow: Duration) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(_) => return,
        }
        if head.len() > MAX_REQUEST {
            break;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("");
    let path = words.next().unwrap_or("/");

    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/health") if healthy => ("200 OK", "ok\n".to_string()),
        ("GET" | "HEAD", "/health") => ("500 Internal Server Error", "unhealthy\n".to_string()),
        ("GET" | "HEAD", _) => {
            std::thread::sleep(slow);
            ("200 OK", format!("{version}\n"))
        }
        _ => ("405 Method Not Allowed", "method not allowed\n".to_string()),
    };
    let mut response = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Both);
}

/// GETs `path` from `addr` with `timeout`; the status code and the body.
fn fetch(addr: &SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(String, String)> {
    let mut stream = TcpStream::connect_timeout(addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", addr.ip()).as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).unwrap_or("").to_string();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// The IPv4 addresses the DNS server at `server` gives for `name` (one
/// A query, answers parsed with name compression).
fn resolve(server: std::net::IpAddr, name: &str) -> std::io::Result<Vec<std::net::Ipv4Addr>> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    let id = (std::process::id() as u16).to_be_bytes();
    // Header: id, recursion desired, one question.
    let mut query = vec![id[0], id[1], 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.send_to(&query, SocketAddr::new(server, 53))?;
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf)?;
    let msg = &buf[..n];
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed DNS answer");
    if msg.len() < 12 || msg[..2] != id {
        return Err(bad());
    }
    let answers = u16::from_be_bytes([msg[6], msg[7]]);
    // Skips a (possibly compressed) name starting at `at`.
    let skip_name = |mut at: usize| -> Option<usize> {
        loop {
            let len = *msg.get(at)? as usize;
            if len == 0 {
                return Some(at + 1);
            }
            if len & 0xC0 == 0xC0 {
                return Some(at + 2);
            }
            at += 1 + len;
        }
    };
    let mut at = skip_name(12).ok_or_else(bad)? + 4;
    let mut out = vec![];
    for _ in 0..answers {
        at = skip_name(at).ok_or_else(bad)?;
        let field = msg.get(at..at + 10).ok_or_else(bad)?;
        let (kind, len) = (u16::from_be_bytes([field[0], field[1]]), u16::from_be_bytes([field[8], field[9]]) as usize);
        let data = msg.get(at + 10..at + 10 + len).ok_or_else(bad)?;
        if kind == 1 && len == 4 {
            out.push(std::net::Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + len;
    }
    Ok(out)
}

fn get(name: &str) -> ExitCode {
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let server = conf
        .lines()
        .find_map(|l| l.strip_prefix("nameserver"))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 11]));
    let ips = match resolve(server, name) {
        Ok(ips) => ips,
        Err(e) => {
            eprintln!("swap-demo get: resolving {name} at {server}: {e}");
            return ExitCode::from(1);
        }
    };
    eprintln!("swap-demo get: {name} resolves to {ips:?}");
    for ip in &ips {
        let addr = SocketAddr::from((*ip, port()));
        match fetch(&addr, "/", Duration::from_secs(2)) {
            Ok((status, body)) if status == "200" => {
                print!("{body}");
                return ExitCode::SUCCESS;
            }
            Ok((status, _)) => eprintln!("swap-demo get: {addr} answered {status}"),
            Err(e) => eprintln!("swap-demo get: {addr}: {e}"),
        }
    }
    eprintln!("swap-demo get: nothing under {name} answered");
    ExitCode::from(1)
}

fn check() -> ExitCode {
    let addr = SocketAddr::from(([127, 0, 0, 1], port()));
    let timeout = Duration::from_secs(1);
    let ok = (|| -> std::io::Result<bool> {
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let status_line = response.split(|&b| b == b'\n').next().unwrap_or(&[]);
        let status = String::from_utf8_lossy(status_line);
        Ok(status.split_whitespace().nth(1) == Some("200"))
    })();
    match ok {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("swap-demo check: /health did not answer 200");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("swap-demo check: {addr}: {e}");
            ExitCode::from(1)
        }
    }
}
