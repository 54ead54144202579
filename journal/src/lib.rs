//! An append-only, checksummed, locked record log: the durable memory that
//! lets a restarted process know what an interrupted one intended and did.
//!
//! The crate knows nothing of what it stores: records carry any serde type,
//! grouped by a caller-chosen string (swap uses its deploy id). The on-disk
//! format, the write protocol and the reading rules are specified in
//! `docs/journal-format.md`.
//!
//! # Layout
//! - [`Journal`]: a writer holding the journal's lock; `open`, `append`,
//!   `compact`.
//! - [`read`]: lock-free inspection that tolerates a torn tail.
//! - [`verify`]: the same walk, reporting instead of repairing.
//! - [`Fault`]: self-inflicted crashes at chosen records, for crash testing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

/// The format version this build writes; older versions are read, newer refused.
pub const FORMAT_VERSION: u32 = 1;

/// One record as read back or as just appended.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<T> {
    /// Position in the journal: the header is 0, each append adds one.
    pub seq: u64,
    /// Wall-clock time of the append, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// The caller's grouping key (for swap, the deploy id).
    pub group: String,
    /// The caller's payload.
    pub data: T,
    /// Byte offset of the record's line in the file.
    pub offset: u64,
}

/// How the file ended when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Every line was a valid record.
    Clean,
    /// The last line (from `offset` to the end of the file) is incomplete or
    /// invalid and nothing valid follows: the trace of an interrupted append.
    Torn {
        /// Byte offset where the invalid tail starts.
        offset: u64,
        /// 1-based line number of the invalid tail.
        line: u64,
        /// Length of the invalid tail in bytes.
        len: u64,
    },
}

/// Who holds (or last held) a journal's lock, as the holder wrote it into
/// the lock file. For diagnostics only: the lock itself is the OS lock.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holder {
    /// Holder's process id.
    pub pid: u32,
    /// Holder's host name.
    pub host: String,
    /// When the holder took the lock, milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// Free text the holder chose (swap writes its command line summary).
    pub what: String,
}

/// A crash the process inflicts on itself while appending, so tests (and
/// users) can prove recovery. `n` counts records appended by this process,
/// starting at 1 (the header of a new file is not counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL right after record `n` is durable.
    After(u64),
    /// SIGKILL right before record `n` is written.
    Before(u64),
    /// Write only part of record `n`, make that durable, then SIGKILL.
    Torn(u64),
}

impl Fault {
    /// Parses `after:N`, `before:N` or `torn:N` (N ≥ 1).
    pub fn parse(s: &str) -> Option<Fault> {
        let (kind, n) = s.split_once(':')?;
        let n: u64 = n.trim().parse().ok().filter(|n| *n >= 1)?;
        match kind.trim() {
            "after" => Some(Fault::After(n)),
            "before" => Some(Fault::Before(n)),
            "torn" => Some(Fault::Torn(n)),
            _ => None,
        }
    }
}

/// Options for [`Journal::open`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// How long to wait for the lock; `None` fails at once if it is held.
    pub lock_wait: Option<Duration>,
    /// Written into the lock file for diagnostics.
    pub holder_what: String,
    /// Self-inflicted crash, for crash testing.
    pub fault: Option<Fault>,
}

/// What [`Journal::open`] found in an existing file.
#[derive(Debug)]
pub struct Opened<T> {
    /// Every valid record after the header, in order.
    pub records: Vec<Record<T>>,
    /// Set when a torn tail was found and repaired: where, and where the
    /// original bytes were copied to.
    pub repaired: Option<(Tail, PathBuf)>,
}

/// What a lock-free [`read`] found.
#[derive(Debug)]
pub struct Replay<T> {
    /// Every valid record after the header, in order.
    pub records: Vec<Record<T>>,
    /// How the file ended.
    pub tail: Tail,
}

/// Summary of a [`verify`] walk that found the journal readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Valid records, header included.
    pub records: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// How the file ended (a torn tail is reported, not repaired).
    pub tail: Tail,
}

/// Errors shared by the operations that read a journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be read.
    #[error("cannot read journal {path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An invalid line is followed by a valid record: not a torn append.
    #[error("journal {path} is corrupt at byte {offset} (line {line}): {reason}")]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// Byte offset of the first invalid line.
        offset: u64,
        /// 1-based line number of the first invalid line.
        line: u64,
        /// What was wrong with it.
        reason: String,
    },
    /// The file was written by a newer format version than this build knows.
    #[error("journal {path} has format version {found}; this swap reads up to {FORMAT_VERSION}")]
    NewerVersion {
        /// The journal file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
}

/// Errors of [`Journal::open`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process holds the lock.
    #[error("journal {path} is locked by pid {} on {} since {} ({})", holder.pid, holder.host, holder.since_ms, holder.what)]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// What the holder wrote about itself.
        holder: Holder,
    },
    /// The journal (or its directory or lock file) could not be created,
    /// opened or synced.
    #[error("cannot open journal {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The existing content could not be read or was refused.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// Errors of [`Journal::append`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The write or the sync failed; the handle is now poisoned.
    #[error("cannot append to journal {path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An earlier append failed; nothing more is written through this handle.
    #[error("journal {path} is poisoned by an earlier failed write")]
    Poisoned {
        /// The journal file.
        path: PathBuf,
    },
    /// The payload could not be serialized.
    #[error("cannot encode record: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A journal open for writing, holding its lock until dropped.
#[derive(Debug)]
pub struct Journal<T> {
    path: PathBuf,
    _marker: std::marker::PhantomData<T>,
}

impl<T: Serialize + DeserializeOwned> Journal<T> {
    /// Opens the journal at `path` for writing, creating it (with its
    /// directory, 0700, and a header record) when absent. Takes the lock
    /// file beside it (`<path>.lock`) first. A torn tail is repaired (a copy
    /// of the original file is kept); corruption is refused.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<(Journal<T>, Opened<T>), OpenError> {
        let _ = (path, opts);
        unimplemented!()
    }

    /// Appends one record; returns it once it is durable.
    pub fn append(&mut self, group: &str, data: T) -> Result<Record<T>, AppendError> {
        let _ = (group, data);
        unimplemented!()
    }

    /// Rewrites the journal keeping only the last `keep` groups for which
    /// `complete` is true, plus every group after the oldest kept one and
    /// every incomplete group. Atomic: temp file, fsync, rename, dir fsync.
    /// Returns how many records were dropped.
    pub fn compact(
        &mut self,
        keep: usize,
        complete: impl Fn(&str, &[Record<T>]) -> bool,
    ) -> Result<u64, AppendError> {
        let _ = (keep, complete);
        unimplemented!()
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads a journal without locking it, tolerating a torn tail; works while
/// a writer appends. Corruption and newer versions are errors.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Replay<T>, ReadError> {
    let _ = path;
    unimplemented!()
}

/// Checks every checksum and the chain without changing anything.
pub fn verify(path: &Path) -> Result<Report, ReadError> {
    let _ = path;
    unimplemented!()
}
