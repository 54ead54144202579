//! Where swap keeps its state: one directory per app under the state dir,
//! holding the app's journal and the lock file beside it.

use std::path::{Path, PathBuf};

use journal::{Fault, Journal, OpenOptions};

use crate::error::Failure;
use crate::record::Event;

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

    /// Opens an app's journal for writing, holding its lock.
    pub fn open(
        &self,
        app: &str,
        lock_wait: Option<std::time::Duration>,
        what: &str,
        fault: Option<Fault>,
    ) -> Result<(Journal<Event>, journal::Opened<Event>), Failure> {
        ensure_root(&self.root)?;
        let opts = OpenOptions { lock_wait, holder_what: what.to_string(), fault };
        Ok(Journal::open(&self.journal(app), &opts)?)
    }
}

fn ensure_root(root: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| Failure::BadInput(format!("state dir {} cannot be created: {e}; nothing changed", root.display())))
}

/// The crash injection the environment asks for (`SWAP_CRASH_AT`).
pub fn fault_from_env() -> Result<Option<Fault>, Failure> {
    match std::env::var("SWAP_CRASH_AT") {
        Ok(s) if !s.is_empty() => Fault::parse(&s)
            .map(Some)
            .ok_or_else(|| Failure::BadInput(format!("SWAP_CRASH_AT={s:?}: expected after:N, before:N, torn:N or eio:N"))),
        _ => Ok(None),
    }
}
