//! One writer at a time, across processes: a second opener is refused at
//! once (or waits), is told who holds the lock, and a holder killed with
//! SIGKILL leaves no stale lock behind.

use std::os::unix::process::ExitStatusExt as _;
use std::time::{Duration, Instant};

use journal::{Journal, OpenError, OpenOptions};

use crate::child::{spawn, wait_locked};
use crate::util::Step;

fn open(path: &std::path::Path, wait: Option<Duration>) -> Result<(), OpenError> {
    let opts = OpenOptions { lock_wait: wait, ..OpenOptions::default() };
    Journal::<Step>::open(path, &opts).map(|_| ())
}

#[test]
fn second_opener_is_refused_naming_the_holder_and_a_killed_holder_frees_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app").join("journal.jsonl");
    let mut holder = spawn(&format!("hold:60000:{}", path.display()));
    let _out = wait_locked(&mut holder);

    let started = Instant::now();
    match open(&path, None) {
        Err(OpenError::Locked { path: lock, holder: h }) => {
            assert_eq!(h.pid, holder.id());
            assert_eq!(h.what, "test holder");
            assert!(!h.host.is_empty());
            assert!(h.since_ms > 0);
            assert_eq!(lock, journal::lock_path(&path));
            let msg = OpenError::Locked { path: lock, holder: h }.to_string();
            assert!(msg.contains(&holder.id().to_string()), "{msg}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(1), "a refusal must not wait");

    // Child::kill sends SIGKILL: no destructor, no unlock.
    holder.kill().unwrap();
    assert_eq!(holder.wait().unwrap().signal(), Some(libc::SIGKILL));
    let started = Instant::now();
    open(&path, None).expect("a killed holder leaves no stale lock");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn lock_wait_waits_for_the_holder_to_release() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let mut holder = spawn(&format!("hold:700:{}", path.display()));
    let _out = wait_locked(&mut holder);
    let started = Instant::now();
    // Too short a wait still fails, after waiting.
    assert!(matches!(open(&path, Some(Duration::from_millis(100))), Err(OpenError::Locked { .. })));
    assert!(started.elapsed() >= Duration::from_millis(100));
    open(&path, Some(Duration::from_secs(20))).expect("lock obtained after the holder released it");
    assert!(started.elapsed() >= Duration::from_millis(300), "did not wait for the holder");
    assert!(holder.wait().unwrap().success());
}

#[test]
fn two_handles_in_one_process_exclude_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    let first = Journal::<Step>::open(&path, &OpenOptions::default()).unwrap();
    match open(&path, None) {
        Err(OpenError::Locked { holder, .. }) => assert_eq!(holder.pid, std::process::id()),
        other => panic!("{other:?}"),
    }
    drop(first);
    open(&path, None).unwrap();
}
