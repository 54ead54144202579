//! How a swap command ends, and the exit code each ending maps to. The codes
//! are a public contract (`docs/exit-codes.md`); this is the one place that
//! assigns them.

/// A command's unsuccessful ending.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The deploy failed and was rolled back; the previous version serves.
    #[error("{0}")]
    RolledBack(String),
    /// The input was refused before anything changed.
    #[error("{0}")]
    BadInput(String),
    /// Another swap holds the app's lock; nothing changed.
    #[error("{0}")]
    Locked(String),
    /// The journal is corrupt or Docker holds something it cannot explain;
    /// nothing further changed; an operator is needed.
    #[error("{0}")]
    Halted(String),
    /// A transient failure (Docker unreachable, journal write failed) left
    /// the deploy unfinished; `swap recover` completes it.
    #[error("{0}")]
    Incomplete(String),
    /// The image could not be pulled: its registry stayed unreachable
    /// through every retry. Nothing changed; a later run may succeed.
    #[error("{0}")]
    Unavailable(String),
}

impl Failure {
    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::RolledBack(_) => 1,
            Failure::BadInput(_) => 2,
            Failure::Locked(_) => 3,
            Failure::Halted(_) => 4,
            Failure::Incomplete(_) => 5,
            Failure::Unavailable(_) => 6,
        }
    }

    /// The short name used in JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::RolledBack(_) => "rolled_back",
            Failure::BadInput(_) => "bad_input",
            Failure::Locked(_) => "locked",
            Failure::Halted(_) => "halted",
            Failure::Incomplete(_) => "incomplete",
            Failure::Unavailable(_) => "unavailable",
        }
    }
}

impl From<journal::OpenError> for Failure {
    fn from(e: journal::OpenError) -> Failure {
        match e {
            journal::OpenError::Locked { holder, path } => Failure::Locked(format!(
                "another swap holds the lock {}: {}; nothing changed (wait for it, or pass --lock-wait SECS)",
                path.display(),
                holder_text(&holder)
            )),
            journal::OpenError::Read(r) => Failure::from(r),
            // Permissions and missing or read-only paths are the caller's input;
            // anything else (a failed sync while repairing) is transient.
            journal::OpenError::Io { ref source, .. }
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::PermissionDenied
                        | std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::ReadOnlyFilesystem
                        | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Failure::BadInput(format!("{e}; nothing changed"))
            }
            other => Failure::Incomplete(other.to_string()),
        }
    }
}

/// Who holds a lock, for a person: pid, host, since when, and its command.
pub fn holder_text(holder: &journal::Holder) -> String {
    format!("pid {} on {} since {} ({})", holder.pid, holder.host, crate::record::rfc3339(holder.since_ms), holder.what)
}

impl From<journal::ReadError> for Failure {
    fn from(e: journal::ReadError) -> Failure {
        match e {
            journal::ReadError::Io { .. } => Failure::Incomplete(e.to_string()),
            _ => Failure::Halted(format!(
                "{e}; nothing was changed. `swap journal verify` shows the damage; see docs/operations.md"
            )),
        }
    }
}

impl From<journal::AppendError> for Failure {
    fn from(e: journal::AppendError) -> Failure {
        Failure::Incomplete(format!(
            "{e}; the step that could not be journaled did not run. Free the disk, then run `swap recover`"
        ))
    }
}
