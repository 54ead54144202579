//! The `swap` binary: parse the command line, run it, exit with its code.
//! Everything else lives in the library so tests can call it too.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    ExitCode::from(swap::app::run(swap::cli::Cli::parse()))
}
