//! `mqdb serve`: logging set-up, the async runtime, the data directory, the
//! listeners and graceful shutdown on SIGINT/SIGTERM (SPEC §8).
//!
//! Owns process lifetime only. The broker, storage engine and REST API are
//! not built yet; [`run`] is where they will be started, each stopping when
//! the shutdown future completes. Until then this build binds nothing and
//! says so.

use std::future::Future;
use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::config::{self, Config};

/// Entry point of `mqdb serve`.
pub(crate) fn serve(config_file: Option<&Path>) -> Result<()> {
    init_tracing();
    let config = Config::load(config_file)?;
    for var in config::ignored_env_vars() {
        warn!(
            variable = %var,
            "ignoring environment variable: it names no configuration section \
             (use `__` between levels, e.g. MQDB_MQTT__PORT)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        // Handlers are installed before `run` reports readiness, so a signal
        // sent after that line is never lost to the default action.
        let shutdown = shutdown_signal()?;
        run(config, shutdown).await
    })
}

/// Runs the server until `shutdown` completes.
///
/// Later work starts the storage engine, then the MQTT and HTTP listeners
/// here, hands each a clone of a shutdown broadcast, and on shutdown stops
/// accepting, flushes, persists sessions and closes (SPEC §8).
pub(crate) async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    prepare_data_dir(&config.storage.path)?;
    log_settings(&config);
    for listener in config.listeners() {
        info!(address = %listener, "configured listener");
    }
    warn!(
        "this build has no MQTT or HTTP listener yet: it binds no port and only validates \
         the configuration and the data directory"
    );
    info!("ready; waiting for SIGINT or SIGTERM");
    shutdown.await;
    info!("stopped");
    Ok(())
}

/// Creates the data directory if missing and checks that it is writable.
fn prepare_data_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path)
        .with_context(|| format!("cannot create data directory `{}`", path.display()))?;
    if !path.is_dir() {
        bail!("data directory `{}` is not a directory", path.display());
    }
    let probe = path.join(".mqdb-write-check");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| format!("data directory `{}` is not writable", path.display()))?;
    info!(path = %path.display(), "data directory ready");
    Ok(())
}

/// One line with every effective setting that has no listener of its own.
fn log_settings(config: &Config) {
    let mqtt = &config.mqtt;
    let tls = match mqtt.tls_enabled() {
        Some(tls) => format!(
            "on (client_certs={}, username_from={})",
            tls.client_certs, tls.username_from
        ),
        None => "off".to_owned(),
    };
    let cluster = match &config.cluster {
        Some(cluster) => format!(
            "{} as node {}",
            cluster.nats_url,
            cluster.node.as_deref().unwrap_or("<derived>")
        ),
        None => "off (single node)".to_owned(),
    };
    let super_users: Vec<&String> = config
        .roles
        .iter()
        .filter(|(_, role)| role.super_user)
        .map(|(name, _)| name)
        .collect();
    info!(
        storage.path = %config.storage.path.display(),
        storage.durability = %config.storage.durability,
        schema.files = ?config.schema.files,
        mqtt.require_authentication = mqtt.require_authentication,
        mqtt.free_topics = mqtt.free_topics,
        mqtt.max_packet_size = mqtt.max_packet_size,
        mqtt.sys_interval = mqtt.sys_interval,
        mqtt.tls = %tls,
        http.require_authentication = config.http.require_authentication,
        roles = ?config.roles.keys().collect::<Vec<_>>(),
        super_user_roles = ?super_users,
        cluster = %cluster,
        "effective configuration"
    );
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`; invalid
/// directives are ignored rather than fatal). Stdout stays free for output
/// meant for the operator, such as a generated admin password.
fn init_tracing() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Installs SIGINT and SIGTERM handlers now and returns a future that
/// completes when either arrives.
#[cfg(unix)]
fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};

    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        info!(signal = name, "shutdown signal received; shutting down");
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl Future<Output = ()>> {
    Ok(async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!(%error, "cannot wait for Ctrl-C; shutting down");
            return;
        }
        info!(signal = "Ctrl-C", "shutdown signal received; shutting down");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn run_creates_nested_data_dir_and_returns_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.path = dir.path().join("a/b/data");
        run(config, std::future::ready(())).await.unwrap();
        assert!(dir.path().join("a/b/data").is_dir());
        assert!(!dir.path().join("a/b/data/.mqdb-write-check").exists());
    }

    #[tokio::test]
    async fn run_fails_naming_a_data_path_that_is_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let mut config = Config::default();
        config.storage.path = file.clone();
        let error = run(config, std::future::ready(())).await.unwrap_err();
        assert!(format!("{error:#}").contains(&file.display().to_string()));
    }
}
