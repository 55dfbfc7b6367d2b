//! The binary's edge: parse the command line, hand over, turn errors into an
//! exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use piha::cli::{CheckArgs, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check(&args),
        Command::Run(args) => report(piha::node::run(args)),
        Command::Status(args) => report(piha::status::client::run(&args)),
        Command::PgSecret(args) => report(piha::pg_secret::run(&args)),
        Command::Switchover(args) => report(piha::pg::failover::cli::run(&args)),
        Command::DbRestore(args) => report(piha::pg::supervisor::restore::run(&args)),
        Command::Firstboot(args) => report(piha::firstboot::run(&args)),
        Command::VipGuard(args) => report(piha::vrrp::guard::run(&args)),
    }
}

/// `piha check`: exit 0 and the plan on a good file, 1 and every mistake on a bad one.
fn check(args: &CheckArgs) -> ExitCode {
    let loaded = piha::config::find_config(args.config.as_deref())
        .and_then(|path| piha::config::load(&path));
    match loaded {
        Ok(config) => {
            print!("{}", config.plan_table());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("piha: {e:#}");
            ExitCode::FAILURE
        }
    }
}
