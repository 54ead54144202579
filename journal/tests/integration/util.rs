//! Shared fixtures: the payload type the tests store, and a reference
//! journal with known record offsets.

use std::path::{Path, PathBuf};

use journal::{Journal, OpenOptions};
use serde::{Deserialize, Serialize};

/// A payload shaped like swap's: variants, strings that need escaping,
/// numbers, optional and repeated fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    Intent { step: String, container: Option<String> },
    Done { step: String, ids: Vec<String>, code: i64 },
    Note(Note),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub text: String,
    pub ok: bool,
}

/// A journal with a header and `n` records; returns its path and the byte
/// offset of every line (header first) plus the file length.
pub fn reference(dir: &Path, n: usize) -> (PathBuf, Vec<u64>) {
    let path = dir.join("app").join("journal.jsonl");
    let (mut j, _) = Journal::<Step>::open(&path, &OpenOptions::default()).unwrap();
    for i in 0..n {
        let step = match i % 3 {
            0 => Step::Intent { step: format!("stop-old-{i}"), container: Some("ab\"c\\d\nλ".into()) },
            1 => Step::Done { step: format!("stop-old-{i}"), ids: vec!["x".into(), "ü".into()], code: -1 },
            _ => Step::Note(Note { text: "tab\there ☃".into(), ok: true }),
        };
        j.append(&format!("deploy-{}", i / 2), step).unwrap();
    }
    drop(j);
    let bytes = std::fs::read(&path).unwrap();
    let mut offsets = vec![0u64];
    offsets.extend(bytes.iter().enumerate().filter(|(_, &c)| c == b'\n').map(|(i, _)| i as u64 + 1));
    (path, offsets)
}

/// Files in `dir` whose name contains `.torn-`.
pub fn torn_copies(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().contains(".torn-"))
        .collect();
    v.sort();
    v
}

/// Mode bits of a file or directory.
pub fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}
