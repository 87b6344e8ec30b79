//! Security wiring of the server (SPEC §5): roles from the configuration,
//! the first-start `admin` user, and the owner-only admin socket through
//! which `mqdb user ...` changes users of a running server.
//!
//! The rules (who may do what) live in `mqdb_resource::auth`; this module
//! only builds them from the configuration and moves user commands between
//! the command line and the store.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use mqdb_resource::auth::{Role, TableOps, Users};
use mqdb_resource::{Roles, TableOp};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tracing::{info, warn};

use crate::config::{Config, TablePermission};

/// File in the data directory holding a generated admin password.
pub(crate) const ADMIN_PASSWORD_FILE: &str = "admin-password";
/// The admin socket in the data directory (owner-only).
pub(crate) const ADMIN_SOCKET: &str = "mqdb.sock";
/// Name of the first-start super user.
pub(crate) const ADMIN_USER: &str = "admin";

/// The configured roles.
pub(crate) fn roles(config: &Config) -> Roles {
    let roles = config
        .roles
        .iter()
        .map(|(name, rc)| {
            let tables = rc
                .tables
                .iter()
                .map(|(table, perms)| {
                    let ops: TableOps = perms
                        .iter()
                        .map(|p| match p {
                            TablePermission::Read => TableOp::Read,
                            TablePermission::Insert => TableOp::Insert,
                            TablePermission::Update => TableOp::Update,
                            TablePermission::Delete => TableOp::Delete,
                        })
                        .collect();
                    (table.clone(), ops)
                })
                .collect();
            let role = Role {
                tables,
                publish: rc.topics.publish.clone(),
                subscribe: rc.topics.subscribe.clone(),
                super_user: rc.super_user,
            };
            (name.clone(), role)
        })
        .collect::<HashMap<_, _>>();
    Roles::new(roles)
}

/// Creates the `admin` super user when no user exists: with the password
/// in `MQDB_ADMIN_PASSWORD`, else a random one printed once and written to
/// an owner-only file in the data directory.
pub(crate) async fn bootstrap_admin(users: &Users, data_dir: &Path) -> Result<()> {
    if !users.is_empty().context("reading the users")? {
        return Ok(());
    }
    let (password, generated) = match std::env::var("MQDB_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, false),
        _ => (random_password(), true),
    };
    users
        .add(
            ADMIN_USER,
            password.as_bytes(),
            vec![Roles::SUPER_USER.to_owned()],
        )
        .await
        .context("creating the admin user")?;
    if generated {
        let path = data_dir.join(ADMIN_PASSWORD_FILE);
        write_owner_only(&path, format!("{password}\n").as_bytes())?;
        // Printed once, on stderr so it is not mixed into piped output.
        eprintln!(
            "mqdb: created user `{ADMIN_USER}` (super user) with password: {password}\n\
             mqdb: it is also in {} (readable by this user only); change it with \
             `mqdb user passwd {ADMIN_USER} --password-stdin`",
            path.display()
        );
    } else {
        info!(
            user = ADMIN_USER,
            "created the admin user from MQDB_ADMIN_PASSWORD"
        );
    }
    Ok(())
}

fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the OS random source");
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

fn write_owner_only(path: &Path, contents: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}

/// A user command, as sent over the admin socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub(crate) enum UserCommand {
    Add {
        name: String,
        password: String,
        roles: Vec<String>,
    },
    Passwd {
        name: String,
        password: String,
    },
    Remove {
        name: String,
    },
    List,
}

/// The answer to a [`UserCommand`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UserReply {
    /// Set when the command failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// `list`: (name, roles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) users: Vec<(String, Vec<String>)>,
}

/// Carries out `command` on `users`.
pub(crate) async fn apply(users: &Users, roles: &Roles, command: UserCommand) -> UserReply {
    let result: Result<Vec<(String, Vec<String>)>> = async {
        match command {
            UserCommand::Add {
                name,
                password,
                roles: granted,
            } => {
                for role in &granted {
                    if !roles.contains(role) {
                        bail!(
                            "no role `{role}` is configured (known: {})",
                            roles.names().join(", ")
                        );
                    }
                }
                users.add(&name, password.as_bytes(), granted).await?;
                Ok(Vec::new())
            }
            UserCommand::Passwd { name, password } => {
                users.set_password(&name, password.as_bytes()).await?;
                Ok(Vec::new())
            }
            UserCommand::Remove { name } => {
                if !users.remove(&name).await? {
                    bail!("no user `{name}`");
                }
                Ok(Vec::new())
            }
            UserCommand::List => Ok(users
                .list()?
                .into_iter()
                .map(|u| (u.name, u.roles))
                .collect()),
        }
    }
    .await;
    match result {
        Ok(users) => UserReply { error: None, users },
        Err(e) => UserReply {
            error: Some(format!("{e:#}")),
            users: Vec::new(),
        },
    }
}

/// Serves user commands on `<data_dir>/mqdb.sock` (mode 0600: only the
/// owner of the data directory, who could edit the store anyway, may use
/// it) until the task is dropped.
pub(crate) fn serve_admin_socket(
    data_dir: &Path,
    users: Users,
    roles: Roles,
) -> Result<tokio::task::JoinHandle<()>> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = data_dir.join(ADMIN_SOCKET);
    // A socket left by a killed server: nobody answers on it any more.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)
        .with_context(|| format!("binding the admin socket {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (users, roles) = (users.clone(), roles.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let mut reader = BufReader::new(read.take(1 << 20));
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let reply = match serde_json::from_str::<UserCommand>(&line) {
                    Ok(command) => apply(&users, &roles, command).await,
                    Err(e) => UserReply {
                        error: Some(format!("bad admin request: {e}")),
                        users: Vec::new(),
                    },
                };
                let mut out = serde_json::to_vec(&reply).unwrap_or_default();
                out.push(b'\n');
                let _ = write.write_all(&out).await;
            });
        }
    }))
}

/// Sends `command` to a running server's admin socket; `None` when no
/// server answers there.
pub(crate) async fn send_to_server(
    data_dir: &Path,
    command: &UserCommand,
) -> Result<Option<UserReply>> {
    let path: PathBuf = data_dir.join(ADMIN_SOCKET);
    let Ok(stream) = tokio::net::UnixStream::connect(&path).await else {
        return Ok(None);
    };
    let (read, mut write) = stream.into_split();
    let mut request = serde_json::to_vec(command)?;
    request.push(b'\n');
    write.write_all(&request).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    if line.is_empty() {
        warn!("the server closed the admin socket without answering");
        bail!("the running server did not answer on {}", path.display());
    }
    Ok(Some(serde_json::from_str(&line)?))
}
