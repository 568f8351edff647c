//! `hookgate`: parse the command line, start logging, run; errors print once and exit 1.

use clap::Parser;
use hookgate::cli::{self, Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _log = matches!(cli.command, Command::Serve).then(|| cli::init_logging(cli.log_format));
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
