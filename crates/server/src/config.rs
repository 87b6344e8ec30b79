//! Server configuration (SPEC §8): the serde model of `mqdb.toml`, loading it
//! in layers (defaults <- TOML file <- `MQDB_*` environment variables) with
//! figment, and validating the result.
//!
//! Owns only the *shape and validity* of settings. It must not depend on the
//! broker, storage or HTTP crates: those receive plain values from here.
//!
//! Every key is optional (each struct is `#[serde(default)]`) and every struct
//! is `#[serde(deny_unknown_fields)]`, so a misspelt key is an error that
//! names it instead of being silently ignored. Relative paths are relative to
//! the working directory of the process, not to the configuration file.
//!
//! [`Config::validate`] checks the settings themselves and touches no file,
//! so `mqdb config` can print a configuration meant for another machine;
//! [`Config::check_tls_files`] checks that the certificate files named exist,
//! for `mqdb serve` before it binds anything.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use figment::Figment;
use figment::providers::{Env, Format as _, Toml};
use serde::{Deserialize, Serialize};

/// Prefix of every environment variable read by mqdb.
const ENV_PREFIX: &str = "MQDB_";

/// Top-level sections that `MQDB_<SECTION>__...` environment variables may
/// set. Other `MQDB_*` variables are not configuration (see
/// [`NON_CONFIG_ENV_VARS`]) and are filtered out before deserialising, so they
/// cannot trip `deny_unknown_fields`.
const SECTIONS: [&str; 6] = ["storage", "schema", "mqtt", "http", "roles", "cluster"];

/// `MQDB_*` variables with a meaning of their own, outside the config model.
const NON_CONFIG_ENV_VARS: [&str; 1] = ["MQDB_ADMIN_PASSWORD"];

/// Largest MQTT packet: a 1-byte fixed header, a 4-byte remaining length and
/// 268,435,455 bytes of payload (MQTT 3.1.1 §2.2.3, MQTT 5.0 §1.5.5).
const MAX_PACKET_SIZE_LIMIT: u32 = 268_435_460;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    pub(crate) storage: StorageConfig,
    pub(crate) schema: SchemaConfig,
    pub(crate) mqtt: MqttConfig,
    pub(crate) http: HttpConfig,
    /// Role name -> grants. Referenced by users (`mqdb user add --role`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) roles: BTreeMap<String, RoleConfig>,
    /// Present only when the node is part of a NATS cluster (SPEC §7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cluster: Option<ClusterConfig>,
}

/// `[storage]`: where and how records are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StorageConfig {
    pub(crate) path: PathBuf,
    pub(crate) durability: Durability,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("./mqdb-data"),
            durability: Durability::Fsync,
        }
    }
}

/// When a committed write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Durability {
    /// After the commit reached the disk (fsync).
    #[default]
    Fsync,
    /// After the commit reached the OS page cache; a power loss may lose it.
    Buffered,
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Fsync => "fsync",
            Self::Buffered => "buffered",
        })
    }
}

/// `[schema]`: the GraphQL SDL files declaring tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SchemaConfig {
    pub(crate) files: Vec<PathBuf>,
}

impl Default for SchemaConfig {
    fn default() -> Self {
        Self {
            files: vec![PathBuf::from("schema.graphql")],
        }
    }
}

/// `[mqtt]`: the MQTT listener and broker behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MqttConfig {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) require_authentication: bool,
    /// Whether topics outside any table may be used as a plain broker would.
    pub(crate) free_topics: bool,
    /// Largest packet accepted (and advertised in MQTT 5 CONNACK), in bytes.
    pub(crate) max_packet_size: u32,
    /// Seconds between `$SYS/broker/...` statistics refreshes.
    pub(crate) sys_interval: u64,
    /// Topic aliases per connection, both ways (5.0): the maximum announced
    /// to clients and the most the broker assigns itself. 0: none.
    pub(crate) topic_alias_max: u16,
    /// Largest keep-alive granted in seconds (0: the client's); a longer or
    /// zero request gets this as the Server Keep Alive (5.0).
    pub(crate) max_keepalive: u16,
    /// When set, CONNECTs are refused with 0x9D Server moved and this
    /// Server Reference ("host:port"), e.g. to retire a node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) server_reference: Option<String>,
    /// MQTTS. Enabled when `cert` and `key` are set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls: Option<TlsConfig>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_owned(),
            port: 1883,
            require_authentication: true,
            free_topics: true,
            max_packet_size: 1_048_576,
            sys_interval: 10,
            topic_alias_max: 64,
            max_keepalive: 0,
            server_reference: None,
            tls: None,
        }
    }
}

impl MqttConfig {
    /// The TLS settings if MQTTS is enabled, i.e. a certificate is configured.
    pub(crate) fn tls_enabled(&self) -> Option<&TlsConfig> {
        self.tls.as_ref().filter(|tls| tls.cert.is_some())
    }
}

/// `[mqtt.tls]` and `[http.tls]`: certificate, key and client-certificate
/// policy of one TLS listener.
///
/// The two sections differ only in the default port, which the marker `P`
/// carries: `TlsConfig` (= `TlsConfig<Mqtts>`, 8883) and [`HttpsConfig`]
/// (9927). (serde cannot derive for a const generic, hence a marker type.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    default,
    deny_unknown_fields,
    bound(serialize = "", deserialize = "P: DefaultPort")
)]
pub(crate) struct TlsConfig<P = Mqtts> {
    pub(crate) port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<PathBuf>,
    /// CA bundle that client certificates must chain to (mTLS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_ca: Option<PathBuf>,
    pub(crate) client_certs: ClientCerts,
    pub(crate) username_from: UsernameFrom,
    /// Which section this is (the default port); no key.
    #[serde(skip)]
    pub(crate) section: PhantomData<P>,
}

/// `[http.tls]`: HTTPS and wss:// on their own port.
pub(crate) type HttpsConfig = TlsConfig<Https>;

/// The default port of a TLS section.
pub(crate) trait DefaultPort {
    const PORT: u16;
}

/// Marker of `[mqtt.tls]` (MQTTS, port 8883).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mqtts;

/// Marker of `[http.tls]` (HTTPS and wss://, port 9927).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Https;

impl DefaultPort for Mqtts {
    const PORT: u16 = 8883;
}

impl DefaultPort for Https {
    const PORT: u16 = 9927;
}

impl<P: DefaultPort> Default for TlsConfig<P> {
    fn default() -> Self {
        Self {
            port: P::PORT,
            cert: None,
            key: None,
            client_ca: None,
            client_certs: ClientCerts::None,
            username_from: UsernameFrom::Cn,
            section: PhantomData,
        }
    }
}

/// Whether TLS clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ClientCerts {
    /// No certificate is requested.
    #[default]
    None,
    /// A certificate is requested and verified if sent.
    Optional,
    /// A verified certificate is required to connect.
    Required,
}

/// Which part of a client certificate becomes the username.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum UsernameFrom {
    /// The subject's common name.
    #[default]
    Cn,
}

impl fmt::Display for ClientCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Optional => "optional",
            Self::Required => "required",
        })
    }
}

impl fmt::Display for UsernameFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cn => "cn",
        })
    }
}

/// `[http]`: the REST listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct HttpConfig {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) require_authentication: bool,
    /// HTTPS and wss:// on `tls.port`, next to plain HTTP on `port`.
    /// Enabled when `cert` and `key` are set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tls: Option<HttpsConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".to_owned(),
            port: 9926,
            require_authentication: true,
            tls: None,
        }
    }
}

impl HttpConfig {
    /// The TLS settings if HTTPS is enabled, i.e. a certificate is configured.
    pub(crate) fn tls_enabled(&self) -> Option<&HttpsConfig> {
        self.tls.as_ref().filter(|tls| tls.cert.is_some())
    }
}

/// `[roles.<name>]`: what users holding this role may do (SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RoleConfig {
    /// Table name (as declared in the schema) -> granted operations.
    pub(crate) tables: BTreeMap<String, Vec<TablePermission>>,
    /// Free-topic patterns (MQTT topic filters).
    pub(crate) topics: TopicPermissions,
    /// Grants everything, including `$SYS` topics.
    pub(crate) super_user: bool,
}

/// An operation on a table's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TablePermission {
    Read,
    Insert,
    Update,
    Delete,
}

/// `topics = { publish = [...], subscribe = [...] }` inside a role.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TopicPermissions {
    pub(crate) publish: Vec<String>,
    pub(crate) subscribe: Vec<String>,
}

/// `[cluster]`: replication through NATS JetStream (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ClusterConfig {
    pub(crate) nats_url: String,
    /// This node's id, the tie-breaker of last-writer-wins. When absent the
    /// cluster layer derives one. Numeric ids are accepted as text, so
    /// `MQDB_CLUSTER__NODE=1` works.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "scalar_as_string"
    )]
    pub(crate) node: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".to_owned(),
            node: None,
        }
    }
}

/// Deserialises a string, or a number or boolean as its text. Environment
/// values are parsed (`1` becomes an integer), which would otherwise make a
/// numeric node id an error.
fn scalar_as_string<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Scalar;

    impl serde::de::Visitor<'_> for Scalar {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
    }

    deserializer.deserialize_any(Scalar)
}

/// A socket the server binds, derived from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listener {
    /// `mqtt`, `mqtts`, `http` or `https`.
    pub(crate) name: &'static str,
    /// The config key that sets the port, for error messages.
    pub(crate) port_key: &'static str,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => write!(f, "{}://[{}]:{}", self.name, self.host, self.port),
            _ => write!(f, "{}://{}:{}", self.name, self.host, self.port),
        }
    }
}

impl Config {
    /// Loads defaults <- `file` (if given) <- `MQDB_*` environment, then
    /// validates. A `file` that is given but missing is an error.
    pub(crate) fn load(file: Option<&Path>) -> Result<Self> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            check_file(path)?;
            figment = figment.merge(Toml::file_exact(path));
        }
        Self::from_figment(figment.merge(env_provider()))
    }

    /// Extracts and validates a configuration from any figment.
    pub(crate) fn from_figment(figment: Figment) -> Result<Self> {
        let config: Self = figment.extract().map_err(describe_figment_error)?;
        config.validate()?;
        Ok(config)
    }

    /// The sockets this configuration asks for, in a stable order.
    pub(crate) fn listeners(&self) -> Vec<Listener> {
        let mut listeners = vec![Listener {
            name: "mqtt",
            port_key: "mqtt.port",
            host: self.mqtt.host.clone(),
            port: self.mqtt.port,
        }];
        if let Some(tls) = self.mqtt.tls_enabled() {
            listeners.push(Listener {
                name: "mqtts",
                port_key: "mqtt.tls.port",
                host: self.mqtt.host.clone(),
                port: tls.port,
            });
        }
        listeners.push(Listener {
            name: "http",
            port_key: "http.port",
            host: self.http.host.clone(),
            port: self.http.port,
        });
        if let Some(tls) = self.http.tls_enabled() {
            listeners.push(Listener {
                name: "https",
                port_key: "http.tls.port",
                host: self.http.host.clone(),
                port: tls.port,
            });
        }
        listeners
    }

    /// Checks that every file an enabled TLS listener names (certificate,
    /// key, client CA bundle) exists and is a regular file. Reports every
    /// problem, one per line, each naming its key. Not part of
    /// [`Config::validate`]: printing a configuration must not need them.
    pub(crate) fn check_tls_files(&self) -> Result<()> {
        let mut problems = Vec::new();
        if let Some(tls) = self.mqtt.tls_enabled() {
            check_tls_files("mqtt.tls", tls, &mut problems);
        }
        if let Some(tls) = self.http.tls_enabled() {
            check_tls_files("http.tls", tls, &mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(anyhow!(
                "invalid configuration:\n  {}",
                problems.join("\n  ")
            ))
        }
    }

    /// Checks what serde cannot: ranges and relations between keys. Reports
    /// every problem found, one per line.
    pub(crate) fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();

        if self.storage.path.as_os_str().is_empty() {
            problems.push("`storage.path` must not be empty".to_owned());
        }
        if self.mqtt.host.is_empty() {
            problems.push("`mqtt.host` must not be empty".to_owned());
        }
        if self.http.host.is_empty() {
            problems.push("`http.host` must not be empty".to_owned());
        }
        if !(1..=MAX_PACKET_SIZE_LIMIT).contains(&self.mqtt.max_packet_size) {
            problems.push(format!(
                "`mqtt.max_packet_size` is {}, it must be between 1 and {MAX_PACKET_SIZE_LIMIT}",
                self.mqtt.max_packet_size
            ));
        }
        if self.mqtt.sys_interval == 0 {
            problems.push("`mqtt.sys_interval` must be at least 1 (second)".to_owned());
        }
        if let Some(tls) = &self.mqtt.tls {
            validate_tls("mqtt.tls", tls, &mut problems);
        }
        if let Some(tls) = &self.http.tls {
            validate_tls("http.tls", tls, &mut problems);
        }
        validate_ports(&self.listeners(), &mut problems);
        for (name, role) in &self.roles {
            validate_role(name, role, &mut problems);
        }
        if let Some(cluster) = &self.cluster {
            if cluster.nats_url.is_empty() {
                problems.push("`cluster.nats_url` must not be empty".to_owned());
            }
            if cluster.node.as_deref().is_some_and(str::is_empty) {
                problems.push("`cluster.node` must not be empty when set".to_owned());
            }
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(anyhow!(
                "invalid configuration:\n  {}",
                problems.join("\n  ")
            ))
        }
    }
}

/// `MQDB_*` environment variables that are neither configuration nor known
/// to mqdb (a likely typo such as `MQDB_MQTT_PORT` with one underscore).
/// They are ignored; callers warn about them.
pub(crate) fn ignored_env_vars() -> Vec<String> {
    let mut ignored: Vec<String> = std::env::vars_os()
        .filter_map(|(key, _)| key.into_string().ok())
        .filter(|key| {
            key.get(..ENV_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
        })
        .filter(|key| {
            !is_config_env_key(&key[ENV_PREFIX.len()..])
                && !NON_CONFIG_ENV_VARS
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(key))
        })
        .collect();
    ignored.sort();
    ignored
}

/// `MQDB_MQTT__PORT=1884` sets `mqtt.port`. Keys are lowercased, so map keys
/// set this way (role and table names) are lowercase too.
fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX)
        .split("__")
        .filter(|key| is_config_env_key(key.as_str()))
}

/// Whether `key` (prefix stripped, `__` or `.` separated) starts with a
/// configuration section.
fn is_config_env_key(key: &str) -> bool {
    let section = key.split('.').next().unwrap_or_default();
    let section = section.split("__").next().unwrap_or_default();
    SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(section))
}

fn check_file(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(_) => bail!(
            "configuration file `{}` is not a regular file",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("configuration file `{}` does not exist", path.display())
        }
        Err(e) => {
            Err(e).with_context(|| format!("cannot read configuration file `{}`", path.display()))
        }
    }
}

/// Relations between the keys of one TLS section (`section` is `mqtt.tls`
/// or `http.tls`).
fn validate_tls<P>(section: &str, tls: &TlsConfig<P>, problems: &mut Vec<String>) {
    match (&tls.cert, &tls.key) {
        (Some(_), None) => {
            problems.push(format!(
                "`{section}.cert` is set but `{section}.key` is not"
            ));
        }
        (None, Some(_)) => {
            problems.push(format!(
                "`{section}.key` is set but `{section}.cert` is not"
            ));
        }
        (None, None) if tls.client_ca.is_some() || tls.client_certs != ClientCerts::None => {
            problems.push(format!(
                "client certificates (`{section}.client_ca`, `{section}.client_certs`) need \
                 `{section}.cert` and `{section}.key`"
            ));
        }
        _ => {}
    }
    if tls.client_certs != ClientCerts::None && tls.client_ca.is_none() {
        problems.push(format!(
            "`{section}.client_certs` is \"{}\" but `{section}.client_ca` is not set",
            tls.client_certs
        ));
    }
}

/// The files of one enabled TLS section exist (see
/// [`Config::check_tls_files`]).
fn check_tls_files<P>(section: &str, tls: &TlsConfig<P>, problems: &mut Vec<String>) {
    let files = [
        ("cert", &tls.cert),
        ("key", &tls.key),
        ("client_ca", &tls.client_ca),
    ];
    for (key, path) in files {
        let Some(path) = path else { continue };
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => problems.push(format!(
                "`{section}.{key}`: `{}` is not a regular file",
                path.display()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => problems.push(format!(
                "`{section}.{key}`: `{}` does not exist",
                path.display()
            )),
            Err(e) => problems.push(format!(
                "`{section}.{key}`: cannot read `{}`: {e}",
                path.display()
            )),
        }
    }
}

/// Two listeners clash when they share a non-zero port on the same host, or
/// when either is on a wildcard address. Port 0 asks the OS for a free port.
fn validate_ports(listeners: &[Listener], problems: &mut Vec<String>) {
    let wildcard = |host: &str| host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified());
    for (i, a) in listeners.iter().enumerate() {
        for b in &listeners[i + 1..] {
            let same_host = a.host == b.host || wildcard(&a.host) || wildcard(&b.host);
            if a.port != 0 && a.port == b.port && same_host {
                problems.push(format!(
                    "`{}` and `{}` are both {} on hosts {} and {}; each listener needs its own port",
                    a.port_key, b.port_key, a.port, a.host, b.host
                ));
            }
        }
    }
}

fn validate_role(name: &str, role: &RoleConfig, problems: &mut Vec<String>) {
    if name.is_empty() {
        problems.push("a role name must not be empty".to_owned());
    }
    if role.tables.keys().any(String::is_empty) {
        problems.push(format!("`roles.{name}.tables` has an empty table name"));
    }
    // Topic patterns are checked as MQTT topic filters where roles are
    // built (with the codec's `TopicFilter`), so the rule lives in one place.
}

/// Rewrites figment's errors so each names the offending key as a dotted
/// path (`mqtt.prot`) and where it came from (file or environment variable).
fn describe_figment_error(error: figment::Error) -> anyhow::Error {
    let lines: Vec<String> = error.into_iter().map(|e| describe_one(&e)).collect();
    match lines.as_slice() {
        [one] => anyhow!("invalid configuration: {one}"),
        _ => anyhow!("invalid configuration:\n  {}", lines.join("\n  ")),
    }
}

fn describe_one(error: &figment::Error) -> String {
    use figment::error::Kind;

    // figment's path usually ends with the unknown field already.
    let mut path = error.path.clone();
    if let Kind::UnknownField(field, _) = &error.kind {
        if path.last() != Some(field) {
            path.push(field.clone());
        }
    }
    let key = path.join(".");
    let origin = match &error.metadata {
        Some(md) => match &md.source {
            Some(figment::Source::File(file)) => format!(" in `{}`", file.display()),
            Some(other) => format!(" in {other}"),
            // The environment provider has no source, only a name.
            None if md.name.contains("environment") && !path.is_empty() => format!(
                " (environment variable {ENV_PREFIX}{})",
                path.join("__").to_ascii_uppercase()
            ),
            None => format!(" in {}", md.name),
        },
        None => String::new(),
    };
    match &error.kind {
        Kind::UnknownField(_, expected) => format!(
            "unknown key `{key}`{origin}; expected one of: {}",
            expected.join(", ")
        ),
        kind if key.is_empty() => format!("{kind}{origin}"),
        kind => format!("bad value for `{key}`{origin}: {kind}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<Config> {
        Config::from_figment(Figment::from(Toml::string(toml)))
    }

    fn error(toml: &str) -> String {
        format!("{:#}", parse(toml).expect_err("config should be rejected"))
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.storage.path, PathBuf::from("./mqdb-data"));
        assert_eq!(config.storage.durability, Durability::Fsync);
        assert_eq!(config.schema.files, vec![PathBuf::from("schema.graphql")]);
        assert_eq!(config.mqtt.port, 1883);
        assert_eq!(config.mqtt.max_packet_size, 1_048_576);
        assert_eq!(config.mqtt.sys_interval, 10);
        assert!(config.mqtt.require_authentication && config.mqtt.free_topics);
        assert_eq!(config.http.port, 9926);
        assert!(config.http.require_authentication);
        assert!(config.mqtt.tls.is_none() && config.cluster.is_none());
        assert!(config.http.tls.is_none());
    }

    #[test]
    fn tls_sections_have_their_own_default_ports() {
        let config =
            parse("[mqtt.tls]\ncert = \"c\"\nkey = \"k\"\n[http.tls]\ncert = \"c\"\nkey = \"k\"")
                .unwrap();
        assert_eq!(config.mqtt.tls.as_ref().unwrap().port, 8883);
        let https = config.http.tls.as_ref().unwrap();
        assert_eq!(https.port, 9927);
        assert_eq!(https.client_certs, ClientCerts::None);
        assert_eq!(https.username_from, UsernameFrom::Cn);
        let names: Vec<_> = config.listeners().iter().map(|l| l.name).collect();
        assert_eq!(names, ["mqtt", "mqtts", "http", "https"]);
        let https = &config.listeners()[3];
        assert_eq!(
            (https.port_key, https.port, https.to_string().as_str()),
            ("http.tls.port", 9927, "https://0.0.0.0:9927")
        );
        // Without a certificate the section binds nothing.
        let config = parse("[http.tls]\nport = 9926").unwrap();
        assert_eq!(config.listeners().len(), 2);
    }

    #[test]
    fn http_tls_is_validated_like_mqtt_tls() {
        assert!(error("[http.tls]\ncert = \"c\"").contains("`http.tls.key` is not"));
        assert!(error("[http.tls]\nkey = \"k\"").contains("`http.tls.cert` is not"));
        let msg = error("[http.tls]\ncert = \"c\"\nkey = \"k\"\nclient_certs = \"required\"");
        assert!(msg.contains("`http.tls.client_ca` is not set"), "{msg}");
        let msg = error("[http.tls]\nclient_ca = \"ca\"");
        assert!(msg.contains("need `http.tls.cert`"), "{msg}");
        let msg = error("[http.tls]\nport = 9926\ncert = \"c\"\nkey = \"k\"");
        assert!(
            msg.contains("`http.port`") && msg.contains("`http.tls.port`"),
            "{msg}"
        );
        let msg = error(
            "[mqtt.tls]\ncert = \"c\"\nkey = \"k\"\n[http.tls]\nport = 8883\ncert = \"c\"\nkey = \"k\"",
        );
        assert!(
            msg.contains("`mqtt.tls.port`") && msg.contains("`http.tls.port`"),
            "{msg}"
        );
        let msg = error("[http.tls]\nprot = 1");
        assert!(msg.contains("`http.tls.prot`"), "{msg}");
        parse("[http.tls]\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"ca\"\nclient_certs = \"required\"")
            .unwrap();
    }

    #[test]
    fn tls_files_are_checked_only_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("server.pem");
        std::fs::write(&cert, "x").unwrap();
        let toml = format!(
            "[mqtt.tls]\ncert = {cert:?}\nkey = {missing:?}\n\
             [http.tls]\ncert = {cert:?}\nkey = {cert:?}\nclient_ca = {dir:?}",
            cert = cert,
            missing = dir.path().join("missing.key"),
            dir = dir.path(),
        );
        // Validation proper does not touch files (`mqdb config` must work).
        let config = parse(&toml).unwrap();
        let msg = format!("{:#}", config.check_tls_files().unwrap_err());
        assert!(
            msg.contains("`mqtt.tls.key`") && msg.contains("missing.key` does not exist"),
            "{msg}"
        );
        assert!(
            msg.contains("`http.tls.client_ca`") && msg.contains("is not a regular file"),
            "{msg}"
        );
        assert!(!msg.contains("`mqtt.tls.cert`"), "{msg}");
        assert!(!msg.contains("`http.tls.cert`"), "{msg}");
        // Disabled sections name no files to check.
        parse("[mqtt.tls]\nport = 1")
            .unwrap()
            .check_tls_files()
            .unwrap();
        Config::default().check_tls_files().unwrap();
    }

    #[test]
    fn roles_parse_permissions_and_topics() {
        let config = parse(
            r#"
            [roles.reader]
            tables = { Sensor = ["read"], Device = ["read"] }
            [roles.writer]
            tables = { Sensor = ["insert", "update", "delete"] }
            topics = { publish = ["chat/#"], subscribe = ["chat/+/x"] }
            "#,
        )
        .unwrap();
        assert_eq!(
            config.roles["reader"].tables["Device"],
            [TablePermission::Read]
        );
        let writer = &config.roles["writer"];
        assert_eq!(writer.tables["Sensor"].len(), 3);
        assert_eq!(writer.topics.subscribe, ["chat/+/x"]);
        assert!(!writer.super_user);
    }

    /// Top-level, `[mqtt]` and `[mqtt.tls]` cases run the binary in
    /// tests/config.rs; this covers keys below a map.
    #[test]
    fn unknown_key_inside_a_role_is_named() {
        let msg = error("[roles.r]\ntopics = { publsh = [] }");
        assert!(msg.contains("`roles.r.topics.publsh`"), "{msg}");
    }

    #[test]
    fn bad_enum_value_is_named() {
        let msg = error("[storage]\ndurability = \"sometimes\"");
        assert!(msg.contains("storage.durability"), "{msg}");
        assert!(msg.contains("fsync"), "{msg}");
        let msg = error("[roles.r]\ntables = { T = [\"write\"] }");
        assert!(msg.contains("roles.r.tables.T"), "{msg}");
    }

    #[test]
    fn out_of_range_port_is_named() {
        let msg = error("[http]\nport = 70000");
        assert!(msg.contains("`http.port`"), "{msg}");
    }

    #[test]
    fn clashing_ports_are_rejected() {
        let msg = error("[http]\nport = 1883");
        assert!(
            msg.contains("`mqtt.port`") && msg.contains("`http.port`"),
            "{msg}"
        );
        // Different specific hosts may share a port.
        parse("[mqtt]\nhost = \"127.0.0.1\"\n[http]\nhost = \"127.0.0.2\"\nport = 1883").unwrap();
        // Port 0 means "any free port" and never clashes.
        parse("[mqtt]\nport = 0\n[http]\nport = 0").unwrap();
        let msg = error("[mqtt.tls]\nport = 9926\ncert = \"c\"\nkey = \"k\"");
        assert!(msg.contains("`mqtt.tls.port`"), "{msg}");
        // TLS without a certificate binds nothing, so its port cannot clash.
        parse("[mqtt.tls]\nport = 9926").unwrap();
    }

    #[test]
    fn packet_size_must_be_in_mqtt_range() {
        assert!(error("[mqtt]\nmax_packet_size = 0").contains("max_packet_size"));
        assert!(error("[mqtt]\nmax_packet_size = 268435461").contains("268435460"));
        parse("[mqtt]\nmax_packet_size = 268435460").unwrap();
        parse("[mqtt]\nmax_packet_size = 1").unwrap();
    }

    #[test]
    fn tls_needs_cert_and_key_together() {
        assert!(error("[mqtt.tls]\ncert = \"c\"").contains("`mqtt.tls.key` is not"));
        assert!(error("[mqtt.tls]\nkey = \"k\"").contains("`mqtt.tls.cert` is not"));
        let msg = error("[mqtt.tls]\ncert = \"c\"\nkey = \"k\"\nclient_certs = \"required\"");
        assert!(msg.contains("client_ca"), "{msg}");
        parse("[mqtt.tls]\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"ca\"\nclient_certs = \"optional\"")
            .unwrap();
    }

    #[test]
    fn several_problems_are_reported_together() {
        let msg = error("[mqtt]\nmax_packet_size = 0\nsys_interval = 0");
        assert!(
            msg.contains("max_packet_size") && msg.contains("sys_interval"),
            "{msg}"
        );
    }

    #[test]
    fn printed_config_parses_back_identically() {
        let mut config = parse(include_str!("../../../mqdb.example.toml")).unwrap();
        config.mqtt.port = 1;
        let printed = toml::to_string_pretty(&config).unwrap();
        assert_eq!(parse(&printed).unwrap(), config);
    }

    /// The example file documents every key: its keys are exactly the keys
    /// of the configuration it loads to, with no default left implicit.
    #[test]
    fn example_file_sets_every_key() {
        let text = include_str!("../../../mqdb.example.toml");
        let config = parse(text).unwrap();
        let mut written = Vec::new();
        flatten(
            "",
            &toml::from_str::<toml::Value>(text).unwrap(),
            &mut written,
        );
        let mut full = Vec::new();
        flatten("", &toml::Value::try_from(&config).unwrap(), &mut full);
        written.sort();
        full.sort();
        assert_eq!(written, full);
        let tls = config.mqtt.tls.as_ref().unwrap();
        assert!(tls.cert.is_some() && tls.key.is_some() && tls.client_ca.is_some());
        let tls = config.http.tls.as_ref().unwrap();
        assert!(tls.cert.is_some() && tls.key.is_some() && tls.client_ca.is_some());
        assert!(config.cluster.as_ref().unwrap().node.is_some());
        assert!(!config.roles.is_empty());
    }

    fn flatten(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    flatten(&format!("{prefix}{key}."), value, out);
                }
            }
            _ => out.push(prefix.trim_end_matches('.').to_owned()),
        }
    }

    #[test]
    fn env_keys_are_filtered_to_sections() {
        assert!(is_config_env_key("mqtt.port"));
        assert!(is_config_env_key("MQTT__PORT"));
        assert!(is_config_env_key("roles.reader.super_user"));
        assert!(!is_config_env_key("ADMIN_PASSWORD"));
        assert!(!is_config_env_key("mqtt_port"));
    }
}
