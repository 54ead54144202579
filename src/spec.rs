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

use crate::docker::{Attachment, Container, Definition, Image, Mount};
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

/// A volume as `docker run -v` spells it: `/path` (a new anonymous volume),
/// `NAME:/path[:OPTS]` (a named volume) or `/host:/path[:OPTS]` (a bind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeArg {
    /// The volume name or host path; empty for an anonymous volume.
    pub source: String,
    /// Path inside the container.
    pub destination: String,
    /// Mount options (`ro`, `z`, `nocopy`, propagation…), comma-separated.
    pub options: String,
}

/// Options `docker run -v` accepts after the destination.
const VOLUME_OPTIONS: [&str; 14] = [
    "ro",
    "rw",
    "z",
    "Z",
    "nocopy",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "private",
    "rprivate",
    "consistent",
    "cached",
    "delegated",
];

impl VolumeArg {
    /// Parses `docker run -v` syntax.
    pub fn parse(s: &str) -> Result<VolumeArg, String> {
        let bad = |why: &str| {
            Err(format!("--volume {s:?}: {why} (expected /path, NAME:/path[:ro] or /host/path:/path[:ro])"))
        };
        let parts: Vec<&str> = s.split(':').collect();
        let (source, destination, options) = match parts.as_slice() {
            [dst] => ("", *dst, ""),
            [src, dst] => (*src, *dst, ""),
            [src, dst, opts] => (*src, *dst, *opts),
            _ => return bad("too many ':'"),
        };
        if !destination.starts_with('/') {
            return bad(&format!("the container path {destination:?} is not absolute"));
        }
        if !source.is_empty() && !source.starts_with('/') {
            let mut chars = source.chars();
            let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
                && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok || source.len() < 2 {
                return bad(&format!("{source:?} is neither an absolute host path nor a volume name"));
            }
        }
        if let Some(o) = options.split(',').filter(|_| !options.is_empty()).find(|o| !VOLUME_OPTIONS.contains(o)) {
            return bad(&format!("unknown option {o:?}"));
        }
        if source.is_empty() && !options.is_empty() {
            return bad("an anonymous volume takes no options");
        }
        Ok(VolumeArg { source: source.into(), destination: destination.into(), options: options.into() })
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
    /// Volumes and bind mounts, replacing whatever the clone mounts at the
    /// same destination.
    pub volumes: Vec<VolumeArg>,
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
            user: spec.user,
            workdir: spec.workdir,
            ..Overrides::default()
        };
        for v in &spec.volumes {
            o.volumes.push(VolumeArg::parse(v).map_err(|e| format!("--spec {}: {e}", path.display()))?);
        }
        for p in &spec.publish {
            o.publish.push(Publish::parse(p).map_err(|e| format!("--spec {}: {e}", path.display()))?);
        }
        for n in spec.networks {
            o.networks.push(match n {
                SpecNetwork::Name(network) => Attachment::to(&network),
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
    keep_volumes(&mut def, old);
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
    if config.get("Domainname").and_then(Value::as_str).is_some_and(str::is_empty) {
        config.remove("Domainname");
    }
    config.insert("Image".into(), json!(image));
    apply(&mut def, app, deploy, o);
    def
}

/// The container path of a `HostConfig.Binds` entry (`SRC:DST[:OPTS]`).
fn bind_destination(bind: &str) -> Option<&str> {
    bind.split(':').nth(1)
}

/// Makes the candidate mount the very volumes the old container has, as
/// `docker compose` does when it recreates a service. Binds and named
/// volumes are in the old definition already; anonymous volumes are not:
/// Docker gives every new container fresh ones for the paths in
/// `Config.Volumes` (`docker run -v /data`, an image's `VOLUME`) and for a
/// `--mount type=volume` without a source, so a clone left as it is would
/// start on empty volumes and orphan the data. Those are pinned by name.
/// Volumes from `--volumes-from` follow `HostConfig.VolumesFrom`, which is
/// cloned as it is.
fn keep_volumes(def: &mut Definition, old: &Container) {
    let volume_at =
        |dst: &str| old.mounts.iter().find(|m| m.kind == "volume" && m.destination == dst).and_then(|m| m.name.clone());
    let host = &mut def.host_config;
    let mut covered: Vec<String> = host
        .get("Binds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(bind_destination)
        .map(str::to_string)
        .collect();
    if let Some(Value::Array(mounts)) = host.get_mut("Mounts") {
        for m in mounts.iter_mut().filter_map(Value::as_object_mut) {
            let target = m.get("Target").and_then(Value::as_str).unwrap_or("").to_string();
            let sourceless = m.get("Source").and_then(Value::as_str).unwrap_or("").is_empty();
            if m.get("Type").and_then(Value::as_str) == Some("volume") && sourceless {
                if let Some(name) = volume_at(&target) {
                    m.insert("Source".into(), json!(name));
                }
            }
            covered.push(target);
        }
    }
    let declared: Vec<String> =
        def.config.get("Volumes").and_then(Value::as_object).map(|v| v.keys().cloned().collect()).unwrap_or_default();
    let mut pinned = Vec::new();
    for dst in declared.iter().filter(|d| !covered.contains(d)) {
        if let Some(name) = volume_at(dst) {
            let ro = old.mounts.iter().any(|m| &m.destination == dst && !m.rw);
            pinned.push(json!(format!("{name}:{dst}{}", if ro { ":ro" } else { "" })));
        }
    }
    if !pinned.is_empty() {
        let mut binds = host.get("Binds").and_then(Value::as_array).cloned().unwrap_or_default();
        binds.extend(pinned);
        host.insert("Binds".into(), Value::Array(binds));
    }
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
    for v in &o.volumes {
        // What the flag names replaces whatever the clone mounts there.
        let dst = v.destination.as_str();
        if let Some(Value::Array(binds)) = host.get_mut("Binds") {
            binds.retain(|b| b.as_str().and_then(bind_destination) != Some(dst));
        }
        if let Some(Value::Array(mounts)) = host.get_mut("Mounts") {
            mounts.retain(|m| m.get("Target").and_then(Value::as_str) != Some(dst));
        }
        if v.source.is_empty() {
            let mut declared = config.get("Volumes").and_then(Value::as_object).cloned().unwrap_or_default();
            declared.insert(dst.to_string(), json!({}));
            config.insert("Volumes".into(), Value::Object(declared));
        } else {
            let opts = if v.options.is_empty() { String::new() } else { format!(":{}", v.options) };
            let mut binds = host.get("Binds").and_then(Value::as_array).cloned().unwrap_or_default();
            binds.push(json!(format!("{}:{dst}{opts}", v.source)));
            host.insert("Binds".into(), Value::Array(binds));
        }
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

/// What a definition mounts, for the journal and the plan: names and
/// paths, never contents. A volume without a name is a new anonymous one.
pub fn volumes_of(def: &Definition) -> Vec<Mount> {
    let host = &def.host_config;
    let mut out: Vec<Mount> = Vec::new();
    for bind in host.get("Binds").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        let mut parts = bind.split(':');
        let (src, dst) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let rw = !parts.any(|o| o.split(',').any(|o| o == "ro"));
        let named = !src.starts_with('/');
        out.push(Mount {
            kind: if named { "volume" } else { "bind" }.into(),
            name: named.then(|| src.to_string()),
            source: if named { String::new() } else { src.to_string() },
            destination: dst.to_string(),
            rw,
        });
    }
    for m in host.get("Mounts").and_then(Value::as_array).into_iter().flatten() {
        let field = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let (kind, source) = (field("Type"), field("Source"));
        let volume = kind == "volume";
        out.push(Mount {
            name: (volume && !source.is_empty()).then(|| source.clone()),
            source: if volume { String::new() } else { source },
            destination: field("Target"),
            rw: !m.get("ReadOnly").and_then(Value::as_bool).unwrap_or(false),
            kind,
        });
    }
    for dst in host.get("Tmpfs").and_then(Value::as_object).into_iter().flat_map(|t| t.keys()) {
        out.push(Mount { kind: "tmpfs".into(), name: None, source: String::new(), destination: dst.clone(), rw: true });
    }
    for dst in def.config.get("Volumes").and_then(Value::as_object).into_iter().flat_map(|v| v.keys()) {
        if !out.iter().any(|m| &m.destination == dst) {
            out.push(Mount {
                kind: "volume".into(),
                name: None,
                source: String::new(),
                destination: dst.clone(),
                rw: true,
            });
        }
    }
    out
}

/// A container's mounts as the journal records them: volume names and
/// bind paths with their destinations (a volume's data directory is left
/// out: it says nothing the name does not).
pub fn journaled_mounts(mounts: &[Mount]) -> Vec<Mount> {
    mounts
        .iter()
        .map(|m| Mount { source: if m.kind == "volume" { String::new() } else { m.source.clone() }, ..m.clone() })
        .collect()
}

/// One line for a person: `volume NAME -> /path`, `bind /host -> /path (ro)`.
pub fn describe_mount(m: &Mount) -> String {
    let what = match (&m.name, m.kind.as_str()) {
        (Some(n), _) => format!("volume {n}"),
        (None, "volume") => "a new anonymous volume".to_string(),
        (None, "tmpfs") => "tmpfs".to_string(),
        (None, kind) => format!("{kind} {}", m.source),
    };
    format!("{what} -> {}{}", m.destination, if m.rw { "" } else { " (ro)" })
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
