//! Images from registries against the real Docker engine and a real
//! registry (tests/support/registry.rs): pulls of images only the registry
//! has, moved tags, logins from a Docker client config, and every way the
//! path to a registry fails (cut connections, a stall, a registry that is
//! down), each ending with the old version serving and nothing changed.
//!
//! Every test owns its app and its registry, with repositories named after
//! the test, so the tests run in parallel under nextest.

#[path = "support/mod.rs"]
mod support;

use support::registry::{http_status, Registry};
use support::{docker_ok, image_id};

/// The fixture itself: a pushed image is in the registry and nowhere else,
/// and Docker pulls it back by the same reference.
#[test]
fn registry_fixture_serves_pushed_images() {
    let registry = Registry::start();
    let (reference, id) = registry.push_fresh("v1", "fixture/app:1");
    assert_eq!(image_id(&reference), None, "the pushed image is still on the engine");
    docker_ok(&["pull", &reference]);
    assert_eq!(image_id(&reference).as_deref(), Some(id.as_str()), "{}", registry.log());

    let locked = Registry::start_with_auth("ci", "s3cret-pw");
    assert_eq!(http_status(locked.port, "/v2/"), Some(401));
    let (locked_ref, _) = locked.push_fresh("v2", "fixture/locked:1");
    assert_eq!(image_id(&locked_ref), None);
}
