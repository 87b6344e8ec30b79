//! `mqdb serve`: logging set-up, the async runtime, the data directory, the
//! listeners and graceful shutdown on SIGINT/SIGTERM (SPEC §8).
//!
//! Owns process lifetime: [`run`] opens the store, loads the schema, starts
//! the MQTT broker and the REST API, and stops everything when the shutdown
//! future completes (persistent sessions are stored, the store flushed).

use std::future::Future;
use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::config::{self, Config};
use crate::tls::{TlsAcceptorHandle, TlsService};

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

/// Runs the server until `shutdown` completes: opens the store and the
/// schema, serves REST on the HTTP port, and on shutdown stops accepting,
/// lets open requests finish and closes the store (flushing it).
pub(crate) async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    prepare_data_dir(&config.storage.path)?;
    log_settings(&config);
    config.check_tls_files()?;
    let schema = load_schema(&config)?;
    let store = mqdb_storage::Store::open(mqdb_storage::StoreConfig {
        path: config.storage.path.clone(),
        sync: config.storage.durability == config::Durability::Fsync,
        node: 0,
    })
    .with_context(|| format!("opening the store in `{}`", config.storage.path.display()))?;
    info!(last_change = store.last_seq(), "store open");
    let db = mqdb_resource::Database::new(store, schema);
    let roles = crate::security::roles(&config);
    let users = mqdb_resource::Users::new(db.store().clone());
    crate::security::bootstrap_admin(&users, &config.storage.path).await?;
    let security = mqdb_resource::Security::new(users.clone(), roles.clone());
    let admin_socket = crate::security::serve_admin_socket(&config.storage.path, users, roles)?;

    let broker = mqdb_broker::Broker::start(
        db.clone(),
        mqdb_broker::BrokerConfig {
            max_packet_size: config.mqtt.max_packet_size,
            free_topics: config.mqtt.free_topics,
            require_authentication: config.mqtt.require_authentication,
            sys_interval: config.mqtt.sys_interval,
            topic_alias_maximum: config.mqtt.topic_alias_max,
            max_keepalive: config.mqtt.max_keepalive,
            server_reference: config.mqtt.server_reference.clone(),
            security: Some(security.clone()),
            ..mqdb_broker::BrokerConfig::default()
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("starting the broker: {e}"))?;
    let mqtt_addr = (config.mqtt.host.as_str(), config.mqtt.port);
    let mqtt = tokio::net::TcpListener::bind(mqtt_addr)
        .await
        .with_context(|| {
            format!(
                "binding the MQTT port {}:{}",
                config.mqtt.host, config.mqtt.port
            )
        })?;
    let mqtt_local = mqtt.local_addr().context("reading the MQTT address")?;
    info!(address = %mqtt_local, "MQTT listening");

    let http_addr = (config.http.host.as_str(), config.http.port);
    let http = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| {
            format!(
                "binding the HTTP port {}:{}",
                config.http.host, config.http.port
            )
        })?;
    let http_local = http.local_addr().context("reading the HTTP address")?;
    info!(address = %http_local, "HTTP (REST) listening");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let metrics_broker = broker.clone();
    let http_options = mqdb_http::HttpOptions {
        require_authentication: config.http.require_authentication,
        metrics: Some(std::sync::Arc::new(move || prometheus(&metrics_broker))),
        security: Some(security),
        mqtt_ws: Some(mqtt_over_websocket(broker.clone())),
    };
    let mut https_task = None;
    let mut tls_tasks = Vec::new();
    if let Some(tls) = config.http.tls_enabled() {
        let handle = TlsAcceptorHandle::new(tls, TlsService::Https)?;
        let listener = tokio::net::TcpListener::bind((config.http.host.as_str(), tls.port))
            .await
            .with_context(|| format!("binding the HTTPS port {}:{}", config.http.host, tls.port))?;
        info!(address = %listener.local_addr()?, "HTTPS (REST, MQTT over WebSocket) listening");
        tls_tasks.push(
            handle
                .spawn_reloader(wait_for(stopped.clone()))
                .context("installing the SIGHUP handler")?,
        );
        let https = crate::tls::HttpsListener::new(listener, handle)?;
        https_task = Some(tokio::spawn(mqdb_http::serve_with(
            https,
            db.clone(),
            http_options.clone(),
            wait_for(stopped.clone()),
        )));
    }
    if let Some(tls) = config.mqtt.tls_enabled() {
        let handle = TlsAcceptorHandle::new(tls, TlsService::Mqtt)?;
        let listener = tokio::net::TcpListener::bind((config.mqtt.host.as_str(), tls.port))
            .await
            .with_context(|| format!("binding the MQTTS port {}:{}", config.mqtt.host, tls.port))?;
        info!(address = %listener.local_addr()?, "MQTTS listening");
        tls_tasks.push(
            handle
                .spawn_reloader(wait_for(stopped.clone()))
                .context("installing the SIGHUP handler")?,
        );
        tls_tasks.push(tokio::spawn(crate::tls::serve_mqtts(
            broker.clone(),
            listener,
            handle,
            wait_for(stopped.clone()),
        )));
    }
    // No Nagle delay: MQTT over WebSocket and live streams send small
    // frames that must leave at once (as the MQTT and TLS listeners do).
    let http = axum::serve::ListenerExt::tap_io(http, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    let http_task = tokio::spawn(mqdb_http::serve_with(
        http,
        db.clone(),
        http_options,
        wait_for(stopped.clone()),
    ));
    let mqtt_task = tokio::spawn(mqdb_broker::serve_tcp(
        broker.clone(),
        mqtt,
        wait_for(stopped),
    ));
    let trim = tokio::spawn(crate::memory::trim_periodically());
    info!("ready; waiting for SIGINT or SIGTERM");
    shutdown.await;
    trim.abort();
    let _ = stop.send(true);
    match http_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "HTTP server stopped with an error"),
        Err(e) => warn!(error = %e, "HTTP server task failed"),
    }
    if let Some(task) = https_task {
        if let Ok(Err(e)) = task.await {
            warn!(error = %e, "HTTPS server stopped with an error");
        }
    }
    for task in tls_tasks {
        let _ = task.await;
    }
    let _ = mqtt_task.await;
    admin_socket.abort();
    let _ = std::fs::remove_file(config.storage.path.join(crate::security::ADMIN_SOCKET));
    broker.shutdown(std::time::Duration::from_secs(5)).await;
    drop(broker);
    // Dropping the last handle closes the writer after its last commit and
    // flushes the engine, so the next start has nothing to replay.
    drop(db);
    info!("stopped");
    Ok(())
}

/// The broker's figures in the Prometheus text exposition format.
fn prometheus(broker: &mqdb_broker::Broker) -> String {
    let mut out = String::new();
    for (name, help, kind, value) in broker.figures() {
        let metric = format!("mqdb_{}", name.replace('/', "_"));
        out.push_str(&format!(
            "# HELP {metric} {help}\n# TYPE {metric} {kind}\n{metric} {value}\n"
        ));
    }
    out
}

/// Serves MQTT over WebSocket on the HTTP (and HTTPS) port with `broker`.
fn mqtt_over_websocket(broker: mqdb_broker::Broker) -> mqdb_http::MqttWsHandler {
    std::sync::Arc::new(move |c: mqdb_http::MqttWsConnection| {
        let info = mqdb_broker::ConnInfo {
            remote_addr: c.peer.addr,
            transport: if c.peer.secure {
                mqdb_broker::Transport::Wss
            } else {
                mqdb_broker::Transport::Ws
            },
            cert_username: c.peer.cert_username,
            basic_credentials: c.basic_credentials,
            content_format: c.content_format,
            accept_format: c.accept_format,
        };
        Box::pin(mqdb_broker::serve_connection(broker.clone(), c.io, info))
    })
}

async fn wait_for(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

/// The schema files: the configured ones must exist; the default
/// `schema.graphql` is optional (no file: no tables yet).
fn load_schema(config: &Config) -> Result<mqdb_resource::Schema> {
    let files: Vec<_> = if config.schema.files == config::SchemaConfig::default().files {
        config
            .schema
            .files
            .iter()
            .filter(|f| f.exists())
            .cloned()
            .collect()
    } else {
        config.schema.files.clone()
    };
    if files.is_empty() {
        warn!("no schema file (schema.graphql): no tables are defined");
        return Ok(mqdb_resource::Schema::empty());
    }
    let schema = mqdb_resource::Schema::load(&files).map_err(|e| anyhow::anyhow!("{e}"))?;
    let exported: Vec<_> = schema
        .tables()
        .filter_map(|t| t.export.as_deref())
        .collect();
    info!(files = ?files, tables = schema.len(), exported = ?exported, "schema loaded");
    Ok(schema)
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
        .from_env_lossy()
        // The storage engine's routine messages (flushes, compactions) are
        // noise at `info`; its warnings and errors still show.
        .add_directive("fjall=warn".parse().expect("static directive"))
        .add_directive("lsm_tree=warn".parse().expect("static directive"));
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
