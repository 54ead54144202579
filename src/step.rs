//! The steps of a deploy. Each step says how to observe whether its effect
//! is in place, how to apply it and how to undo it (its compensation), so a
//! restarted process can finish or reverse a deploy from whatever Docker
//! really holds. Observation is by container id and labels from `inspect`,
//! never by name substring: Docker's `name=` filter is a regular expression.
//!
//! Steps are journaled; everything they carry is safe to write down.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::docker::{Attachment, Definition, Engine, EngineError, RestartPolicy};
use crate::retry::{retry, Backoff};

/// Label every container swap creates carries: the app it belongs to.
pub const LABEL_APP: &str = "swap.app";
/// Label every container swap creates carries: the deploy that created it.
pub const LABEL_DEPLOY: &str = "swap.deploy";
/// Label of the containers a start-first re-deploy creates: which of its
/// two instances of the new version a container is.
pub const LABEL_INSTANCE: &str = "swap.instance";

/// Which instance of the new version a start-first re-deploy creates.
/// A stop-first deploy creates one container and names no instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Instance {
    /// Serves under the app's alias, as `<APP>--swap-new`, while the old
    /// container is stopped and renamed away; retired after the commit.
    Temporary,
    /// Created as `<APP>` once the name is free: the one that stays.
    Final,
}

impl Instance {
    /// The value of its [`LABEL_INSTANCE`] label.
    pub fn as_str(self) -> &'static str {
        match self {
            Instance::Temporary => "temporary",
            Instance::Final => "final",
        }
    }
}

/// The containers deploy `deploy` created, or with `instance` only that
/// instance, by their labels.
pub async fn created_by<E: Engine>(
    engine: &E,
    deploy: &str,
    instance: Option<Instance>,
) -> Result<Vec<String>, EngineError> {
    let ids = engine.containers_labelled(LABEL_DEPLOY, deploy).await?;
    let Some(instance) = instance else { return Ok(ids) };
    let mut out = vec![];
    for id in ids {
        if let Some(c) = engine.container(&id).await? {
            if c.labels.get(LABEL_INSTANCE).map(String::as_str) == Some(instance.as_str()) {
                out.push(c.id);
            }
        }
    }
    Ok(out)
}

/// The name a container has while parked or staged by a deploy.
pub fn staged_name(app: &str, role: &str) -> String {
    format!("{app}--swap-{role}")
}

/// Stop timeout for an old container found running while parked, before it
/// gets the app's name back.
const RUNNING_PARKED_STOP: Duration = Duration::from_secs(10);

/// Stop timeout for a running candidate that must give the app's name back.
const RENAMED_CANDIDATE_STOP: Duration = Duration::from_secs(1);

/// One step of a deploy, with everything needed to observe, apply and undo
/// it without the plan that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Build the candidate's image from a context directory.
    Build {
        /// The context directory.
        context: String,
        /// The Dockerfile, relative to the context.
        dockerfile: String,
        /// The tag to give the image, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// Start an old container found stopped, so it is the version serving
    /// if the deploy rolls back.
    StartOld {
        /// The old container's id.
        id: String,
    },
    /// Create the candidate (not started) under its staging name, labelled
    /// with the deploy id, attached to its networks.
    CreateCandidate {
        /// The staging name.
        name: String,
        /// The image id it runs.
        image: String,
        /// The deploy id in its `swap.deploy` label: how it is found when
        /// the creation was not recorded.
        deploy: String,
        /// Networks it is attached to.
        networks: Vec<String>,
        /// Start-first: which of the deploy's two instances this is (its
        /// `swap.instance` label). Observed and undone by that label too,
        /// so undoing the final instance leaves the temporary one serving.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instance: Option<Instance>,
    },
    /// Set the old container's restart policy to `no`, so a reboot while it
    /// is parked cannot bring back both versions.
    ParkOld {
        /// The old container's id.
        id: String,
        /// Its policy before, restored by the compensation.
        policy: RestartPolicy,
    },
    /// Stop the old container: the outage begins.
    StopOld {
        /// The old container's id.
        id: String,
        /// Seconds Docker waits before killing it.
        timeout_s: u64,
    },
    /// Rename the stopped old container away from the app's name. Renaming a
    /// running container on an overlay network fails (moby#42351); a stopped
    /// one renames fine.
    RenameOld {
        /// The old container's id.
        id: String,
        /// The app's name, which it gives up.
        from: String,
        /// Its parking name.
        to: String,
    },
    /// Give the not-yet-started candidate the app's name.
    RenameCandidate {
        /// The candidate's id.
        id: String,
        /// Its staging name, which the compensation restores.
        from: String,
        /// The app's name.
        to: String,
    },
    /// Start the candidate: the outage ends when it answers.
    StartCandidate {
        /// The candidate's id.
        id: String,
        /// Seconds Docker waits before killing it when it is stopped again.
        timeout_s: u64,
    },
    /// Start-first, after the commit point: the temporary instance, which
    /// served under the app's alias while the old container was taken out,
    /// is stopped (gracefully: it leaves Docker's DNS when it exits, and
    /// finishes its requests in flight first) and removed.
    RetireTemporary {
        /// The temporary instance's id.
        id: String,
        /// Seconds Docker waits before killing it.
        timeout_s: u64,
    },
    /// After the commit point: remove the old container. Its image stays.
    RemoveOld {
        /// The old container's id.
        id: String,
    },
    /// After the old container's removal, with `--keep-images`: remove an
    /// image an earlier deploy of this app brought, beyond the ones kept.
    /// Docker refuses while any container uses it; that image just stays.
    RemoveImage {
        /// The image id.
        image: String,
    },
}

/// Why a step or a compensation could not go on.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Docker refused or failed; the deploy rolls back.
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// Docker holds something the journal cannot explain: stop, change
    /// nothing further, and ask an operator.
    #[error("{0}")]
    Unexplained(String),
}

impl StepError {
    /// Whether the daemon could not be reached.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, StepError::Engine(e) if e.is_unreachable())
    }
}

/// What steps need besides themselves to apply: the non-journaled parts of
/// the plan.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The app's name.
    pub app: &'a str,
    /// The candidate's full definition (holds secrets; never journaled).
    pub definition: Option<&'a Definition>,
}

/// How long the moby PR#41011 race is retried before giving up: eight
/// retries, 50 ms doubling to 2 s, about 7 s in all.
const NETWORK_RACE: Backoff = Backoff { first: Duration::from_millis(50), max: Duration::from_secs(2), retries: 8 };

/// Starts a container, retrying the moby PR#41011 race: when the last
/// container on a node leaves an attachable overlay, the node-local network
/// is torn down asynchronously and a start right after fails for a moment.
pub async fn start_with_retry<E: Engine>(engine: &E, id: &str) -> Result<(), EngineError> {
    retry(NETWORK_RACE, EngineError::is_network_race, || engine.start(id)).await
}

/// Attaches a container to a network, retrying the same race.
async fn connect_with_retry<E: Engine>(engine: &E, id: &str, a: &Attachment) -> Result<(), EngineError> {
    retry(NETWORK_RACE, EngineError::is_network_race, || engine.connect(id, a)).await
}

impl Step {
    /// Short name of the step, as in the journal's `step` field.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Build { .. } => "build",
            Step::StartOld { .. } => "start_old",
            Step::CreateCandidate { .. } => "create_candidate",
            Step::ParkOld { .. } => "park_old",
            Step::StopOld { .. } => "stop_old",
            Step::RenameOld { .. } => "rename_old",
            Step::RenameCandidate { .. } => "rename_candidate",
            Step::StartCandidate { .. } => "start_candidate",
            Step::RetireTemporary { .. } => "retire_temporary",
            Step::RemoveOld { .. } => "remove_old",
            Step::RemoveImage { .. } => "remove_image",
        }
    }

    /// One line for a person.
    pub fn describe(&self) -> String {
        match self {
            Step::Build { context, tag, .. } => match tag {
                Some(t) => format!("build {context} as {t}"),
                None => format!("build {context}"),
            },
            Step::StartOld { id } => format!("start stopped old container {}", short(id)),
            Step::CreateCandidate { name, image, networks, instance, .. } => {
                let nets = if networks.is_empty() { String::new() } else { format!(" on {}", networks.join(", ")) };
                let which = match instance {
                    Some(i) => format!(" ({} instance)", i.as_str()),
                    None => String::new(),
                };
                format!("create {name}{which} from {}{nets}", short_image(image))
            }
            Step::ParkOld { id, policy } => {
                format!("park old {}: restart policy {} -> no", short(id), display_policy(policy))
            }
            Step::StopOld { id, .. } => format!("stop old {}", short(id)),
            Step::RenameOld { id, to, .. } => format!("rename old {} to {to}", short(id)),
            Step::RenameCandidate { id, to, .. } => format!("rename candidate {} to {to}", short(id)),
            Step::StartCandidate { id, .. } => format!("start candidate {}", short(id)),
            Step::RetireTemporary { id, .. } => format!("stop and remove temporary instance {}", short(id)),
            Step::RemoveOld { id } => format!("remove old {}", short(id)),
            Step::RemoveImage { image } => format!("remove image {} (--keep-images)", short(image)),
        }
    }

    /// How long the step's Docker calls may wait by design (a stop's
    /// timeout) when applying it, or with `undo` its compensation: with the
    /// engine's [`Engine::orphan_bound`], how long such a call may outlive
    /// a killed process. `None` for a build, whose orphan leaves at most an
    /// unused image.
    pub fn waits(&self, undo: bool) -> Option<Duration> {
        let secs = |s: &u64| Duration::from_secs(*s);
        Some(match (self, undo) {
            (Step::Build { .. } | Step::RemoveImage { .. }, _) => return None,
            (Step::StopOld { timeout_s, .. }, false)
            | (Step::RetireTemporary { timeout_s, .. }, false)
            | (Step::StartCandidate { timeout_s, .. }, true) => secs(timeout_s),
            (Step::RenameOld { .. }, true) => RUNNING_PARKED_STOP,
            (Step::RenameCandidate { .. }, true) => RENAMED_CANDIDATE_STOP,
            _ => Duration::ZERO,
        })
    }

    /// The container the step acts on, when it is known.
    fn target(&self) -> Option<&str> {
        match self {
            Step::Build { .. } | Step::CreateCandidate { .. } | Step::RemoveImage { .. } => None,
            Step::StartOld { id }
            | Step::ParkOld { id, .. }
            | Step::StopOld { id, .. }
            | Step::RenameOld { id, .. }
            | Step::RenameCandidate { id, .. }
            | Step::StartCandidate { id, .. }
            | Step::RetireTemporary { id, .. }
            | Step::RemoveOld { id } => Some(id),
        }
    }

    /// Whether the step's effect is already in place, as Docker shows it.
    /// Returns the candidate's id for `CreateCandidate`.
    pub async fn observe<E: Engine>(&self, engine: &E) -> Result<Option<String>, StepError> {
        if let Step::CreateCandidate { deploy, instance, .. } = self {
            return Ok(created_by(engine, deploy, *instance).await?.into_iter().next());
        }
        if let Step::Build { .. } = self {
            return Ok(None);
        }
        if let Step::RemoveImage { image } = self {
            return Ok(engine.image(image).await?.is_none().then(|| image.clone()));
        }
        let id = self.target().expect("container step");
        let Some(c) = engine.container(id).await? else {
            return match self {
                Step::RemoveOld { .. } | Step::RetireTemporary { .. } => Ok(Some(id.to_string())),
                _ => Err(StepError::Unexplained(format!(
                    "container {} ({}) is gone: it was removed outside swap",
                    short(id),
                    self.name()
                ))),
            };
        };
        let done = match self {
            Step::StartOld { .. } | Step::StartCandidate { .. } => c.running,
            Step::ParkOld { .. } => c.restart_policy.is_no(),
            Step::StopOld { .. } => !c.running,
            Step::RenameOld { to, .. } | Step::RenameCandidate { to, .. } => c.name == *to,
            Step::RemoveOld { .. } | Step::RetireTemporary { .. } => false,
            Step::Build { .. } | Step::CreateCandidate { .. } | Step::RemoveImage { .. } => unreachable!(),
        };
        Ok(done.then_some(c.id))
    }

    /// Applies the step. Returns its output (candidate id, image id).
    /// Callers observe first; applying twice is safe only where Docker's own
    /// answer is idempotent.
    pub async fn apply<E: Engine>(&self, engine: &E, inputs: Inputs<'_>) -> Result<Option<String>, StepError> {
        match self {
            Step::Build { .. } => unreachable!("builds are run by the deploy, which holds the context"),
            Step::StartOld { id } => start_with_retry(engine, id).await?,
            Step::CreateCandidate { name, image, instance, .. } => {
                let given = inputs.definition.expect("the deploy passes the candidate's definition");
                let mut def = std::borrow::Cow::Borrowed(given);
                if let Some(i) = instance {
                    if let Some(serde_json::Value::Object(labels)) = def.to_mut().config.get_mut("Labels") {
                        labels.insert(LABEL_INSTANCE.into(), i.as_str().into());
                    }
                }
                let def = def.as_ref();
                let id = engine.create(name, def).await?;
                // The container is created from the reference (`web:1.5`), which
                // may have moved since the plan resolved it: the deploy must run
                // the image it planned, or roll back.
                if let Some(c) =
                    engine.container(&id).await?.filter(|c| image.starts_with("sha256:") && c.image_id != *image)
                {
                    return Err(StepError::Engine(EngineError::Daemon(format!(
                        "{} names image {} now, not {} as planned: the tag moved while the deploy ran",
                        def.image(),
                        short(&c.image_id),
                        short(image)
                    ))));
                }
                for a in def.networks.iter().skip(1) {
                    connect_with_retry(engine, &id, a).await?;
                }
                return Ok(Some(id));
            }
            Step::ParkOld { id, .. } => engine.set_restart_policy(id, &RestartPolicy::no()).await?,
            Step::StopOld { id, timeout_s } => engine.stop(id, Duration::from_secs(*timeout_s)).await?,
            Step::RenameOld { id, to, .. } | Step::RenameCandidate { id, to, .. } => engine.rename(id, to).await?,
            Step::StartCandidate { id, .. } => start_with_retry(engine, id).await?,
            Step::RetireTemporary { id, timeout_s } => {
                engine.stop(id, Duration::from_secs(*timeout_s)).await?;
                remove_container(engine, id).await?;
            }
            Step::RemoveOld { id } => remove_container(engine, id).await?,
            Step::RemoveImage { image } => remove_image(engine, image).await?,
        }
        Ok(None)
    }

    /// Undoes the step if its effect is in place; does nothing otherwise.
    /// Compensations run in reverse order of the steps, so each finds the
    /// world the way its step left it.
    pub async fn compensate<E: Engine>(&self, engine: &E) -> Result<(), StepError> {
        match self {
            // The image stays: it is harmless, and a failed build made none.
            Step::Build { .. } => Ok(()),
            // The old version must serve after a rollback: leave it running.
            Step::StartOld { .. } => Ok(()),
            Step::CreateCandidate { deploy, instance, .. } => {
                for id in created_by(engine, deploy, *instance).await? {
                    remove_container(engine, &id).await?;
                }
                Ok(())
            }
            Step::ParkOld { id, policy } => {
                let c = self.existing(engine, id).await?;
                if c.restart_policy != *policy && !(c.restart_policy.is_no() && policy.is_no()) {
                    engine.set_restart_policy(id, policy).await?;
                }
                Ok(())
            }
            Step::StopOld { id, .. } => {
                let c = self.existing(engine, id).await?;
                if !c.running {
                    start_with_retry(engine, id).await?;
                }
                Ok(())
            }
            Step::RenameOld { id, from, .. } => {
                let c = self.existing(engine, id).await?;
                if c.name != *from {
                    if let Some(holder) = engine.container(from).await? {
                        return Err(StepError::Unexplained(format!(
                            "container {} ({}) holds the name {from}, which the old container {} must get back",
                            short(&holder.id),
                            holder.image_ref,
                            short(id)
                        )));
                    }
                    if c.running {
                        // Started by hand or by Docker while parked. moby#42351:
                        // a running overlay container cannot be renamed; the
                        // StopOld compensation, next, starts it again.
                        engine.stop(id, RUNNING_PARKED_STOP).await?;
                    }
                    engine.rename(id, from).await?;
                }
                Ok(())
            }
            Step::RenameCandidate { id, from, to } => {
                // A candidate already removed has given the name back.
                let Some(c) = engine.container(id).await? else { return Ok(()) };
                if c.name == *to {
                    if c.running {
                        // moby#42351: a running overlay container cannot be renamed.
                        engine.stop(id, RENAMED_CANDIDATE_STOP).await?;
                    }
                    engine.rename(id, from).await?;
                }
                Ok(())
            }
            Step::StartCandidate { id, timeout_s } => {
                if let Some(c) = engine.container(id).await? {
                    if c.running {
                        engine.stop(id, Duration::from_secs(*timeout_s)).await?;
                    }
                }
                Ok(())
            }
            // Past the commit point there is no way back.
            Step::RetireTemporary { .. } | Step::RemoveOld { .. } | Step::RemoveImage { .. } => Ok(()),
        }
    }

    async fn existing<E: Engine>(&self, engine: &E, id: &str) -> Result<crate::docker::Container, StepError> {
        engine.container(id).await?.ok_or_else(|| {
            StepError::Unexplained(format!(
                "the old container {} is gone: it was removed outside swap before the deploy committed; \
                 its image is kept, deploy it again with `swap deploy`",
                short(id)
            ))
        })
    }
}

/// Removes a container (with `remove`'s care for volumes); one already
/// gone is success.
async fn remove_container<E: Engine>(engine: &E, id: &str) -> Result<(), EngineError> {
    match engine.remove(id).await {
        Err(EngineError::NotFound(_)) => Ok(()),
        other => other,
    }
}

/// Removes an image by its tags, then by id if it is left untagged. An
/// image any container uses (not only the app's) is left alone, tags and
/// all; Docker would refuse its last tag anyway, but not the others.
async fn remove_image<E: Engine>(engine: &E, image: &str) -> Result<(), EngineError> {
    let Some(found) = engine.image(image).await? else { return Ok(()) };
    if !engine.containers_using(&found.id).await?.is_empty() {
        return Ok(());
    }
    for tag in &found.tags {
        match engine.remove_image(tag).await {
            Err(EngineError::Conflict(_)) => return Ok(()),
            Err(EngineError::NotFound(_)) => {}
            other => other?,
        }
    }
    match engine.remove_image(image).await {
        Err(EngineError::Conflict(_) | EngineError::NotFound(_)) => Ok(()),
        other => other,
    }
}

/// The first 12 characters of an id, as Docker shows it.
pub fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

fn short_image(image: &str) -> String {
    if image.starts_with("sha256:") {
        format!("image {}", short(image))
    } else {
        image.to_string()
    }
}

fn display_policy(p: &RestartPolicy) -> &str {
    if p.name.is_empty() {
        "no"
    } else {
        &p.name
    }
}
