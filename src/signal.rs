//! Signals are not crashes. Ctrl-C and SIGTERM during a deploy: the current
//! step finishes, the deploy rolls back (or, past the commit point,
//! finishes), the lock is released and swap exits 1; a second signal stops
//! at once and leaves the journal to `swap recover`. While swap only waits
//! for another swap's lock, the first signal ends the wait at once (exit 3,
//! nothing journaled). A hangup (SIGHUP: the ssh session or terminal went
//! away) changes nothing: the command carries on to its normal end, as
//! under `nohup`, because a deploy cut off inside its outage would leave the
//! app down; what it prints after the hangup is lost, and the journal notes
//! the hangup.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

use crate::report;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Wakes a lock wait when the first SIGINT or SIGTERM arrives.
static INTERRUPT: Notify = Notify::const_new();
/// Set while the command waits for another swap's lock: a signal then ends
/// the wait (exit 3) instead of rolling back or stopping with exit 5.
static WAITING: AtomicBool = AtomicBool::new(false);
/// When the hangup arrived (ms since the Unix epoch); 0 before one did.
static HANGUP_MS: AtomicU64 = AtomicU64::new(0);
/// Whether the hangup has been handed to the journal already.
static HANGUP_NOTED: AtomicBool = AtomicBool::new(false);

/// Whether a first SIGINT or SIGTERM has arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Returns once a first SIGINT or SIGTERM has arrived (at once if one has);
/// never, unless [`install`] ran.
pub async fn first_interrupt() {
    loop {
        // Registered before the check, so a signal between the two still wakes it.
        let notified = INTERRUPT.notified();
        if interrupted() {
            return;
        }
        notified.await;
    }
}

/// Marks a wait for the lock while it lives.
#[derive(Debug)]
pub struct LockWait(());

impl LockWait {
    /// Starts a lock wait.
    pub fn start() -> LockWait {
        WAITING.store(true, Ordering::SeqCst);
        LockWait(())
    }
}

impl Drop for LockWait {
    fn drop(&mut self) {
        WAITING.store(false, Ordering::SeqCst);
    }
}

/// When the terminal hung up, the first time this is asked after it did;
/// `None` before a hangup and after it was taken.
pub fn take_hangup() -> Option<u64> {
    let at = HANGUP_MS.load(Ordering::SeqCst);
    (at != 0 && !HANGUP_NOTED.swap(true, Ordering::SeqCst)).then_some(at)
}

/// Listens for SIGINT, SIGTERM and SIGHUP on the current runtime.
pub fn install() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()))
    else {
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {
                    if HANGUP_MS.load(Ordering::SeqCst) == 0 {
                        HANGUP_MS.store(journal_now_ms().max(1), Ordering::SeqCst);
                        report::stderr_line("swap: hangup: carrying on to the end; further output may be lost");
                    }
                    continue;
                }
            }
            let again = INTERRUPTED.swap(true, Ordering::SeqCst);
            INTERRUPT.notify_waiters();
            if WAITING.load(Ordering::SeqCst) {
                // The waiter ends at once and says so; nothing has changed.
                continue;
            }
            if again {
                report::stderr_line("swap: interrupted again: stopping now; run `swap recover` to finish or roll back");
                std::process::exit(5);
            }
            report::stderr_line(
                "swap: interrupted: finishing the current step, then rolling back (again to stop at once)",
            );
        }
    });
}

fn journal_now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
