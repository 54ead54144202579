//! The seam between the journal's write protocol and the file system. The
//! writer only appends, syncs, truncates, replaces, reserves space and
//! marks what it could not sync; putting those verbs behind a trait lets tests swap in a backend that remembers which
//! bytes were made durable and rebuilds the file as a crash would leave it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// What the writer needs from the medium.
pub(crate) trait Storage: std::fmt::Debug + Send {
    /// Writes `bytes` at the end with a single write; a short write is an
    /// error, never retried (the caller poisons itself).
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes every byte written so far durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;
    /// Makes the file's own name durable (fsync of its directory).
    fn sync_dir(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes (not durable until [`Storage::sync`]).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// The whole current content.
    fn read_all(&self) -> io::Result<Vec<u8>>;
    /// Replaces the whole content atomically and durably: after a crash the
    /// file holds either the old or the new bytes, never a mix.
    fn replace(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Whether the file written is no longer the one at its path (removed
    /// or replaced from outside). A backend without a path never is.
    fn detached(&self) -> io::Result<bool> {
        Ok(false)
    }
    /// Secures `len` bytes of space after the current end without changing
    /// the file's size, so later appends cannot run out of space.
    fn reserve(&mut self, len: u64) -> io::Result<Reserved>;
    /// Notes beside the file that only its first `durable` bytes are
    /// durable: the rest sits in the page cache after a failed sync and
    /// could not be cut.
    fn mark_unsynced(&mut self, durable: u64) -> io::Result<()>;
    /// The note left by [`Storage::mark_unsynced`], if any.
    fn unsynced_mark(&self) -> io::Result<Option<u64>>;
    /// Removes that note, once the bytes after it are cut durably.
    fn clear_mark(&mut self) -> io::Result<()>;
}

/// How [`Storage::reserve`] secured the space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// The blocks are allocated to the file (`fallocate` with
    /// `FALLOC_FL_KEEP_SIZE`): appends into them need no free space.
    Allocated,
    /// The file system cannot allocate ahead; it had this much free space
    /// (`statvfs`), at least what was asked, when checked.
    Available(u64),
}

/// Where [`Storage::mark_unsynced`] writes its note for the journal at
/// `path`: the path with its extension replaced by `unsynced`.
pub(crate) fn mark_path(path: &Path) -> PathBuf {
    path.with_extension("unsynced")
}

/// Reads the note at [`mark_path`]: the durable length, in decimal.
pub(crate) fn read_mark(path: &Path) -> io::Result<Option<u64>> {
    match std::fs::read_to_string(mark_path(path)) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: not a length", mark_path(path).display()))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Free space for unprivileged writers in the file system holding `dir`.
pub(crate) fn free_space(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call, and `st`
    // is a plain C struct the call fills in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The real journal file, held open in append mode.
#[derive(Debug)]
pub(crate) struct FileStorage {
    path: PathBuf,
    file: File,
}

/// Opens (creating, 0600) `path` for reading and appending.
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(path)
}

/// fsync of `path`'s parent directory, so a created or renamed entry in it
/// survives a power loss.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    File::open(parent(path))?.sync_all()
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

impl FileStorage {
    pub(crate) fn open(path: &Path) -> io::Result<FileStorage> {
        Ok(FileStorage { path: path.to_path_buf(), file: open_append(path)? })
    }
}

impl Storage for FileStorage {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let n = self.file.write(bytes)?;
        if n != bytes.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short write: {n} of {} bytes", bytes.len())));
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        sync_parent(&self.path)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_all(&self) -> io::Result<Vec<u8>> {
        read_all(&self.file)
    }

    fn detached(&self) -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt as _;
        let open = self.file.metadata()?;
        match std::fs::metadata(&self.path) {
            Ok(at_path) => Ok((at_path.dev(), at_path.ino()) != (open.dev(), open.ino())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(e),
        }
    }

    fn reserve(&mut self, len: u64) -> io::Result<Reserved> {
        use std::os::unix::io::AsRawFd as _;
        let offset = self.len()?;
        loop {
            // SAFETY: a plain syscall on a descriptor this struct owns.
            let rc = unsafe {
                libc::fallocate(
                    self.file.as_raw_fd(),
                    libc::FALLOC_FL_KEEP_SIZE,
                    offset as libc::off_t,
                    len as libc::off_t,
                )
            };
            if rc == 0 {
                return Ok(Reserved::Allocated);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // tmpfs and ext4 allocate ahead; some file systems (NFS
                // before 4.2, some FUSE ones) cannot, and checking the free
                // space is the best left to do.
                Some(libc::EOPNOTSUPP | libc::ENOSYS) => {
                    let free = free_space(parent(&self.path))?;
                    if free < len {
                        return Err(io::Error::from_raw_os_error(libc::ENOSPC));
                    }
                    return Ok(Reserved::Available(free));
                }
                _ => return Err(e),
            }
        }
    }

    fn mark_unsynced(&mut self, durable: u64) -> io::Result<()> {
        let mark = mark_path(&self.path);
        // Written aside and renamed into place: a note cut short by the
        // failing disk must never be left where readers look, or every
        // later open would refuse the journal over a half-written number.
        let part = mark.with_extension("unsynced.part");
        let written = (|| {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&part)?;
            f.write_all(format!("{durable}\n").as_bytes())?;
            // Best effort: the note matters most on this boot, while the
            // page cache still holds the unsynced bytes; on a failing disk
            // this sync may fail too.
            let _ = f.sync_all();
            std::fs::rename(&part, &mark)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        written?;
        let _ = sync_parent(&mark);
        Ok(())
    }

    fn unsynced_mark(&self) -> io::Result<Option<u64>> {
        read_mark(&self.path)
    }

    fn clear_mark(&mut self) -> io::Result<()> {
        match std::fs::remove_file(mark_path(&self.path)) {
            Ok(()) => sync_parent(&self.path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut tmp_name = self.path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".compact-tmp");
        let tmp = self.path.with_file_name(tmp_name);
        // Only the lock holder compacts, so a leftover temp file is debris
        // from a crashed compaction and can be overwritten.
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        sync_parent(&self.path)?;
        // The old descriptor now names the unlinked file.
        self.file = open_append(&self.path)?;
        Ok(())
    }
}

/// Reads a whole file through `f` from offset 0, whatever its cursor.
pub(crate) fn read_all(f: &File) -> io::Result<Vec<u8>> {
    let mut out = vec![0u8; f.metadata()?.len() as usize];
    let mut filled = 0;
    loop {
        if filled == out.len() {
            // A writer may have appended since the size was taken.
            out.resize(filled + 64 * 1024, 0);
        }
        match f.read_at(&mut out[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.truncate(filled);
    Ok(out)
}

/// An in-memory medium for tests: it knows which bytes were synced and can
/// say what a crash at any moment could leave behind.
#[cfg(test)]
pub(crate) mod mem {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Shared state, inspected by the test after the journal is dropped.
    #[derive(Debug, Default)]
    pub(crate) struct MemState {
        /// Current content, as the OS page cache would hold it.
        pub data: Vec<u8>,
        /// Length of the prefix known to be on the disk.
        pub durable: usize,
        /// Content and durable length right after every append's write,
        /// before its sync: the moments a crash is most interesting.
        pub after_write: Vec<(Vec<u8>, usize)>,
        /// Number of append calls so far.
        pub writes: usize,
        /// Number of sync calls so far.
        pub syncs: usize,
        /// Fail the write with this 1-based call number.
        pub fail_write: Option<usize>,
        /// Fail the sync with this 1-based call number.
        pub fail_sync: Option<usize>,
        /// Fail every truncate (a disk that refuses all writes).
        pub fail_truncate: bool,
        /// Fail marking unsynced bytes too.
        pub fail_mark: bool,
        /// The note of [`Storage::mark_unsynced`].
        pub mark: Option<u64>,
        /// Bytes [`Storage::reserve`] may secure in all; `None`: any.
        pub space: Option<u64>,
        /// Bytes secured by the last reservation.
        pub reserved: u64,
    }

    impl MemState {
        /// What the disk could hold after a crash now: the durable prefix
        /// plus the first `extra` bytes written since.
        pub fn crash_image(data: &[u8], durable: usize, extra: usize) -> Vec<u8> {
            data[..(durable + extra).min(data.len())].to_vec()
        }
    }

    #[derive(Debug, Clone, Default)]
    pub(crate) struct MemStorage(pub Arc<Mutex<MemState>>);

    impl Storage for MemStorage {
        fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
            let mut s = self.0.lock().unwrap();
            s.writes += 1;
            if s.fail_write == Some(s.writes) {
                // A failed write may still have landed partly.
                let half = bytes.len() / 2;
                s.data.extend_from_slice(&bytes[..half]);
                return Err(io::Error::other("injected write failure"));
            }
            s.data.extend_from_slice(bytes);
            let snap = (s.data.clone(), s.durable);
            s.after_write.push(snap);
            Ok(())
        }

        fn sync(&mut self) -> io::Result<()> {
            let mut s = self.0.lock().unwrap();
            s.syncs += 1;
            if s.fail_sync == Some(s.syncs) {
                return Err(io::Error::other("injected sync failure"));
            }
            s.durable = s.data.len();
            Ok(())
        }

        fn sync_dir(&mut self) -> io::Result<()> {
            Ok(())
        }

        fn truncate(&mut self, len: u64) -> io::Result<()> {
            let mut s = self.0.lock().unwrap();
            if s.fail_truncate {
                return Err(io::Error::other("injected truncate failure"));
            }
            s.data.truncate(len as usize);
            s.durable = s.durable.min(len as usize);
            Ok(())
        }

        fn len(&self) -> io::Result<u64> {
            Ok(self.0.lock().unwrap().data.len() as u64)
        }

        fn read_all(&self) -> io::Result<Vec<u8>> {
            Ok(self.0.lock().unwrap().data.clone())
        }

        fn replace(&mut self, bytes: &[u8]) -> io::Result<()> {
            let mut s = self.0.lock().unwrap();
            s.data = bytes.to_vec();
            s.durable = bytes.len();
            Ok(())
        }

        fn reserve(&mut self, len: u64) -> io::Result<Reserved> {
            let mut s = self.0.lock().unwrap();
            match s.space {
                Some(space) if s.data.len() as u64 + len > space => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
                _ => {
                    s.reserved = len;
                    Ok(Reserved::Allocated)
                }
            }
        }

        fn mark_unsynced(&mut self, durable: u64) -> io::Result<()> {
            let mut s = self.0.lock().unwrap();
            if s.fail_mark {
                return Err(io::Error::other("injected mark failure"));
            }
            s.mark = Some(durable);
            Ok(())
        }

        fn unsynced_mark(&self) -> io::Result<Option<u64>> {
            Ok(self.0.lock().unwrap().mark)
        }

        fn clear_mark(&mut self) -> io::Result<()> {
            self.0.lock().unwrap().mark = None;
            Ok(())
        }
    }
}
