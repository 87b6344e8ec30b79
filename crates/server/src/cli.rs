//! The command line (SPEC §8): `mqdb serve`, `mqdb config`, `mqdb bench` and
//! `mqdb user`,
//! parsed with clap, and dispatch to the code that carries each one out.
//!
//! Owns argument parsing and what each subcommand writes to stdout. It must
//! not hold server logic: `serve`, `config` and `bench` do the work.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};

use crate::bench::{self, BenchArgs};
use crate::config::{self, Config};
use crate::serve;
use crate::user_cli::{self, UserArgs};

/// mqdb: a database whose tables are MQTT topic namespaces.
#[derive(Debug, Parser)]
#[command(
    name = "mqdb",
    version,
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true,
    after_help = "Every setting may also come from an MQDB_* environment variable, \
                  `__` separating levels: MQDB_MQTT__PORT=1884 sets mqtt.port. \
                  Precedence: defaults < --config file < environment."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (MQTT broker and REST API) until SIGINT or SIGTERM
    Serve(ConfigArgs),
    /// Print the effective configuration (defaults, file, environment) as TOML
    Config(ConfigArgs),
    /// Measure any MQTT broker: fan-in, fan-out, pairs, latency, connections, retained writes and reads
    Bench(BenchArgs),
    /// Manage users: add, passwd, remove, list (server running or not)
    User(UserArgs),
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// TOML configuration file; every key is optional
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Carries out the parsed command.
pub(crate) fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(args.config.as_deref()),
        Command::Config(args) => print_config(&Config::load(args.config.as_deref())?),
        Command::Bench(args) => bench::run(args),
        Command::User(args) => user_cli::run(args),
    }
}

fn print_config(config: &Config) -> Result<()> {
    for var in config::ignored_env_vars() {
        eprintln!(
            "mqdb: warning: ignoring environment variable {var}: it names no configuration \
             section (use `__` between levels, e.g. MQDB_MQTT__PORT)"
        );
    }
    let text = toml::to_string_pretty(config).context("rendering the configuration as TOML")?;
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(
        stdout,
        "# mqdb effective configuration (defaults < file < environment)\n\n{text}"
    )
    .and_then(|()| stdout.flush());
    match written {
        // `mqdb config | head` closing the pipe early is not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}
