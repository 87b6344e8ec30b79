//! A real server for the scenario tests: a temp-dir store, a schema parsed
//! from a string, `mqdb_http::serve` on 127.0.0.1:0 in-process, and an HTTP
//! client. Each test file uses a subset of these helpers.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mqdb_resource::{Database, Format, Schema, Value};
use mqdb_storage::{Store, StoreConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) const SCHEMA: &str = r#"
type Sensor @table @export
type Device @table @export {
  id: ID @primaryKey
  name: String
  temp: Float
  room: String @indexed
}
type Hidden @table
"#;

/// Upper bound of every wait in the tests.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test if it takes longer than [`WAIT`].
pub(crate) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, future).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {WAIT:?}: {what}"),
    }
}

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) client: reqwest::Client,
    pub(crate) db: Database,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    /// A server dropped without [`Server::stop`] (a failing test) may still
    /// be closing its store: keep the directory rather than pull it away
    /// (the store's final flush would never finish on a removed directory).
    fn drop(&mut self) {
        if self.task.is_some() {
            if let Some(dir) = self.dir.take() {
                let _ = dir.keep();
            }
        }
    }
}

impl Server {
    pub(crate) async fn start() -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(StoreConfig {
            path: dir.path().join("db"),
            sync: false,
            node: 0,
        })
        .expect("store opens");
        let schema = Schema::parse(SCHEMA, Path::new("test.graphql")).expect("schema parses");
        let db = Database::new(store, schema);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(mqdb_http::serve(listener, db.clone(), async move {
            let _ = stop.await;
        }));
        Server {
            addr,
            client: reqwest::Client::new(),
            db,
            shutdown: Some(shutdown),
            task: Some(task),
            dir: Some(dir),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    pub(crate) async fn get(&self, path: &str) -> reqwest::Response {
        within("GET", self.client.get(self.url(path)).send())
            .await
            .expect("GET sent")
    }

    pub(crate) async fn get_as(&self, path: &str, accept: &str) -> reqwest::Response {
        let request = self.client.get(self.url(path)).header("accept", accept);
        within("GET", request.send()).await.expect("GET sent")
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path)).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        within("request", request.send())
            .await
            .expect("request sent")
    }

    pub(crate) async fn put_json(&self, path: &str, json: serde_json::Value) -> reqwest::Response {
        self.send(
            reqwest::Method::PUT,
            path,
            Some("application/json"),
            json.to_string(),
        )
        .await
    }

    pub(crate) async fn patch_json(
        &self,
        path: &str,
        json: serde_json::Value,
    ) -> reqwest::Response {
        self.send(
            reqwest::Method::PATCH,
            path,
            Some("application/json"),
            json.to_string(),
        )
        .await
    }

    pub(crate) async fn delete(&self, path: &str) -> reqwest::Response {
        within("DELETE", self.client.delete(self.url(path)).send())
            .await
            .expect("DELETE sent")
    }

    /// GETs `path` as JSON, expecting 200.
    pub(crate) async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        within("body", response.json()).await.expect("JSON body")
    }

    /// Stops the server and waits for `serve` to return.
    pub(crate) async fn stop(mut self) {
        let _ = self.shutdown.take().expect("running").send(());
        let task = self.task.take().expect("running");
        within("serve returns after shutdown", task)
            .await
            .expect("serve task")
            .expect("serve ok");
    }
}

/// The error body every failure carries: `{"error": "...", "status": N}`.
pub(crate) async fn error_body(response: reqwest::Response, status: u16) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: serde_json::Value = within("error body", response.json())
        .await
        .expect("JSON error");
    assert_eq!(body["status"], status, "{body}");
    body["error"].as_str().expect("error message").to_owned()
}

/// A `serde_json::Value` as a resource `Value` (via JSON).
pub(crate) fn value(json: &serde_json::Value) -> Value {
    Format::Json
        .decode(json.to_string().as_bytes())
        .expect("valid JSON")
}

/// A Server-Sent Events stream read with bounded waits.
pub(crate) struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    /// Opens `path` with `Accept: text/event-stream`.
    pub(crate) async fn open(server: &Server, path: &str) -> EventStream {
        let response = server.get_as(path, "text/event-stream").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The JSON of the next event (comments are skipped); `None` at the end of the stream.
    pub(crate) async fn next(&mut self) -> Option<serde_json::Value> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some(serde_json::from_str(&data.join("\n")).expect("event data is JSON"));
            }
            let chunk = within("next SSE chunk", self.response.chunk())
                .await
                .expect("stream readable")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8 events"));
        }
    }

    /// The next event, which must exist.
    pub(crate) async fn event(&mut self) -> serde_json::Value {
        self.next().await.expect("another event")
    }
}
