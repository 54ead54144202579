//! The command line as a user meets it: where answers and errors go, what
//! `-v`/`-vv`, `--color` and `swap man` do, and which commands read
//! `SWAP_CRASH_AT`.

use std::process::Output;

use crate::support::{self, describe, image, TestApp};
use crate::support::{stderr, stdout};

#[test]
fn an_error_is_one_line_without_a_blank_line_before_it() {
    let app = TestApp::new("cli-error");
    let out = app.swap(&["deploy", "bad/name", "--image", "x"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    assert!(err.starts_with("swap: error: "), "stderr does not start with the error: {err:?}");
    assert!(!err.contains("\n\n"), "a blank line in stderr: {err:?}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
}

#[test]
fn crash_injection_is_read_only_by_commands_that_write_a_journal() {
    let app = TestApp::new("cli-crash-env");
    let bogus = [("SWAP_CRASH_AT", "bogus")];
    for read_only in [&["status"][..], &["man"], &["completions", "bash"]] {
        let out = app.swap_env(&bogus, read_only);
        assert_eq!(out.status.code(), Some(0), "{read_only:?}: {}", describe(&out));
    }
    let out = app.swap_env(&bogus, &["deploy", app.name(), "--image", &image("v1")]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(stderr(&out).contains("SWAP_CRASH_AT"), "{}", describe(&out));
}

#[test]
fn man_has_a_page_per_command() {
    let app = TestApp::new("cli-man");
    let top = app.swap(&["man"]);
    assert!(stdout(&top).contains(".TH swap 1"), "{}", describe(&top));
    let deploy = app.swap(&["man", "deploy"]);
    assert!(stdout(&deploy).contains(".TH swap-deploy 1"), "{}", describe(&deploy));
    assert!(stdout(&deploy).contains("health\\-timeout"), "the deploy page lacks its flags: {}", stdout(&deploy));
    let show = app.swap(&["man", "journal", "show"]);
    assert!(stdout(&show).contains(".TH swap-journal-show 1"), "{}", describe(&show));
    let bad = app.swap(&["man", "nope"]);
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
}

#[test]
fn help_lists_exit_codes_and_examples() {
    let app = TestApp::new("cli-help");
    let out = app.swap(&["--help"]);
    let text = stdout(&out);
    for want in ["Exit codes:", "6  the image is unavailable", "Examples:", "swap recover --all"] {
        assert!(text.contains(want), "--help lacks {want:?}:\n{text}");
    }
    let out = app.swap(&["deploy", "--help"]);
    assert!(stdout(&out).contains("swap deploy web --image web:1.5"), "{}", describe(&out));
}

/// One deploy, then what a person reads about it: `-vv` traces the
/// journal, `-v` does not; `journal verify` answers on stdout; `journal
/// show` is coloured only when asked or forced.
#[test]
fn verbosity_verify_and_colour() {
    support::images();
    let app = TestApp::new("cli-verbosity");
    let out = app.swap(&["-vv", "deploy", app.name(), "--image", &image("plain-v1"), "--settle", "0.5"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let traced = stderr(&out).lines().filter(|l| l.contains("journal: {")).count();
    assert!(traced >= 8, "-vv traced {traced} journal records:\n{}", stderr(&out));
    let out = app.swap(&["-v", "deploy", app.name(), "--image", &image("plain-v2"), "--settle", "0.5"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(!stderr(&out).contains("journal: {"), "-v traced the journal:\n{}", stderr(&out));
    assert!(stderr(&out).contains("candidate: image"), "-v lacks the candidate's definition:\n{}", stderr(&out));

    let verify = app.swap(&["journal", "verify", app.name()]);
    assert_eq!(verify.status.code(), Some(0), "{}", describe(&verify));
    assert!(stdout(&verify).contains("sound"), "verify did not answer on stdout: {}", describe(&verify));
    assert!(!stderr(&verify).contains("sound"), "{}", describe(&verify));

    let esc = |out: &Output| stdout(out).contains('\u{1b}');
    let show = |env: &[(&str, &str)], flags: &[&str]| {
        let mut args = flags.to_vec();
        args.extend(["journal", "show", app.name()]);
        app.swap_env(env, &args)
    };
    assert!(!esc(&show(&[], &[])), "coloured into a pipe");
    assert!(esc(&show(&[], &["--color", "always"])), "--color always did not colour");
    assert!(esc(&show(&[("CLICOLOR_FORCE", "1")], &[])), "CLICOLOR_FORCE did not colour");
    assert!(!esc(&show(&[("CLICOLOR_FORCE", "1")], &["--color", "never"])), "--color never coloured");
}
