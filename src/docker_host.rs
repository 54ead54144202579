//! Which Docker engine the environment points swap at, decided the way the
//! `docker` CLI decides it, and refused when swap cannot talk to that engine
//! as asked. swap speaks to a local unix socket or plain `tcp://`; a remote
//! engine over TLS or ssh, or a Docker context, would otherwise be answered
//! with a misleading "unreachable" (exit 5, as if a retry could help), or
//! worse: TLS silently dropped, or a deploy to the local engine while the
//! user's `docker` talks to another host. Such a setting is bad input (exit
//! 2), refused before anything else happens.

use std::ffi::OsString;
use std::path::PathBuf;

/// The engine swap connects to when `DOCKER_HOST` is unset or empty.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// What swap supports, for the refusal messages.
const SUPPORTED: &str = "swap talks to a local unix:// socket or a plain tcp:// engine; \
     TLS, ssh and Docker contexts are not supported yet; nothing changed";

/// The engine address to connect to, from the environment `var` reads
/// (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`, `DOCKER_TLS`, `DOCKER_CERT_PATH`,
/// `DOCKER_CONTEXT`, `DOCKER_CONFIG`, `HOME`), or why swap refuses it.
/// Values are never echoed (a URL may hold credentials): only the
/// setting's name and, for `DOCKER_HOST`, its scheme.
pub fn resolve(var: &dyn Fn(&str) -> Option<OsString>) -> Result<String, String> {
    let set = |k: &str| var(k).filter(|v| !v.is_empty());
    let host = match set("DOCKER_HOST") {
        None => None,
        Some(h) => Some(h.into_string().map_err(|_| format!("DOCKER_HOST is not valid UTF-8; {SUPPORTED}"))?),
    };
    for tls in ["DOCKER_TLS_VERIFY", "DOCKER_TLS"] {
        if set(tls).is_some() {
            return Err(format!("{tls} is set, asking for TLS, which swap cannot speak; {SUPPORTED}"));
        }
    }
    if let Some(h) = &host {
        let scheme = h.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("unix") => {}
            Some("tcp" | "http") => {
                // Go clients (the Docker SDK, compose) use TLS with these
                // certificates whenever this is set.
                if set("DOCKER_CERT_PATH").is_some() {
                    return Err(format!(
                        "DOCKER_CERT_PATH is set with a tcp:// DOCKER_HOST, asking for TLS, which swap cannot speak; \
                         {SUPPORTED}"
                    ));
                }
            }
            Some(s @ ("https" | "ssh")) => {
                return Err(format!("DOCKER_HOST uses {s}://, which swap cannot speak; {SUPPORTED}"));
            }
            Some(s) => return Err(format!("DOCKER_HOST uses {s}://, which swap does not know; {SUPPORTED}")),
            None => return Err(format!("DOCKER_HOST has no scheme (expected unix:// or tcp://); {SUPPORTED}")),
        }
    }
    // The CLI's precedence: DOCKER_HOST wins over the configured current
    // context; DOCKER_CONTEXT is refused even then (the CLI's documentation
    // says it overrides DOCKER_HOST), so swap can never deploy elsewhere
    // than the user's `docker` would.
    if let Some(ctx) = set("DOCKER_CONTEXT").filter(|c| c != "default") {
        let name = ctx.to_string_lossy();
        return Err(format!("DOCKER_CONTEXT names the Docker context {name:?}; {SUPPORTED}"));
    }
    if host.is_none() {
        if let Some((file, ctx)) = current_context(var) {
            return Err(format!(
                "the Docker CLI config {} selects the context {ctx:?} (currentContext); switch with \
                 `docker context use default` or set DOCKER_HOST; {SUPPORTED}",
                file.display()
            ));
        }
    }
    Ok(host.unwrap_or_else(|| DEFAULT_HOST.to_string()))
}

/// The current context of the Docker CLI config (`$DOCKER_CONFIG/config.json`
/// or `~/.docker/config.json`) when it is not the default one. A missing,
/// unreadable or malformed file selects no context, as for the CLI (which
/// warns and goes on with the default).
fn current_context(var: &dyn Fn(&str) -> Option<OsString>) -> Option<(PathBuf, String)> {
    let dir = match var("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(var("HOME").filter(|v| !v.is_empty())?).join(".docker"),
    };
    let file = dir.join("config.json");
    let text = std::fs::read(&file).ok()?;
    let config: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let ctx = config.get("currentContext")?.as_str()?;
    (!ctx.is_empty() && ctx != "default").then(|| (file, ctx.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(env: &[(&str, &str)]) -> Result<String, String> {
        let env: Vec<(String, OsString)> = env.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        resolve(&move |k| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    fn config_dir(json: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), json).unwrap();
        dir
    }

    #[test]
    fn local_and_plain_tcp_engines_are_accepted() {
        assert_eq!(with(&[]).unwrap(), DEFAULT_HOST);
        assert_eq!(with(&[("DOCKER_HOST", "")]).unwrap(), DEFAULT_HOST);
        assert_eq!(with(&[("DOCKER_HOST", "unix:///run/d.sock")]).unwrap(), "unix:///run/d.sock");
        assert_eq!(with(&[("DOCKER_HOST", "tcp://10.0.0.1:2375")]).unwrap(), "tcp://10.0.0.1:2375");
        assert_eq!(with(&[("DOCKER_CONTEXT", "default"), ("DOCKER_TLS_VERIFY", "")]).unwrap(), DEFAULT_HOST);
        // A certificate path is only a location for a unix socket.
        assert_eq!(with(&[("DOCKER_CERT_PATH", "/certs")]).unwrap(), DEFAULT_HOST);
    }

    #[test]
    fn tls_ssh_and_contexts_are_refused_naming_the_setting_never_its_value() {
        for (env, names) in [
            (&[("DOCKER_HOST", "https://user:pw@h:2376")][..], "DOCKER_HOST uses https://"),
            (&[("DOCKER_HOST", "ssh://user:pw@h")][..], "DOCKER_HOST uses ssh://"),
            (&[("DOCKER_HOST", "npipe:////./pipe/docker_engine")][..], "DOCKER_HOST uses npipe://"),
            (&[("DOCKER_HOST", "/var/run/docker.sock")][..], "DOCKER_HOST has no scheme"),
            (&[("DOCKER_HOST", "tcp://h:2376"), ("DOCKER_TLS_VERIFY", "1")][..], "DOCKER_TLS_VERIFY is set"),
            (&[("DOCKER_HOST", "tcp://h:2376"), ("DOCKER_TLS", "1")][..], "DOCKER_TLS is set"),
            (&[("DOCKER_HOST", "tcp://h:2376"), ("DOCKER_CERT_PATH", "/c")][..], "DOCKER_CERT_PATH is set"),
            (&[("DOCKER_CONTEXT", "remote")][..], "DOCKER_CONTEXT names the Docker context \"remote\""),
            (&[("DOCKER_HOST", "unix:///d.sock"), ("DOCKER_CONTEXT", "remote")][..], "DOCKER_CONTEXT"),
        ] {
            let err = with(env).expect_err(names);
            assert!(err.contains(names), "{env:?}: {err}");
            assert!(err.contains("unix://") && err.contains("tcp://"), "{err}");
            assert!(!err.contains("pw"), "a value was echoed: {err}");
        }
    }

    #[test]
    fn the_cli_configs_current_context_is_refused_unless_docker_host_wins() {
        let remote = config_dir(r#"{"auths": {}, "currentContext": "remote"}"#);
        let dir = remote.path().to_str().unwrap();
        let err = with(&[("DOCKER_CONFIG", dir)]).unwrap_err();
        assert!(err.contains("config.json") && err.contains("\"remote\""), "{err}");
        // ~/.docker/config.json when DOCKER_CONFIG is unset.
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".docker")).unwrap();
        std::fs::write(home.path().join(".docker/config.json"), r#"{"currentContext":"remote"}"#).unwrap();
        assert!(with(&[("HOME", home.path().to_str().unwrap())]).is_err());
        assert_eq!(with(&[("DOCKER_CONFIG", dir), ("DOCKER_HOST", "unix:///d.sock")]).unwrap(), "unix:///d.sock");
        for ok in [r#"{"currentContext": "default"}"#, r#"{"currentContext": ""}"#, "{}", "not json"] {
            let c = config_dir(ok);
            assert_eq!(with(&[("DOCKER_CONFIG", c.path().to_str().unwrap())]).unwrap(), DEFAULT_HOST, "{ok}");
        }
        let missing = tempfile::tempdir().unwrap();
        assert_eq!(with(&[("DOCKER_CONFIG", missing.path().to_str().unwrap())]).unwrap(), DEFAULT_HOST);
    }
}
