//! Where swap keeps its state: one directory per app under the state dir,
//! holding the app's journal and the lock file beside it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use journal::{Fault, Journal, OpenOptions};
use tokio::time::Instant;

use crate::error::Failure;
use crate::record::Event;
use crate::report::Report;

/// How often a waiting command retries another swap's lock.
const LOCK_POLL: Duration = Duration::from_millis(50);

/// The state directory and what lives in it.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// The root: `--state-dir`, `SWAP_STATE_DIR`, or the default.
    pub root: PathBuf,
}

impl StateDir {
    /// `/var/lib/swap` for root, else `$XDG_STATE_HOME/swap` or
    /// `~/.local/state/swap`.
    pub fn default_root() -> PathBuf {
        let uid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(0);
        if uid == 0 {
            return PathBuf::from("/var/lib/swap");
        }
        if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
            return PathBuf::from(x).join("swap");
        }
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
        home.join(".local/state/swap")
    }

    /// The app's journal file.
    pub fn journal(&self, app: &str) -> PathBuf {
        self.root.join(app).join("journal.jsonl")
    }

    /// Every app with a journal, sorted.
    pub fn apps(&self) -> Result<Vec<String>, Failure> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Failure::BadInput(format!("cannot list {}: {e}", self.root.display()))),
        };
        let mut apps: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join("journal.jsonl").is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        apps.sort();
        Ok(apps)
    }

    /// Opens an app's journal for writing, holding its lock. With
    /// `lock_wait`, waits that long for another swap's lock, saying once who
    /// holds it; the wait polls on the runtime, so a first Ctrl-C or SIGTERM
    /// ends it at once (exit 3) with nothing journaled and nothing changed.
    pub async fn open(
        &self,
        app: &str,
        lock_wait: Option<Duration>,
        what: &str,
        fault: Option<Fault>,
        report: &Report,
    ) -> Result<(Journal<Event>, journal::Opened<Event>), Failure> {
        let interrupted =
            |lock: &str| Failure::Locked(format!("interrupted before taking the lock {lock}; nothing changed"));
        let path = self.journal(app);
        let lock = journal::lock_path(&path).display().to_string();
        if crate::signal::interrupted() {
            return Err(interrupted(&lock));
        }
        ensure_root(&self.root)?;
        // The journal's own wait would block the runtime's only thread: no
        // signal could be acted on until the lock came.
        let opts = OpenOptions { lock_wait: None, holder_what: what.to_string(), fault };
        let deadline = lock_wait.map(|w| Instant::now() + w);
        let _waiting = crate::signal::LockWait::start();
        let mut told = false;
        loop {
            match Journal::open(&path, &opts) {
                Err(journal::OpenError::Locked { holder, path: lock_file }) => {
                    let left = deadline.map_or(Duration::ZERO, |d| d.saturating_duration_since(Instant::now()));
                    if left.is_zero() {
                        return Err(match lock_wait {
                            Some(w) => Failure::Locked(format!(
                                "another swap still holds the lock {} after {} s: {}; nothing changed",
                                lock_file.display(),
                                w.as_secs(),
                                crate::error::holder_text(&holder)
                            )),
                            None => Failure::from(journal::OpenError::Locked { holder, path: lock_file }),
                        });
                    }
                    if !told {
                        told = true;
                        report.note(format!(
                            "waiting up to {} s for the lock {}: held by {}",
                            left.as_secs_f64().ceil(),
                            lock_file.display(),
                            crate::error::holder_text(&holder)
                        ));
                    }
                    tokio::select! {
                        () = tokio::time::sleep(LOCK_POLL.min(left)) => {}
                        () = crate::signal::first_interrupt() => return Err(interrupted(&lock)),
                    }
                }
                Err(e) => return Err(e.into()),
                Ok(opened) => {
                    // A signal that came while the lock was being taken: still
                    // nothing journaled, so leave as from the wait.
                    if crate::signal::interrupted() {
                        return Err(interrupted(&lock));
                    }
                    return Ok(opened);
                }
            }
        }
    }
}

/// Creates the state root (0700) and its missing parents, syncing the
/// parent of each one created: the first deploy's journal is durable only
/// if every directory on its path is.
fn ensure_root(root: &Path) -> Result<(), Failure> {
    journal::create_dir(root)
        .map_err(|e| Failure::BadInput(format!("state dir {} cannot be created: {e}; nothing changed", root.display())))
}

/// Journal space a deploy reserves before its `begin`: enough for the whole
/// deploy and a rollback of it, so that an append cannot run out of space
/// in the middle of the outage. A re-deploy writes about 20 records (begin,
/// an intent and an outcome for each of up to 8 steps, health, commit,
/// end) and a rollback up to 20 more (an undo-intent and undo-done per
/// step, end): 40 records of at most a few KiB (ids, names, networks,
/// ports, environment *names*, Docker error messages), under 160 KiB. The
/// health record of a failed candidate adds its last 20 log lines, each up
/// to Docker's 16 KiB log message size and JSON-escaped, up to about
/// 640 KiB. Rounded up to 1 MiB, which stays allocated past the journal's
/// end between deploys (reserving again costs only what was used).
pub const DEPLOY_JOURNAL_RESERVE: u64 = 1 << 20;

/// Reserves [`DEPLOY_JOURNAL_RESERVE`] in the journal; refuses the deploy
/// (exit 1: nothing changed, the previous version serves) if the space is
/// not there.
pub fn reserve_for_deploy(journal: &mut Journal<Event>) -> Result<(), Failure> {
    let needed = DEPLOY_JOURNAL_RESERVE;
    journal.reserve(needed).map(|_| ()).map_err(|e| {
        let dir = journal.path().parent().unwrap_or(journal.path()).display().to_string();
        let free = match &e {
            journal::ReserveError::NoSpace { free: Some(f), .. } => format!(" ({f} bytes free)"),
            _ => String::new(),
        };
        Failure::RolledBack(format!(
            "the journal needs {needed} bytes of free space in {dir} for this deploy and its rollback, \
             and cannot have them{free}: {e}. Nothing changed; the previous version serves. Free space there, \
             then deploy again"
        ))
    })
}

/// The crash injection the environment asks for (`SWAP_CRASH_AT`).
pub fn fault_from_env() -> Result<Option<Fault>, Failure> {
    match std::env::var("SWAP_CRASH_AT") {
        Ok(s) if !s.is_empty() => Fault::parse(&s).map(Some).ok_or_else(|| {
            Failure::BadInput(format!("SWAP_CRASH_AT={s:?}: expected after:N, before:N, torn:N or eio:N"))
        }),
        _ => Ok(None),
    }
}
