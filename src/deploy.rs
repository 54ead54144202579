//! `swap deploy`: observe what serves now, build a validated [`Plan`], and
//! only then change anything, step by journaled step.
//!
//! Stop-first (the default) is ordered for the shortest outage on a
//! published port: the candidate is created (not started) before the old
//! container stops, so the outage is one stop, two renames and one start.
//! Start-first (`docs/start-first.md`) has no outage for clients that reach
//! the app by name: a temporary instance of the new version answers under
//! the app's alias while the old container stops and is renamed, and the
//! final instance is created under the app's name. Either way renames
//! happen only on stopped or never-started containers, which moby#42351
//! allows on overlay networks, so no network is ever disconnected.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::context;
use crate::docker::{Container, Definition, Engine, Image};
use crate::error::Failure;
use crate::health::Gate;
use crate::progress::Progress;
use crate::pull::PullPolicy;
use crate::record::{Begin, Event, OldContainer, Outcome, RunInfo};
use crate::recover;
use crate::report::Report;
use crate::run::{Phase, Run};
use crate::spec::{self, Overrides};
use crate::state::StateDir;
use crate::step::{short, staged_name, Inputs, Instance, Step};
use crate::strategy::{self, Strategy};

/// Where the candidate's image comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// An image reference, pulled first as [`Request::pull`] says.
    Image(String),
    /// A build context directory.
    Build {
        /// The context directory.
        dir: PathBuf,
        /// The Dockerfile, relative to the context.
        dockerfile: String,
        /// The tag to give the built image.
        tag: Option<String>,
    },
    /// `swap rollback`: the image that served before deploy `to` (or before
    /// the last successful deploy), read from the journal under its lock,
    /// after any unfinished deploy was recovered, so no deploy that ends
    /// while this one waits for the lock is overlooked.
    Rollback {
        /// The deploy whose predecessor to go back to.
        to: Option<String>,
    },
}

/// A deploy request whose flags have been parsed and checked.
#[derive(Debug, Clone)]
pub struct Request {
    /// The app.
    pub app: String,
    /// The candidate's image.
    pub source: Source,
    /// Flag and spec-file settings for the candidate.
    pub overrides: Overrides,
    /// Health gate limit.
    pub health_timeout: Duration,
    /// Without a healthcheck, how long the candidate must stay up.
    pub settle: Duration,
    /// How long Docker waits for a container to stop before killing it.
    pub stop_timeout: Duration,
    /// How long to wait for another swap's lock.
    pub lock_wait: Option<Duration>,
    /// Print the plan and change nothing.
    pub dry_run: bool,
    /// The command, for the journal (`deploy` or `rollback`).
    pub command: String,
    /// Whether and how patiently to pull `--image` first.
    pub pull: crate::pull::Pull,
    /// Deploy only if the image resolves to another id than the one serving.
    pub if_changed: bool,
    /// `--keep-images N`: after a successful deploy, remove the images
    /// earlier deploys of this app brought beyond the last N deployed
    /// (`None`: keep every image).
    pub keep_images: Option<usize>,
    /// `--strategy`; `None` keeps what the serving container was deployed
    /// with (its `swap.strategy` label), else stop-first.
    pub strategy: Option<Strategy>,
    /// Start-first: how long both versions serve side by side before the
    /// older of them is stopped, so clients that resolve the app's name
    /// periodically (a reverse proxy) have found the newer one.
    pub drain: Duration,
}

impl Request {
    /// The image reference or build context, for messages.
    pub fn source_name(&self) -> String {
        match &self.source {
            Source::Image(r) => r.clone(),
            Source::Build { dir, .. } => dir.display().to_string(),
            Source::Rollback { to: Some(d) } => format!("the image before deploy {d}"),
            Source::Rollback { to: None } => "the image before the last deploy".into(),
        }
    }
}

/// What will happen, decided before anything changes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The deploy id.
    pub deploy: String,
    /// The container serving now, if any.
    pub old: Option<Container>,
    /// The candidate's definition (holds secrets; never journaled).
    pub definition: Definition,
    /// The `begin` record.
    pub begin: Begin,
    /// The steps, described for a person (ids not known yet shown as such).
    pub steps: Vec<String>,
    /// Images to remove after the commit (`--keep-images`).
    pub cleanup: Vec<String>,
}

impl Plan {
    /// Prints the plan.
    pub fn show(&self, report: &Report) {
        let mut human = format!("plan {} for {} ({}):", self.deploy, self.begin.app, self.begin.strategy);
        for (i, s) in self.steps.iter().enumerate() {
            human.push_str(&format!("\n  {}. {s}", i + 1));
        }
        for m in &self.begin.volumes {
            human.push_str(&format!("\n  the candidate mounts {}", spec::describe_mount(m)));
        }
        report.emit(
            Progress::Plan {
                app: self.begin.app.clone(),
                deploy: self.deploy.clone(),
                old: self.old.as_ref().map(|o| o.id.clone()),
                image: self.begin.image.clone(),
                networks: self.begin.networks.clone(),
                ports: self.begin.ports.clone(),
                strategy: self.begin.strategy,
                volumes: self.begin.volumes.clone(),
                steps: self.steps.clone(),
            },
            human,
        );
        report.detail(format!(
            "  candidate: image {}, networks {:?}, ports {:?}, environment names {:?}",
            self.definition.image(),
            self.begin.networks,
            self.begin.ports,
            self.begin.env_keys
        ));
    }
}

/// Observes Docker and decides the plan. Refuses (exit 2) what cannot work:
/// a missing image or network, a build context without a Dockerfile.
pub async fn plan<E: Engine>(engine: &E, req: &Request, deploy: &str, run: RunInfo) -> Result<Plan, Failure> {
    engine.ping().await.map_err(|e| Failure::Incomplete(format!("{e}; nothing changed")))?;
    let app = &req.app;
    let names = engine.container_names().await.map_err(incomplete)?;
    let prefix = staged_name(app, "");
    if let Some((name, id)) = names.iter().find(|(n, _)| n.starts_with(&prefix)) {
        return Err(Failure::Halted(format!(
            "container {name} ({}) exists but no unfinished deploy in the journal explains it; \
             remove or rename it by hand (see docs/operations.md), then deploy again",
            short(id)
        )));
    }
    let old = engine.container(app).await.map_err(incomplete)?;
    let (image, image_id) = match &req.source {
        Source::Image(r) => match engine.image(r).await.map_err(incomplete)? {
            Some(img) => (r.clone(), Some(img.id)),
            // A dry run does not pull; the plan says it would.
            None if req.dry_run && req.pull.policy != PullPolicy::Never && !r.starts_with("sha256:") => {
                (r.clone(), None)
            }
            None => {
                let why = if req.pull.policy == PullPolicy::Never || r.starts_with("sha256:") {
                    "--pull never; pull, build or load it first"
                } else {
                    "not even after a pull"
                };
                return Err(Failure::BadInput(format!(
                    "image {r:?} is not present on this Docker engine ({why}); nothing changed"
                )));
            }
        },
        Source::Build { tag, .. } => (tag.clone().unwrap_or_default(), None),
        Source::Rollback { .. } => {
            return Err(Failure::BadInput("a rollback's image is chosen under the lock, not planned ahead".into()))
        }
    };
    let image_for_def = image_id.clone().filter(|_| image.is_empty()).unwrap_or_else(|| image.clone());
    if let Some(o) = old.as_ref().filter(|o| !o.unclonable.is_empty()) {
        return Err(Failure::BadInput(format!(
            "the serving container {app} ({}) has settings swap cannot carry over to a new container: {}; \
             nothing changed (see docs/cloning.md)",
            short(&o.id),
            o.unclonable.join(", ")
        )));
    }
    let mut definition = match &old {
        Some(o) => {
            let old_image: Option<Image> = engine.image(&o.image_id).await.map_err(incomplete)?;
            spec::cloned(o, old_image.as_ref(), &image_for_def, app, deploy, &req.overrides)
        }
        None => spec::fresh(&image_for_def, app, deploy, &req.overrides),
    };
    let mut swarm_scoped = vec![];
    for a in &definition.networks {
        match engine.network(&a.network).await.map_err(incomplete)? {
            None => return Err(Failure::BadInput(format!("network {:?} does not exist; nothing changed", a.network))),
            Some(n) if n.driver == "overlay" => swarm_scoped.push(a.network.clone()),
            Some(_) => {}
        }
    }
    let deployed_with = old.as_ref().and_then(|o| o.labels.get(strategy::LABEL_STRATEGY));
    let strategy = req.strategy.or_else(|| deployed_with.and_then(|s| Strategy::from_label(s))).unwrap_or_default();
    if strategy == Strategy::StartFirst {
        strategy::forget_allocated_addresses(&mut definition, &swarm_scoped);
        let why = strategy::refusals(&definition);
        if !why.is_empty() {
            let given = if req.strategy.is_some() { "--strategy start-first" } else { "start-first (its label)" };
            return Err(Failure::BadInput(format!(
                "{app} cannot be deployed {given}: {}; deploy it with --strategy stop-first, or change that \
                 first; nothing changed (see docs/start-first.md)",
                why.join("; ")
            )));
        }
        strategy::alias_app(&mut definition, app);
    }
    strategy::label(&mut definition, strategy);
    let begin = Begin {
        app: app.clone(),
        run,
        old: old.as_ref().map(|o| OldContainer {
            id: o.id.clone(),
            image_id: o.image_id.clone(),
            image: o.image_ref.clone(),
            running: o.running,
            restart_policy: o.restart_policy.clone(),
            volumes: spec::journaled_mounts(&o.mounts),
        }),
        image,
        image_id,
        networks: definition.networks.iter().map(|a| a.network.clone()).collect(),
        ports: spec::ports_of(&definition),
        env_keys: spec::env_keys_of(&definition),
        volumes: spec::volumes_of(&definition),
        health_timeout_s: req.health_timeout.as_secs(),
        strategy,
        pulled: None,
    };
    let mut steps = vec![];
    let will_pull = begin.image_id.is_none() || (req.dry_run && req.pull.policy == PullPolicy::Always);
    if let (Source::Image(r), true) = (&req.source, will_pull) {
        steps.push(format!("pull {r} from {} (before the deploy begins)", crate::pull::registry_of(r)));
    }
    if let Source::Build { dir, tag, .. } = &req.source {
        steps.push(format!("build {}{}", dir.display(), tag.as_ref().map(|t| format!(" as {t}")).unwrap_or_default()));
    }
    let cand = staged_name(app, "new");
    let from = if begin.image.is_empty() { "the built image" } else { &begin.image };
    if let (Some(o), Strategy::StartFirst) = (&old, strategy) {
        steps.push(format!("create {cand} (temporary instance, alias {app}) from {from}"));
        if !o.running {
            steps.push(format!("start stopped old container {}", short(&o.id)));
        }
        steps.push(format!("start {cand}, health gate: both versions serve under {app}"));
        steps.push(format!("drain {} ms: clients find the new version", req.drain.as_millis()));
        steps.push(format!("park old {}: restart policy -> no", short(&o.id)));
        steps.push(format!("stop old {} (it leaves {app}'s DNS as it exits)", short(&o.id)));
        steps.push(format!("rename old {} to {}", short(&o.id), staged_name(app, "old")));
        steps.push(format!("create {app} (final instance) from the same definition"));
        steps.push(format!("start {app}, health gate, then commit"));
        steps.push(format!("drain {} ms, then stop and remove {cand}", req.drain.as_millis()));
        steps.push(format!("remove old {}", short(&o.id)));
        return Ok(Plan { deploy: deploy.to_string(), old, definition, begin, steps, cleanup: vec![] });
    }
    steps.push(format!("create {cand} from {from}"));

    if let Some(o) = &old {
        if !o.running {
            steps.push(format!("start stopped old container {}", short(&o.id)));
        }
        steps.push(format!("park old {}: restart policy -> no", short(&o.id)));
        steps.push(format!("stop old {}", short(&o.id)));
        steps.push(format!("rename old {} to {}", short(&o.id), staged_name(app, "old")));
    }
    steps.push(format!("rename candidate to {app}"));
    steps.push("start candidate".into());
    steps.push("health gate, then commit".into());
    if let Some(o) = &old {
        steps.push(format!("remove old {}", short(&o.id)));
    }
    Ok(Plan { deploy: deploy.to_string(), old, definition, begin, steps, cleanup: vec![] })
}

/// The serving container's id when it runs `image` (what the poll's
/// reference resolves to now), so an unattended poll changes nothing and
/// journals nothing.
async fn up_to_date<E: Engine>(engine: &E, app: &str, image: &str) -> Result<Option<String>, Failure> {
    let serving = engine.container(app).await.map_err(incomplete)?;
    Ok(serving.filter(|c| c.running && c.name == app && c.image_id == image).map(|c| c.id))
}

/// Why `--if-changed` holds back `reference`: the image it resolves to was
/// deployed before and rolled back because it failed (its health gate, or
/// Docker refused to create or start it; not a signal or a lost daemon),
/// and was not deployed successfully since.
/// Deploying it without `--if-changed` tries it again.
fn rolled_back_before(records: &[journal::Record<Event>], reference: &str, image: &str) -> Option<String> {
    let summaries = crate::history::summaries(records);
    let last = summaries.iter().rev().find(|s| s.to_image == image);
    last.filter(|s| s.outcome == crate::history::Standing::RolledBack && s.candidate_failed).map(|s| {
        format!(
            "{reference} is image {}, which deploy {} rolled back ({}); not trying it again. Push a new image, or \
             deploy this one without --if-changed to try it anyway; nothing changed",
            short(image),
            s.deploy,
            s.reason.as_deref().unwrap_or("no reason recorded")
        )
    })
}

fn incomplete(e: crate::docker::EngineError) -> Failure {
    if e.is_unreachable() {
        Failure::Incomplete(format!("{e}; nothing changed"))
    } else {
        Failure::Incomplete(format!("Docker: {e}; nothing changed"))
    }
}

/// The end of a successful deploy.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// The deploy id.
    pub deploy: String,
    /// The serving container's id.
    pub container: String,
    /// `--if-changed` found the image already serving: nothing was done and
    /// nothing journaled.
    pub up_to_date: bool,
    /// `--if-changed` found an image an earlier deploy rolled back: nothing
    /// was done and nothing journaled; why, for the user.
    pub held_back: Option<String>,
}

/// Runs `swap deploy`: lock, recover an unfinished deploy, plan, execute.
pub async fn deploy<E: Engine>(
    engine: &E,
    state: &StateDir,
    req: &Request,
    report: &Report,
    fault: Option<journal::Fault>,
) -> Result<Deployed, Failure> {
    let deploy_id = crate::record::new_deploy_id();
    let run = RunInfo::current(&req.command);
    if req.dry_run {
        let plan = plan(engine, req, &deploy_id, run).await?;
        plan.show(report);
        return Ok(Deployed { deploy: deploy_id, container: String::new(), up_to_date: false, held_back: None });
    }
    let what = format!("swap {} {}", req.command, req.app);
    let (mut journal, opened) = state.open(&req.app, req.lock_wait, &what, fault, report).await?;
    if let Some((_, copy)) = &opened.repaired {
        report.note(format!("repaired a torn journal tail (original kept at {})", copy.display()));
    }
    let mut records = opened.records.clone();
    if let Some(unfinished) = crate::history::unfinished(&opened.records) {
        report.note(format!("deploy {unfinished} was left unfinished; recovering it first"));
        recover::resume(engine, &mut journal, &opened.records, &unfinished, report).await?;
        // What the recovery wrote counts too (a deploy it rolled back).
        records = crate::history::load(state, &req.app)?;
    }
    let rollback;
    let mut pulled = None;
    let req = match &req.source {
        Source::Rollback { to } => {
            let target = crate::history::rollback_target(state, &req.app, to.as_deref())?;
            let (image, pulled_back) = rollback_image(engine, &target, req, report).await?;
            pulled = pulled_back;
            rollback = Request { source: Source::Image(image), ..req.clone() };
            &rollback
        }
        _ => req,
    };
    // Under the lock, before `begin`: a pull changes no container, so a
    // failed one leaves nothing to undo.
    if let (Source::Image(r), None) = (&req.source, &pulled) {
        pulled = crate::pull::ensure(engine, r, &req.pull, None, report).await?;
    }
    let resolved = match (req.if_changed, &req.source) {
        (true, Source::Image(r)) => engine.image(r).await.map_err(incomplete)?.map(|i| (r.clone(), i.id)),
        _ => None,
    };
    if let Some((r, image)) = &resolved {
        if let Some(serving) = up_to_date(engine, &req.app, image).await? {
            return Ok(Deployed { deploy: String::new(), container: serving, up_to_date: true, held_back: None });
        }
        // A poll must not deploy and roll back the same bad image every time.
        if let Some(why) = rolled_back_before(&records, r, image) {
            return Ok(Deployed {
                deploy: String::new(),
                container: String::new(),
                up_to_date: false,
                held_back: Some(why),
            });
        }
    }
    let mut plan = plan(engine, req, &deploy_id, run).await?;
    plan.begin.pulled = pulled;
    if let Some(keep) = req.keep_images {
        plan.cleanup = images_beyond(&records, keep, plan.begin.image_id.as_deref());
        if !plan.cleanup.is_empty() {
            plan.steps
                .push(format!("then remove {} image(s) of earlier deploys (--keep-images {keep})", plan.cleanup.len()));
        }
    }
    plan.show(report);
    crate::state::reserve_for_deploy(&mut journal)?;
    let result = execute(engine, &mut journal, req, plan, report).await;
    if journal.detached().unwrap_or(false) {
        report.note(format!(
            "warning: the journal {} was removed or replaced while this deploy ran; its records are lost and \
             the next deploy starts a new journal",
            journal.path().display()
        ));
    }
    result
}

/// The reference a rollback creates its container from: the one the old
/// version was deployed as while it still names that very image (so
/// `docker ps` shows `web:1.4`, not an id), else the image id (the tag has
/// moved since). An image removed from the engine is pulled back by the
/// digest it was pulled as; one that never came from a registry cannot be.
async fn rollback_image<E: Engine>(
    engine: &E,
    target: &crate::history::RollbackTarget,
    req: &Request,
    report: &Report,
) -> Result<(String, Option<crate::record::Pulled>), Failure> {
    let app = &req.app;
    let label = crate::history::image_label(target.reference.as_deref(), &target.image_id);
    let present = engine.image(&target.image_id).await.map_err(incomplete)?.is_some();
    if !present {
        let Some(digest) = &target.repo_digest else {
            return Err(Failure::BadInput(format!(
                "{app} would go back to image {label}, which served before deploy {}, but it is no longer on this \
                 engine{} and was never pulled from a registry (it was built or loaded here): rebuild it and deploy \
                 it with `swap deploy`; nothing changed",
                target.deploy,
                target
                    .removed_by
                    .as_ref()
                    .map(|d| format!(" (deploy {d} removed it, --keep-images)"))
                    .unwrap_or_default()
            )));
        };
        let how = match &target.removed_by {
            Some(d) => format!("deploy {d} removed it (--keep-images)"),
            None => "it was removed from the engine".to_string(),
        };
        report.note(format!("image {label}: {how}; pulling it back as {digest}"));
        let by_digest = crate::pull::Pull { policy: crate::pull::PullPolicy::Missing, ..req.pull.clone() };
        let pulled = crate::pull::ensure(engine, digest, &by_digest, None, report).await?;
        let got = engine.image(digest).await.map_err(incomplete)?.map(|i| i.id);
        if got.as_deref() != Some(target.image_id.as_str()) {
            return Err(Failure::BadInput(format!(
                "{digest} is image {}, not {label} that served before deploy {}; nothing changed",
                got.as_deref().map(short).unwrap_or("(none)"),
                target.deploy
            )));
        }
        report.note(format!("rolling {app} back to image {label}"));
        return Ok((digest.clone(), pulled));
    }
    if let Some(reference) = &target.reference {
        let now = engine.image(reference).await.map_err(incomplete)?.map(|i| i.id);
        if now.as_deref() == Some(target.image_id.as_str()) {
            report.note(format!("rolling {app} back to image {label}"));
            return Ok((reference.clone(), None));
        }
        report.note(format!(
            "rolling {app} back to image {} by id: {reference} now names another image",
            short(&target.image_id)
        ));
    } else {
        report.note(format!("rolling {app} back to image {label}"));
    }
    Ok((target.image_id.clone(), None))
}

/// Executes a plan under the journal's lock.
async fn execute<E: Engine>(
    engine: &E,
    journal: &mut journal::Journal<Event>,
    req: &Request,
    mut plan: Plan,
    report: &Report,
) -> Result<Deployed, Failure> {
    let app = req.app.clone();
    let mut run = Run::new(engine, journal, &plan.deploy, report, Phase::BeforeCommit);
    run.append(Event::Begin(plan.begin.clone()))?;
    match forward(&mut run, req, &mut plan).await {
        Ok(container) => {
            run.append(Event::End { outcome: Outcome::Deployed, reason: None })?;
            Ok(Deployed { deploy: plan.deploy, container, up_to_date: false, held_back: None })
        }
        Err(Failure::RolledBack(reason)) => {
            report.note(format!("{reason}; rolling back"));
            run.rollback(&reason, plan.begin.old.as_ref()).await?;
            Err(Failure::RolledBack(format!("deploy {} of {app} failed and was rolled back: {reason}", plan.deploy)))
        }
        // A daemon restart or a dropped socket before the commit point: the
        // failed call's effect is unknown, but every compensation observes
        // before it acts, so the rollback a later `swap recover` would do can
        // be done now, waiting a little for Docker to answer again. If it
        // does not, the run ends incomplete (exit 5) as before.
        Err(Failure::Incomplete(_)) if run.docker_lost().is_some() && run.phase() == Phase::BeforeCommit => {
            let why = run.docker_lost().unwrap_or_default().to_string();
            report.note(format!("{why}; rolling back as soon as Docker answers"));
            run.rollback(&why, plan.begin.old.as_ref()).await?;
            Err(Failure::RolledBack(format!("deploy {} of {app} failed and was rolled back: {why}", plan.deploy)))
        }
        // Past the commit point the new version serves; only the old
        // container's removal is left. Finish it once Docker answers
        // (observing first: the lost call may have removed it).
        Err(Failure::Incomplete(_)) if run.docker_lost().is_some() && run.phase() == Phase::ForwardOnly => {
            let why = run.docker_lost().unwrap_or_default().to_string();
            report.note(format!("{why}; finishing as soon as Docker answers"));
            let container = run.committed().unwrap_or_default().to_string();
            run.finish(plan.begin.old.as_ref(), req.stop_timeout.as_secs()).await?;
            run.append(Event::End { outcome: Outcome::Deployed, reason: None })?;
            Ok(Deployed { deploy: plan.deploy, container, up_to_date: false, held_back: None })
        }
        // The journal cannot be written before the commit point: put the
        // old version back unjournaled rather than leave it stopped.
        Err(Failure::Incomplete(why)) if run.phase() == Phase::BeforeCommit && run.journal.poisoned() => {
            Err(run.restore_unjournaled(&why, plan.begin.old.as_ref()).await)
        }
        Err(other) => Err(other),
    }
}

/// The forward path up to and past the commit point.
async fn forward<E: Engine>(run: &mut Run<'_, E>, req: &Request, plan: &mut Plan) -> Result<String, Failure> {
    let app = req.app.as_str();
    if let Source::Build { dir, dockerfile, tag } = &req.source {
        // An untagged build is named after the app and the deploy, so
        // `docker ps` shows what runs and the name never moves.
        let tag = tag.clone().unwrap_or_else(|| build_tag(app, &plan.deploy));
        let built = build(run, dir, dockerfile, Some(&tag)).await?;
        plan.definition.config.insert("Image".into(), json!(tag));
        // The id the build produced is the plan: a tag moved by another build
        // before the create makes the create step roll back.
        plan.begin.image_id = Some(built);
    }
    let image_id = plan.begin.image_id.clone().unwrap_or_else(|| plan.definition.image().to_string());
    let inputs = Inputs { app, definition: Some(&plan.definition) };
    let create = |name: String, instance| Step::CreateCandidate {
        name,
        image: image_id.clone(),
        deploy: plan.deploy.clone(),
        networks: plan.begin.networks.clone(),
        instance,
    };
    let start_first = plan.begin.strategy == Strategy::StartFirst && plan.old.is_some();
    let first = if start_first { Some(Instance::Temporary) } else { None };
    // The candidate (stop-first), or the temporary instance (start-first).
    let cand = run.step(create(staged_name(app, "new"), first), inputs).await?.expect("create returns the id");
    let stop_s = req.stop_timeout.as_secs();
    // The container that serves once the deploy is done.
    let mut serving = cand.clone();
    if let Some(old) = plan.old.clone() {
        let mut running = old.running;
        if !old.running {
            // The old version must be serving if this deploy rolls back.
            match run.step(Step::StartOld { id: old.id.clone() }, inputs).await {
                Ok(_) => running = true,
                Err(Failure::RolledBack(why)) => {
                    run.report.note(format!("the old container does not start ({why}); deploying anyway"))
                }
                Err(other) => return Err(other),
            }
        }
        if start_first {
            // The temporary instance answers under the app's alias beside
            // the old container before anything of the old one changes.
            run.step(Step::StartCandidate { id: cand.clone(), timeout_s: stop_s }, inputs).await?;
            gate(run, req, &cand, &plan.begin.networks).await?;
            drain(run, req, "the old version").await?;
        }
        run.step(Step::ParkOld { id: old.id.clone(), policy: old.restart_policy.clone() }, inputs).await?;
        if running {
            run.step(Step::StopOld { id: old.id.clone(), timeout_s: stop_s }, inputs).await?;
        }
        let rename = Step::RenameOld { id: old.id.clone(), from: app.to_string(), to: staged_name(app, "old") };
        run.step(rename, inputs).await?;
    }
    if start_first {
        // moby#42351: a running container on an overlay cannot be renamed,
        // and on a bridge network a running container's rename leaves its
        // old name in Docker's DNS while a swarm is active (measured, see
        // docs/start-first.md): the instance that stays is created under
        // the app's name instead, once the stopped old container gave it up.
        let created = run.step(create(app.to_string(), Some(Instance::Final)), inputs).await?;
        serving = created.expect("create returns the id");
    } else {
        let rename = Step::RenameCandidate { id: cand.clone(), from: staged_name(app, "new"), to: app.to_string() };
        run.step(rename, inputs).await?;
    }
    run.step(Step::StartCandidate { id: serving.clone(), timeout_s: stop_s }, inputs).await?;
    gate(run, req, &serving, &plan.begin.networks).await?;
    run.check_interrupt()?;
    run.commit(&serving)?;
    run.report
        .emit(Progress::Commit { container: serving.clone() }, format!("  ● committed: {app} is {}", short(&serving)));
    if start_first {
        // Best effort: the deploy has committed, a signal now only hurries it.
        let _ = drain(run, req, "the temporary instance").await;
        run.step(Step::RetireTemporary { id: cand.clone(), timeout_s: stop_s }, inputs).await?;
    }
    if let Some(old) = &plan.old {
        run.step(Step::RemoveOld { id: old.id.clone() }, inputs).await?;
    }
    // Clean-up is best effort: the deploy is done, and an image that cannot
    // go now is only disk space (the next deploy tries again).
    let kept = run.engine.container(&serving).await.ok().flatten().map(|c| c.image_id).unwrap_or_default();
    for image in plan.cleanup.clone().into_iter().filter(|i| *i != kept) {
        if let Err(f) = run.step(Step::RemoveImage { image: image.clone() }, inputs).await {
            run.report.note(format!("image {} stays: {f}", short(&image)));
        }
    }
    Ok(serving)
}

/// Start-first: both versions serve under the app's name for `--drain`, so
/// clients that resolve it periodically (a reverse proxy's dynamic
/// upstreams) have found the newer instance before the older one stops.
/// Docker takes a container out of its DNS only when it exits, so this is
/// the one pause that helps them; a signal cuts it short (and, before the
/// commit point, rolls the deploy back).
async fn drain<E: Engine>(run: &mut Run<'_, E>, req: &Request, older: &str) -> Result<(), Failure> {
    if req.drain.is_zero() {
        return Ok(());
    }
    run.report.human(format!("  … both versions serve for {} ms before {older} stops", req.drain.as_millis()));
    let deadline = tokio::time::Instant::now() + req.drain;
    while tokio::time::Instant::now() < deadline {
        run.check_interrupt()?;
        if crate::signal::interrupted() {
            return Ok(());
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(50))).await;
    }
    Ok(())
}

/// Waits for the candidate's health; on failure keeps its last log lines in
/// the journal and on screen.
async fn gate<E: Engine>(run: &mut Run<'_, E>, req: &Request, cand: &str, networks: &[String]) -> Result<(), Failure> {
    let gate = Gate { timeout: req.health_timeout, settle: req.settle, poll: Duration::from_millis(100) };
    let t = std::time::Instant::now();
    let result = gate.wait(run.engine, cand, networks, run.report).await;
    let ms = t.elapsed().as_millis() as u64;
    match result {
        Ok(outcome) => {
            run.report.emit(
                Progress::Health { passed: true, outcome: outcome.to_string(), ms, logs: None },
                format!("  ✓ health gate: {outcome} ({ms} ms)"),
            );
            run.append(Event::Health {
                container: cand.to_string(),
                outcome: outcome.into(),
                passed: true,
                logs: vec![],
                ms,
            })
        }
        Err(rejection) => {
            let logs = run.engine.logs_tail(cand, 20).await.unwrap_or_default();
            let mut human = format!("  ✗ health gate ({ms} ms): {}", rejection.reason);
            if !logs.is_empty() {
                human.push_str("\n    candidate's last log lines:");
                for l in &logs {
                    human.push_str(&format!("\n    | {l}"));
                }
            }
            run.report.emit(
                Progress::Health { passed: false, outcome: rejection.reason.clone(), ms, logs: Some(logs.clone()) },
                human,
            );
            run.append(Event::Health {
                container: cand.to_string(),
                outcome: rejection.reason.clone(),
                passed: false,
                logs,
                ms,
            })?;
            if rejection.unreachable {
                run.lose_docker(format!("health gate: {}", rejection.reason));
                Err(Failure::Incomplete(format!("{}; run `swap recover` once Docker answers", rejection.reason)))
            } else {
                Err(Failure::RolledBack(rejection.reason))
            }
        }
    }
}

/// The images `--keep-images keep` removes once this deploy (whose image is
/// `deploying`, when known) committed: every image an earlier deploy of the
/// app brought, but those of the last `keep` deploys that succeeded (this
/// one counted) and the one deploying.
fn images_beyond(records: &[journal::Record<Event>], keep: usize, deploying: Option<&str>) -> Vec<String> {
    let summaries = crate::history::summaries(records);
    let mut kept: Vec<&str> = deploying.into_iter().collect();
    for s in summaries.iter().rev().filter(|s| s.outcome == crate::history::Standing::Deployed) {
        if kept.len() >= keep.max(1) {
            break;
        }
        if !kept.contains(&s.to_image.as_str()) {
            kept.push(&s.to_image);
        }
    }
    // Only what swap deployed: an image the app ran before its first swap
    // deploy (started by hand) is not swap's to remove.
    let mut out: Vec<String> = vec![];
    for image in summaries.iter().map(|s| &s.to_image) {
        if image.starts_with("sha256:") && !kept.contains(&image.as_str()) && !out.contains(image) {
            out.push(image.clone());
        }
    }
    out
}

/// The tag of an untagged `--build`: `swap/<app>:<deploy id>` (Docker
/// wants repository names in lower case).
pub fn build_tag(app: &str, deploy: &str) -> String {
    format!("swap/{}:{deploy}", app.to_lowercase())
}

/// The build step: journaled like any other, its output streamed to stderr.
async fn build<E: Engine>(
    run: &mut Run<'_, E>,
    dir: &std::path::Path,
    dockerfile: &str,
    tag: Option<&str>,
) -> Result<String, Failure> {
    let step = Step::Build {
        context: dir.display().to_string(),
        dockerfile: dockerfile.to_string(),
        tag: tag.map(str::to_string),
    };
    let engine = run.engine;
    let report = run.report.clone();
    let work = async move {
        let tar = context::tar(dir, dockerfile)
            .map_err(|e| crate::docker::EngineError::Daemon(format!("build context {}: {e}", dir.display())))?;
        let mut progress = move |line: &str| {
            let line = line.trim_end();
            if !line.is_empty() {
                report.human(format!("    | {line}"));
            }
        };
        Ok(Some(engine.build(tar, dockerfile, tag, &mut progress).await?))
    };
    let id = run.step_with(step, work).await?;
    Ok(id.expect("a build returns the image id"))
}
