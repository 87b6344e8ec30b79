//! `mqdb user add|passwd|remove|list` (SPEC §5): user management on the data
//! directory of `--config FILE`, whether or not the server runs. A running
//! server is asked over its admin socket (so it sees the change at once);
//! otherwise the store is opened directly.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};

use crate::config::Config;
use crate::security::{self, UserCommand, UserReply};

/// `mqdb user ...`.
#[derive(Debug, Args)]
pub(crate) struct UserArgs {
    /// TOML configuration file (its storage.path and roles are used)
    #[arg(short, long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: UserSubcommand,
}

#[derive(Debug, Subcommand)]
enum UserSubcommand {
    /// Create a user
    Add {
        /// The user name
        name: String,
        /// Read the password from the first line of standard input
        #[arg(long, required = true)]
        password_stdin: bool,
        /// A role from the configuration (repeat for several); `superuser`
        /// always exists
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
    },
    /// Change a user's password
    Passwd {
        /// The user name
        name: String,
        /// Read the password from the first line of standard input
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Delete a user
    Remove {
        /// The user name
        name: String,
    },
    /// List users and their roles
    List,
}

fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("the password read from standard input is empty");
    }
    Ok(password)
}

/// Carries out `mqdb user ...`.
pub(crate) fn run(args: UserArgs) -> Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let command = match args.command {
        UserSubcommand::Add { name, roles, .. } => UserCommand::Add {
            name,
            password: read_password()?,
            roles,
        },
        UserSubcommand::Passwd { name, .. } => UserCommand::Passwd {
            name,
            password: read_password()?,
        },
        UserSubcommand::Remove { name } => UserCommand::Remove { name },
        UserSubcommand::List => UserCommand::List,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let listing = matches!(command, UserCommand::List);
    let reply = runtime.block_on(execute(&config, command))?;
    if let Some(error) = reply.error {
        bail!("{error}");
    }
    if listing {
        let mut out = std::io::stdout().lock();
        for (name, roles) in reply.users {
            writeln!(out, "{name}\t{}", roles.join(","))?;
        }
    }
    Ok(())
}

async fn execute(config: &Config, command: UserCommand) -> Result<UserReply> {
    let dir = &config.storage.path;
    if let Some(reply) = security::send_to_server(dir, &command).await? {
        return Ok(reply);
    }
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
    }
    let store = mqdb_storage::Store::open(mqdb_storage::StoreConfig {
        path: dir.clone(),
        sync: true,
        node: 0,
    })
    .with_context(|| {
        format!(
            "opening the store in `{}` (if a server is running there, its admin socket \
             {} did not answer)",
            dir.display(),
            dir.join(security::ADMIN_SOCKET).display()
        )
    })?;
    let users = mqdb_resource::Users::new(store);
    let reply = security::apply(&users, &security::roles(config), command).await;
    drop(users);
    Ok(reply)
}
