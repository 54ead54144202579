//! The journal's exclusive lock: an OS advisory lock (flock, through fs2)
//! on a dedicated file beside the journal. The lock dies with its holder's
//! process, so a killed holder never leaves a stale lock; the file is never
//! renamed or deleted, so two processes can never lock two different
//! inodes under the same name. The holder's description written into it is
//! for error messages only.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{time, Holder, OpenError};

/// How often a waiting opener retries the lock.
const POLL: Duration = Duration::from_millis(20);

/// A held lock; dropping it closes the descriptor, which releases it.
#[derive(Debug)]
pub(crate) struct Lock {
    file: File,
}

impl Drop for Lock {
    /// Clears the holder's description before the lock goes (with the
    /// file), so a contender that catches the next holder between its
    /// locking and its writing finds the file empty and waits for the new
    /// description, rather than naming this process, which has let go.
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
    }
}

/// The on-disk form of [`Holder`] (one JSON object).
#[derive(Serialize, Deserialize)]
struct HolderFile {
    pid: u32,
    host: String,
    since_ms: u64,
    what: String,
}

/// Takes the lock at `path`, failing at once or after `wait` if another
/// process holds it.
pub(crate) fn acquire(path: &Path, wait: Option<Duration>, what: &str) -> Result<Lock, OpenError> {
    let io_err = |source| OpenError::Io { path: path.to_path_buf(), source };
    let file = open_durably(path).map_err(io_err)?;
    let deadline = wait.map(|w| Instant::now() + w);
    loop {
        // Fully qualified: since Rust 1.89 std's inherent File::try_lock
        // family shadows fs2's trait methods of similar names.
        match fs2::FileExt::try_lock_exclusive(&file) {
            Ok(()) => break,
            Err(e) if is_contended(&e) => {
                let now = Instant::now();
                match deadline {
                    Some(d) if now < d => std::thread::sleep(POLL.min(d - now)),
                    _ => return Err(OpenError::Locked { path: path.to_path_buf(), holder: read_holder(&file) }),
                }
            }
            Err(e) => return Err(io_err(e)),
        }
    }
    let me = HolderFile { pid: std::process::id(), host: hostname(), since_ms: time::now_ms(), what: what.to_string() };
    let mut text = serde_json::to_vec(&me).unwrap_or_default();
    text.push(b'\n');
    // Diagnostics only: not synced, and a failure here must not cost the lock.
    let _ = file.set_len(0).and_then(|()| file.write_all_at(&text, 0));
    Ok(Lock { file })
}

/// Opens the lock file, creating it (0600) if absent. A file it creates is
/// synced with its directory entry before use, like the journal: the first
/// deploy's files must all survive a power loss, not only the journal.
fn open_durably(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).mode(0o600);
    match opts.clone().create_new(true).open(path) {
        Ok(file) => {
            file.sync_all()?;
            crate::storage::sync_parent(path)?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => opts.open(path),
        Err(e) => Err(e),
    }
}

fn is_contended(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == fs2::lock_contended_error().raw_os_error()
}

/// What the holder wrote about itself. It writes right after locking, and
/// the one before it cleared the file on letting go, so a contender can
/// catch the file empty or half-written; a few short retries cover that
/// window. (A holder that was killed leaves its description behind: the
/// next holder overwrites it right after locking.)
fn read_holder(file: &File) -> Holder {
    for _ in 0..10 {
        if let Ok(bytes) = crate::storage::read_all(file) {
            if let Ok(h) = serde_json::from_slice::<HolderFile>(&bytes) {
                return Holder { pid: h.pid, host: h.host, since_ms: h.since_ms, what: h.what };
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Holder { what: "holder has not described itself".into(), ..Holder::default() }
}

/// The host name, for telling apart holders on hosts sharing a state
/// directory over a network file system.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
        if let Ok(s) = std::str::from_utf8(&buf[..end]) {
            if !s.is_empty() {
                return s.to_string();
            }
        }
    }
    std::fs::read_to_string("/etc/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// The lock file of the journal at `journal`.
pub(crate) fn lock_path(journal: &Path) -> PathBuf {
    journal.with_extension("lock")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A contender that catches the next holder before it described itself
    /// must not read this one's description: letting go clears it.
    #[test]
    fn letting_go_clears_the_description() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("journal.lock");
        let lock = acquire(&path, None, "swap deploy web").expect("lock");
        assert!(std::fs::read_to_string(&path).unwrap().contains("swap deploy web"));
        drop(lock);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "the description outlived the lock");
    }
}
