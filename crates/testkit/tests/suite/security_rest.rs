//! REST under users and roles (SPEC §5): HTTP Basic, 401 without or with
//! wrong credentials, 403 without permission, the same roles as MQTT.

use std::collections::HashMap;

use mqdb_resource::auth::{Role, TableOps};
use mqdb_resource::{Roles, TableOp};
use mqdb_testkit::TestServer;

const SCHEMA: &str = "type Sensor @table @export { id: ID @primaryKey, t: Float }";

async fn server() -> TestServer {
    let ops = |ops: &[TableOp]| ops.iter().copied().collect::<TableOps>();
    let roles = Roles::new(HashMap::from([
        (
            "reader".to_owned(),
            Role {
                tables: HashMap::from([("Sensor".to_owned(), ops(&[TableOp::Read]))]),
                ..Role::default()
            },
        ),
        (
            "inserter".to_owned(),
            Role {
                tables: HashMap::from([("Sensor".to_owned(), ops(&[TableOp::Insert]))]),
                ..Role::default()
            },
        ),
    ]));
    let server = TestServer::start_secure(SCHEMA, roles).await;
    let users = server.broker.security().users();
    users
        .add("admin", b"a", vec!["superuser".into()])
        .await
        .unwrap();
    users
        .add("reader", b"r", vec!["reader".into()])
        .await
        .unwrap();
    users
        .add("inserter", b"i", vec!["inserter".into()])
        .await
        .unwrap();
    server
}

async fn call(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    who: Option<(&str, &str)>,
    body: Option<&str>,
) -> (u16, serde_json::Value, bool) {
    let mut req = reqwest::Client::new().request(method, server.url(path));
    if let Some((u, p)) = who {
        req = req.basic_auth(u, Some(p));
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let challenge = resp.headers().contains_key("www-authenticate");
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_default(),
        challenge,
    )
}

#[tokio::test]
async fn requests_without_or_with_wrong_credentials_get_401() {
    let server = server().await;
    use reqwest::Method;
    let (status, body, challenge) = call(&server, Method::GET, "/Sensor/1", None, None).await;
    assert_eq!((status, challenge), (401, true));
    assert_eq!(body["status"], 401);
    let (status, _, challenge) = call(
        &server,
        Method::GET,
        "/Sensor/1",
        Some(("reader", "bad")),
        None,
    )
    .await;
    assert_eq!((status, challenge), (401, true));
    // Unknown tables are not revealed to strangers.
    let (status, _, _) = call(&server, Method::GET, "/Nothing/1", None, None).await;
    assert_eq!(status, 401);
    let resp = reqwest::Client::new()
        .get(server.url("/Sensor/1"))
        .header("authorization", "Basic !!!")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn roles_decide_what_each_user_may_do() {
    let server = server().await;
    use reqwest::Method;
    let admin = Some(("admin", "a"));
    let reader = Some(("reader", "r"));
    let inserter = Some(("inserter", "i"));
    let body = Some(r#"{"t":1.5}"#);
    assert_eq!(
        call(&server, Method::PUT, "/Sensor/1", reader, body)
            .await
            .0,
        403
    );
    assert_eq!(
        call(&server, Method::GET, "/Sensor/1", reader, None)
            .await
            .0,
        404
    );
    // Insert, but not update: a new record yes, replacing it no.
    assert_eq!(
        call(&server, Method::PUT, "/Sensor/1", inserter, body)
            .await
            .0,
        204
    );
    let (status, err, _) = call(&server, Method::PUT, "/Sensor/1", inserter, body).await;
    assert_eq!(status, 403);
    assert!(err["error"].as_str().unwrap().contains("update"), "{err}");
    assert_eq!(
        call(&server, Method::PATCH, "/Sensor/1", inserter, body)
            .await
            .0,
        403
    );
    assert_eq!(
        call(&server, Method::POST, "/Sensor/", inserter, body)
            .await
            .0,
        201
    );
    assert_eq!(
        call(&server, Method::GET, "/Sensor/1", inserter, None)
            .await
            .0,
        403
    );
    let (status, rec, _) = call(&server, Method::GET, "/Sensor/1", reader, None).await;
    assert_eq!((status, rec["t"].as_f64()), (200, Some(1.5)));
    assert_eq!(
        call(&server, Method::GET, "/Sensor/?t=1.5", reader, None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(&server, Method::DELETE, "/Sensor/1", reader, None)
            .await
            .0,
        403
    );
    assert_eq!(
        call(&server, Method::DELETE, "/Sensor/1", admin, None)
            .await
            .0,
        204
    );
    // /metrics wants a valid user too.
    assert_eq!(
        call(&server, Method::GET, "/metrics", None, None).await.0,
        401
    );
}
