//! The HTTP side of mqdb (SPEC §4): REST over the exported tables, and live
//! updates of a record or a collection over Server-Sent Events and plain
//! WebSocket.
//!
//! ```text
//! GET    /Table/<id>        200 record (Accept: JSON, CBOR, MessagePack, CSV) | 304 | 404 | 406
//! HEAD   /Table/<id>        the same headers, no body
//! PUT    /Table/<id>        204 replace (or create), ETag: "<version>"
//! PATCH  /Table/<id>        204 merge (null removes); 404 if there is no record
//! DELETE /Table/<id>        204; 404 if there was no record
//! POST   /Table/            201 create with a generated id, Location: /Table/<id>, body: the id
//! GET    /Table/?<query>    200 array of records (JSON, CBOR, MessagePack or CSV)
//! GET    ... Accept: text/event-stream    live updates as Server-Sent Events
//! GET    ... Upgrade: websocket           live updates over a plain WebSocket
//! ```
//!
//! Errors are JSON, `{"error": "<message>", "status": <code>}`: 400 for a
//! malformed body, a record that does not fit its table, a bad query, id or
//! path encoding; 404 for an unknown (or unexported) table or record; 405
//! (with `Allow`); 406 when no acceptable representation exists; 413 over
//! [`MAX_BODY`]; 415 for a PATCH body that is not JSON, CBOR or MessagePack;
//! 422 for a well-formed request that cannot apply (patching a binary
//! record, a binary body for a typed table); 507 while the disk is (nearly)
//! full; 503 while the store refuses writes; 500 only for failures of the
//! server itself.
//!
//! Every rule about records (primary key, validation, indexes, the change
//! feed) lives in `mqdb-resource`; this crate only maps HTTP onto it: paths
//! to tables and ids (`path`), headers to formats (`negotiate`), errors to
//! statuses (`error`), watches to event streams (`live`), and one
//! dispatcher over them all (`routes`).
//!
//! MQTT over WebSocket (SPEC §2): a WebSocket handshake on any path that
//! offers the `mqtt` subprotocol is accepted and handed, as a byte stream,
//! to [`HttpOptions::mqtt_ws`] (400 when there is none); see [`mqtt_ws`].
//! The connection's peer ([`PeerInfo`]: address, TLS, client certificate
//! user) comes from the listener given to [`serve_with`] and is available
//! to handlers as `ConnectInfo<PeerInfo>`.
//!
//! It is not: an authorisation layer (`auth` is the one place it will slot
//! in; today every request is allowed) or a TLS terminator (a TLS listener
//! is any [`axum::serve::Listener`] whose address converts into a
//! [`PeerInfo`]).
//!
//! Depends on `mqdb-resource` and `mqdb-storage` (for the store's error
//! kinds); knows nothing of MQTT packets: the MQTT-over-WebSocket handler
//! is a hook the server fills in with the broker.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::any;
use mqdb_resource::Database;
use tokio::sync::{mpsc, watch};

mod auth;
mod collection;
mod error;
mod live;
pub mod mqtt_ws;
mod negotiate;
mod path;
mod peer;
mod record;
mod routes;

pub use error::HttpError;
pub use mqtt_ws::{MqttWsConnection, MqttWsHandler, MqttWsStream};
pub use peer::PeerInfo;

/// Largest request body accepted; a larger one gets 413.
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// How long [`serve`] waits, after the listener has stopped, for WebSocket
/// sessions to close before it returns anyway.
pub(crate) const WEBSOCKET_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// What every handler shares. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) db: Database,
    /// Becomes `true` when the server shuts down: live streams end then.
    /// A closed channel (no sender) means "never".
    pub(crate) closing: watch::Receiver<bool>,
    /// Held by every live stream; [`serve`] waits until all clones are gone.
    pub(crate) live_guard: Arc<mpsc::Sender<()>>,
    /// Logins (HTTP Basic, client certificates); `None`: no user store, so
    /// everyone is anonymous with full access unless authentication is
    /// required.
    pub(crate) security: Option<mqdb_resource::Security>,
    /// `http.require_authentication`.
    pub(crate) require_authentication: bool,
}

impl AppState {
    /// Resolves when the server starts shutting down; never, if it cannot.
    pub(crate) async fn closed(mut closing: watch::Receiver<bool>) {
        if closing.wait_for(|closing| *closing).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The REST routes over `db`. Live streams opened through this router run
/// until their client goes away; use [`serve`] to also end them on shutdown.
/// A handshake offering the `mqtt` subprotocol gets 400 (there is no
/// MQTT-over-WebSocket handler here).
pub fn router(db: Database) -> Router {
    let (_never, closing) = watch::channel(false);
    let (guard, _) = mpsc::channel(1);
    let live_guard = Arc::new(guard);
    let mqtt = mqtt_ws::MqttWsService {
        handler: None,
        closing: closing.clone(),
        live_guard: live_guard.clone(),
    };
    with_mqtt_ws(
        app(AppState {
            db,
            closing,
            live_guard,
            security: None,
            require_authentication: false,
        }),
        mqtt,
    )
}

fn app(state: AppState) -> Router {
    Router::new()
        .route("/", any(routes::dispatch))
        .route("/{*path}", any(routes::dispatch))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Wraps `app` in the MQTT-over-WebSocket layer: outermost, so that the
/// handshake reaches the broker (which authenticates MQTT clients itself)
/// whatever the REST layers would say.
fn with_mqtt_ws(app: Router, service: mqtt_ws::MqttWsService) -> Router {
    app.layer(axum::middleware::from_fn_with_state(
        service,
        mqtt_ws::intercept,
    ))
}

/// `/metrics` asks for the same credentials as the tables when
/// authentication is required (any valid user may read it).
async fn authenticate_metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let (parts, body) = req.into_parts();
    if state.require_authentication {
        if let Err(e) = auth::principal(&state, &parts).await {
            return e.into_response();
        }
    }
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

/// Serves the REST routes over `db` on `listener` until `shutdown`
/// resolves, then stops accepting, ends live streams (SSE streams finish,
/// WebSocket sessions get a Close frame), waits for requests in flight and
/// returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    db: Database,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, db, HttpOptions::default(), shutdown).await
}

/// Renders the Prometheus text exposition for `/metrics`.
pub type MetricsFn = Arc<dyn Fn() -> String + Send + Sync>;

/// Settings of the REST server.
#[derive(Clone, Default)]
pub struct HttpOptions {
    /// `http.require_authentication`: requests without credentials get 401.
    pub require_authentication: bool,
    /// Users and roles (HTTP Basic, client certificates), shared with MQTT.
    pub security: Option<mqdb_resource::Security>,
    /// What `GET /metrics` serves (Prometheus text format), if anything.
    pub metrics: Option<MetricsFn>,
    /// Serves MQTT over WebSocket (handshakes offering the `mqtt`
    /// subprotocol, on any path); without it they get 400.
    pub mqtt_ws: Option<MqttWsHandler>,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("require_authentication", &self.require_authentication)
            .field("security", &self.security.is_some())
            .field("metrics", &self.metrics.is_some())
            .field("mqtt_ws", &self.mqtt_ws.is_some())
            .finish()
    }
}

/// [`serve`] with settings, on any listener whose addresses say who the
/// peer is (a `TcpListener`, a TLS listener): each request carries
/// `ConnectInfo<PeerInfo>`, and MQTT-over-WebSocket connections get it too.
/// MQTT-over-WebSocket sessions end with the server like live streams do
/// (their reads end, then the socket gets Close 1001).
pub async fn serve_with<L>(
    listener: L,
    db: Database,
    options: HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: Into<PeerInfo>,
{
    let (close, closing) = watch::channel(false);
    let (guard, mut drained) = mpsc::channel::<()>(1);
    let live_guard = Arc::new(guard);
    let mqtt = mqtt_ws::MqttWsService {
        handler: options.mqtt_ws.clone(),
        closing: closing.clone(),
        live_guard: live_guard.clone(),
    };
    let state = AppState {
        db,
        closing,
        live_guard,
        security: options.security.clone(),
        require_authentication: options.require_authentication,
    };
    let mut app = app(state.clone());
    if let Some(render) = options.metrics.clone() {
        // `/metrics` is reserved: no table can be exported under that name
        // and be reached here.
        let metrics = Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let render = render.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4",
                        )],
                        render(),
                    )
                }
            }),
        );
        let metrics = metrics.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate_metrics,
        ));
        app = metrics.merge(app);
    }
    // Only the router may hold the state (and its live guard): the drain
    // below waits until every guard is gone.
    drop(state);
    let app = with_mqtt_ws(app, mqtt);
    let service = app.into_make_service_with_connect_info::<PeerInfo>();
    axum::serve(peer::PeerListener(listener), service)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = close.send(true);
        })
        .await?;
    // The router (and its guard) is gone; upgraded WebSocket sessions are
    // not connections axum waits for, so wait for their guards here.
    let _ = tokio::time::timeout(WEBSOCKET_DRAIN, drained.recv()).await;
    Ok(())
}
