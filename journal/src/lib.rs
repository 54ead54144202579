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
//!
//! Private modules: `format` (line layout, checksum, the walk that tells a
//! torn tail from corruption), `storage` (the seam the writer goes
//! through), `lock` (the lock file), `time` (RFC 3339 timestamps), `crash`
//! (the self-inflicted SIGKILL).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};

mod crash;
mod format;
mod lock;
mod storage;
mod time;

#[cfg(test)]
mod tests;

use format::{Frame, Header};
use storage::{FileStorage, Storage};

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
    /// Write record `n`, then have its `fdatasync` report `EIO`, as a
    /// failing disk does; the process lives on and handles the failure.
    Eio(u64),
}

impl Fault {
    /// Parses `after:N`, `before:N`, `torn:N` or `eio:N` (N ≥ 1).
    pub fn parse(s: &str) -> Option<Fault> {
        let (kind, n) = s.split_once(':')?;
        let n: u64 = n.trim().parse().ok().filter(|n| *n >= 1)?;
        match kind.trim() {
            "after" => Some(Fault::After(n)),
            "before" => Some(Fault::Before(n)),
            "torn" => Some(Fault::Torn(n)),
            "eio" => Some(Fault::Eio(n)),
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

/// What became of the bytes of a record whose write or sync failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsynced {
    /// Cut off again, and the cut synced: no reader will see the record.
    Removed,
    /// Could not be cut; a note beside the journal (`<journal>.unsynced`)
    /// makes every later reader ignore the bytes after the last durable
    /// record, and the next writer cut them.
    Marked,
    /// Neither the cut nor the note could be made: a later reader may
    /// find the record, or part of it.
    Unknown,
}

/// Errors of [`Journal::append`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The write or the sync failed; the handle is now poisoned.
    #[error("cannot append to journal {path}: {source}{}", match unsynced {
        Unsynced::Removed => "",
        Unsynced::Marked => " (the record was not kept: it is marked unsynced)",
        Unsynced::Unknown => " (the record could not be cut off or marked unsynced; a reader may still find it)",
    })]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
        /// What became of the record's bytes.
        unsynced: Unsynced,
    },
    /// An earlier append failed; nothing more is written through this handle.
    #[error("journal {path} is poisoned by an earlier failed write")]
    Poisoned {
        /// The journal file.
        path: PathBuf,
    },
    /// The payload could not be serialized. Nothing was written; the handle
    /// stays usable.
    #[error("cannot encode record: {0}")]
    Encode(#[from] serde_json::Error),
    /// Compaction found the file unreadable although this handle holds the
    /// lock (something else wrote to it); nothing was changed.
    #[error(transparent)]
    Read(#[from] ReadError),
}

impl AppendError {
    /// Whether the record this error is about is certainly not in the
    /// journal for any later reader: it was never written, or was cut off
    /// or marked unsynced after its write or sync failed.
    pub fn record_dropped(&self) -> bool {
        !matches!(self, AppendError::Io { unsynced: Unsynced::Unknown, .. })
    }
}

/// Errors of [`Journal::reserve`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReserveError {
    /// The file system has less free space than needed.
    #[error("not enough space for journal {path}: {needed} bytes needed, {} free", free.map_or("unknown".to_string(), |f| f.to_string()))]
    NoSpace {
        /// The journal file.
        path: PathBuf,
        /// Bytes asked for.
        needed: u64,
        /// Bytes free for unprivileged writers, when known.
        free: Option<u64>,
    },
    /// The reservation failed otherwise.
    #[error("cannot reserve {needed} bytes for journal {path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// Bytes asked for.
        needed: u64,
        /// The OS error.
        source: std::io::Error,
    },
    /// An earlier append failed; nothing more is done through this handle.
    #[error("journal {path} is poisoned by an earlier failed write")]
    Poisoned {
        /// The journal file.
        path: PathBuf,
    },
}

pub use storage::Reserved;

/// A journal open for writing, holding its lock until dropped.
#[derive(Debug)]
pub struct Journal<T> {
    path: PathBuf,
    /// Where the bytes go; the real file except in crash tests.
    storage: Box<dyn Storage>,
    /// Seq the next append gets.
    next_seq: u64,
    /// Checksum of the last record, carried by the next as `prev`.
    prev_crc: u32,
    /// File length, i.e. the offset of the next record.
    len: u64,
    /// Appends made through this handle, for [`Fault`] counting.
    appended: u64,
    fault: Option<Fault>,
    /// Set by a failed write or sync: after one, what is on the disk is
    /// unknown (fsyncgate), so nothing more may be written through here.
    poisoned: bool,
    /// Reused line buffer.
    buf: Vec<u8>,
    _marker: std::marker::PhantomData<T>,
    /// Last, so it is released only after the file is closed.
    _lock: Option<lock::Lock>,
}

/// The lock file guarding the journal at `journal`: the same path with its
/// extension replaced by `lock` (`journal.jsonl` → `journal.lock`). It is
/// created on first open and never renamed or deleted.
pub fn lock_path(journal: &Path) -> PathBuf {
    lock::lock_path(journal)
}

impl<T: Serialize + DeserializeOwned> Journal<T> {
    /// Opens the journal at `path` for writing, creating it (with its
    /// directory, 0700, and a header record) when absent. Takes the lock
    /// file beside it ([`lock_path`]) first. A torn tail is repaired (a copy
    /// of the original file is kept); corruption is refused.
    pub fn open(path: &Path, opts: &OpenOptions) -> Result<(Journal<T>, Opened<T>), OpenError> {
        let io_err = |p: &Path| {
            let p = p.to_path_buf();
            move |source| OpenError::Io { path: p, source }
        };
        let dir = storage::parent(path);
        create_dir(dir).map_err(io_err(dir))?;
        let lock = lock::acquire(&lock::lock_path(path), opts.lock_wait, &opts.holder_what)?;
        let storage = FileStorage::open(path).map_err(io_err(path))?;
        Self::attach(path, Box::new(storage), Some(lock), opts.fault)
    }

    /// Reads what `storage` holds, repairs a torn tail, writes the header
    /// of an empty file, and returns the writer positioned at the end.
    fn attach(
        path: &Path,
        mut storage: Box<dyn Storage>,
        lock: Option<lock::Lock>,
        fault: Option<Fault>,
    ) -> Result<(Journal<T>, Opened<T>), OpenError> {
        let io_err = |source| OpenError::Io { path: path.to_path_buf(), source };
        let bytes = storage.read_all().map_err(io_err)?;
        let mark = storage.unsynced_mark().map_err(io_err)?;
        let seen = unmarked(&bytes, mark);
        let mut records = Vec::new();
        let mut walked = format::walk(seen, |f| {
            records.push(decode(f)?);
            Ok(())
        })
        .map_err(|e| e.at(path))?;
        walked.tail = with_unsynced(&walked, seen.len(), bytes.len());
        let mut repaired = None;
        if let Tail::Torn { .. } = walked.tail {
            // The copy is durable before the cut, so the evidence of what
            // was torn survives even a crash during the repair.
            let copy = save_torn_copy(path, &bytes).map_err(io_err)?;
            storage.truncate(walked.valid_len).map_err(io_err)?;
            storage.sync().map_err(io_err)?;
            repaired = Some((walked.tail.clone(), copy));
        }
        if mark.is_some() {
            // Only now: a crash before this line leaves the note, and the
            // next opener cuts again (nothing left to cut).
            storage.clear_mark().map_err(io_err)?;
        }
        let len = storage.len().map_err(io_err)?;
        let mut journal = Journal {
            path: path.to_path_buf(),
            storage,
            next_seq: walked.records,
            prev_crc: walked.last_crc,
            len,
            appended: 0,
            fault,
            poisoned: false,
            buf: Vec::new(),
            _marker: std::marker::PhantomData,
            _lock: lock,
        };
        if walked.records == 0 {
            journal.write_header().map_err(io_err)?;
        }
        Ok((journal, Opened { records, repaired }))
    }

    /// Starts an empty file: header, sync, then the directory entry.
    fn write_header(&mut self) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let ts_ms = time::now_ms();
        let crc = format::encode_line(&mut buf, 0, ts_ms, format::NO_PREV, "", &Header::new(None))
            .map_err(std::io::Error::other)?;
        self.storage.append(&buf)?;
        self.storage.sync()?;
        self.storage.sync_dir()?;
        self.next_seq = 1;
        self.prev_crc = crc;
        self.len = buf.len() as u64;
        Ok(())
    }

    /// Appends one record; returns it once it is durable.
    pub fn append(&mut self, group: &str, data: T) -> Result<Record<T>, AppendError> {
        if self.poisoned {
            return Err(AppendError::Poisoned { path: self.path.clone() });
        }
        let n = self.appended + 1;
        let ts_ms = time::now_ms();
        self.buf.clear();
        let crc = format::encode_line(&mut self.buf, self.next_seq, ts_ms, self.prev_crc, group, &data)?;
        let mut sync_result = None;
        match self.fault {
            Some(Fault::Before(k)) if k == n => crash::die(),
            Some(Fault::Eio(k)) if k == n => sync_result = Some(Err(std::io::Error::from_raw_os_error(libc::EIO))),
            Some(Fault::Torn(k)) if k == n => {
                let half = (self.buf.len() - 1) / 2;
                let _ = self.storage.append(&self.buf[..half]);
                let _ = self.storage.sync();
                crash::die()
            }
            _ => {}
        }
        // One write, then fdatasync; an error in either leaves the disk in
        // an unknown state, and retrying the sync could report success for
        // pages the kernel already dropped.
        let written = self.storage.append(&self.buf);
        let synced = written.and_then(|()| sync_result.unwrap_or_else(|| self.storage.sync()));
        if let Err(source) = synced {
            self.poisoned = true;
            let unsynced = self.drop_unsynced();
            return Err(AppendError::Io { path: self.path.clone(), source, unsynced });
        }
        if matches!(self.fault, Some(Fault::After(k)) if k == n) {
            crash::die();
        }
        let record = Record { seq: self.next_seq, ts_ms, group: group.to_string(), data, offset: self.len };
        self.appended = n;
        self.next_seq += 1;
        self.prev_crc = crc;
        self.len += self.buf.len() as u64;
        Ok(record)
    }

    /// After a failed write or sync the record's bytes may sit in the page
    /// cache, where the next opener on this boot would read them as
    /// durable although the caller was told they are not (Postgres and
    /// etcd treat a failed fsync the same way). Cut them off and sync the
    /// cut: the bytes before it were synced by earlier successful appends,
    /// so this sync only has the new size to make durable. If that fails
    /// too, leave a note making every later reader ignore them.
    fn drop_unsynced(&mut self) -> Unsynced {
        if self.storage.truncate(self.len).and_then(|()| self.storage.sync()).is_ok() {
            return Unsynced::Removed;
        }
        match self.storage.mark_unsynced(self.len) {
            Ok(()) => Unsynced::Marked,
            Err(_) => Unsynced::Unknown,
        }
    }

    /// Secures `bytes` of space after the journal's end, so the appends
    /// that follow cannot fail for want of space: allocated ahead where the
    /// file system can (`fallocate` with `FALLOC_FL_KEEP_SIZE`, the file's
    /// size unchanged), else checked against the free space (`statvfs`).
    /// Space already allocated beyond the end counts, so reserving again
    /// before every deploy costs only what the last one used.
    pub fn reserve(&mut self, bytes: u64) -> Result<Reserved, ReserveError> {
        if self.poisoned {
            return Err(ReserveError::Poisoned { path: self.path.clone() });
        }
        self.storage.reserve(bytes).map_err(|source| {
            if source.raw_os_error() == Some(libc::ENOSPC) || source.kind() == std::io::ErrorKind::StorageFull {
                let free = storage::free_space(storage::parent(&self.path)).ok();
                ReserveError::NoSpace { path: self.path.clone(), needed: bytes, free }
            } else {
                ReserveError::Io { path: self.path.clone(), needed: bytes, source }
            }
        })
    }

    /// Rewrites the journal keeping only the last `keep` groups for which
    /// `complete` is true, plus every group after the oldest kept one and
    /// every incomplete group. Atomic: temp file, fsync, rename, dir fsync.
    /// Returns how many records were dropped.
    ///
    /// Groups are ordered by their first record; kept records keep their
    /// order, timestamps, groups and payload bytes, but are renumbered from
    /// seq 1 under a new header, so seq and offset values read before a
    /// compaction are stale after it. When nothing would be dropped the file
    /// is left untouched. A failure poisons the handle: the rename may or
    /// may not have happened.
    pub fn compact(&mut self, keep: usize, complete: impl Fn(&str, &[Record<T>]) -> bool) -> Result<u64, AppendError> {
        if self.poisoned {
            return Err(AppendError::Poisoned { path: self.path.clone() });
        }
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            // Only reading fails here: nothing was written.
            move |source| AppendError::Io { path, source, unsynced: Unsynced::Removed }
        };
        let bytes = self.storage.read_all().map_err(io_err(&self.path))?;
        // Group index of every record in file order, and each group's
        // records with their raw payload bytes (kept verbatim).
        let mut order: Vec<usize> = Vec::new();
        let mut groups: Vec<Group<'_, T>> = Vec::new();
        let mut index = std::collections::HashMap::new();
        let walked = format::walk(&bytes, |f| {
            let raw = f.data;
            let rec = decode::<T>(f)?;
            let g = *index.entry(rec.group.clone()).or_insert_with(|| {
                groups.push(Group { name: rec.group.clone(), records: Vec::new(), raw: Vec::new() });
                groups.len() - 1
            });
            order.push(g);
            groups[g].records.push(rec);
            groups[g].raw.push(raw);
            Ok(())
        })
        .map_err(|e| e.at(&self.path))?;
        if walked.tail != Tail::Clean {
            // Only a failed append of ours leaves a torn tail, and that
            // poisoned the handle above; anything else is foreign damage.
            return Err(AppendError::Read(ReadError::Corrupt {
                path: self.path.clone(),
                offset: walked.valid_len,
                line: walked.records + 1,
                reason: "torn tail under a held lock".into(),
            }));
        }
        let done: Vec<bool> = groups.iter().map(|g| complete(&g.name, &g.records)).collect();
        let complete_idx: Vec<usize> = (0..groups.len()).filter(|&g| done[g]).collect();
        let kept_complete = &complete_idx[complete_idx.len().saturating_sub(keep)..];
        let oldest_kept = kept_complete.first().copied().unwrap_or(usize::MAX);
        let keep_group: Vec<bool> = (0..groups.len()).map(|g| !done[g] || g >= oldest_kept).collect();
        let dropped = order.iter().filter(|&&g| !keep_group[g]).count() as u64;
        if dropped == 0 {
            return Ok(0);
        }
        let mut cursor = vec![0usize; groups.len()];
        let kept = order.iter().filter(|&&g| keep_group[g]).map(|&g| {
            let i = cursor[g];
            cursor[g] += 1;
            let group = &groups[g];
            (group.name.as_str(), group.records[i].ts_ms, group.raw[i])
        });
        let kept: Vec<_> = kept.collect();
        let (out, next_seq, last_crc) = format::encode_journal(time::now_ms(), &Header::new(Some(dropped)), kept)?;
        if let Err(source) = self.storage.replace(&out) {
            self.poisoned = true;
            return Err(AppendError::Io { path: self.path.clone(), source, unsynced: Unsynced::Unknown });
        }
        self.next_seq = next_seq;
        self.prev_crc = last_crc;
        self.len = out.len() as u64;
        Ok(dropped)
    }

    /// Whether an earlier write, sync or compaction failed through this
    /// handle, so nothing more will be written through it.
    pub fn poisoned(&self) -> bool {
        self.poisoned
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file this handle writes is no longer the one at its path:
    /// someone removed or replaced it. Appends still succeed, but no reader
    /// will ever see them. One `fstat` and one `stat`; appends do not check.
    pub fn detached(&self) -> std::io::Result<bool> {
        self.storage.detached()
    }
}

/// One group's records during compaction, with their payload bytes as
/// read, so kept records are rewritten verbatim.
struct Group<'a, T> {
    name: String,
    records: Vec<Record<T>>,
    raw: Vec<&'a serde_json::value::RawValue>,
}

/// Decodes one record's payload; the error names the type it wanted.
fn decode<T: DeserializeOwned>(f: Frame<'_>) -> Result<Record<T>, String> {
    let data = serde_json::from_str(f.data.get())
        .map_err(|e| format!("payload does not decode as {}: {e}", std::any::type_name::<T>()))?;
    Ok(Record { seq: f.seq, ts_ms: f.ts_ms, group: f.group.into_owned(), data, offset: f.offset })
}

/// The bytes a reader may trust: all of them, or those before the note a
/// writer left after a failed sync.
fn unmarked(bytes: &[u8], mark: Option<u64>) -> &[u8] {
    match mark {
        Some(m) if (m as usize) < bytes.len() => &bytes[..m as usize],
        _ => bytes,
    }
}

/// The tail as a reader reports it when the bytes after `seen` were cut
/// off by a note: unsynced bytes are a torn tail, never records.
fn with_unsynced(walked: &format::Walked, seen: usize, total: usize) -> Tail {
    match walked.tail {
        Tail::Torn { offset, line, len } => Tail::Torn { offset, line, len: len + (total - seen) as u64 },
        Tail::Clean if total > seen => {
            Tail::Torn { offset: seen as u64, line: walked.records + 1, len: (total - seen) as u64 }
        }
        Tail::Clean => Tail::Clean,
    }
}

/// Creates `dir` (0700) and any missing parents, syncing the parent of
/// each directory it creates so the new path survives a power loss.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => storage::sync_parent(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes the original bytes of a torn journal to
/// `<path>.torn-<ms>` (0600), durably, before the journal is cut.
fn save_torn_copy(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let base = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let ms = time::now_ms();
    for attempt in 0u32.. {
        let name = match attempt {
            0 => format!("{base}.torn-{ms}"),
            n => format!("{base}.torn-{ms}-{n}"),
        };
        let copy = path.with_file_name(name);
        let mut f = match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&copy) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        f.write_all(bytes)?;
        f.sync_all()?;
        storage::sync_parent(&copy)?;
        return Ok(copy);
    }
    unreachable!("u32 attempts exhausted")
}

/// Reads a journal without locking it, tolerating a torn tail; works while
/// a writer appends. Corruption and newer versions are errors.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Replay<T>, ReadError> {
    let (bytes, mark) = read_file(path)?;
    let seen = unmarked(&bytes, mark);
    let mut records = Vec::new();
    let walked = format::walk(seen, |f| {
        records.push(decode(f)?);
        Ok(())
    })
    .map_err(|e| e.at(path))?;
    Ok(Replay { records, tail: with_unsynced(&walked, seen.len(), bytes.len()) })
}

/// Checks every checksum and the chain without changing anything.
/// Payloads are checked to be JSON, not decoded.
pub fn verify(path: &Path) -> Result<Report, ReadError> {
    let (bytes, mark) = read_file(path)?;
    let seen = unmarked(&bytes, mark);
    let walked = format::walk(seen, |_| Ok(())).map_err(|e| e.at(path))?;
    Ok(Report {
        records: walked.records,
        bytes: bytes.len() as u64,
        tail: with_unsynced(&walked, seen.len(), bytes.len()),
    })
}

/// The file's bytes and the unsynced note beside it, if any.
fn read_file(path: &Path) -> Result<(Vec<u8>, Option<u64>), ReadError> {
    let io = |source| ReadError::Io { path: path.to_path_buf(), source };
    let bytes = std::fs::File::open(path).and_then(|f| storage::read_all(&f)).map_err(io)?;
    Ok((bytes, storage::read_mark(path).map_err(io)?))
}

/// Building blocks for tools and benchmarks outside this crate; not part
/// of the supported API.
#[doc(hidden)]
pub mod testing {
    use super::*;

    /// The bytes of a valid journal holding `records` (group, payload),
    /// all stamped `ts_ms`, as if appended one by one — without paying a
    /// sync per record.
    pub fn encode_journal<T: Serialize>(ts_ms: u64, records: &[(&str, T)]) -> Vec<u8> {
        format::encode_journal(ts_ms, &Header::new(None), records.iter().map(|(g, d)| (*g, ts_ms, d)))
            .expect("payload serializes")
            .0
    }
}
