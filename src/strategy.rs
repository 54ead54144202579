//! How a deploy replaces the serving container: stop-first (the old one
//! stops, then the new one starts: the shortest outage a published port
//! allows) or start-first (the new one answers under the app's name before
//! the old one stops: no outage for clients that reach the app by name on a
//! user-defined network). This module holds the choice and what start-first
//! requires of a definition; the steps themselves are in [`crate::deploy`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::docker::Definition;

/// Label on every container swap creates: the strategy it was deployed
/// with, which a later deploy keeps unless `--strategy` says otherwise.
pub const LABEL_STRATEGY: &str = "swap.strategy";

/// How the serving container is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Stop the old version, then start the new one (the default).
    #[default]
    StopFirst,
    /// Start the new version beside the old one, and stop the old one only
    /// once the new one passed its health gate.
    StartFirst,
}

impl Strategy {
    /// The name, as in the flag, the label and the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::StopFirst => "stop-first",
            Strategy::StartFirst => "start-first",
        }
    }

    /// The strategy a label names, if it names one.
    pub fn from_label(s: &str) -> Option<Strategy> {
        match s {
            "stop-first" => Some(Strategy::StopFirst),
            "start-first" => Some(Strategy::StartFirst),
            _ => None,
        }
    }

    /// Whether this is the default, for skipping it in the journal.
    pub fn is_default(&self) -> bool {
        *self == Strategy::StopFirst
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why `def` cannot be deployed start-first, if it cannot: two instances
/// run at once, so nothing may be exclusive to one container, and clients
/// must reach the app through a name Docker's DNS resolves to both.
pub fn refusals(def: &Definition) -> Vec<String> {
    let mut why = vec![];
    let host = &def.host_config;
    let published = host
        .get("PortBindings")
        .and_then(Value::as_object)
        .is_some_and(|b| b.values().any(|binds| binds.as_array().is_some_and(|a| !a.is_empty())));
    if published || host.get("PublishAllPorts").and_then(Value::as_bool) == Some(true) {
        why.push("it publishes host ports (two instances cannot hold one port; put a reverse proxy in front)".into());
    }
    let mode = host.get("NetworkMode").and_then(Value::as_str).unwrap_or("");
    if let Some(other) = mode.strip_prefix("container:") {
        why.push(format!("it shares the network stack of container {other} (network mode container:)"));
    }
    for a in &def.networks {
        match a.network.as_str() {
            "host" | "none" => why.push(format!("its network mode is {}: it has no network aliases", a.network)),
            "bridge" => why.push(
                "it is on Docker's default bridge network, which has no DNS aliases (use a user-defined network)"
                    .into(),
            ),
            _ => {}
        }
        if let Some(ip) = a.ipv4.as_ref().or(a.ipv6.as_ref()) {
            why.push(format!("it has the static address {ip} on {} (two instances would collide)", a.network));
        }
    }
    if def.networks.is_empty() && !mode.starts_with("container:") {
        why.push("it is on no user-defined network (Docker's default bridge has no DNS aliases)".into());
    }
    if def.config.get("MacAddress").and_then(Value::as_str).is_some_and(|m| !m.is_empty()) {
        why.push("it has a static MAC address (two instances would collide)".into());
    }
    why
}

/// Drops the addresses of `def`'s attachments to `swarm_scoped` networks
/// (attachable overlays). Docker reports every running container's address
/// on such a network as if it were configured (`IPAMConfig`), whether the
/// swarm allocated it or a user asked for it: the two cannot be told apart,
/// and two live instances cannot share one, so each instance start-first
/// creates there gets an address of its own from the swarm.
pub fn forget_allocated_addresses(def: &mut Definition, swarm_scoped: &[String]) {
    for a in def.networks.iter_mut().filter(|a| swarm_scoped.contains(&a.network)) {
        a.ipv4 = None;
        a.ipv6 = None;
    }
}

/// Makes the app's name a DNS alias on every network of `def`, so an
/// instance answers under it whatever its container is named.
pub fn alias_app(def: &mut Definition, app: &str) {
    for a in &mut def.networks {
        if !a.aliases.iter().any(|x| x == app) {
            a.aliases.insert(0, app.to_string());
        }
    }
}

/// Records the strategy in the definition's labels.
pub fn label(def: &mut Definition, strategy: Strategy) {
    if let Some(Value::Object(labels)) = def.config.get_mut("Labels") {
        labels.insert(LABEL_STRATEGY.into(), Value::String(strategy.as_str().into()));
    } else {
        let mut labels = serde_json::Map::new();
        labels.insert(LABEL_STRATEGY.into(), Value::String(strategy.as_str().into()));
        def.config.insert("Labels".into(), Value::Object(labels));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::Attachment;
    use serde_json::json;

    fn on(net: &str) -> Definition {
        Definition { networks: vec![Attachment::to(net)], ..Definition::default() }
    }

    #[test]
    fn a_user_defined_network_without_ports_is_accepted() {
        assert!(refusals(&on("backend")).is_empty());
    }

    #[test]
    fn each_exclusive_setting_is_refused_by_name() {
        let mut ports = on("backend");
        ports.host_config.insert("PortBindings".into(), json!({"8080/tcp": [{"HostPort": "80"}]}));
        let mut all = on("backend");
        all.host_config.insert("PublishAllPorts".into(), json!(true));
        let mut ip = on("backend");
        ip.networks[0].ipv4 = Some("10.1.2.3".into());
        let mut mac = on("backend");
        mac.config.insert("MacAddress".into(), json!("02:42:ac:11:00:02"));
        let mut shared = Definition::default();
        shared.host_config.insert("NetworkMode".into(), json!("container:db"));
        for (def, word) in [
            (ports, "publishes"),
            (all, "publishes"),
            (ip, "10.1.2.3"),
            (mac, "MAC"),
            (on("bridge"), "default bridge"),
            (on("host"), "host"),
            (on("none"), "none"),
            (shared, "container:"),
            (Definition::default(), "no user-defined network"),
        ] {
            let why = refusals(&def);
            assert_eq!(why.len(), 1, "{why:?}");
            assert!(why[0].contains(word), "{why:?} should name {word}");
        }
    }

    #[test]
    fn the_alias_is_added_once_on_every_network() {
        let mut def = on("a");
        def.networks.push(Attachment { aliases: vec!["web".into(), "x".into()], ..Attachment::to("b") });
        alias_app(&mut def, "web");
        alias_app(&mut def, "web");
        assert_eq!(def.networks[0].aliases, vec!["web"]);
        assert_eq!(def.networks[1].aliases, vec!["web", "x"]);
    }
}
