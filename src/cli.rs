//! The command line as typed: clap's raw flags. Nothing here acts; the
//! `app` module validates these into requests before any side effect.
//! Names, flags and exit codes are a public contract: the README's usage,
//! `docs/exit-codes.md`, `docs/json-output.md`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    /// At a terminal, unless `NO_COLOR` is set (and always with `CLICOLOR_FORCE`).
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Exit codes and examples, at the end of `swap --help`.
const AFTER_HELP: &str = "\
Exit codes:
  0  done
  1  the deploy failed and was rolled back; the previous version serves
  2  bad input; nothing changed
  3  another swap holds the app's lock (or a signal came while waiting); nothing changed
  4  halted: the journal is corrupt or Docker holds what it cannot explain; an operator is needed
  5  incomplete: Docker unreachable or the journal unwritable; run `swap recover`
  6  the image is unavailable (its registry unreachable); nothing changed, try again later

Examples:
  swap deploy web --image registry.example.com/web:1.4 --network app-net --publish 443:8443
  swap deploy web --image registry.example.com/web:1.5      # re-deploy: the definition is cloned
  swap deploy web --build ./web --tag web:1.6 --dry-run     # the plan; nothing changes
  swap deploy web --image registry.example.com/web:stable --if-changed   # from a timer
  swap status
  swap journal show web
  swap rollback web
  swap recover --all                                         # after a crash, or at boot

Docs: README.md and docs/ (recovery, operations runbook, journal format, JSON output).";

/// Deploy a new version of a single-instance container without ever losing the old one.
#[derive(Debug, Parser)]
#[command(name = "swap", version, about, long_about = None, after_long_help = AFTER_HELP)]
pub struct Cli {
    /// Where journals live [default: /var/lib/swap for root, else $XDG_STATE_HOME/swap]
    #[arg(long, global = true, env = "SWAP_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Machine output on stdout: one JSON object per line for progress, one document for queries
    #[arg(long, global = true)]
    pub json: bool,
    /// More detail on stderr: -v the candidate's definition (without values), -vv also every journal
    /// record as it becomes durable
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Colour on a terminal: auto (not with NO_COLOR; always with CLICOLOR_FORCE), always, never
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// The command
    #[command(subcommand)]
    pub command: Command,
}

/// Examples at the end of `swap deploy --help`.
const DEPLOY_HELP: &str = "\
Examples:
  # first deploy: the definition comes from flags (or --spec)
  swap deploy web --image web:1.4 --network app-net --publish 8080:80 --volume web-data:/data
  # re-deploy: env, ports, volumes, networks, restart policy… are cloned from the running container
  swap deploy web --image web:1.5
  swap deploy web --build ./web --tag web:1.6
  swap deploy web --image web:1.7 --dry-run --json
  # behind a reverse proxy on app-net: the new version answers before the old one stops
  swap deploy api --image api:2.0 --network app-net --strategy start-first

Exit codes: 0 deployed, 1 rolled back (the previous version serves), 2 bad input, 3 locked,
4 halted, 5 incomplete (run `swap recover`), 6 image unavailable.";

/// Examples at the end of `swap recover --help`.
const RECOVER_HELP: &str = "\
Examples:
  swap recover web            # finish or roll back web's unfinished deploy
  swap recover --all          # every app in the state dir (e.g. from a boot-time unit)
  swap recover web --dry-run  # the decision and its evidence; nothing changes

Running it twice changes nothing the second time. Exit codes: 0 settled, 3 locked, 4 halted
(see docs/operations.md), 5 Docker still unreachable (run it again later).";

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replace APP's container with a new version; roll back on any failure
    #[command(after_long_help = DEPLOY_HELP)]
    Deploy(DeployArgs),
    /// Finish or roll back a deploy that a crash left unfinished
    #[command(after_long_help = RECOVER_HELP)]
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
    /// Print a man page (roff): swap's, or a command's (`swap man deploy`, `swap man journal show`)
    Man(ManArgs),
}

/// `swap man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print; swap's own page when absent
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
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
    /// The health gate, stop and lock timings
    #[command(flatten)]
    pub timing: TimingArgs,
    /// Print the plan; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Pull --image from its registry first: when the engine lacks it, every time, or never
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = crate::pull::PullPolicy::Missing)]
    pub pull: crate::pull::PullPolicy,
    /// Pull --image (as --pull always, unless --pull never) and deploy only if it is not already serving
    #[arg(long)]
    pub if_changed: bool,
    /// After a successful deploy, remove the images earlier deploys of this app brought, keeping those of the
    /// last N deploys (this one included); images any container uses stay. Default: keep every image
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(usize))]
    pub keep_images: Option<usize>,
    /// How the serving container is replaced: stop it, then start the new version (stop-first), or start the
    /// new version beside it under the app's name on its networks and stop it once the new one is healthy
    /// (start-first: no published ports, user-defined networks only; docs/start-first.md). Default: what the
    /// app was deployed with last, else stop-first
    #[arg(long, value_enum, value_name = "STRATEGY")]
    pub strategy: Option<crate::strategy::Strategy>,
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
    /// The health gate, stop and lock timings
    #[command(flatten)]
    pub timing: TimingArgs,
}

/// The timings of anything that replaces the serving container: `deploy`
/// and `rollback` share them.
#[derive(Debug, Args)]
pub struct TimingArgs {
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
    /// Start-first: seconds both versions serve side by side before the older one is stopped, so clients
    /// that resolve the app's name periodically find the newer one
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub drain: f64,
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks of the definitions (conflicts and
    /// requirements naming real flags, no clashing short options…).
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
