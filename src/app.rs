//! From parsed flags to a finished command: validate the flags into a
//! request (refusing bad input before anything changes), connect to Docker,
//! run, and report the ending once. `main` is a thin shell around [`run`].

use std::time::Duration;

use crate::progress::Progress;

use crate::bollard_engine::BollardEngine;
use crate::cli::{Cli, Command, DeployArgs, JournalCommand};
use crate::context;
use crate::deploy::{self, Request, Source};
use crate::docker::Engine;
use crate::error::Failure;
use crate::query;
use crate::recover::{self, Recovered};
use crate::report::Report;
use crate::spec::{self, Overrides, Publish};
use crate::state::{fault_from_env, StateDir};

/// Runs a command; returns the exit code.
pub fn run(cli: Cli) -> u8 {
    crate::render::set_colour(cli.color);
    let report = Report::new(cli.json, if cli.quiet { 0 } else { 1 + cli.verbose });
    let state = StateDir { root: cli.state_dir.clone().unwrap_or_else(StateDir::default_root) };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => return finish(&report, Err(Failure::Incomplete(format!("cannot start the runtime: {e}")))),
    };
    let result = runtime.block_on(dispatch(cli.command, &state, &report));
    finish(&report, result)
}

/// Prints the ending once, with its cause, and maps it to the exit code.
fn finish(report: &Report, result: Result<String, Failure>) -> u8 {
    match result {
        Ok(message) => {
            if !message.is_empty() {
                report.emit(
                    Progress::Result { outcome: "ok".into(), exit_code: 0, message: message.clone() },
                    format!("swap: {message}"),
                );
            }
            0
        }
        Err(f) => {
            let code = f.exit_code();
            report.json_only(Progress::Result {
                outcome: f.kind().to_string(),
                exit_code: code,
                message: f.to_string(),
            });
            crate::report::stderr_line(&format!("swap: error: {f}"));
            code
        }
    }
}

async fn dispatch(command: Command, state: &StateDir, report: &Report) -> Result<String, Failure> {
    // Only the commands that append to a journal can be crashed by it (or
    // refuse a malformed `SWAP_CRASH_AT`); they are also the ones a signal
    // must not cut short.
    let writes = matches!(
        command,
        Command::Deploy(_) | Command::Rollback(_) | Command::Recover(_) | Command::Journal(JournalCommand::Compact(_))
    );
    let fault = if writes { fault_from_env()? } else { None };
    if writes {
        crate::signal::install();
    }
    match command {
        Command::Deploy(args) => {
            let req = validate_deploy(&args)?;
            let engine = connect().await?;
            let done = deploy::deploy(&engine, state, &req, report, fault).await?;
            Ok(if req.dry_run {
                "dry run: nothing changed".into()
            } else if let Some(why) = done.held_back {
                why
            } else if done.up_to_date {
                format!(
                    "{} is up to date: it already runs {} ({}); nothing changed",
                    req.app,
                    req.source_name(),
                    crate::step::short(&done.container)
                )
            } else {
                format!("deployed {} as {} (deploy {})", req.app, crate::step::short(&done.container), done.deploy)
            })
        }
        Command::Recover(args) => {
            let apps = match &args.app {
                Some(app) => {
                    spec::validate_app(app).map_err(Failure::BadInput)?;
                    vec![app.clone()]
                }
                None => state.apps()?,
            };
            let engine = connect().await?;
            let lock_wait = args.lock_wait.map(Duration::from_secs);
            let mut worst: Option<Failure> = None;
            let mut lines = vec![];
            for app in apps {
                match recover::recover_app(&engine, state, &app, args.dry_run, lock_wait, report, fault).await {
                    Ok(r) => lines.push(match r {
                        Recovered::Clean => format!("{app}: nothing to recover"),
                        Recovered::RolledBack(d) => format!("{app}: rolled back deploy {d}"),
                        Recovered::Forward(d) => format!("{app}: finished deploy {d}"),
                        Recovered::DryRun => format!("{app}: dry run, nothing changed"),
                    }),
                    Err(f) => {
                        crate::report::stderr_line(&format!("swap: {app}: {f}"));
                        if worst.as_ref().is_none_or(|w| w.exit_code() < f.exit_code()) {
                            worst = Some(f);
                        }
                    }
                }
            }
            match worst {
                Some(f) => Err(f),
                None => Ok(lines.join("\n")),
            }
        }
        Command::Rollback(args) => {
            spec::validate_app(&args.app).map_err(Failure::BadInput)?;
            let engine = connect().await?;
            let req = Request {
                app: args.app.clone(),
                source: Source::Rollback { to: args.to.clone() },
                overrides: Overrides::default(),
                health_timeout: Duration::from_secs(args.timing.health_timeout),
                settle: settle(&args.timing)?,
                stop_timeout: Duration::from_secs(args.timing.stop_timeout),
                lock_wait: args.timing.lock_wait.map(Duration::from_secs),
                dry_run: false,
                command: "rollback".into(),
                // The target is an image by id: pulled back (by its digest)
                // only when it was removed from the engine.
                pull: crate::pull::Pull {
                    policy: crate::pull::PullPolicy::Never,
                    bounds: crate::pull::Bounds::from_env().map_err(Failure::BadInput)?,
                    docker_config: true,
                },
                if_changed: false,
                keep_images: None,
                strategy: None,
                drain: drain(&args.timing)?,
            };
            let done = deploy::deploy(&engine, state, &req, report, fault).await?;
            Ok(format!("rolled {} back (deploy {})", args.app, done.deploy))
        }
        Command::Status(args) => {
            let engine = connect().await?;
            query::status(&engine, state, args.app.as_deref(), report).await
        }
        Command::History(a) => query::history(state, &a.app, report),
        Command::Journal(JournalCommand::Show(a)) => query::show(state, &a.app, a.deploy.as_deref(), report),
        Command::Journal(JournalCommand::Verify(a)) => query::verify(state, &a.app, report),
        Command::Journal(JournalCommand::Compact(a)) => {
            spec::validate_app(&a.app).map_err(Failure::BadInput)?;
            crate::compact::compact(state, &a.app, a.keep, a.lock_wait.map(Duration::from_secs), report).await
        }
        Command::Completions(a) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into memory first: the generator panics on a failed write.
            let mut script = Vec::new();
            clap_complete::generate(a.shell, &mut cmd, "swap", &mut script);
            crate::report::stdout_bytes(&script);
            Ok(String::new())
        }
        Command::Man(args) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            cmd.build();
            let mut name = String::from("swap");
            for word in &args.command {
                let sub = cmd.find_subcommand(word).cloned().ok_or_else(|| {
                    Failure::BadInput(format!("`{name} {word}` is not a command; see `{name} --help`"))
                })?;
                name = format!("{name}-{word}");
                // clap names are `&'static str`; one page per process.
                let page_name: &'static str = Box::leak(name.clone().into_boxed_str());
                cmd = sub.name(page_name);
            }
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut page)
                .map_err(|e| Failure::Incomplete(format!("cannot render the man page: {e}")))?;
            // A closed pipe (`swap man | head`) is the reader's choice, not an error.
            crate::report::stdout_bytes(&page);
            Ok(String::new())
        }
    }
}

/// Connects to the engine the environment names, refusing (exit 2) a
/// setting swap cannot honour before anything else happens.
async fn connect() -> Result<BollardEngine, Failure> {
    let host = crate::docker_host::resolve(&|k| std::env::var_os(k)).map_err(Failure::BadInput)?;
    let engine = BollardEngine::connect_to(&host).map_err(|e| Failure::Incomplete(format!("{e}; nothing changed")))?;
    engine.ping().await.map_err(|e| Failure::Incomplete(format!("{e}; nothing changed")))?;
    Ok(engine)
}

/// `--settle` as a duration, refused unless it is a number of seconds ≥ 0.
fn settle(timing: &crate::cli::TimingArgs) -> Result<Duration, Failure> {
    if !(timing.settle.is_finite() && timing.settle >= 0.0) {
        return Err(Failure::BadInput(format!("--settle {}: expected seconds ≥ 0", timing.settle)));
    }
    Ok(Duration::from_secs_f64(timing.settle))
}

fn drain(timing: &crate::cli::TimingArgs) -> Result<Duration, Failure> {
    if !(timing.drain.is_finite() && (0.0..=3600.0).contains(&timing.drain)) {
        return Err(Failure::BadInput(format!("--drain {}: expected seconds from 0 to 3600", timing.drain)));
    }
    Ok(Duration::from_secs_f64(timing.drain))
}

/// Checks every flag of a deploy before anything is touched.
pub fn validate_deploy(args: &DeployArgs) -> Result<Request, Failure> {
    let bad = Failure::BadInput;
    spec::validate_app(&args.app).map_err(bad)?;
    let mut overrides = match &args.spec {
        Some(path) => Overrides::from_spec_file(path).map_err(bad)?,
        None => Overrides::default(),
    };
    for e in &args.env {
        let (k, v) = spec::parse_env(e).map_err(bad)?;
        overrides.env.insert(k, v);
    }
    for p in &args.publish {
        let p = Publish::parse(p).map_err(bad)?;
        overrides.publish.retain(|q| (q.container_port, &q.proto) != (p.container_port, &p.proto));
        overrides.publish.push(p);
    }
    for n in &args.networks {
        if n.is_empty() {
            return Err(bad("--network: empty network name".into()));
        }
        if !overrides.networks.iter().any(|a| &a.network == n) {
            overrides.networks.push(crate::docker::Attachment::to(n));
        }
    }
    for v in &args.volumes {
        let v = spec::VolumeArg::parse(v).map_err(bad)?;
        overrides.volumes.retain(|w| w.destination != v.destination);
        overrides.volumes.push(v);
    }
    if args.keep_images == Some(0) {
        return Err(bad("--keep-images 0 would remove the image being deployed: keep at least 1".into()));
    }
    if let Some(r) = &args.restart {
        spec::validate_restart(r).map_err(bad)?;
        overrides.restart = Some(r.clone());
    }
    let source = match (&args.image, &args.build, overrides.image.take()) {
        (Some(i), None, _) => Source::Image(i.clone()),
        (None, Some(dir), _) => {
            context::validate(dir, &args.file).map_err(|e| bad(format!("{e}; nothing changed")))?;
            Source::Build { dir: dir.clone(), dockerfile: args.file.clone(), tag: args.tag.clone() }
        }
        (None, None, Some(i)) => Source::Image(i),
        _ => return Err(bad("give exactly one of --image, --build, or an image in --spec".into())),
    };
    if args.if_changed && args.build.is_some() {
        return Err(bad("--if-changed needs --image (a reference to compare); nothing changed".into()));
    }
    if args.build.is_some() && args.pull == crate::pull::PullPolicy::Always {
        // The classic builder fetches a base image the engine lacks by
        // itself; refreshing cached base images is not offered.
        return Err(bad("--pull always applies to --image only; with --build the builder pulls a missing base \
                        image itself (refresh a cached one with `docker pull`); nothing changed"
            .into()));
    }
    let settle = settle(&args.timing)?;
    if args.timing.health_timeout == 0 {
        return Err(bad("--health-timeout must be at least 1 second".into()));
    }
    Ok(Request {
        app: args.app.clone(),
        source,
        overrides,
        health_timeout: Duration::from_secs(args.timing.health_timeout),
        settle,
        stop_timeout: Duration::from_secs(args.timing.stop_timeout),
        lock_wait: args.timing.lock_wait.map(Duration::from_secs),
        dry_run: args.dry_run,
        command: "deploy".into(),
        if_changed: args.if_changed,
        keep_images: args.keep_images,
        strategy: args.strategy,
        drain: drain(&args.timing)?,
        pull: crate::pull::Pull {
            // A poll for a new image must ask the registry.
            policy: if args.if_changed && args.pull == crate::pull::PullPolicy::Missing {
                crate::pull::PullPolicy::Always
            } else {
                args.pull
            },
            bounds: crate::pull::Bounds::from_env().map_err(bad)?,
            docker_config: true,
        },
    })
}
