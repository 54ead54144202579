//! `--pull` against the in-memory engine's registry model, on tokio's
//! paused clock: retries of transient failures, the stall watchdog, the
//! bounded give-up (exit 6), refusals at once (exit 2), and `missing` /
//! `never`. The real registries are in `tests/it/registry.rs`.

use std::time::Duration;

use swap::docker::{Engine, RegistryAuth};
use swap::pull::{ensure, Pull, PullPolicy};
use swap::report::Report;
use tokio::time::Instant;

use crate::memory::{ImageBehaviour, MemoryEngine, PullFault};

const REF: &str = "reg.example:5000/acme/web:1";

fn always() -> Pull {
    Pull { policy: PullPolicy::Always, ..Default::default() }
}

fn engine_with_pushed() -> (MemoryEngine, String) {
    let e = MemoryEngine::new();
    let digest = e.push_to_registry(REF, ImageBehaviour::Serves, serde_json::Map::new());
    (e, digest)
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_then_the_pull_lands() {
    let (e, digest) = engine_with_pushed();
    e.fail_pulls([PullFault::Refused, PullFault::Reset, PullFault::ServerError]);
    let pulled = ensure(&e, REF, &always(), None, &Report::silent()).await.unwrap().expect("pulled");
    assert_eq!(pulled.attempts, 4);
    assert_eq!(pulled.repo_digest, Some(format!("reg.example:5000/acme/web@{digest}")));
    assert_eq!(e.image(REF).await.unwrap().map(|i| i.id), Some(pulled.image_id));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_pull_is_abandoned_and_retried() {
    let (e, _) = engine_with_pushed();
    e.fail_pulls([PullFault::Stall, PullFault::Stall]);
    let t = Instant::now();
    let pulled = ensure(&e, REF, &always(), None, &Report::silent()).await.unwrap().expect("pulled");
    assert_eq!(pulled.attempts, 3);
    // Two stalls of 60 s and the waits of 1 s and 2 s, on tokio's paused clock.
    assert!(t.elapsed() >= Duration::from_secs(123), "{:?}", t.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_registry_that_stays_unreachable_is_unavailable() {
    let (e, _) = engine_with_pushed();
    e.fail_pulls(std::iter::repeat_n(PullFault::Refused, 5));
    let err = ensure(&e, REF, &always(), None, &Report::silent()).await.unwrap_err();
    assert_eq!(err.exit_code(), 6, "{err}");
    assert!(err.to_string().contains("reg.example:5000") && err.to_string().contains("connection refused"));
    assert_eq!(e.pulls().len(), 5);
    assert!(e.image(REF).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn refusals_are_bad_input_at_once() {
    let (e, _) = engine_with_pushed();
    let missing = "reg.example:5000/acme/web:nope";
    let err = ensure(&e, missing, &always(), None, &Report::silent()).await.unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    e.require_login("ci", "pw");
    let err = ensure(&e, REF, &always(), None, &Report::silent()).await.unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    assert!(err.to_string().contains("no basic auth credentials"), "{err}");
    assert_eq!(e.pulls().len(), 2, "a refusal was retried");
    let auth = RegistryAuth {
        server: "reg.example:5000".into(),
        username: Some("ci".into()),
        password: Some("pw".into()),
        identity_token: None,
    };
    assert!(ensure(&e, REF, &always(), Some(&auth), &Report::silent()).await.unwrap().is_some());
}

#[tokio::test(start_paused = true)]
async fn missing_pulls_only_what_is_absent_and_never_never_pulls() {
    let (e, _) = engine_with_pushed();
    let missing = Pull { policy: PullPolicy::Missing, ..Default::default() };
    let never = Pull { policy: PullPolicy::Never, ..Default::default() };
    assert!(ensure(&e, REF, &never, None, &Report::silent()).await.unwrap().is_none());
    assert!(ensure(&e, REF, &missing, None, &Report::silent()).await.unwrap().is_some());
    assert!(ensure(&e, REF, &missing, None, &Report::silent()).await.unwrap().is_none());
    assert_eq!(e.pulls().len(), 1);
}
