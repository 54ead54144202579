//! The second process some tests need: this test binary re-run with
//! `JOURNAL_CHILD` set, so it holds a lock or crashes itself for real.
//! Without the variable the `child` test does nothing.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use journal::{Fault, Journal, OpenOptions};

use crate::util::{Note, Step};

const ENV: &str = "JOURNAL_CHILD";

/// Printed by a holding child once it has the lock.
pub const LOCKED: &str = "JOURNAL-CHILD-LOCKED";

/// Runs this binary's `child::child` test with `spec`:
/// `hold:<ms>:<path>` takes the journal's lock, reports, holds it `ms`
/// milliseconds and exits; `fault:<fault>:<count>:<path>` appends `count`
/// records with `<fault>` (e.g. `after:2`) armed.
pub fn spawn(spec: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child::child", "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Reads the child's output until it reports holding the lock.
pub fn wait_locked(child: &mut Child) -> BufReader<ChildStdout> {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "child exited without locking");
        if line.contains(LOCKED) {
            return out;
        }
    }
}

pub fn note(i: usize) -> Step {
    Step::Note(Note { text: format!("record {i}"), ok: true })
}

#[test]
fn child() {
    let Ok(spec) = std::env::var(ENV) else { return };
    let (mode, rest) = spec.split_once(':').unwrap();
    match mode {
        "hold" => {
            let (ms, path) = rest.split_once(':').unwrap();
            let opts = OpenOptions { holder_what: "test holder".into(), ..OpenOptions::default() };
            let (j, _) = Journal::<Step>::open(path.as_ref(), &opts).unwrap();
            println!("{LOCKED}");
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap()));
            drop(j);
        }
        "fault" => {
            let mut parts = rest.splitn(4, ':');
            let fault = format!("{}:{}", parts.next().unwrap(), parts.next().unwrap());
            let count: usize = parts.next().unwrap().parse().unwrap();
            let path = parts.next().unwrap();
            let opts = OpenOptions { fault: Fault::parse(&fault), ..OpenOptions::default() };
            assert!(opts.fault.is_some(), "bad fault {fault}");
            let (mut j, _) = Journal::<Step>::open(path.as_ref(), &opts).unwrap();
            for i in 0..count {
                j.append("g", note(i)).unwrap();
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}
