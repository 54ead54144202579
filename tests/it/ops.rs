//! The operations commands against the real Docker engine: `journal show`,
//! `journal verify`, `status`, `history` (human and JSON), `rollback`,
//! `journal compact`, `recover --all`, completions and the man page, after
//! real deploys that succeeded, rolled back, crashed and were recovered, or
//! halted.
//!
//! The JSON schemas below are written from `docs/json-output.md` and
//! `docs/journal-format.md` ("Payload"), independently of the code that
//! writes the documents: a change to the product's output that breaks the
//! documented contract fails here.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support;
use crate::support::{assert_exit, code, id_of, journal, journal_at, kind, publish, stderr, stdout};
use crate::support::{describe, image, TestApp};
use serde_json::Value;

/// How long a demo app may take to answer after a deploy returned.
const ANSWER: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Running swap
// ---------------------------------------------------------------------------

/// Runs `swap --state-dir <dir> <args>` with `env` (and no inherited
/// `SWAP_*`); returns its output and its pid (the journal names it).
fn swap_at(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (Output, u32) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swap"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SWAP_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.arg("--state-dir").arg(dir).args(args);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn swap");
    let pid = child.id();
    (child.wait_with_output().expect("wait for swap"), pid)
}

/// Asserts that swap killed itself with SIGKILL (crash injection).
#[track_caller]
fn assert_crashed(out: &Output) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "swap did not kill itself:\n{}", describe(out));
}

/// Every stdout line parsed as JSON.
#[track_caller]
fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}\n{}", describe(out)))
        })
        .collect()
}

/// stdout parsed as exactly one JSON document.
#[track_caller]
fn json_doc(out: &Output) -> Value {
    serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", describe(out)))
}

/// The deploy id of the last `begin` record.
fn last_deploy_id(app: &TestApp) -> String {
    journal(app).iter().rev().find(|r| kind(r) == "begin").expect("a begin record")["group"]
        .as_str()
        .unwrap()
        .to_string()
}

fn image_id(tag: &str) -> String {
    support::image_id(&image(tag)).unwrap_or_else(|| panic!("no image {}", image(tag)))
}

/// 12 hex digits of an id, without `sha256:`.
fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..12.min(id.len())]
}

/// Every container of the app (by name or label), sorted ids.
fn all_ids_of(app: &str) -> Vec<String> {
    let mut ids: Vec<String> = support::containers_of(app).into_iter().map(|c| c.id).collect();
    let label = format!("label=swap.app={app}");
    ids.extend(support::docker_ok(&["ps", "-aq", "--no-trunc", "--filter", &label]).lines().map(str::to_string));
    ids.sort();
    ids.dedup();
    ids
}

#[track_caller]
fn assert_answers(port: u16, version: &str, app: &str) {
    let want = format!("{version}\n");
    assert_eq!(support::http_get(port, ANSWER).as_deref(), Some(want.as_str()), "{}", support::logs(app));
}

/// First deploy of `tag` on the test bridge, publishing `port`.
fn first_deploy(app: &TestApp, tag: &str, port: u16) {
    let out = app.swap(&[
        "deploy",
        app.name(),
        "--image",
        &image(tag),
        "--publish",
        &publish(port),
        "--network",
        support::bridge(),
    ]);
    assert_exit(&out, 0);
}

// ---------------------------------------------------------------------------
// Schemas, from docs/json-output.md and docs/journal-format.md
// ---------------------------------------------------------------------------

/// A documented JSON type.
#[derive(Clone, Copy, Debug)]
enum Ty {
    Str,
    /// A non-negative integer.
    Uint,
    Bool,
    /// RFC 3339 UTC with milliseconds: `2026-11-28T15:22:46.413Z`.
    Time,
    /// RFC 3339 UTC, any fraction of a second (Docker's own timestamps).
    DockerTime,
    /// `sha256:` and 64 hex digits.
    ImageId,
    /// 64 hex digits.
    ContainerId,
    /// `YYYYMMDDTHHMMSS.mmmZ-PID`.
    DeployId,
    Enum(&'static [&'static str]),
    /// The type, or null.
    Null(&'static Ty),
    Arr(&'static Ty),
    Obj(&'static [F]),
    Either(&'static Ty, &'static Ty),
    /// A journal `step` object (tagged by `step`).
    Step,
    /// A journal record payload (tagged by `kind`).
    Payload,
}

/// A field: name, type, required.
#[derive(Clone, Copy, Debug)]
struct F(&'static str, Ty, bool);

/// A required field.
macro_rules! req {
    ($name:expr, $ty:expr $(,)?) => {
        F($name, $ty, true)
    };
}

/// An optional field.
macro_rules! opt {
    ($name:expr, $ty:expr $(,)?) => {
        F($name, $ty, false)
    };
}

const STEP_NAMES: &[&str] = &[
    "build",
    "start_old",
    "create_candidate",
    "park_old",
    "stop_old",
    "rename_old",
    "rename_candidate",
    "start_candidate",
    "retire_temporary",
    "remove_old",
    "remove_image",
];
const OUTCOMES: &[&str] = &["deployed", "rolled_back", "halted", "unfinished"];
const RESULT_OUTCOMES: &[&str] = &["ok", "rolled_back", "bad_input", "locked", "halted", "incomplete", "unavailable"];

const STATUS: Ty = Ty::Obj(&[req!("apps", Ty::Arr(&STATUS_APP))]);
const STATUS_APP: Ty = Ty::Obj(&[
    req!("app", Ty::Str),
    req!(
        "container",
        Ty::Null(&Ty::Obj(&[
            req!("id", Ty::ContainerId),
            req!("image_id", Ty::ImageId),
            req!("image", Ty::Str),
            req!("running", Ty::Bool),
            req!("started_at", Ty::DockerTime),
            req!("health", Ty::Null(&Ty::Enum(&["starting", "healthy", "unhealthy"]))),
            req!("strategy", Ty::Null(&Ty::Enum(&["stop-first", "start-first"]))),
        ])),
    ),
    req!(
        "last_deploy",
        Ty::Null(&Ty::Obj(&[
            req!("deploy", Ty::DeployId),
            req!("outcome", Ty::Enum(OUTCOMES)),
            req!("began", Ty::Time)
        ])),
    ),
    req!("unfinished", Ty::Null(&Ty::DeployId)),
]);

const HISTORY: Ty = Ty::Obj(&[
    req!("app", Ty::Str),
    req!(
        "deploys",
        Ty::Arr(&Ty::Obj(&[
            req!("deploy", Ty::DeployId),
            req!("began", Ty::Time),
            req!("command", Ty::Enum(&["deploy", "rollback"])),
            req!("from_image", Ty::Null(&Ty::ImageId)),
            req!("to_image", Ty::ImageId),
            req!("outcome", Ty::Enum(OUTCOMES)),
            req!("reason", Ty::Null(&Ty::Str)),
            req!("duration_ms", Ty::Uint),
            req!("outage_ms", Ty::Null(&Ty::Uint)),
            req!("strategy", Ty::Enum(&["stop-first", "start-first"])),
        ])),
    ),
]);

const VERIFY: Ty = Ty::Obj(&[
    req!("app", Ty::Str),
    req!("records", Ty::Uint),
    req!("bytes", Ty::Uint),
    req!(
        "tail",
        Ty::Either(
            &Ty::Enum(&["clean"]),
            &Ty::Obj(&[req!(
                "torn",
                Ty::Obj(&[req!("offset", Ty::Uint), req!("line", Ty::Uint), req!("len", Ty::Uint)])
            )]),
        ),
    ),
    req!("sound", Ty::Bool),
]);

const SHOW_LINE: Ty =
    Ty::Obj(&[req!("seq", Ty::Uint), req!("ts", Ty::Time), req!("deploy", Ty::DeployId), req!("record", Ty::Payload)]);

const RUN: Ty = Ty::Obj(&[
    req!("pid", Ty::Uint),
    req!("host", Ty::Str),
    req!("user", Ty::Str),
    req!("version", Ty::Str),
    req!("command", Ty::Enum(&["deploy", "rollback", "recover"])),
]);
const POLICY: Ty = Ty::Obj(&[req!("name", Ty::Str), req!("max_retries", Ty::Uint)]);
const STRS: Ty = Ty::Arr(&Ty::Str);

/// The fields of each payload kind, `kind` excluded.
fn payload_fields(kind: &str) -> Option<&'static [F]> {
    Some(match kind {
        "begin" => &[
            req!("app", Ty::Str),
            req!("run", RUN),
            opt!(
                "old",
                Ty::Obj(&[
                    req!("id", Ty::ContainerId),
                    req!("image_id", Ty::ImageId),
                    req!("image", Ty::Str),
                    req!("running", Ty::Bool),
                    req!("restart_policy", POLICY),
                    opt!("volumes", Ty::Arr(&Ty::Obj(VOLUME))),
                ]),
            ),
            req!("image", Ty::Str),
            opt!("image_id", Ty::ImageId),
            req!("networks", STRS),
            req!("ports", STRS),
            req!("env_keys", STRS),
            opt!("volumes", Ty::Arr(&Ty::Obj(VOLUME))),
            req!("health_timeout_s", Ty::Uint),
            opt!("strategy", Ty::Enum(&["start-first"])),
            opt!(
                "pulled",
                Ty::Obj(&[
                    req!("reference", Ty::Str),
                    req!("image_id", Ty::ImageId),
                    opt!("repo_digest", Ty::Str),
                    req!("attempts", Ty::Uint),
                    req!("ms", Ty::Uint),
                ]),
            ),
        ],
        "intent" | "undo_intent" => &[req!("step", Ty::Step)],
        "done" => &[req!("step", Ty::Step), opt!("output", Ty::Str), req!("ms", Ty::Uint)],
        "failed" => {
            &[req!("step", Ty::Step), req!("error", Ty::Str), req!("ms", Ty::Uint), opt!("unreachable", Ty::Bool)]
        }
        "health" => &[
            req!("container", Ty::ContainerId),
            req!("outcome", Ty::Str),
            req!("passed", Ty::Bool),
            opt!("logs", STRS),
            req!("ms", Ty::Uint),
        ],
        "commit" => &[req!("container", Ty::ContainerId)],
        "undo_done" => &[req!("step", Ty::Step), req!("ms", Ty::Uint)],
        "recovery" => &[
            req!("run", RUN),
            req!("decision", Ty::Enum(&["rollback", "forward", "settled"])),
            opt!("waited_ms", Ty::Uint),
        ],
        "halt" => &[req!("reason", Ty::Str)],
        "hangup" => &[req!("at", Ty::Time)],
        "end" => &[req!("outcome", Ty::Enum(&["deployed", "rolled_back"])), opt!("reason", Ty::Str)],
        _ => return None,
    })
}

/// The fields of each step, `step` excluded.
fn step_fields(step: &str) -> Option<&'static [F]> {
    Some(match step {
        "build" => &[req!("context", Ty::Str), req!("dockerfile", Ty::Str), opt!("tag", Ty::Null(&Ty::Str))],
        "start_old" | "remove_old" => &[req!("id", Ty::ContainerId)],
        "create_candidate" => &[
            req!("name", Ty::Str),
            req!("image", Ty::ImageId),
            req!("deploy", Ty::DeployId),
            req!("networks", STRS),
            opt!("instance", Ty::Enum(&["temporary", "final"])),
        ],
        "park_old" => &[req!("id", Ty::ContainerId), req!("policy", POLICY)],
        "stop_old" | "start_candidate" | "retire_temporary" => {
            &[req!("id", Ty::ContainerId), req!("timeout_s", Ty::Uint)]
        }
        "rename_old" | "rename_candidate" => &[req!("id", Ty::ContainerId), req!("from", Ty::Str), req!("to", Ty::Str)],
        "remove_image" => &[req!("image", Ty::ImageId)],
        _ => return None,
    })
}

/// A mount as the journal and the plan list it (`docs/journal-format.md`).
const VOLUME: &[F] = &[
    req!("kind", Ty::Enum(&["volume", "bind", "tmpfs"])),
    opt!("name", Ty::Str),
    opt!("source", Ty::Str),
    req!("destination", Ty::Str),
    req!("rw", Ty::Bool),
];

/// The fields of each progress event, `event` excluded; `None` for an
/// event kind the doc does not list.
fn event_fields(event: &str) -> Option<&'static [F]> {
    Some(match event {
        "note" => &[req!("message", Ty::Str)],
        "plan" => &[
            req!("app", Ty::Str),
            req!("deploy", Ty::DeployId),
            req!("old", Ty::Null(&Ty::ContainerId)),
            req!("image", Ty::Str),
            req!("networks", STRS),
            req!("ports", STRS),
            req!("volumes", Ty::Arr(&Ty::Obj(VOLUME))),
            req!("strategy", Ty::Enum(&["stop-first", "start-first"])),
            req!("steps", STRS),
        ],
        "step" => &[
            req!("step", Ty::Enum(STEP_NAMES)),
            req!("description", Ty::Str),
            req!("status", Ty::Enum(&["done", "failed"])),
            req!("ms", Ty::Uint),
            opt!("output", Ty::Null(&Ty::Str)),
            opt!("error", Ty::Str),
        ],
        "health" => &[req!("passed", Ty::Bool), req!("outcome", Ty::Str), req!("ms", Ty::Uint), opt!("logs", STRS)],
        "pull" => &[
            req!("status", Ty::Enum(&["start", "layer", "done"])),
            opt!("reference", Ty::Str),
            opt!("registry", Ty::Str),
            opt!("layer", Ty::Str),
            opt!("layer_status", Ty::Str),
            opt!("current", Ty::Null(&Ty::Uint)),
            opt!("total", Ty::Null(&Ty::Uint)),
            opt!("image_id", Ty::ImageId),
            opt!("repo_digest", Ty::Null(&Ty::Str)),
            opt!("bytes", Ty::Uint),
            opt!("attempts", Ty::Uint),
            opt!("ms", Ty::Uint),
        ],
        "commit" => &[req!("container", Ty::ContainerId)],
        "undo" => &[
            req!("step", Ty::Enum(STEP_NAMES)),
            req!("description", Ty::Str),
            req!("status", Ty::Enum(&["done"])),
            req!("ms", Ty::Uint),
            opt!("journaled", Ty::Bool),
        ],
        "decision" => &[
            req!("app", Ty::Str),
            req!("deploy", Ty::Null(&Ty::DeployId)),
            req!("decision", Ty::Enum(&["rollback", "forward", "settled", "halt", "none"])),
            req!("why", Ty::Null(&Ty::Str)),
            req!(
                "evidence",
                Ty::Arr(&Ty::Obj(&[
                    req!("step", Ty::Enum(STEP_NAMES)),
                    req!("description", Ty::Str),
                    req!("observed", Ty::Str),
                ])),
            ),
        ],
        "result" => {
            &[req!("outcome", Ty::Enum(RESULT_OUTCOMES)), req!("exit_code", Ty::Uint), req!("message", Ty::Str)]
        }
        _ => return None,
    })
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// `2026-11-28T15:22:46[.fraction]Z`.
fn is_docker_time(s: &str) -> bool {
    let Some(rest) = s.strip_suffix('Z') else { return false };
    let (secs, frac) = rest.split_once('.').unwrap_or((rest, "0"));
    secs.len() == 19 && is_time(&format!("{secs}.000Z")) && is_digits(frac)
}

fn is_deploy_id(s: &str) -> bool {
    // 20261128T152246.413Z-2433
    let Some((stamp, pid)) = s.split_once("Z-") else { return false };
    let b = stamp.as_bytes();
    b.len() == 19
        && is_digits(pid)
        && b.iter().enumerate().all(|(i, c)| match i {
            8 => *c == b'T',
            15 => *c == b'.',
            _ => c.is_ascii_digit(),
        })
}

fn check_fields(v: &Value, fields: &[F], path: &str, errs: &mut Vec<String>) {
    let Some(obj) = v.as_object() else {
        errs.push(format!("{path}: not an object: {v}"));
        return;
    };
    for F(name, ty, required) in fields {
        match obj.get(*name) {
            Some(x) => check(x, *ty, &format!("{path}.{name}"), errs),
            None if *required => errs.push(format!("{path}: missing required field {name:?} in {v}")),
            None => {}
        }
    }
}

/// Checks `v` against `ty`; pushes one message per violation.
fn check(v: &Value, ty: Ty, path: &str, errs: &mut Vec<String>) {
    let mut bad = |what: &str| errs.push(format!("{path}: expected {what}, found {v}"));
    match ty {
        Ty::Str if !v.is_string() => bad("a string"),
        Ty::Uint if !v.is_u64() => bad("a non-negative integer"),
        Ty::Bool if !v.is_boolean() => bad("a boolean"),
        Ty::Time if !v.as_str().is_some_and(is_time) => bad("RFC 3339 UTC with milliseconds"),
        Ty::DockerTime if !v.as_str().is_some_and(is_docker_time) => bad("RFC 3339 UTC"),
        Ty::ImageId if !v.as_str().and_then(|s| s.strip_prefix("sha256:")).is_some_and(|h| is_hex(h, 64)) => {
            bad("a full image id sha256:<64 hex>")
        }
        Ty::ContainerId if !v.as_str().is_some_and(|s| is_hex(s, 64)) => bad("a full container id"),
        Ty::DeployId if !v.as_str().is_some_and(is_deploy_id) => bad("a deploy id YYYYMMDDTHHMMSS.mmmZ-PID"),
        Ty::Enum(values) if !v.as_str().is_some_and(|s| values.contains(&s)) => bad(&format!("one of {values:?}")),
        Ty::Null(_) if v.is_null() => {}
        Ty::Null(inner) => check(v, *inner, path, errs),
        Ty::Arr(inner) => match v.as_array() {
            Some(items) => {
                for (i, x) in items.iter().enumerate() {
                    check(x, *inner, &format!("{path}[{i}]"), errs);
                }
            }
            None => bad("an array"),
        },
        Ty::Obj(fields) => check_fields(v, fields, path, errs),
        Ty::Either(a, b) => {
            let (mut ea, mut eb) = (vec![], vec![]);
            check(v, *a, path, &mut ea);
            check(v, *b, path, &mut eb);
            if !ea.is_empty() && !eb.is_empty() {
                errs.extend(ea);
                errs.extend(eb);
            }
        }
        Ty::Step => match v["step"].as_str().and_then(step_fields) {
            Some(fields) => check_fields(v, fields, path, errs),
            None => bad(&format!("a step tagged with one of {STEP_NAMES:?}")),
        },
        Ty::Payload => match v["kind"].as_str().and_then(payload_fields) {
            Some(fields) => check_fields(v, fields, path, errs),
            None => bad("a payload with a documented kind"),
        },
        _ => {}
    }
}

/// Violations of `ty` by `v`, as one string per violation.
fn violations(v: &Value, ty: Ty, what: &str) -> Vec<String> {
    let mut errs = vec![];
    check(v, ty, what, &mut errs);
    errs
}

/// Checks a progress stream (`deploy`, `rollback`, `recover` with `--json`):
/// every line an object with a documented event, one `result`, last, whose
/// `exit_code` is the process's.
fn stream_violations(out: &Output, what: &str) -> Vec<String> {
    let mut errs = vec![];
    let events = json_lines(out);
    for (i, e) in events.iter().enumerate() {
        let path = format!("{what}[{i}]");
        let Some(name) = e["event"].as_str() else {
            errs.push(format!("{path}: no \"event\": {e}"));
            continue;
        };
        match event_fields(name) {
            Some(fields) => check_fields(e, fields, &path, &mut errs),
            None => errs.push(format!("{path}: undocumented event {name:?}: {e}")),
        }
        if name == "step" && e["status"] == "failed" && !e["error"].is_string() {
            errs.push(format!("{path}: a failed step without \"error\": {e}"));
        }
        if name == "health" && e["passed"] == false && !e["logs"].is_array() {
            errs.push(format!("{path}: a failed health gate without \"logs\": {e}"));
        }
    }
    let results: Vec<&Value> = events.iter().filter(|e| e["event"] == "result").collect();
    if results.len() != 1 || events.last().map(|e| &e["event"]) != Some(&Value::from("result")) {
        errs.push(format!("{what}: the stream must end with exactly one result: {events:?}"));
    } else if results[0]["exit_code"].as_i64() != code(out).map(i64::from) {
        errs.push(format!(
            "{what}: result exit_code {} but the process exited {:?}",
            results[0]["exit_code"],
            code(out)
        ));
    }
    errs
}

/// Runs every query with `--json` for the app in `dir` and validates each
/// document; `deploy` is the deploy `journal show` must print.
fn query_violations(dir: &Path, app: &str, deploy: &str) -> Vec<String> {
    let mut errs = vec![];
    let (out, _) = swap_at(dir, &[], &["--json", "status", app]);
    assert_exit(&out, 0);
    errs.extend(violations(&json_doc(&out), STATUS, "status APP"));
    let (out, _) = swap_at(dir, &[], &["--json", "status"]);
    assert_exit(&out, 0);
    errs.extend(violations(&json_doc(&out), STATUS, "status"));
    let (out, _) = swap_at(dir, &[], &["--json", "history", app]);
    assert_exit(&out, 0);
    errs.extend(violations(&json_doc(&out), HISTORY, "history"));
    let (out, _) = swap_at(dir, &[], &["--json", "journal", "verify", app]);
    assert_exit(&out, 0);
    errs.extend(violations(&json_doc(&out), VERIFY, "journal verify"));
    let (out, _) = swap_at(dir, &[], &["--json", "journal", "show", app]);
    assert_exit(&out, 0);
    let lines = json_lines(&out);
    if lines.is_empty() {
        errs.push("journal show --json printed nothing".into());
    }
    let mut last_seq = None;
    for (i, l) in lines.iter().enumerate() {
        errs.extend(violations(l, SHOW_LINE, &format!("journal show[{i}]")));
        if l["deploy"] != deploy {
            errs.push(format!("journal show[{i}]: record of deploy {} instead of the last one {deploy}", l["deploy"]));
        }
        let seq = l["seq"].as_u64();
        if seq <= last_seq {
            errs.push(format!("journal show[{i}]: seq {seq:?} does not increase"));
        }
        last_seq = seq;
    }
    // The record is the payload exactly as in the journal.
    let raw = journal_at(&dir.join(app).join("journal.jsonl"));
    for l in &lines {
        let same = raw.iter().find(|r| r["seq"] == l["seq"]);
        if same.map(|r| &r["data"]) != Some(&l["record"]) {
            errs.push(format!("journal show: record {} differs from the journal's payload {same:?}", l["record"]));
        }
    }
    errs
}

/// Fails with every schema violation and every too-wide line at once.
#[track_caller]
fn assert_findings(errs: Vec<String>, wide: Vec<String>) {
    assert!(
        errs.is_empty() && wide.is_empty(),
        "{} schema violations:\n{}\n\n{} `journal show` lines wider than 80 columns:\n{}",
        errs.len(),
        errs.join("\n"),
        wide.len(),
        wide.join("\n")
    );
}

#[track_caller]
fn assert_no_violations(errs: Vec<String>) {
    assert!(errs.is_empty(), "{} schema violations:\n{}", errs.len(), errs.join("\n"));
}

// ---------------------------------------------------------------------------
// Human forms
// ---------------------------------------------------------------------------

/// `journal show` as a person sees it with a pseudo-terminal as stdout
/// (`script`), optionally with `NO_COLOR=1`.
fn show_on_a_terminal(app: &TestApp, no_color: bool) -> String {
    let cmd =
        format!("{} --state-dir {} journal show {}", env!("CARGO_BIN_EXE_swap"), app.state_dir.display(), app.name());
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"]).env_remove("NO_COLOR").stdin(Stdio::null());
    if no_color {
        c.env("NO_COLOR", "1");
    }
    let out = c.output().expect("run script(1) for a pseudo-terminal");
    assert!(out.status.success(), "{}", describe(&out));
    stdout(&out)
}

/// The timeline lines of `journal show` wider than 80 columns, leaving out
/// Docker's own error messages (failed steps), the candidate's log lines and
/// halt reasons.
fn wide_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.contains('✗') && !l.trim_start().starts_with('|') && !l.contains("HALT:"))
        .filter(|l| l.chars().count() > 80)
        .map(|l| format!("{:>3} cols: {l}", l.chars().count()))
        .collect()
}

// ---------------------------------------------------------------------------
// 1 + 2. A successful and a rolled-back deploy: JSON and human forms
// ---------------------------------------------------------------------------

/// A start-first re-deploy and a failing one: their progress events,
/// journal records (two instances, `retire_temporary`, the strategy) and
/// query documents match the schemas, and the journal's story names the
/// strategy.
#[test]
fn start_first_deploys_in_json_form() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("sf-json");
    let dir = app.state_dir.clone();
    let mut errs = vec![];
    let first = ["deploy", app.name(), "--image", &image("v1"), "--network", net, "--strategy", "start-first"];
    let (out, _) = swap_at(&dir, &[], &first);
    assert_exit(&out, 0);
    let (out, _) = swap_at(&dir, &[], &["--json", "deploy", app.name(), "--image", &image("v2"), "--drain", "0"]);
    assert_exit(&out, 0);
    let events = json_lines(&out);
    let plan = events.iter().find(|e| e["event"] == "plan").unwrap_or_else(|| panic!("no plan event: {events:?}"));
    assert_eq!(plan["strategy"], "start-first", "{plan}");
    let steps: Vec<&str> = events.iter().filter(|e| e["event"] == "step").filter_map(|e| e["step"].as_str()).collect();
    assert!(steps.contains(&"retire_temporary"), "{steps:?}");
    errs.extend(stream_violations(&out, "start-first deploy --json"));
    errs.extend(query_violations(&dir, app.name(), &last_deploy_id(&app)));
    let show = app.swap(&["journal", "show", app.name()]);
    assert!(stdout(&show).contains("(start-first)"), "{}", describe(&show));

    let (out, _) = swap_at(&dir, &[], &["--json", "deploy", app.name(), "--image", &image("crash")]);
    assert_exit(&out, 1);
    errs.extend(stream_violations(&out, "failing start-first deploy --json"));
    errs.extend(query_violations(&dir, app.name(), &last_deploy_id(&app)));
    assert!(errs.is_empty(), "schema violations:\n{}", errs.join("\n"));
}

#[test]
fn deployed_and_rolled_back_deploys_in_json_and_human_form() {
    support::images();
    let net = support::bridge();
    let app = TestApp::new("hf");
    let dir = app.state_dir.clone();
    let port = support::free_port();
    let mut errs = vec![];

    let (out, pid) = swap_at(
        &dir,
        &[],
        &["--json", "deploy", app.name(), "--image", &image("v1"), "--publish", &publish(port), "--network", net],
    );
    assert_exit(&out, 0);
    assert_answers(port, "v1", app.name());
    let first = last_deploy_id(&app);
    let events = json_lines(&out);
    for e in ["plan", "step", "health", "commit", "result"] {
        if !events.iter().any(|x| x["event"] == e) {
            errs.push(format!("deploy --json: no {e} event"));
        }
    }
    errs.extend(stream_violations(&out, "deploy --json"));
    errs.extend(query_violations(&dir, app.name(), &first));

    // Who ran it and with which swap.
    let show = app.swap(&["journal", "show", app.name()]);
    assert_exit(&show, 0);
    let text = stdout(&show);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    let version = env!("CARGO_PKG_VERSION");
    let begin = text.lines().find(|l| l.contains("begin")).unwrap_or_else(|| panic!("no begin line:\n{text}"));
    assert!(begin.contains(&format!("@{host} pid {pid}")), "begin does not name host and pid {pid}: {begin}");
    assert!(begin.contains(&format!("swap {version}")), "begin does not name swap {version}: {begin}");
    let user = begin.split("begin by ").nth(1).and_then(|r| r.split('@').next()).unwrap_or_default();
    assert!(!user.trim().is_empty(), "begin names no user: {begin}");

    // A deploy whose candidate exits at once is rolled back.
    let (out, _) = swap_at(&dir, &[], &["--json", "deploy", app.name(), "--image", &image("crash")]);
    assert_exit(&out, 1);
    let events = json_lines(&out);
    let health = events.iter().find(|e| e["event"] == "health").unwrap_or_else(|| panic!("no health event"));
    assert_eq!(health["passed"], false, "{health}");
    assert!(health["logs"].to_string().contains("exiting with 3"), "the health event lacks the log tail: {health}");
    assert!(events.iter().any(|e| e["event"] == "undo"), "no undo events: {events:?}");
    assert_eq!(events.last().unwrap()["outcome"], "rolled_back");
    errs.extend(stream_violations(&out, "deploy --json (rolled back)"));
    let failed = last_deploy_id(&app);
    errs.extend(query_violations(&dir, app.name(), &failed));
    assert_answers(port, "v1", app.name());
    support::assert_settled(app.name(), &image("v1"));

    let show = app.swap(&["journal", "show", app.name()]);
    assert_exit(&show, 0);
    let text = stdout(&show);
    assert!(text.contains(&failed), "{text}");
    assert!(text.contains("health") && text.contains('✗'), "no failed health gate:\n{text}");
    assert!(text.contains("exiting with 3"), "no candidate log line:\n{text}");
    assert!(text.contains("undo"), "no undo lines:\n{text}");
    assert!(text.contains("rolled back"), "does not say rolled back:\n{text}");
    assert!(!text.contains('\x1b'), "escape codes on a non-terminal stdout:\n{text:?}");
    let out = app.swap_env(&[("NO_COLOR", "1")], &["journal", "show", app.name()]);
    assert!(!stdout(&out).contains('\x1b'), "escape codes with NO_COLOR");

    // On a terminal: colour, but never with NO_COLOR.
    let tty = show_on_a_terminal(&app, false);
    assert!(tty.contains("exiting with 3"), "{tty}");
    assert!(tty.contains('\x1b'), "no colour on a terminal (positive control):\n{tty:?}");
    let tty = show_on_a_terminal(&app, true);
    assert!(tty.contains("exiting with 3"), "{tty}");
    assert!(!tty.contains('\x1b'), "escape codes on a terminal with NO_COLOR=1:\n{tty:?}");

    // 80 columns, both deploys.
    let first_show = app.swap(&["journal", "show", app.name(), "--deploy", &first]);
    assert_exit(&first_show, 0);
    let mut wide = wide_lines(&stdout(&first_show));
    wide.extend(wide_lines(&text));

    // history: one line per deploy, newest first, from -> to, outcome.
    let out = app.swap(&["history", app.name()]);
    assert_exit(&out, 0);
    let hist = stdout(&out);
    let lines: Vec<&str> = hist.lines().collect();
    assert_eq!(lines.len(), 2, "one line per deploy:\n{hist}");
    assert!(lines[0].contains(&failed) && lines[1].contains(&first), "not newest first:\n{hist}");
    let (v1, crash) = (image_id("v1"), image_id("crash"));
    // Each image as the reference deployed with its short id.
    let (v1_label, crash_label) =
        (format!("{} ({})", image("v1"), short(&v1)), format!("{} ({})", image("crash"), short(&crash)));
    assert!(lines[0].contains(&format!("{v1_label} -> {crash_label}")), "from -> to missing:\n{hist}");
    assert!(lines[0].contains("rolled_back") || lines[0].contains("rolled back"), "{hist}");
    assert!(lines[1].contains(&format!("-> {v1_label}")) && lines[1].contains("deployed"), "{hist}");

    // status
    let out = app.swap(&["status", app.name()]);
    assert_exit(&out, 0);
    let status = stdout(&out);
    assert!(status.contains(short(&id_of(app.name()))), "status does not name the serving container:\n{status}");
    assert!(!status.contains("UNFINISHED"), "{status}");
    assert!(!status.contains('\x1b'), "{status:?}");
    // "Times are RFC 3339 UTC with milliseconds" (docs/json-output.md).
    let doc = json_doc(&app.swap(&["--json", "status", app.name()]));
    errs.extend(violations(&doc["apps"][0]["container"]["started_at"], Ty::Time, "status: container.started_at"));

    assert_findings(errs, wide);
}

// ---------------------------------------------------------------------------
// 1 + 2. Crashed, then recovered
// ---------------------------------------------------------------------------

#[test]
fn crashed_and_recovered_deploys_in_json_and_human_form() {
    support::images();
    let app = TestApp::new("cr");
    let dir = app.state_dir.clone();
    let port = support::free_port();
    first_deploy(&app, "v1", port);
    let old = id_of(app.name());
    let mut errs = vec![];

    // Crashed right after `done park_old`: status says UNFINISHED.
    let out = app.swap_env(&[("SWAP_CRASH_AT", "after:5")], &["deploy", app.name(), "--image", &image("v2")]);
    assert_crashed(&out);
    let crashed = last_deploy_id(&app);
    let out = app.swap(&["status", app.name()]);
    assert_exit(&out, 0);
    let status = stdout(&out);
    assert!(status.contains("UNFINISHED"), "status does not say UNFINISHED:\n{status}");
    assert!(status.contains(&format!("swap recover {}", app.name())), "status does not say to recover:\n{status}");
    let out = app.swap(&["--json", "status"]);
    let doc = json_doc(&out);
    errs.extend(violations(&doc, STATUS, "status (unfinished)"));
    assert_eq!(doc["apps"][0]["unfinished"], crashed.as_str(), "{doc}");
    assert_eq!(doc["apps"][0]["last_deploy"]["outcome"], "unfinished", "{doc}");
    let show = app.swap(&["journal", "show", app.name()]);
    assert!(stdout(&show).contains("unfinished"), "{}", describe(&show));

    // The dry run's decision event.
    let (out, _) = swap_at(&dir, &[], &["--json", "recover", app.name(), "--dry-run"]);
    assert_exit(&out, 0);
    errs.extend(stream_violations(&out, "recover --dry-run --json"));
    let decision = json_lines(&out).into_iter().find(|e| e["event"] == "decision").expect("a decision event");
    assert_eq!(decision["decision"], "rollback", "{decision}");
    let (out, _) = swap_at(&dir, &[], &["--json", "recover", app.name()]);
    assert_exit(&out, 0);
    errs.extend(stream_violations(&out, "recover --json (after:5)"));
    support::assert_settled(app.name(), &image("v1"));

    // Crashed right after `done stop_old` (the app is down), recovered.
    let out = app.swap_env(&[("SWAP_CRASH_AT", "after:7")], &["deploy", app.name(), "--image", &image("v2")]);
    assert_crashed(&out);
    let crashed = last_deploy_id(&app);
    let (out, pid) = swap_at(&dir, &[], &["--json", "recover", app.name()]);
    assert_exit(&out, 0);
    errs.extend(stream_violations(&out, "recover --json (after:7)"));
    assert_answers(port, "v1", app.name());
    assert_eq!(id_of(app.name()), old);
    support::assert_settled(app.name(), &image("v1"));
    errs.extend(query_violations(&dir, app.name(), &crashed));
    // Nothing to recover any more: the decision is "none".
    let (out, _) = swap_at(&dir, &[], &["--json", "recover", app.name(), "--dry-run"]);
    assert_exit(&out, 0);
    errs.extend(stream_violations(&out, "recover --dry-run --json (clean)"));

    let show = app.swap(&["journal", "show", app.name()]);
    assert_exit(&show, 0);
    let text = stdout(&show);
    let line = text.lines().find(|l| l.contains("recovery")).unwrap_or_else(|| panic!("no recovery line:\n{text}"));
    assert!(line.contains(&format!("pid {pid}")), "the recovery line does not name the recovering pid {pid}: {line}");
    assert!(text.contains("rolled back"), "{text}");
    assert!(!text.contains("unfinished"), "{text}");
    let wide = wide_lines(&text);

    let out = app.swap(&["--json", "history", app.name()]);
    let doc = json_doc(&out);
    let outcomes: Vec<&str> =
        doc["deploys"].as_array().unwrap().iter().map(|d| d["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["rolled_back", "rolled_back", "deployed"], "{doc}");

    assert_findings(errs, wide);
}

// ---------------------------------------------------------------------------
// 3. Halted recovery, and the runbook
// ---------------------------------------------------------------------------

/// An app whose v2 deploy crashed with the old container parked (after
/// `done rename_old`) and then removed by hand; recovery halts. Returns the
/// app, its port and the halted deploy.
fn halted_app(tag: &str) -> (TestApp, u16, String) {
    support::images();
    let app = TestApp::new(tag);
    let port = support::free_port();
    first_deploy(&app, "v1", port);
    let out = app.swap_env(&[("SWAP_CRASH_AT", "after:9")], &["deploy", app.name(), "--image", &image("v2")]);
    assert_crashed(&out);
    let deploy = last_deploy_id(&app);
    let old = format!("{}--swap-old", app.name());
    assert!(support::inspect(&old).is_some(), "the old container is not parked as {old}");
    support::docker_ok(&["rm", "-f", &old]);

    let (out, _) = swap_at(&app.state_dir, &[], &["--json", "recover", app.name()]);
    assert_exit(&out, 4);
    assert_no_violations(stream_violations(&out, "recover --json (halted)"));
    let result = json_lines(&out).pop().unwrap();
    assert_eq!(result["outcome"], "halted", "{result}");
    let message = result["message"].as_str().unwrap_or_default();
    assert!(message.contains("old container") && message.contains("gone"), "no word of the old container: {message}");
    assert!(message.contains("docs/operations.md"), "the message does not say what to do: {message}");
    assert!(stderr(&out).contains("gone"), "{}", describe(&out));
    (app, port, deploy)
}

#[test]
fn recovery_halts_when_the_old_container_was_removed_and_the_runbook_gets_out() {
    let (app, port, deploy) = halted_app("halt");
    let dir = app.state_dir.clone();

    let show = app.swap(&["journal", "show", app.name()]);
    assert_exit(&show, 0);
    assert!(stdout(&show).contains("HALT"), "journal show has no HALT:\n{}", describe(&show));
    let out = app.swap(&["status", app.name()]);
    assert!(stdout(&out).contains("UNFINISHED"), "{}", describe(&out));
    let doc = json_doc(&app.swap(&["--json", "status", app.name()]));
    assert_no_violations(violations(&doc, STATUS, "status (halted)"));
    assert_eq!(doc["apps"][0]["unfinished"], deploy.as_str(), "{doc}");
    assert_eq!(doc["apps"][0]["last_deploy"]["outcome"], "halted", "{doc}");
    assert_no_violations(query_violations(&dir, app.name(), &deploy));

    // A second recovery halts again and changes nothing in Docker; the
    // journal gains at most another halt record.
    let before = all_ids_of(app.name());
    let records = journal(&app).len();
    let out = app.swap(&["recover", app.name()]);
    assert_exit(&out, 4);
    assert_eq!(all_ids_of(app.name()), before, "the second recovery changed containers");
    let added: Vec<String> = journal(&app)[records..].iter().map(|r| kind(r).to_string()).collect();
    assert!(added.iter().all(|k| k == "halt"), "the second recovery wrote {added:?}");

    // The runbook: remove the staged candidate, deploy the wanted version.
    let staged = format!("{}--swap-new", app.name());
    assert!(support::inspect(&staged).is_some(), "no staged candidate {staged}");
    support::docker_ok(&["rm", "-f", &staged]);
    let deploy_out = app.swap(&[
        "deploy",
        app.name(),
        "--image",
        &image("v2"),
        "--publish",
        &publish(port),
        "--network",
        support::bridge(),
    ]);
    if code(&deploy_out) != Some(0) {
        // The runbook then says: run `swap recover APP` again.
        let recover_out = app.swap(&["recover", app.name()]);
        panic!(
            "the runbook for a halted recovery does not get out: after removing {staged}, \
             `swap deploy` exited {:?}, then `swap recover` exited {:?}\n--- deploy ---\n{}\n--- recover ---\n{}",
            code(&deploy_out),
            code(&recover_out),
            describe(&deploy_out),
            describe(&recover_out)
        );
    }
    assert_answers(port, "v2", app.name());
    support::assert_settled(app.name(), &image("v2"));
    let out = app.swap(&["journal", "verify", app.name()]);
    assert_exit(&out, 0);
    let out = app.swap(&["status", app.name()]);
    assert!(!stdout(&out).contains("UNFINISHED"), "{}", describe(&out));
}

#[test]
fn halted_recovery_runbook_keeping_the_candidate_gets_out() {
    let (app, port, _) = halted_app("halt-keep");
    // "if the candidate is what you want, rename it to APP and start it by hand"
    let staged = format!("{}--swap-new", app.name());
    support::docker_ok(&["rename", &staged, app.name()]);
    support::docker_ok(&["start", app.name()]);
    assert_answers(port, "v2", app.name());
    // "Then run `swap recover APP` again; it re-evaluates from scratch and
    // writes the end of the deploy."
    let out = app.swap(&["recover", app.name()]);
    assert_exit(&out, 0);
    support::assert_settled(app.name(), &image("v2"));
    let out = app.swap(&["status", app.name()]);
    assert!(!stdout(&out).contains("UNFINISHED"), "{}", describe(&out));
}

// ---------------------------------------------------------------------------
// 4. Rollback
// ---------------------------------------------------------------------------

#[test]
fn rollback_round_trips_v1_v2_v1() {
    support::images();
    let app = TestApp::new("rb");
    let port = support::free_port();
    let (v1, v2) = (image_id("v1"), image_id("v2"));
    first_deploy(&app, "v1", port);
    assert_answers(port, "v1", app.name());
    let out = app.swap(&["deploy", app.name(), "--image", &image("v2")]);
    assert_exit(&out, 0);
    assert_answers(port, "v2", app.name());
    let to_v2 = last_deploy_id(&app);

    let (out, _) = swap_at(&app.state_dir, &[], &["--json", "rollback", app.name()]);
    assert_exit(&out, 0);
    assert_no_violations(stream_violations(&out, "rollback --json"));
    assert_answers(port, "v1", app.name());
    support::assert_settled(app.name(), &image("v1"));
    let doc = json_doc(&app.swap(&["--json", "history", app.name()]));
    assert_no_violations(violations(&doc, HISTORY, "history"));
    let deploys = doc["deploys"].as_array().unwrap();
    assert_eq!(deploys.len(), 3, "{doc}");
    assert_eq!(deploys[0]["command"], "rollback", "{doc}");
    assert_eq!(deploys[0]["outcome"], "deployed", "{doc}");
    assert_eq!(deploys[0]["to_image"], v1.as_str(), "{doc}");
    assert_eq!(deploys[0]["from_image"], v2.as_str(), "{doc}");

    // Forward to v2 again, then back to what served before the first v2 deploy.
    let out = app.swap(&["deploy", app.name(), "--image", &image("v2")]);
    assert_exit(&out, 0);
    assert_answers(port, "v2", app.name());
    let out = app.swap(&["rollback", app.name(), "--to", &to_v2]);
    assert_exit(&out, 0);
    assert_answers(port, "v1", app.name());
    support::assert_settled(app.name(), &image("v1"));
    let doc = json_doc(&app.swap(&["--json", "history", app.name()]));
    assert_eq!(doc["deploys"][0]["command"], "rollback", "{doc}");
    assert_eq!(doc["deploys"][0]["to_image"], v1.as_str(), "{doc}");
    assert_eq!(doc["deploys"].as_array().unwrap().len(), 5, "{doc}");
    let out = app.swap(&["journal", "verify", app.name()]);
    assert_exit(&out, 0);
}

/// Removes a locally built image when the test ends.
struct ImageGuard(String);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let _ = support::docker_output(&["rmi", "-f", &self.0]);
    }
}

#[test]
fn rollback_is_refused_without_an_earlier_image_or_when_it_is_gone() {
    support::images();

    // Only a first deploy: nothing to go back to.
    let app = TestApp::new("rb-first");
    let port = support::free_port();
    first_deploy(&app, "v1", port);
    let before = all_ids_of(app.name());
    let size = std::fs::metadata(app.journal_path()).unwrap().len();
    let out = app.swap(&["rollback", app.name()]);
    assert_exit(&out, 2);
    let msg = stderr(&out);
    assert!(msg.contains("first deploy") || msg.contains("no earlier image"), "unclear refusal:\n{msg}");
    let out = app.swap(&["rollback", app.name(), "--to", "20260101T000000.000Z-1"]);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("no deploy"), "{}", describe(&out));
    assert_eq!(all_ids_of(app.name()), before);
    assert_eq!(std::fs::metadata(app.journal_path()).unwrap().len(), size, "a refused rollback wrote records");
    assert_answers(port, "v1", app.name());

    // The earlier image was removed.
    let app = TestApp::new("rb-gone");
    let port = support::free_port();
    let tag = format!("swap-demo:ops-gone-{}", std::process::id());
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("Dockerfile"), format!("FROM {}\nLABEL swap-ops-test=\"{tag}\"\n", image("v1")))
        .unwrap();
    let _guard = ImageGuard(tag.clone());
    let out = Command::new("docker")
        .args(["build", "-q", "-t", &tag])
        .arg(ctx.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("docker build");
    assert!(out.status.success(), "docker build: {}", describe(&out));
    let gone = support::image_id(&tag).expect("the built image");
    assert_ne!(gone, image_id("v1"), "the built image is not distinct");
    let out =
        app.swap(&["deploy", app.name(), "--image", &tag, "--publish", &publish(port), "--network", support::bridge()]);
    assert_exit(&out, 0);
    assert_answers(port, "v1", app.name());
    let out = app.swap(&["deploy", app.name(), "--image", &image("v2")]);
    assert_exit(&out, 0);
    support::docker_ok(&["rmi", "-f", &tag]);
    assert!(support::image_id(&gone).is_none(), "the image {gone} is still present");
    let before = all_ids_of(app.name());
    let size = std::fs::metadata(app.journal_path()).unwrap().len();
    let out = app.swap(&["rollback", app.name()]);
    assert_exit(&out, 2);
    let msg = stderr(&out);
    assert!(msg.contains("no longer on this engine") && msg.contains(short(&gone)), "unclear refusal:\n{msg}");
    assert_eq!(all_ids_of(app.name()), before, "a refused rollback changed containers");
    assert_eq!(std::fs::metadata(app.journal_path()).unwrap().len(), size, "a refused rollback wrote records");
    assert_answers(port, "v2", app.name());
}

// ---------------------------------------------------------------------------
// 5. Compaction
// ---------------------------------------------------------------------------

#[test]
fn compact_keeps_the_last_deploys_and_the_journal_stays_usable() {
    support::images();
    let app = TestApp::new("compact");
    let port = support::free_port();
    first_deploy(&app, "v1", port);
    let mut ids = vec![last_deploy_id(&app)];
    for tag in ["v2", "v1", "v2"] {
        let out = app.swap(&["deploy", app.name(), "--image", &image(tag)]);
        assert_exit(&out, 0);
        ids.push(last_deploy_id(&app));
    }
    let out = app.swap(&["journal", "compact", app.name(), "--keep", "2"]);
    assert_exit(&out, 0);
    let doc = json_doc(&app.swap(&["--json", "history", app.name()]));
    assert_no_violations(violations(&doc, HISTORY, "history (compacted)"));
    let kept: Vec<&str> = doc["deploys"].as_array().unwrap().iter().map(|d| d["deploy"].as_str().unwrap()).collect();
    assert_eq!(kept, [ids[3].as_str(), ids[2].as_str()], "{doc}");
    let out = app.swap(&["history", app.name()]);
    assert_eq!(stdout(&out).lines().count(), 2, "{}", describe(&out));
    let out = app.swap(&["journal", "verify", app.name()]);
    assert_exit(&out, 0);
    let out = app.swap(&["deploy", app.name(), "--image", &image("v1")]);
    assert_exit(&out, 0);
    assert_answers(port, "v1", app.name());
    support::assert_settled(app.name(), &image("v1"));
    let out = app.swap(&["journal", "verify", app.name()]);
    assert_exit(&out, 0);
    let doc = json_doc(&app.swap(&["--json", "history", app.name()]));
    assert_eq!(doc["deploys"].as_array().unwrap().len(), 3, "{doc}");
}

// ---------------------------------------------------------------------------
// 6. Completions and the man page
// ---------------------------------------------------------------------------

#[test]
fn completions_and_man_page() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let (out, _) = swap_at(dir.path(), &[], &["completions", shell]);
        assert_exit(&out, 0);
        assert!(stdout(&out).contains("deploy"), "{shell} completions do not mention deploy:\n{}", describe(&out));
    }
    let (out, _) = swap_at(dir.path(), &[], &["man"]);
    assert_exit(&out, 0);
    let page = stdout(&out);
    assert!(page.starts_with(".TH") || page.starts_with(".ie"), "not roff:\n{}", &page[..page.len().min(200)]);
    assert!(page.contains("deploy"), "the man page does not mention deploy");
}

// ---------------------------------------------------------------------------
// 7. recover --all
// ---------------------------------------------------------------------------

#[test]
fn recover_all_settles_every_app_in_the_state_dir() {
    support::images();
    let net = support::bridge();
    let clean = TestApp::new("all-clean");
    let pre = TestApp::new("all-pre");
    let post = TestApp::new("all-post");
    let dir = clean.state_dir.clone();
    let run = |env: &[(&str, &str)], args: &[&str]| swap_at(&dir, env, args).0;
    for a in [&clean, &pre, &post] {
        let out = run(&[], &["deploy", a.name(), "--image", &image("v1"), "--network", net]);
        assert_exit(&out, 0);
    }
    let out = run(&[], &["deploy", clean.name(), "--image", &image("v2")]);
    assert_exit(&out, 0);
    // The commit record's number among the records a re-deploy appends.
    let records = journal_at(&dir.join(clean.name()).join("journal.jsonl"));
    let group = records.iter().rev().find(|r| kind(r) == "begin").unwrap()["group"].clone();
    let mine: Vec<&Value> = records.iter().filter(|r| r["group"] == group).collect();
    let commit_at = mine.iter().position(|r| kind(r) == "commit").expect("a commit record") + 1;

    let out = run(&[("SWAP_CRASH_AT", "after:9")], &["deploy", pre.name(), "--image", &image("v2")]);
    assert_crashed(&out);
    let at = format!("after:{commit_at}");
    let out = run(&[("SWAP_CRASH_AT", &at)], &["deploy", post.name(), "--image", &image("v2")]);
    assert_crashed(&out);
    assert!(support::inspect(&format!("{}--swap-old", post.name())).is_some(), "crashed before the old was removed?");

    let out = run(&[], &["recover", "--all"]);
    assert_exit(&out, 0);
    support::assert_settled(clean.name(), &image("v2"));
    support::assert_settled(pre.name(), &image("v1"));
    support::assert_settled(post.name(), &image("v2"));
    let status = json_doc(&run(&[], &["--json", "status"]));
    assert_no_violations(violations(&status, STATUS, "status (all apps)"));
    let apps = status["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 3, "{status}");
    assert!(apps.iter().all(|a| a["unfinished"].is_null()), "{status}");
    // A second pass changes nothing.
    let out = run(&[], &["recover", "--all"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).matches("nothing to recover").count() == 3, "{}", describe(&out));
}

// ---------------------------------------------------------------------------
// 8. Docker engines swap cannot talk to
// ---------------------------------------------------------------------------

#[test]
fn docker_settings_swap_cannot_honour_are_refused_with_exit_2_before_anything() {
    support::images();
    let app = TestApp::new("dockerhost");
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("config.json"), r#"{"auths":{},"currentContext":"remote"}"#).unwrap();
    let config = context.path().to_str().unwrap();
    let cases: [(&[(&str, &str)], &str); 7] = [
        (&[("DOCKER_HOST", "https://127.0.0.1:2376")], "DOCKER_HOST uses https://"),
        (&[("DOCKER_HOST", "ssh://deployer@127.0.0.1")], "DOCKER_HOST uses ssh://"),
        (&[("DOCKER_HOST", "tcp://127.0.0.1:2376"), ("DOCKER_TLS_VERIFY", "1")], "DOCKER_TLS_VERIFY"),
        (&[("DOCKER_HOST", "tcp://127.0.0.1:2376"), ("DOCKER_TLS", "1")], "DOCKER_TLS is set"),
        (&[("DOCKER_CONTEXT", "remote")], "DOCKER_CONTEXT"),
        (&[("DOCKER_HOST", "unix:///var/run/docker.sock"), ("DOCKER_CONTEXT", "remote")], "DOCKER_CONTEXT"),
        (&[("DOCKER_CONFIG", config)], "currentContext"),
    ];
    let name = app.name();
    let commands: [&[&str]; 5] = [
        &["deploy", name, "--image", "swap-demo:v1"],
        &["deploy", name, "--image", "swap-demo:v1", "--dry-run"],
        &["rollback", name],
        &["recover", name],
        &["status"],
    ];
    for (env, names) in cases {
        for args in commands {
            let (out, _) = swap_at(&app.state_dir, env, args);
            assert_exit(&out, 2);
            let err = stderr(&out);
            assert!(err.contains(names), "{env:?} {args:?}: the setting is not named:\n{err}");
            assert!(err.contains("unix://") && err.contains("tcp://"), "{env:?}: what works is not said:\n{err}");
            assert!(!err.contains("deployer"), "{env:?}: the value was echoed:\n{err}");
            let entries: Vec<_> = std::fs::read_dir(&app.state_dir).unwrap().collect();
            assert!(entries.is_empty(), "{env:?} {args:?} wrote to the state dir: {entries:?}");
        }
        assert!(support::inspect(name).is_none(), "{env:?}: something was deployed");
    }
}

#[test]
fn docker_host_naming_the_local_socket_still_works() {
    support::images();
    let app = TestApp::new("dockerhost-unix");
    let env = [("DOCKER_HOST", "unix:///var/run/docker.sock")];
    let (out, _) = swap_at(&app.state_dir, &env, &["deploy", app.name(), "--image", &image("v1")]);
    assert_exit(&out, 0);
    support::assert_settled(app.name(), &image("v1"));
    let (out, _) = swap_at(&app.state_dir, &env, &["status", app.name()]);
    assert_exit(&out, 0);
}
