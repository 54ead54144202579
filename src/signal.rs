//! Ctrl-C and SIGTERM during a deploy are not crashes: the current step
//! finishes, the deploy rolls back (or, past the commit point, finishes),
//! the lock is released and swap exits 1. A second signal stops at once and
//! leaves the journal to `swap recover`.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether a first SIGINT or SIGTERM has arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Listens for SIGINT and SIGTERM on the current runtime.
pub fn install() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("swap: interrupted again: stopping now; run `swap recover` to finish or roll back");
                std::process::exit(5);
            }
            eprintln!("swap: interrupted: finishing the current step, then rolling back (again to stop at once)");
        }
    });
}
