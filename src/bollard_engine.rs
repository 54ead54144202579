//! The real Docker engine, through bollard. This is the only module that names
//! bollard: it maps the Docker Engine API (and moby's quirks) onto the plain
//! types of [`crate::docker`], so the step engine never sees an HTTP status
//! code or a bollard model.
//!
//! Container definitions are read and written as the API's own JSON objects
//! (`Config`, `HostConfig`): bollard's models serialize with the API's field
//! names, so serializing an inspected model gives the object Docker sent, and
//! deserializing an object gives the create body Docker expects. Fields
//! bollard's models do not know are dropped on that round trip.
//!
//! Bollard 0.21.1 builds URLs without an API version prefix (it joins an
//! absolute path onto the versioned base, which drops the version), so the
//! daemon answers in its own API version. Docker Engine 20.10 (API 1.41)
//! accepts that; it also means a create attaches one network only.

use std::collections::HashMap;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerUpdateBody, EndpointIpamConfig, EndpointSettings,
    NetworkConnectRequest,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::docker::{
    Attachment, BuildProgress, Container, Definition, Engine, EngineError, EngineResult, Image, Mount, Network,
    PullEvent, PullProgress, RegistryAuth, RestartPolicy,
};

/// Bound on an ordinary API call: long enough for a slow `start` on an
/// overlay network, short enough that a hung daemon ends the run as
/// "incomplete" instead of hanging a CI job.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Bound on a build, which may legitimately run for a long time.
const BUILD_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// How long Docker may go on with a create, start, rename or update whose
/// client was killed. Such a call normally lands within milliseconds; on a
/// loaded 2-core machine a create sent 15 ms before a SIGKILL landed only
/// after the recovery that started right after it had looked (about
/// 200 ms). 3 s leaves room for a busy daemon.
const ORPHAN_GRACE: Duration = Duration::from_secs(3);

/// Extra time granted to a `stop` call beyond the container's own stop
/// timeout, for the daemon to kill it and report back.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// A Docker daemon reached through bollard.
#[derive(Debug, Clone)]
pub struct BollardEngine {
    /// The client, with [`REQUEST_TIMEOUT`]; long calls clone it with a
    /// longer timeout (clones share the connection pool).
    docker: Docker,
}

impl BollardEngine {
    /// Connects to the daemon named by `DOCKER_HOST` (`unix://…`, `tcp://…`),
    /// or to `/var/run/docker.sock` when it is unset. No request is made: use
    /// [`Engine::ping`] to check the daemon answers.
    pub fn connect() -> Result<Self, EngineError> {
        let docker = Docker::connect_with_defaults()
            .map_err(|e| EngineError::Unreachable(e.to_string()))?
            .with_timeout(REQUEST_TIMEOUT);
        Ok(BollardEngine { docker })
    }

    /// Connects to `host` (`unix://…`, `tcp://…`), which the caller has
    /// checked swap can talk to as the user asked (`docker_host`).
    pub fn connect_to(host: &str) -> Result<Self, EngineError> {
        let docker = Docker::connect_with_host(host)
            .map_err(|e| EngineError::Unreachable(e.to_string()))?
            .with_timeout(REQUEST_TIMEOUT);
        Ok(BollardEngine { docker })
    }

    /// The client with a different per-request timeout.
    fn with_timeout(&self, timeout: Duration) -> Docker {
        self.docker.clone().with_timeout(timeout)
    }
}

/// Classifies a bollard error by what the caller can do about it, keeping
/// Docker's own message text verbatim (callers match on it).
fn engine_error(err: BollardError) -> EngineError {
    match err {
        BollardError::DockerResponseServerError { status_code: 404, message } => EngineError::NotFound(message),
        BollardError::DockerResponseServerError { status_code: 409, message } => EngineError::Conflict(message),
        BollardError::DockerResponseServerError { message, .. } => EngineError::Daemon(message),
        BollardError::DockerStreamError { error } => EngineError::Daemon(error),
        e @ (BollardError::RequestTimeoutError
        | BollardError::HyperResponseError { .. }
        | BollardError::HyperLegacyError { .. }
        | BollardError::IOError { .. }
        | BollardError::SocketNotFoundError(_)
        | BollardError::UnsupportedURISchemeError { .. }) => EngineError::Unreachable(e.to_string()),
        other => EngineError::Daemon(other.to_string()),
    }
}

/// Turns a 404 into `None`, for inspect calls where absence is an answer.
fn absent_as_none<T>(result: Result<T, BollardError>) -> EngineResult<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
        Err(e) => Err(engine_error(e)),
    }
}

/// Serializes a bollard model to the API's JSON object, without nulls.
fn api_object<T: serde::Serialize>(model: &T) -> Map<String, Value> {
    match serde_json::to_value(model).map(strip_nulls) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// Removes `null` members at any depth: they mean "unset" to Docker, and
/// leaving them out keeps definitions comparable.
fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, strip_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// A non-empty string, or `None`.
fn non_empty(s: Option<&String>) -> Option<String> {
    s.filter(|s| !s.is_empty()).cloned()
}

/// The container's network attachments, primary network first.
///
/// The API reports networks as a map, so their order is lost; the network
/// named in `HostConfig.NetworkMode` is the one the container was created on,
/// and it goes first so a clone is created on the same one. Docker adds the
/// container's 12-character short id as an alias on user-defined networks by
/// itself; it is left out so a clone does not carry its predecessor's id.
fn attachments(inspect: &ContainerInspectResponse) -> Vec<Attachment> {
    let id = inspect.id.as_deref().unwrap_or("");
    let short_id = id.get(..12).unwrap_or(id);
    let mut primary = inspect.host_config.as_ref().and_then(|h| h.network_mode.clone()).unwrap_or_default();
    if primary == "default" {
        primary = "bridge".into();
    }
    let Some(networks) = inspect.network_settings.as_ref().and_then(|n| n.networks.as_ref()) else {
        return Vec::new();
    };
    let mut list: Vec<Attachment> = networks
        .iter()
        .map(|(name, endpoint)| {
            let ipam = endpoint.ipam_config.as_ref();
            Attachment {
                network: name.clone(),
                aliases: endpoint.aliases.iter().flatten().filter(|a| a.as_str() != short_id).cloned().collect(),
                ipv4: non_empty(ipam.and_then(|i| i.ipv4_address.as_ref())),
                ipv6: non_empty(ipam.and_then(|i| i.ipv6_address.as_ref())),
                links: endpoint.links.clone().unwrap_or_default(),
            }
        })
        .collect();
    list.sort_by(|a, b| (a.network != primary, &a.network).cmp(&(b.network != primary, &b.network)));
    list
}

/// The endpoint settings that attach a container as `attachment` says.
fn endpoint_settings(attachment: &Attachment) -> EndpointSettings {
    let ipam = (attachment.ipv4.is_some() || attachment.ipv6.is_some()).then(|| EndpointIpamConfig {
        ipv4_address: attachment.ipv4.clone(),
        ipv6_address: attachment.ipv6.clone(),
        ..Default::default()
    });
    EndpointSettings {
        aliases: (!attachment.aliases.is_empty()).then(|| attachment.aliases.clone()),
        links: (!attachment.links.is_empty()).then(|| attachment.links.clone()),
        ipam_config: ipam,
        ..Default::default()
    }
}

/// Endpoint settings a clone would silently drop, named as `docker run`
/// names them, so a deploy can refuse the container instead.
fn unclonable(inspect: &ContainerInspectResponse) -> Vec<String> {
    let mut found = Vec::new();
    let networks = inspect.network_settings.as_ref().and_then(|n| n.networks.as_ref());
    for (name, endpoint) in networks.into_iter().flatten() {
        let link_local = endpoint.ipam_config.as_ref().and_then(|i| i.link_local_ips.as_ref());
        if link_local.is_some_and(|ips| !ips.is_empty()) {
            found.push(format!("--link-local-ip on network {name}"));
        }
        if endpoint.driver_opts.as_ref().is_some_and(|o| !o.is_empty()) {
            found.push(format!("network driver options (--network name={name},driver-opt=…)"));
        }
    }
    found
}

/// The container's mounts, as inspect lists them.
fn mounts(inspect: &ContainerInspectResponse) -> Vec<Mount> {
    inspect
        .mounts
        .iter()
        .flatten()
        .map(|m| Mount {
            kind: m.typ.clone().unwrap_or_default(),
            name: non_empty(m.name.as_ref()),
            source: m.source.clone().unwrap_or_default(),
            destination: m.destination.clone().unwrap_or_default(),
            rw: m.rw.unwrap_or(true),
        })
        .collect()
}

/// Maps an inspect response onto the plain [`Container`].
fn container_from_inspect(inspect: ContainerInspectResponse) -> Container {
    let id = inspect.id.clone().unwrap_or_default();
    let state = inspect.state.clone().unwrap_or_default();
    let config = inspect.config.clone().unwrap_or_default();
    let host_config = inspect.host_config.clone().unwrap_or_default();
    let networks = attachments(&inspect);
    let mounts = mounts(&inspect);
    let unclonable = unclonable(&inspect);

    let mut config_json = api_object(&config);
    // Docker fills an unset Hostname with the container's short id; cloning
    // that would name the new container after the old one.
    if config.hostname.as_deref().is_some_and(|h| !h.is_empty() && id.starts_with(h)) {
        config_json.remove("Hostname");
    }
    let policy = host_config.restart_policy.clone().unwrap_or_default();

    Container {
        name: inspect.name.as_deref().unwrap_or("").trim_start_matches('/').to_string(),
        image_id: inspect.image.clone().unwrap_or_default(),
        image_ref: config.image.clone().unwrap_or_default(),
        running: state.running.unwrap_or(false) || state.restarting.unwrap_or(false),
        status: state.status.map(|s| s.to_string()).unwrap_or_default(),
        exit_code: state.exit_code.unwrap_or(0),
        restart_count: inspect.restart_count.unwrap_or(0),
        health: state.health.and_then(|h| h.status).map(|s| s.to_string()).filter(|s| !s.is_empty() && s != "none"),
        started_at: state.started_at.unwrap_or_default(),
        labels: config.labels.clone().unwrap_or_default().into_iter().collect(),
        restart_policy: RestartPolicy {
            name: policy.name.map(|n| n.to_string()).unwrap_or_default(),
            max_retries: policy.maximum_retry_count.unwrap_or(0),
        },
        networks: networks.clone(),
        mounts,
        unclonable,
        definition: Definition { config: config_json, host_config: api_object(&host_config), networks },
        id,
    }
}

/// The create body for a definition: its `Config`, its `HostConfig`, and its
/// first network only (API 1.41 rejects more than one endpoint at create).
fn create_body(def: &Definition) -> EngineResult<ContainerCreateBody> {
    let mut body = def.config.clone();
    let mut host_config = def.host_config.clone();
    if let Some(first) = def.networks.first() {
        host_config.insert("NetworkMode".into(), Value::String(first.network.clone()));
        let endpoint =
            serde_json::to_value(endpoint_settings(first)).map_err(|e| EngineError::Daemon(e.to_string()))?;
        let mut endpoints = Map::new();
        endpoints.insert(first.network.clone(), endpoint);
        let mut networking = Map::new();
        networking.insert("EndpointsConfig".into(), Value::Object(endpoints));
        body.insert("NetworkingConfig".into(), Value::Object(networking));
    }
    body.insert("HostConfig".into(), Value::Object(host_config));
    serde_json::from_value(Value::Object(body))
        .map_err(|e| EngineError::Daemon(format!("container definition does not fit the Docker API: {e}")))
}

/// Splits a log or build output chunk into lines, without line terminators.
fn lines_of(chunk: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(chunk);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    if text.is_empty() {
        return Vec::new();
    }
    text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l).to_string()).collect()
}

impl Engine for BollardEngine {
    fn orphan_bound(&self, waits: Duration) -> Duration {
        ORPHAN_GRACE + waits
    }

    /// Checks the daemon answers `/_ping`.
    async fn ping(&self) -> EngineResult<()> {
        self.docker.ping().await.map(|_| ()).map_err(engine_error)
    }

    /// Inspects a container; `None` on 404, and `None` when Docker answered
    /// with a container that has neither that name nor that id: its lookup
    /// tries the full id, then the exact name, then an id prefix, so an
    /// answer that is not an exact match means no container has the name.
    ///
    /// When several ids start with the name, Docker refuses the lookup
    /// instead ("multiple IDs found with provided prefix"); the container
    /// list, matched by exact name here, then says whether one has it.
    async fn container(&self, name_or_id: &str) -> EngineResult<Option<Container>> {
        let exact = |c: &Container| c.id == name_or_id || c.name == name_or_id;
        match absent_as_none(self.docker.inspect_container(name_or_id, None).await) {
            Ok(found) => Ok(found.map(container_from_inspect).filter(exact)),
            Err(EngineError::Daemon(m)) if m.to_lowercase().contains("multiple ids found") => {
                let names = self.container_names().await?;
                let Some((_, id)) = names.into_iter().find(|(n, _)| n == name_or_id) else { return Ok(None) };
                let found = absent_as_none(self.docker.inspect_container(&id, None).await)?;
                Ok(found.map(container_from_inspect).filter(exact))
            }
            Err(e) => Err(e),
        }
    }

    /// Lists all containers (running or not) with exactly the label
    /// `key=value`, by id.
    async fn containers_labelled(&self, key: &str, value: &str) -> EngineResult<Vec<String>> {
        let filters = HashMap::from([("label", vec![format!("{key}={value}")])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let list = self.docker.list_containers(Some(options)).await.map_err(engine_error)?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// Lists every container's names with its id. Legacy-link aliases
    /// (`/other/alias`) are not names a container can be addressed by and are
    /// left out.
    async fn container_names(&self) -> EngineResult<Vec<(String, String)>> {
        let options = ListContainersOptionsBuilder::new().all(true).build();
        let list = self.docker.list_containers(Some(options)).await.map_err(engine_error)?;
        let mut names = Vec::new();
        for summary in list {
            let id = summary.id.unwrap_or_default();
            for name in summary.names.into_iter().flatten() {
                let name = name.trim_start_matches('/');
                if !name.contains('/') {
                    names.push((name.to_string(), id.clone()));
                }
            }
        }
        Ok(names)
    }

    /// Inspects an image; `None` on 404.
    async fn image(&self, reference: &str) -> EngineResult<Option<Image>> {
        let inspect = absent_as_none(self.docker.inspect_image(reference).await)?;
        Ok(inspect.map(|i| Image {
            id: i.id.clone().unwrap_or_default(),
            tags: i.repo_tags.clone().unwrap_or_default(),
            config: i.config.as_ref().map(api_object).unwrap_or_default(),
        }))
    }

    /// Inspects a network; `None` on 404.
    async fn network(&self, name: &str) -> EngineResult<Option<Network>> {
        let inspect = absent_as_none(self.docker.inspect_network(name, None).await)?;
        Ok(inspect.map(|n| Network {
            id: n.id.unwrap_or_default(),
            name: n.name.unwrap_or_default(),
            driver: n.driver.unwrap_or_default(),
        }))
    }

    /// Creates a container in one API call, attached to the definition's
    /// first network only (its `HostConfig.NetworkMode` is set to it); the
    /// caller attaches the others with [`Engine::connect`]. With no networks,
    /// `HostConfig.NetworkMode` is used as given.
    async fn create(&self, name: &str, def: &Definition) -> EngineResult<String> {
        let body = create_body(def)?;
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let created = self.docker.create_container(Some(options), body).await.map_err(engine_error)?;
        Ok(created.id)
    }

    /// Attaches a container to a network with the attachment's aliases and
    /// static addresses.
    async fn connect(&self, id: &str, attachment: &Attachment) -> EngineResult<()> {
        let request =
            NetworkConnectRequest { container: id.to_string(), endpoint_config: Some(endpoint_settings(attachment)) };
        self.docker.connect_network(&attachment.network, request).await.map_err(engine_error)
    }

    /// Starts a container; one already running is success (Docker answers
    /// 304).
    async fn start(&self, id: &str) -> EngineResult<()> {
        self.docker.start_container(id, None).await.map_err(engine_error)
    }

    /// Stops a container, giving it `timeout` (rounded up to whole seconds)
    /// before the daemon kills it; one already stopped is success (304).
    async fn stop(&self, id: &str, timeout: Duration) -> EngineResult<()> {
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let options = StopContainerOptionsBuilder::new().t(i32::try_from(secs).unwrap_or(i32::MAX)).build();
        // The request must outlive the daemon's own wait, or a slow-to-stop
        // app would look like an unreachable daemon.
        let docker = self.with_timeout(REQUEST_TIMEOUT.max(Duration::from_secs(secs) + STOP_GRACE));
        docker.stop_container(id, Some(options)).await.map_err(engine_error)
    }

    /// Renames a container; a taken name is [`EngineError::Conflict`].
    async fn rename(&self, id: &str, new_name: &str) -> EngineResult<()> {
        let options = RenameContainerOptionsBuilder::new().name(new_name).build();
        self.docker.rename_container(id, options).await.map_err(engine_error)
    }

    /// Removes a container even if running, keeping its anonymous volumes
    /// (they may hold the data a rollback needs).
    async fn remove(&self, id: &str) -> EngineResult<()> {
        let options = RemoveContainerOptionsBuilder::new().force(true).v(false).build();
        self.docker.remove_container(id, Some(options)).await.map_err(engine_error)
    }

    /// Lists every container whose image is `image_id` (Docker's
    /// `ancestor` filter also matches images built on it; those are kept
    /// out by comparing the image id).
    async fn containers_using(&self, image_id: &str) -> EngineResult<Vec<String>> {
        let filters = HashMap::from([("ancestor", vec![image_id.to_string()])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        let list = self.docker.list_containers(Some(options)).await.map_err(engine_error)?;
        Ok(list.into_iter().filter(|c| c.image_id.as_deref() == Some(image_id)).filter_map(|c| c.id).collect())
    }

    /// Removes a tag, or an untagged image by id, without force: an image
    /// a container uses is refused (409).
    async fn remove_image(&self, reference: &str) -> EngineResult<()> {
        let options = bollard::query_parameters::RemoveImageOptionsBuilder::new().force(false).noprune(false).build();
        self.docker.remove_image(reference, Some(options), None).await.map(|_| ()).map_err(engine_error)
    }

    /// Updates only the container's restart policy.
    async fn set_restart_policy(&self, id: &str, policy: &RestartPolicy) -> EngineResult<()> {
        let name = policy
            .name
            .parse()
            .map_err(|_| EngineError::Daemon(format!("unknown restart policy {:?}", policy.name)))?;
        let body = ContainerUpdateBody {
            restart_policy: Some(bollard::models::RestartPolicy {
                name: Some(name),
                maximum_retry_count: Some(policy.max_retries),
            }),
            ..Default::default()
        };
        self.docker.update_container(id, body).await.map_err(engine_error)
    }

    /// The last `lines` lines of stdout and stderr, interleaved as logged,
    /// decoded lossily.
    async fn logs_tail(&self, id: &str, lines: usize) -> EngineResult<Vec<String>> {
        let options =
            LogsOptionsBuilder::new().stdout(true).stderr(true).follow(false).tail(&lines.to_string()).build();
        let mut stream = self.docker.logs(id, Some(options));
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend(lines_of(&chunk.map_err(engine_error)?.into_bytes()));
        }
        // A TTY container's output is not framed per line, so one chunk may
        // hold many; keep only the tail asked for.
        let excess = out.len().saturating_sub(lines);
        out.drain(..excess);
        Ok(out)
    }

    /// Pulls with `POST /images/create`, streaming its progress. The
    /// request has no timeout of its own (a pull may rightly take hours):
    /// the caller abandons a pull that stops making progress.
    async fn pull(
        &self,
        reference: &str,
        auth: Option<&RegistryAuth>,
        progress: PullProgress<'_>,
    ) -> EngineResult<Option<String>> {
        let options = CreateImageOptionsBuilder::new().from_image(reference).build();
        let credentials = auth.map(|a| bollard::auth::DockerCredentials {
            username: a.username.clone(),
            password: a.password.clone(),
            identitytoken: a.identity_token.clone(),
            serveraddress: Some(a.server.clone()),
            ..Default::default()
        });
        let docker = self.with_timeout(BUILD_TIMEOUT);
        let mut stream = docker.create_image(Some(options), None, credentials);
        let mut digest = None;
        while let Some(message) = stream.next().await {
            // bollard turns an `errorDetail` message into an error here.
            let info = message.map_err(engine_error)?;
            let status = info.status.unwrap_or_default();
            if let Some(d) = status.strip_prefix("Digest: ") {
                digest = Some(d.trim().to_string());
            }
            let detail = info.progress_detail.unwrap_or_default();
            let bytes = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
            progress(&PullEvent {
                layer: info.id.filter(|id| !id.is_empty()),
                status,
                current: bytes(detail.current),
                total: bytes(detail.total),
            });
        }
        Ok(digest)
    }

    /// Builds an image with the classic builder, streaming its output lines
    /// to `progress`; returns the image id.
    async fn build(
        &self,
        context_tar: Vec<u8>,
        dockerfile: &str,
        tag: Option<&str>,
        progress: BuildProgress<'_>,
    ) -> EngineResult<String> {
        let mut options = BuildImageOptionsBuilder::new().dockerfile(dockerfile).rm(true).forcerm(true);
        if let Some(tag) = tag {
            options = options.t(tag);
        }
        let docker = self.with_timeout(BUILD_TIMEOUT);
        let mut stream = docker.build_image(options.build(), None, Some(bollard::body_full(context_tar.into())));
        let mut image_id = None;
        while let Some(message) = stream.next().await {
            // bollard turns an `errorDetail` message into an error here.
            let info = message.map_err(engine_error)?;
            if let Some(text) = info.stream.as_deref().or(info.status.as_deref()) {
                for line in lines_of(text.as_bytes()) {
                    progress(&line);
                }
            }
            if let Some(id) = info.aux.and_then(|aux| aux.id) {
                image_id = Some(id);
            }
        }
        match (image_id, tag) {
            (Some(id), _) => Ok(id),
            (None, Some(tag)) => match self.image(tag).await? {
                Some(image) => Ok(image.id),
                None => Err(EngineError::Daemon(format!("build finished but image {tag} is not present"))),
            },
            (None, None) => Err(EngineError::Daemon("build finished without reporting an image id".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    //! These run against the local daemon and fail, not skip, when it is
    //! unreachable. Every object they create carries the test process id in
    //! its name and is removed when the test ends, even by panic.

    use std::time::Instant;

    use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
    use bollard::query_parameters::RemoveImageOptionsBuilder;
    use serde_json::json;

    use super::*;

    /// Objects a test created, removed when it is dropped.
    #[derive(Default)]
    struct Cleanup {
        containers: Vec<String>,
        images: Vec<String>,
        networks: Vec<String>,
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let containers = std::mem::take(&mut self.containers);
            let images = std::mem::take(&mut self.images);
            let networks = std::mem::take(&mut self.networks);
            // Drop cannot await, and the test's runtime may be the one
            // dropping us: clean up from a thread with its own runtime.
            let cleaner = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    let docker = BollardEngine::connect().unwrap().docker;
                    let force = RemoveContainerOptionsBuilder::new().force(true).build();
                    for c in containers {
                        let _ = docker.remove_container(&c, Some(force.clone())).await;
                    }
                    for n in networks {
                        let _ = docker.remove_network(&n).await;
                    }
                    for i in images {
                        let opts = RemoveImageOptionsBuilder::new().force(true).build();
                        let _ = docker.remove_image(&i, Some(opts), None).await;
                    }
                });
            });
            let _ = cleaner.join();
        }
    }

    fn unique(what: &str) -> String {
        format!("swap-bollard-test-{what}-{}", std::process::id())
    }

    /// A build context holding a `FROM scratch` Dockerfile and one file whose
    /// content makes the image distinct.
    fn context(content: &str) -> Vec<u8> {
        let dockerfile = "FROM scratch\nCOPY x /x\nLABEL swap.test.image=yes\nCMD [\"/x\"]\n";
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in [("Dockerfile", dockerfile), ("x", content)] {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            builder.append_data(&mut header, name, data.as_bytes()).unwrap();
        }
        builder.into_inner().unwrap()
    }

    async fn build(engine: &BollardEngine, cleanup: &mut Cleanup, tag: &str, content: &str) -> String {
        let mut lines = Vec::new();
        let id = engine
            .build(context(content), "Dockerfile", Some(tag), &mut |l: &str| lines.push(l.to_string()))
            .await
            .unwrap();
        cleanup.images.push(tag.to_string());
        assert!(id.starts_with("sha256:"), "{id}");
        assert!(lines.iter().any(|l| l.contains("FROM scratch")), "{lines:?}");
        id
    }

    async fn create_network(engine: &BollardEngine, cleanup: &mut Cleanup, name: &str, subnet: Option<&str>) {
        let ipam = subnet.map(|s| Ipam {
            config: Some(vec![IpamConfig { subnet: Some(s.to_string()), ..Default::default() }]),
            ..Default::default()
        });
        let request = NetworkCreateRequest { name: name.to_string(), ipam, ..Default::default() };
        engine.docker.create_network(request).await.unwrap();
        cleanup.networks.push(name.to_string());
    }

    #[tokio::test]
    async fn unreachable_daemon_is_reported_as_unreachable() {
        // A path that exists but where nothing listens: the request itself
        // fails to connect.
        let dead = tempfile::NamedTempFile::new().unwrap();
        let host = format!("unix://{}", dead.path().display());
        let docker = Docker::connect_with_unix(&host, 5, bollard::API_DEFAULT_VERSION).unwrap();
        let engine = BollardEngine { docker };
        let err = engine.ping().await.unwrap_err();
        assert!(err.is_unreachable(), "{err:?}");
        let err = engine.container("x").await.unwrap_err();
        assert!(err.is_unreachable(), "{err:?}");
        let missing = BollardError::SocketNotFoundError("/nonexistent".into());
        assert!(engine_error(missing).is_unreachable());
    }

    #[tokio::test]
    async fn absent_objects_are_none_and_bridge_exists() {
        let engine = BollardEngine::connect().unwrap();
        engine.ping().await.expect("the Docker daemon must be reachable for these tests");
        assert!(engine.container("does-not-exist").await.unwrap().is_none());
        assert!(engine.image("swap-bollard-test-no-such-image:none").await.unwrap().is_none());
        assert!(engine.network("swap-bollard-test-no-such-network").await.unwrap().is_none());
        let bridge = engine.network("bridge").await.unwrap().unwrap();
        assert_eq!((bridge.name.as_str(), bridge.driver.as_str()), ("bridge", "bridge"));
        let err = engine.start("does-not-exist").await.unwrap_err();
        assert!(matches!(err, EngineError::NotFound(_)), "{err:?}");
        let err = engine.remove("does-not-exist").await.unwrap_err();
        assert!(matches!(err, EngineError::NotFound(_)), "{err:?}");
    }

    #[tokio::test]
    async fn build_failure_carries_the_daemon_message() {
        let engine = BollardEngine::connect().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let dockerfile = b"FROM scratch\nCOPY missing /missing\n";
        let mut header = tar::Header::new_gnu();
        header.set_size(dockerfile.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, "Dockerfile", &dockerfile[..]).unwrap();
        let tar = builder.into_inner().unwrap();
        let err = engine.build(tar, "Dockerfile", None, &mut |_: &str| {}).await.unwrap_err();
        match err {
            EngineError::Daemon(msg) => assert!(msg.contains("missing"), "{msg}"),
            other => panic!("expected a daemon error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn definition_round_trips_through_create_and_inspect() {
        let engine = BollardEngine::connect().unwrap();
        let mut cleanup = Cleanup::default();
        let v1 = build(&engine, &mut cleanup, &format!("{}:v1", unique("img")), "one").await;
        let v2 = build(&engine, &mut cleanup, &format!("{}:v2", unique("img")), "two").await;
        assert_ne!(v1, v2);
        let image = engine.image(&format!("{}:v1", unique("img"))).await.unwrap().unwrap();
        assert_eq!(image.id, v1);
        assert_eq!(image.config["Labels"]["swap.test.image"], "yes");
        assert_eq!(image.config["Cmd"], json!(["/x"]));

        let octet = std::process::id() % 200 + 20;
        let (net1, net2) = (unique("net1"), unique("net2"));
        create_network(&engine, &mut cleanup, &net1, Some(&format!("10.213.{octet}.0/24"))).await;
        create_network(&engine, &mut cleanup, &net2, None).await;

        let pid = std::process::id().to_string();
        let def = Definition {
            config: json!({
                "Image": format!("{}:v1", unique("img")),
                "Env": ["FOO=bar", "EMPTY="],
                "Labels": {"swap.app": "t", "swap.test": pid},
                "ExposedPorts": {"8080/tcp": {}},
            })
            .as_object()
            .unwrap()
            .clone(),
            host_config: json!({
                "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "0"}]},
                "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
                "NetworkMode": "bridge",
            })
            .as_object()
            .unwrap()
            .clone(),
            networks: vec![Attachment {
                aliases: vec!["app-alias".into()],
                ipv4: Some(format!("10.213.{octet}.7")),
                ..Attachment::to(&net1)
            }],
        };
        let (a_name, b_name) = (unique("a"), unique("b"));
        cleanup.containers.extend([a_name.clone(), b_name.clone()]);
        let t = Instant::now();
        let a_id = engine.create(&a_name, &def).await.unwrap();
        eprintln!("create: {:?}", t.elapsed());
        let err = engine.create(&a_name, &def).await.unwrap_err();
        assert!(matches!(err, EngineError::Conflict(_)), "{err:?}");

        let a = engine.container(&a_name).await.unwrap().unwrap();
        assert_eq!(a.id, a_id);
        assert_eq!(a.name, a_name);
        assert_eq!(a.image_id, v1);
        assert_eq!(a.image_ref, format!("{}:v1", unique("img")));
        assert!(!a.running);
        assert_eq!(a.status, "created");
        assert!(!a.ever_started());
        assert_eq!(a.health, None);
        assert_eq!(a.labels.get("swap.test"), Some(&pid));
        assert_eq!(a.restart_policy, RestartPolicy { name: "on-failure".into(), max_retries: 3 });
        assert_eq!(a.networks, def.networks, "the short-id alias is left out");
        let cfg = &a.definition.config;
        // The daemon adds a default PATH when neither image nor caller set one.
        let env = cfg["Env"].as_array().unwrap();
        assert!(env.contains(&json!("FOO=bar")) && env.contains(&json!("EMPTY=")), "{env:?}");
        assert_eq!(cfg["ExposedPorts"], json!({"8080/tcp": {}}));
        assert_eq!(cfg["Cmd"], json!(["/x"]), "image defaults show in the inspected Config");
        assert!(!cfg.contains_key("Hostname"), "Docker's default hostname is the old id: {cfg:?}");
        let host = &a.definition.host_config;
        assert_eq!(host["PortBindings"], def.host_config["PortBindings"]);
        assert_eq!(host["RestartPolicy"], def.host_config["RestartPolicy"]);
        assert_eq!(host["NetworkMode"], json!(net1), "the first network replaces NetworkMode");
        assert!(host.values().all(|v| !v.is_null()));

        // Attach a second network: the primary one stays first.
        let second = Attachment { aliases: vec!["second".into()], ..Attachment::to(&net2) };
        let t = Instant::now();
        engine.connect(&a_id, &second).await.unwrap();
        eprintln!("connect (bridge driver, stopped container): {:?}", t.elapsed());
        let a = engine.container(&a_id).await.unwrap().unwrap();
        assert_eq!(a.networks, vec![def.networks[0].clone(), second.clone()]);

        // Clone with the image replaced; a static address cannot be shared.
        let mut clone = a.definition.clone();
        clone.config.insert("Image".into(), json!(v2));
        clone.networks[0].ipv4 = None;
        let b_id = engine.create(&b_name, &clone).await.unwrap();
        engine.connect(&b_id, &clone.networks[1]).await.unwrap();
        let b = engine.container(&b_name).await.unwrap().unwrap();
        assert_eq!(b.image_id, v2);
        assert_eq!(b.networks, clone.networks);
        let mut expected = a.definition.config.clone();
        expected.insert("Image".into(), json!(v2));
        assert_eq!(b.definition.config, expected);
        let mut a_host = a.definition.host_config.clone();
        let mut b_host = b.definition.host_config.clone();
        assert_eq!(a_host.remove("NetworkMode"), b_host.remove("NetworkMode"));
        assert_eq!(a_host, b_host);

        let mut labelled = engine.containers_labelled("swap.test", &pid).await.unwrap();
        labelled.sort();
        let mut both = vec![a_id.clone(), b_id.clone()];
        both.sort();
        assert_eq!(labelled, both);
        assert!(engine.containers_labelled("swap.test", "other").await.unwrap().is_empty());
        let names = engine.container_names().await.unwrap();
        assert!(names.contains(&(a_name.clone(), a_id.clone())), "{names:?}");

        // Renaming onto a taken name is a conflict; onto a free one works.
        let err = engine.rename(&a_id, &b_name).await.unwrap_err();
        assert!(matches!(err, EngineError::Conflict(_)), "{err:?}");
        let parked = unique("a--swap-old");
        cleanup.containers.push(parked.clone());
        let t = Instant::now();
        engine.rename(&a_id, &parked).await.unwrap();
        eprintln!("rename: {:?}", t.elapsed());
        assert!(engine.container(&a_name).await.unwrap().is_none());
        assert_eq!(engine.container(&parked).await.unwrap().unwrap().id, a_id);

        engine.set_restart_policy(&a_id, &RestartPolicy::no()).await.unwrap();
        let a = engine.container(&a_id).await.unwrap().unwrap();
        assert_eq!(a.restart_policy, RestartPolicy::no());
        assert!(a.restart_policy.is_no());

        // Never started: stop is a no-op, logs are empty.
        engine.stop(&a_id, Duration::from_millis(1500)).await.unwrap();
        assert!(engine.logs_tail(&a_id, 10).await.unwrap().is_empty());

        let t = Instant::now();
        engine.remove(&a_id).await.unwrap();
        eprintln!("remove: {:?}", t.elapsed());
        engine.remove(&b_id).await.unwrap();
        assert!(engine.container(&a_id).await.unwrap().is_none());
        let err = engine.rename(&a_id, &a_name).await.unwrap_err();
        assert!(matches!(err, EngineError::NotFound(_)), "{err:?}");
    }

    /// Start, logs and stop need an image that runs: the demo's, built by
    /// `demo/build-images.sh` when it is not there yet.
    #[tokio::test]
    async fn running_container_lifecycle_with_demo_image() {
        let engine = BollardEngine::connect().unwrap();
        engine.ping().await.expect("the Docker daemon must be reachable for these tests");
        if engine.image("swap-demo:v1").await.unwrap().is_none() {
            let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/build-images.sh");
            let out = std::process::Command::new(&script).arg("v1").output().expect("run demo/build-images.sh");
            assert!(out.status.success(), "{} v1 failed: {}", script.display(), String::from_utf8_lossy(&out.stderr));
        }
        assert!(engine.image("swap-demo:v1").await.unwrap().is_some(), "swap-demo:v1 is still missing");
        let mut cleanup = Cleanup::default();
        let name = unique("run");
        cleanup.containers.push(name.clone());
        let def = Definition {
            config: json!({"Image": "swap-demo:v1", "Labels": {"swap.app": "run"}}).as_object().unwrap().clone(),
            host_config: Map::new(),
            networks: vec![Attachment::to("bridge")],
        };
        let t = Instant::now();
        let id = engine.create(&name, &def).await.unwrap();
        eprintln!("create: {:?}", t.elapsed());
        let t = Instant::now();
        engine.start(&id).await.unwrap();
        eprintln!("start (bridge): {:?}", t.elapsed());
        engine.start(&id).await.expect("starting a running container is success");
        let c = engine.container(&id).await.unwrap().unwrap();
        assert!(c.running && c.ever_started(), "{c:?}");
        assert_eq!(c.status, "running");
        assert!(c.health.is_some(), "the demo image has a healthcheck");
        assert_eq!(c.networks.len(), 1);
        assert_eq!(c.networks[0].network, "bridge");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let logs = engine.logs_tail(&id, 5).await.unwrap();
        assert!(logs.len() <= 5);
        assert!(logs.iter().all(|l| !l.ends_with('\n')), "{logs:?}");
        eprintln!("logs: {logs:?}");
        let t = Instant::now();
        engine.stop(&id, Duration::from_secs(10)).await.unwrap();
        eprintln!("stop: {:?}", t.elapsed());
        engine.stop(&id, Duration::from_secs(10)).await.expect("stopping a stopped container is success");
        let c = engine.container(&id).await.unwrap().unwrap();
        assert!(!c.running);
        assert_eq!(c.status, "exited");
        engine.remove(&id).await.unwrap();
    }
}
