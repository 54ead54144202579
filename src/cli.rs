//! The command line as typed: clap's raw flags. Nothing here acts; the
//! `app` module validates these into requests before any side effect.
//! Names, flags and exit codes are a public contract (`docs/cli.md`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Deploy a new version of a single-instance container without ever losing the old one.
#[derive(Debug, Parser)]
#[command(name = "swap", version, about, long_about = None)]
pub struct Cli {
    /// Where journals live [default: /var/lib/swap for root, else $XDG_STATE_HOME/swap]
    #[arg(long, global = true, env = "SWAP_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Machine output on stdout: one JSON object per line for progress, one document for queries
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail on stderr (the candidate's definition, without values)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// The command
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replace APP's container with a new version; roll back on any failure
    Deploy(DeployArgs),
    /// Finish or roll back a deploy that a crash left unfinished
    Recover(RecoverArgs),
    /// Deploy the image that served before the last successful deploy
    Rollback(RollbackArgs),
    /// What serves now, and whether a deploy is unfinished
    Status(StatusArgs),
    /// One line per deploy, newest first
    History(AppArg),
    /// Read, check or compact an app's journal
    #[command(subcommand)]
    Journal(JournalCommand),
    /// Print a shell completion script
    Completions(CompletionsArgs),
    /// Print the man page (roff)
    Man,
}

/// `swap completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `swap deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The app: the name of its serving container
    pub app: String,
    /// Image to deploy (pulled from its registry as --pull says)
    #[arg(long, value_name = "IMAGE", required_unless_present_any = ["build", "spec"], conflicts_with = "build")]
    pub image: Option<String>,
    /// Build the image from this context directory first
    #[arg(long, value_name = "DIR")]
    pub build: Option<PathBuf>,
    /// Tag for the built image
    #[arg(long, value_name = "IMAGE", requires = "build")]
    pub tag: Option<String>,
    /// Dockerfile within the build context
    #[arg(long, value_name = "FILE", default_value = "Dockerfile", requires = "build")]
    pub file: String,
    /// Network to join (repeatable; added to a cloned definition's networks)
    #[arg(long = "network", value_name = "NET")]
    pub networks: Vec<String>,
    /// Publish a port, [IP:]HOST:CONTAINER[/PROTO] (repeatable)
    #[arg(long, value_name = "HOST:CONTAINER")]
    pub publish: Vec<String>,
    /// Mount a volume, as `docker run -v`: /path (new anonymous volume), NAME:/path[:ro] (named volume) or
    /// /host/path:/path[:ro] (bind); replaces what a re-deploy would mount there (repeatable)
    #[arg(long = "volume", value_name = "VOLUME")]
    pub volumes: Vec<String>,
    /// Set an environment variable (repeatable; values never reach the journal)
    #[arg(long, value_name = "K=V")]
    pub env: Vec<String>,
    /// Restart policy: no, always, unless-stopped, on-failure[:N]
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// Container definition in JSON (docs/spec-file.md); flags win over it
    #[arg(long, value_name = "FILE.json")]
    pub spec: Option<PathBuf>,
    /// Seconds the candidate has to become healthy
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub health_timeout: u64,
    /// Seconds a candidate without a healthcheck must stay up
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub settle: f64,
    /// Seconds Docker waits for a container to stop before killing it
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub stop_timeout: u64,
    /// Seconds to wait for another swap on this app to finish
    #[arg(long, value_name = "SECS")]
    pub lock_wait: Option<u64>,
    /// Print the plan; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Pull --image from its registry first: when the engine lacks it, every time, or never
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = crate::pull::PullPolicy::Missing)]
    pub pull: crate::pull::PullPolicy,
    /// Pull --image (as --pull always, unless --pull never) and deploy only if it is not already serving
    #[arg(long)]
    pub if_changed: bool,
}

/// `swap recover`.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The app
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub app: Option<String>,
    /// Every app in the state dir
    #[arg(long)]
    pub all: bool,
    /// Print the decision and its evidence; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds to wait for another swap on the app to finish
    #[arg(long, value_name = "SECS")]
    pub lock_wait: Option<u64>,
}

/// `swap rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The app
    pub app: String,
    /// Go back to the image that served before this deploy
    #[arg(long, value_name = "DEPLOY_ID")]
    pub to: Option<String>,
    /// Seconds the candidate has to become healthy
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub health_timeout: u64,
    /// Seconds Docker waits for a container to stop before killing it
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub stop_timeout: u64,
    /// Seconds to wait for another swap on this app to finish
    #[arg(long, value_name = "SECS")]
    pub lock_wait: Option<u64>,
}

/// `swap status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The app; every app in the state dir when absent
    pub app: Option<String>,
}

/// A command taking just the app.
#[derive(Debug, Args)]
pub struct AppArg {
    /// The app
    pub app: String,
}

/// `swap journal …`.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// The timeline of a deploy (the last one by default)
    Show(ShowArgs),
    /// Check every checksum and the chain; change nothing
    Verify(AppArg),
    /// Drop all but the last N finished deploys from the journal
    Compact(CompactArgs),
}

/// `swap journal compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// The app
    pub app: String,
    /// How many finished deploys to keep
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub keep: usize,
    /// Seconds to wait for another swap on this app to finish
    #[arg(long, value_name = "SECS")]
    pub lock_wait: Option<u64>,
}

/// `swap journal show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The app
    pub app: String,
    /// The deploy to show
    #[arg(long, value_name = "DEPLOY_ID")]
    pub deploy: Option<String>,
}
