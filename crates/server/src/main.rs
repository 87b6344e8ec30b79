//! The `mqdb` binary: a database whose tables are MQTT topic namespaces, with
//! an MQTT broker and a REST API in one process.
//!
//! This file only wires modules together and turns errors into an exit code.
//! `cli` owns the command line, `config` the settings, `serve` the running
//! server, `bench` the load generator. `anyhow` is used in this crate only;
//! library crates use typed errors.

mod bench;
mod cli;
mod config;
mod memory;
mod security;
mod serve;
mod tls;
mod user_cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line.
            eprintln!("mqdb: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
