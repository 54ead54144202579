//! The candidate's container definition: cloned from the serving container
//! on a re-deploy (with image-derived defaults left to the new image), or
//! taken from flags and a `--spec` file on a first deploy. Also the parsing
//! and validation of those inputs, which happens before anything changes.
//!
//! The `--spec` file format is documented in `docs/spec-file.md`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::docker::{Attachment, Container, Definition, Image};
use crate::step::{LABEL_APP, LABEL_DEPLOY};

/// The PATH the daemon gives a container whose image sets none.
const DOCKER_DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A published port: `[IP:]HOST:CONTAINER[/PROTO]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Host address to bind, empty for all.
    pub host_ip: String,
    /// Host port.
    pub host_port: u16,
    /// Container port.
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
}

impl Publish {
    /// Parses `[IP:]HOST:CONTAINER[/PROTO]`.
    pub fn parse(s: &str) -> Result<Publish, String> {
        let (addr, proto) = match s.rsplit_once('/') {
            Some((a, p)) if p == "tcp" || p == "udp" => (a, p.to_string()),
            Some((_, p)) => return Err(format!("--publish {s:?}: protocol must be tcp or udp, not {p:?}")),
            None => (s, "tcp".to_string()),
        };
        let parts: Vec<&str> = addr.rsplitn(3, ':').collect();
        let (host_ip, host, ctr) = match parts.as_slice() {
            [c, h] => (String::new(), *h, *c),
            [c, h, ip] => (ip.trim_matches(|ch| ch == '[' || ch == ']').to_string(), *h, *c),
            _ => return Err(format!("--publish {s:?}: expected HOST:CONTAINER, e.g. 8080:80")),
        };
        let port = |p: &str, what: &str| -> Result<u16, String> {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("--publish {s:?}: {what} port {p:?} is not a number from 1 to 65535"))
        };
        Ok(Publish { host_ip, host_port: port(host, "host")?, container_port: port(ctr, "container")?, proto })
    }

    /// The `HOST:CONTAINER/PROTO` form journaled and shown.
    pub fn display(&self) -> String {
        let ip = if self.host_ip.is_empty() { String::new() } else { format!("{}:", self.host_ip) };
        format!("{ip}{}:{}/{}", self.host_port, self.container_port, self.proto)
    }
}

/// Parses `K=V`; the value is a secret as far as swap is concerned.
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    // A malformed --env is most likely the secret itself: show none of it.
    let (k, v) =
        s.split_once('=').ok_or("--env: an argument has no '=' (expected KEY=VALUE; the value is not shown)")?;
    if k.is_empty() || k.contains(char::is_whitespace) {
        return Err(format!("--env: invalid variable name {k:?}"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Checks an app name against Docker's container name rule and swap's own
/// staging names.
pub fn validate_app(app: &str) -> Result<(), String> {
    let mut chars = app.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !first_ok || !rest_ok || app.len() < 2 {
        return Err(format!(
            "invalid app name {app:?}: Docker container names are at least two of [a-zA-Z0-9_.-], starting with a letter or digit"
        ));
    }
    if app.contains("--swap-") {
        return Err(format!(
            "invalid app name {app:?}: names containing \"--swap-\" are reserved for swap's staging containers"
        ));
    }
    if app.len() > 200 {
        return Err(format!("invalid app name {app:?}: at most 200 characters"));
    }
    Ok(())
}

/// A network named in a spec file: a name or a full attachment.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SpecNetwork {
    Name(String),
    Full(Attachment),
}

/// A healthcheck in a spec file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecHealth {
    test: Vec<String>,
    #[serde(default)]
    interval_ms: Option<u64>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    retries: Option<u64>,
    #[serde(default)]
    start_period_ms: Option<u64>,
}

/// The `--spec` file: a container definition in swap's own small JSON form.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpecFile {
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    networks: Vec<SpecNetwork>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    restart: Option<String>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    workdir: Option<String>,
    #[serde(default)]
    healthcheck: Option<SpecHealth>,
}

/// What flags and the spec file say about the candidate, merged and
/// validated; flags win over the spec file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Image from the spec file (flags give it separately).
    pub image: Option<String>,
    /// Environment, by key.
    pub env: BTreeMap<String, String>,
    /// Published ports.
    pub publish: Vec<Publish>,
    /// Networks to join.
    pub networks: Vec<Attachment>,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Restart policy name.
    pub restart: Option<String>,
    /// Command.
    pub cmd: Option<Vec<String>>,
    /// Entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Bind mounts and volumes, `SRC:DST[:ro]`.
    pub volumes: Vec<String>,
    /// User.
    pub user: Option<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// Healthcheck, in the API's shape.
    pub healthcheck: Option<Value>,
}

impl Overrides {
    /// Reads a spec file, naming unknown fields.
    pub fn from_spec_file(path: &Path) -> Result<Overrides, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("--spec {}: {e}", path.display()))?;
        let spec: SpecFile = serde_json::from_str(&text).map_err(|e| format!("--spec {}: {e}", path.display()))?;
        let mut o = Overrides {
            image: spec.image,
            env: spec.env,
            labels: spec.labels,
            restart: spec.restart,
            cmd: spec.cmd,
            entrypoint: spec.entrypoint,
            volumes: spec.volumes,
            user: spec.user,
            workdir: spec.workdir,
            ..Overrides::default()
        };
        for p in &spec.publish {
            o.publish.push(Publish::parse(p).map_err(|e| format!("--spec {}: {e}", path.display()))?);
        }
        for n in spec.networks {
            o.networks.push(match n {
                SpecNetwork::Name(network) => Attachment { network, aliases: vec![], ipv4: None, ipv6: None },
                SpecNetwork::Full(a) => a,
            });
        }
        if let Some(h) = spec.healthcheck {
            let ns = |ms: Option<u64>| ms.map(|m| m * 1_000_000);
            o.healthcheck = Some(json!({
                "Test": h.test,
                "Interval": ns(h.interval_ms),
                "Timeout": ns(h.timeout_ms),
                "Retries": h.retries,
                "StartPeriod": ns(h.start_period_ms),
            }));
        }
        if let Some(r) = &o.restart {
            validate_restart(r)?;
        }
        Ok(o)
    }

    /// Names of the environment variables (never their values).
    pub fn env_keys(&self) -> Vec<String> {
        self.env.keys().cloned().collect()
    }
}

/// Checks a restart policy name.
pub fn validate_restart(r: &str) -> Result<(), String> {
    let name = r.split(':').next().unwrap_or("");
    if ["no", "always", "unless-stopped", "on-failure"].contains(&name) {
        Ok(())
    } else {
        Err(format!("restart policy {r:?}: expected no, always, unless-stopped or on-failure[:N]"))
    }
}

/// A first deploy's definition, from flags and spec alone.
pub fn fresh(image: &str, app: &str, deploy: &str, o: &Overrides) -> Definition {
    let mut def = Definition::default();
    def.config.insert("Image".into(), json!(image));
    apply(&mut def, app, deploy, o);
    def
}

/// A re-deploy's definition: the old container's, with the image replaced
/// and every setting the old image supplied dropped, so the new image's
/// defaults apply (a variable the old image set is not frozen in).
pub fn cloned(
    old: &Container,
    old_image: Option<&Image>,
    image: &str,
    app: &str,
    deploy: &str,
    o: &Overrides,
) -> Definition {
    let mut def = old.definition.clone();
    let config = &mut def.config;
    if let Some(img) = old_image {
        let ic = &img.config;
        // Env: drop the entries that came from the image verbatim.
        if let (Some(Value::Array(env)), Some(Value::Array(ienv))) = (config.get("Env").cloned(), ic.get("Env")) {
            let kept: Vec<Value> = env.into_iter().filter(|e| !ienv.contains(e)).collect();
            config.insert("Env".into(), Value::Array(kept));
        }
        // The daemon adds its default PATH when the image sets none: not a setting either.
        let image_sets_path = ic
            .get("Env")
            .and_then(Value::as_array)
            .is_some_and(|e| e.iter().filter_map(Value::as_str).any(|v| v.starts_with("PATH=")));
        if let (Some(Value::Array(env)), false) = (config.get("Env").cloned(), image_sets_path) {
            let kept: Vec<Value> = env.into_iter().filter(|e| e.as_str() != Some(DOCKER_DEFAULT_PATH)).collect();
            config.insert("Env".into(), Value::Array(kept));
        }
        // Labels: drop those the image set, unless the container changed them.
        if let (Some(Value::Object(labels)), Some(Value::Object(ilabels))) =
            (config.get("Labels").cloned(), ic.get("Labels"))
        {
            let kept: Map<String, Value> = labels.into_iter().filter(|(k, v)| ilabels.get(k) != Some(v)).collect();
            config.insert("Labels".into(), Value::Object(kept));
        }
        // Exposed ports and volumes declared by the image.
        for key in ["ExposedPorts", "Volumes"] {
            if let (Some(Value::Object(mine)), Some(Value::Object(theirs))) = (config.get(key).cloned(), ic.get(key)) {
                let kept: Map<String, Value> = mine.into_iter().filter(|(k, _)| !theirs.contains_key(k)).collect();
                config.insert(key.into(), Value::Object(kept));
            }
        }
        // Scalars and lists equal to the image's are its defaults.
        for key in ["Cmd", "Entrypoint", "WorkingDir", "User", "Healthcheck", "StopSignal", "Shell", "OnBuild"] {
            if config.get(key).is_some() && config.get(key) == ic.get(key) {
                config.remove(key);
            }
        }
    }
    // Docker sets the hostname to the short container id: not a setting.
    if config.get("Hostname").and_then(Value::as_str) == Some(&old.id[..old.id.len().min(12)]) {
        config.remove("Hostname");
    }
    config.remove("Domainname");
    config.insert("Image".into(), json!(image));
    apply(&mut def, app, deploy, o);
    def
}

/// Applies overrides and swap's labels to a definition.
fn apply(def: &mut Definition, app: &str, deploy: &str, o: &Overrides) {
    let config = &mut def.config;
    if !o.env.is_empty() {
        let mut env: Vec<String> = config
            .get("Env")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        env.retain(|e| !o.env.contains_key(e.split('=').next().unwrap_or("")));
        env.extend(o.env.iter().map(|(k, v)| format!("{k}={v}")));
        config.insert("Env".into(), json!(env));
    }
    let mut labels = config.get("Labels").and_then(Value::as_object).cloned().unwrap_or_default();
    for (k, v) in &o.labels {
        labels.insert(k.clone(), json!(v));
    }
    labels.insert(LABEL_APP.into(), json!(app));
    labels.insert(LABEL_DEPLOY.into(), json!(deploy));
    config.insert("Labels".into(), Value::Object(labels));
    if let Some(c) = &o.cmd {
        config.insert("Cmd".into(), json!(c));
    }
    if let Some(e) = &o.entrypoint {
        config.insert("Entrypoint".into(), json!(e));
    }
    if let Some(u) = &o.user {
        config.insert("User".into(), json!(u));
    }
    if let Some(w) = &o.workdir {
        config.insert("WorkingDir".into(), json!(w));
    }
    if let Some(h) = &o.healthcheck {
        config.insert("Healthcheck".into(), h.clone());
    }
    let host = &mut def.host_config;
    if !o.publish.is_empty() {
        let mut bindings = host.get("PortBindings").and_then(Value::as_object).cloned().unwrap_or_default();
        let mut exposed = config.get("ExposedPorts").and_then(Value::as_object).cloned().unwrap_or_default();
        for p in &o.publish {
            let key = format!("{}/{}", p.container_port, p.proto);
            bindings.insert(key.clone(), json!([{ "HostIp": p.host_ip, "HostPort": p.host_port.to_string() }]));
            exposed.insert(key, json!({}));
        }
        host.insert("PortBindings".into(), Value::Object(bindings));
        config.insert("ExposedPorts".into(), Value::Object(exposed));
    }
    if let Some(r) = &o.restart {
        let (name, n) = r.split_once(':').unwrap_or((r, "0"));
        host.insert(
            "RestartPolicy".into(),
            json!({ "Name": name, "MaximumRetryCount": n.parse::<i64>().unwrap_or(0) }),
        );
    }
    if !o.volumes.is_empty() {
        let mut binds: Vec<Value> = host.get("Binds").and_then(Value::as_array).cloned().unwrap_or_default();
        binds.extend(o.volumes.iter().map(|v| json!(v)));
        host.insert("Binds".into(), Value::Array(binds));
    }
    for a in &o.networks {
        match def.networks.iter_mut().find(|n| n.network == a.network) {
            Some(n) => *n = a.clone(),
            None => def.networks.push(a.clone()),
        }
    }
}

/// The published ports of a definition, for the journal.
pub fn ports_of(def: &Definition) -> Vec<String> {
    let mut out = vec![];
    if let Some(b) = def.host_config.get("PortBindings").and_then(Value::as_object) {
        for (ctr, binds) in b {
            for bind in binds.as_array().into_iter().flatten() {
                let hp = bind.get("HostPort").and_then(Value::as_str).unwrap_or("");
                out.push(format!("{hp}:{ctr}"));
            }
        }
    }
    out
}

/// The environment variable names of a definition, for the journal.
pub fn env_keys_of(def: &Definition) -> Vec<String> {
    def.config
        .get("Env")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(|e| e.split('=').next().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_forms() {
        assert_eq!(Publish::parse("8080:80").unwrap().display(), "8080:80/tcp");
        assert_eq!(Publish::parse("127.0.0.1:8080:80/udp").unwrap().display(), "127.0.0.1:8080:80/udp");
        assert!(Publish::parse("80").is_err());
        assert!(Publish::parse("x:80").is_err());
        assert!(Publish::parse("0:80").is_err());
        assert!(Publish::parse("80:80/sctp").is_err());
    }

    #[test]
    fn env_errors_do_not_echo_values() {
        for secret in ["PASSWORD_WITHOUT_EQUALS_supersecretvalue", "hunter2", "q9"] {
            let e = parse_env(secret).unwrap_err();
            assert!(!e.contains(secret), "{e}");
        }
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
    }

    #[test]
    fn app_names() {
        assert!(validate_app("web").is_ok());
        assert!(validate_app("web_1.prod-x").is_ok());
        assert!(validate_app("w").is_err());
        assert!(validate_app("-web").is_err());
        assert!(validate_app("web/x").is_err());
        assert!(validate_app("web--swap-old").is_err());
    }

    #[test]
    fn clone_drops_image_defaults() {
        let mut old = Container { id: "abcdef0123456789".into(), ..Container::default() };
        old.definition.config = serde_json::from_value(json!({
            "Hostname": "abcdef012345",
            "Env": ["PATH=/bin", "VERSION=v1", "DB=x"],
            "Cmd": ["/app"],
            "Labels": {"from.image": "1", "mine": "2"},
            "Image": "app:v1"
        }))
        .unwrap();
        let img = Image {
            id: "sha256:1".into(),
            tags: vec![],
            config: serde_json::from_value(
                json!({"Env": ["PATH=/bin", "VERSION=v1"], "Cmd": ["/app"], "Labels": {"from.image": "1"}}),
            )
            .unwrap(),
        };
        let mut o = Overrides::default();
        o.env.insert("DB".into(), "y".into());
        let def = cloned(&old, Some(&img), "app:v2", "web", "d1", &o);
        assert_eq!(def.config["Env"], json!(["DB=y"]));
        assert_eq!(def.config.get("Cmd"), None);
        assert_eq!(def.config.get("Hostname"), None);
        assert_eq!(def.config["Image"], json!("app:v2"));
        assert_eq!(def.config["Labels"], json!({"mine": "2", "swap.app": "web", "swap.deploy": "d1"}));
    }
}
