//! Measures the journal against its performance targets, printing numbers
//! side by side from one run on one file system (no assertions):
//!
//! - `append` (one write plus fdatasync per record) against a bare
//!   write+fdatasync loop of lines of the same size, interleaved in rounds
//!   so drift in the disk hits both alike; target ratio ≥ 0.9.
//! - `read` of a 100,000-record journal; target ≥ 500,000 records/s.
//!
//! Run with `cargo bench -p journal`. Files go to a temporary directory in
//! the cargo target directory, or under `JOURNAL_BENCH_DIR` if set.

use std::fs::OpenOptions as FsOpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use journal::{Journal, OpenOptions};
use serde::{Deserialize, Serialize};

/// Shaped like a swap step record: ids, an image digest, a result.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Step {
    kind: String,
    step: String,
    container: String,
    image: String,
    elapsed_ms: u64,
}

fn step(i: u64) -> Step {
    Step {
        kind: if i % 2 == 0 { "intent" } else { "done" }.into(),
        step: "start-candidate".into(),
        container: format!("{:064x}", u128::from(i) * 0x9e37_79b9_7f4a_7c15),
        image: format!("sha256:{:064x}", u128::from(i) ^ 0xdead_beef),
        elapsed_ms: i % 997,
    }
}

/// Records per batch; the two loops alternate batch by batch.
const BATCH: u64 = 10;
/// Wall time spent on the append comparison.
const TIME_BUDGET: Duration = Duration::from_secs(24);
const REPLAY_RECORDS: usize = 100_000;
const REPLAY_RUNS: usize = 5;

fn bench_dir() -> tempfile::TempDir {
    let base = match std::env::var_os("JOURNAL_BENCH_DIR") {
        Some(d) => PathBuf::from(d),
        // <target>/release/deps/<bench binary>
        None => std::env::current_exe()
            .ok()
            .and_then(|e| e.ancestors().nth(3).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("target")),
    };
    std::fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new().prefix("journal-bench-").tempdir_in(&base).unwrap()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then a smoke run is enough.
    let full = std::env::args().any(|a| a == "--bench");
    let dir = bench_dir();
    println!("journal benchmark in {}", dir.path().display());
    append_vs_bare(&dir, full);
    replay(&dir, full);
}

fn append_vs_bare(dir: &tempfile::TempDir, full: bool) {
    let path = dir.path().join("journal.jsonl");
    let (mut j, _) = Journal::<Step>::open(&path, &OpenOptions::default()).unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    j.append("deploy-0", step(0)).unwrap();
    let line_len = (std::fs::metadata(&path).unwrap().len() - before) as usize;
    let mut line = vec![b'x'; line_len - 1];
    line.push(b'\n');
    let mut bare =
        FsOpenOptions::new().append(true).create(true).mode(0o600).open(dir.path().join("bare.jsonl")).unwrap();
    let mut bare_op = move || {
        let n = bare.write(&line).unwrap();
        assert_eq!(n, line.len());
        bare.sync_data().unwrap();
    };

    // Many short alternating batches rather than a few long rounds: on a
    // virtual disk fdatasync latency swings by 10x within seconds, and only
    // fine interleaving lets both loops see the same swings.
    let budget = if full { TIME_BUDGET } else { Duration::from_millis(200) };
    println!(
        "\nappend with fdatasync vs bare write+fdatasync, {line_len}-byte lines, \
         alternating batches of {BATCH} for {:.1} s",
        budget.as_secs_f64()
    );
    let mut seq = 1;
    let (mut t_append, mut t_bare) = (Duration::ZERO, Duration::ZERO);
    let mut ratios = Vec::new();
    let mut batches = 0u64;
    let started = Instant::now();
    while started.elapsed() < budget {
        let mut run_append = || {
            let t = Instant::now();
            for _ in 0..BATCH {
                j.append("deploy-1", step(seq)).unwrap();
                seq += 1;
            }
            t.elapsed()
        };
        let mut run_bare = || {
            let t = Instant::now();
            for _ in 0..BATCH {
                bare_op();
            }
            t.elapsed()
        };
        // Alternate who goes first so neither always meets a warmer disk.
        let (a, b) = if batches % 2 == 0 {
            let a = run_append();
            (a, run_bare())
        } else {
            let b = run_bare();
            (run_append(), b)
        };
        t_append += a;
        t_bare += b;
        ratios.push(b.as_secs_f64() / a.as_secs_f64());
        batches += 1;
    }
    ratios.sort_by(f64::total_cmp);
    let total = batches * BATCH;
    let (ra, rb) = (rate(total, t_append), rate(total, t_bare));
    println!("{:<26} {:>12}", "", "records/s");
    println!("{:<26} {ra:>12.0}   ({total} records)", "journal append");
    println!("{:<26} {rb:>12.0}   ({total} records)", "bare write+fdatasync");
    println!("{:<26} {:>12.3}   (target >= 0.9)", "ratio append/bare", ra / rb);
    println!(
        "{:<26} {:>12.3}   (per batch pair; p10 {:.3}, p90 {:.3})",
        "median batch ratio",
        ratios[ratios.len() / 2],
        ratios[ratios.len() / 10],
        ratios[ratios.len() * 9 / 10]
    );
}

fn replay(dir: &tempfile::TempDir, full: bool) {
    let n = if full { REPLAY_RECORDS } else { 1000 };
    let records: Vec<(String, Step)> = (0..n as u64).map(|i| (format!("deploy-{}", i / 20), step(i))).collect();
    let refs: Vec<(&str, Step)> = records.iter().map(|(g, s)| (g.as_str(), s.clone())).collect();
    let bytes = journal::testing::encode_journal(1_795_878_597_123, &refs);
    let path = dir.path().join("replay.jsonl");
    std::fs::write(&path, &bytes).unwrap();
    println!(
        "\nreplay via read() of a {n}-record journal ({:.1} MB), {} runs",
        bytes.len() as f64 / 1e6,
        if full { REPLAY_RUNS } else { 1 }
    );
    let mut rates = Vec::new();
    for _ in 0..if full { REPLAY_RUNS } else { 1 } {
        let t = Instant::now();
        let replay = journal::read::<Step>(&path).unwrap();
        let e = t.elapsed();
        assert_eq!(replay.records.len(), n);
        rates.push(rate(n as u64, e));
    }
    rates.sort_by(f64::total_cmp);
    let t = Instant::now();
    journal::verify(&path).unwrap();
    let verify_rate = rate(n as u64 + 1, t.elapsed());
    println!(
        "read():   median {:>10.0} rec/s, best {:>10.0} rec/s   (target >= 500000)",
        rates[rates.len() / 2],
        rates[rates.len() - 1]
    );
    println!("verify(): {verify_rate:>10.0} rec/s");
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}
