//! `swap journal compact`: the one journal command that writes. It keeps
//! the last finished deploys (and any unfinished one) and replaces the file
//! atomically, under the app's lock like a deploy.

use crate::error::Failure;
use crate::record::Event;
use crate::report::Report;
use crate::state::StateDir;

/// Keeps the last `keep` finished deploys of `app`'s journal.
pub async fn compact(
    state: &StateDir,
    app: &str,
    keep: usize,
    lock_wait: Option<std::time::Duration>,
    report: &Report,
) -> Result<String, Failure> {
    let path = state.journal(app);
    if !path.exists() {
        return Err(Failure::BadInput(format!("no journal for {app} at {}", path.display())));
    }
    let (mut journal, _) = state.open(app, lock_wait, &format!("swap journal compact {app}"), None, report).await?;
    let dropped = journal
        .compact(keep, |_, records| records.iter().any(|r| matches!(r.data, Event::End { .. })))
        .map_err(|e| Failure::Incomplete(format!("compaction failed, the journal is unchanged: {e}")))?;
    Ok(format!("{}: dropped {dropped} records, kept the last {keep} finished deploys", path.display()))
}
