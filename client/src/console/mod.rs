//! `coffer admin console`: a web console for coffer-server's admin API, served on the
//! loopback interface by this process, which signs every call to the server itself (the
//! `kubectl proxy` pattern). The admin private key stays in this process: the browser gets
//! static pages built into the binary, answers the server gave, and the results of policy
//! checks and tests this process runs with the server's own engine (`coffer-policy`).
//!
//! Only the browser that opened the printed URL can use it: the URL carries a random token
//! that becomes an `HttpOnly`, `SameSite=Strict` cookie, and requests whose `Host` is not
//! this loopback listener (DNS rebinding) or whose `Origin` is another site are refused, so
//! other web pages cannot borrow the signing.

mod rego_errors;

use std::collections::HashMap;
use std::net::SocketAddr;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use coffer_policy::{PolicyEngine, ResourcePathDialect};
use coffer_protocol::{AuditEntry, ResourcePath};
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::admin::mint_admin_token;
use crate::policy_test::{run, NamedPolicy, Recorded};
pub use rego_errors::{locate, RegoError};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// Cookie that carries the console's session token.
const COOKIE: &str = "coffer-console";

/// Lifetime of the admin token minted for each forwarded call, seconds.
const CALL_TOKEN_TTL: i64 = 60;

/// Largest body the console forwards (a resource upload), bytes.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Failures starting the console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The listen address is not a loopback address.
    #[error("the console listens on loopback addresses only (127.0.0.1, ::1), not {0}")]
    NotLoopback(SocketAddr),
    /// The admin key does not sign tokens.
    #[error("admin key: {0}")]
    Key(#[source] crate::ClientError),
    /// The listener could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP server stopped with an error.
    #[error("console server failed: {0}")]
    Serve(std::io::Error),
}

/// Why a browser request is refused (answered 403 with this text).
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// The `Host` header is not this listener (DNS rebinding); the name to use.
    #[error("the console answers only as {0}")]
    WrongHost(String),
    /// The `Origin` is another site.
    #[error("cross-site request refused")]
    CrossSite,
    /// No session cookie, or another session's.
    #[error("open the URL `coffer admin console` printed (it carries this session's token)")]
    NoSession,
}

/// Why a call the console makes to the server on its own behalf failed.
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// No admin token could be minted.
    #[error("{0}")]
    Token(#[source] crate::ClientError),
    /// The server could not be reached.
    #[error("{url}: {source}")]
    Transport {
        /// The URL called.
        url: String,
        /// Cause.
        source: reqwest::Error,
    },
    /// The answer is not JSON.
    #[error("{url}: answer is not JSON: {source}")]
    NotJson {
        /// The URL called.
        url: String,
        /// Cause.
        source: reqwest::Error,
    },
    /// The server refused, with its problem detail.
    #[error("{status}: {detail}")]
    Refused {
        /// HTTP status.
        status: reqwest::StatusCode,
        /// The problem body's `detail`.
        detail: String,
    },
}

/// Why one recorded attestation could not be tested.
#[derive(Debug, thiserror::Error)]
enum TestError {
    /// Its audit row could not be fetched.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The server's answer is not an audit row (a server of another version).
    #[error("the answer is not an audit row: {0}")]
    Row(#[source] serde_json::Error),
    /// It could not be evaluated.
    #[error(transparent)]
    Policy(#[from] crate::policy_test::PolicyTestError),
}

/// What the console needs to sign and forward calls.
pub struct ConsoleConfig {
    /// coffer-server's base URL (may end in a path prefix such as `/api`).
    pub server: String,
    /// The admin private key (Ed25519 PKCS#8 PEM), kept in this process only.
    pub key_pem: Zeroizing<String>,
    /// `iss` of minted admin tokens.
    pub issuer: String,
    /// `aud` of minted admin tokens.
    pub audience: String,
    /// HTTP client for calls to the server (its TLS settings).
    pub http: reqwest::Client,
    /// Loopback address to listen on (port 0: any free port).
    pub listen: SocketAddr,
}

struct State {
    cfg: ConsoleConfig,
    /// The secret in the printed URL and the session cookie.
    session: String,
    /// `host:port` values the browser may use to reach this listener.
    hosts: Vec<String>,
    engine: PolicyEngine,
}

/// Paths under the server that the console forwards: the admin API, coffer's extras and
/// the probes. Guest endpoints are not needed by the console and are not forwarded.
fn forwardable(tail: &str) -> bool {
    let guest = ["kbs/v0/auth", "kbs/v0/attest"];
    (tail.starts_with("kbs/v0/") && !guest.contains(&tail))
        || tail.starts_with("coffer/v1/")
        || ["healthz", "readyz", "metrics"].contains(&tail)
}

fn problem(status: u16, detail: impl Into<String>) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::FORBIDDEN),
    )
    .json(json!({"type": "about:blank", "detail": detail.into()}))
}

/// Constant-time comparison of the session token (it guards the signing key's use).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl State {
    /// Refuses requests for another host name (DNS rebinding) and cross-site requests.
    fn same_site(&self, req: &HttpRequest) -> Result<(), Refusal> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !self.hosts.iter().any(|h| h == host) {
            let shown = self.hosts.first().cloned().unwrap_or_default();
            return Err(Refusal::WrongHost(shown));
        }
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let ok = origin
                .to_str()
                .ok()
                .and_then(|o| o.strip_prefix("http://"))
                .is_some_and(|o| self.hosts.iter().any(|h| h == o));
            if !ok {
                return Err(Refusal::CrossSite);
            }
        }
        Ok(())
    }

    /// Also requires the session cookie.
    fn authorised(&self, req: &HttpRequest) -> Result<(), Refusal> {
        self.same_site(req)?;
        match req.cookie(COOKIE) {
            Some(c) if same(c.value(), &self.session) => Ok(()),
            _ => Err(Refusal::NoSession),
        }
    }

    fn token(&self) -> Result<String, crate::ClientError> {
        mint_admin_token(
            &self.cfg.key_pem,
            &self.cfg.issuer,
            &self.cfg.audience,
            CALL_TOKEN_TTL,
        )
    }

    /// A signed GET to the server, as JSON.
    async fn get_json(&self, path: &str) -> Result<Value, CallError> {
        let token = self.token().map_err(CallError::Token)?;
        let url = format!("{}{path}", self.cfg.server);
        let resp = match self.cfg.http.get(&url).bearer_auth(token).send().await {
            Ok(r) => r,
            Err(source) => return Err(CallError::Transport { url, source }),
        };
        let status = resp.status();
        let body: Value = match resp.json().await {
            Ok(b) => b,
            Err(source) => return Err(CallError::NotJson { url, source }),
        };
        if !status.is_success() {
            let detail = body.get("detail").and_then(Value::as_str).unwrap_or("");
            return Err(CallError::Refused {
                status,
                detail: detail.to_string(),
            });
        }
        Ok(body)
    }
}

fn with_security_headers(mut b: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    b.insert_header((
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
    ))
    .insert_header((header::X_FRAME_OPTIONS, "DENY"))
    .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
    .insert_header((header::REFERRER_POLICY, "no-referrer"))
    .insert_header((header::CACHE_CONTROL, "no-store"));
    b
}

#[derive(Deserialize)]
struct TokenQuery {
    t: Option<String>,
}

async fn index(req: HttpRequest, st: web::Data<State>) -> HttpResponse {
    if let Err(r) = st.same_site(&req) {
        return problem(403, r.to_string());
    }
    let q = web::Query::<TokenQuery>::from_query(req.query_string())
        .map(|q| q.into_inner().t)
        .unwrap_or(None);
    if let Some(t) = q {
        if !same(&t, &st.session) {
            return problem(403, "wrong console token");
        }
        // Trade the URL's token for a cookie, and drop it from the address bar.
        let cookie = actix_web::cookie::Cookie::build(COOKIE, st.session.clone())
            .path("/")
            .http_only(true)
            .same_site(actix_web::cookie::SameSite::Strict)
            .finish();
        return HttpResponse::SeeOther()
            .cookie(cookie)
            .insert_header((header::LOCATION, "/"))
            .finish();
    }
    if let Err(r) = st.authorised(&req) {
        return problem(403, r.to_string());
    }
    with_security_headers(HttpResponse::Ok())
        .content_type("text/html; charset=utf-8")
        .body(INDEX_HTML)
}

async fn asset(req: HttpRequest, st: web::Data<State>) -> HttpResponse {
    if let Err(r) = st.same_site(&req) {
        return problem(403, r.to_string());
    }
    let (body, kind) = match req.path() {
        "/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        _ => (APP_CSS, "text/css; charset=utf-8"),
    };
    with_security_headers(HttpResponse::Ok())
        .content_type(kind)
        .body(body)
}

/// `/api/<path>`: forwards to `<server>/<path>` with a freshly minted admin token.
async fn forward(req: HttpRequest, body: web::Bytes, st: web::Data<State>) -> HttpResponse {
    if let Err(r) = st.authorised(&req) {
        return problem(403, r.to_string());
    }
    // The raw path keeps the browser's percent-encoding of each segment.
    let tail = req.uri().path().trim_start_matches("/api/");
    if !forwardable(tail) {
        return problem(404, format!("the console does not forward /{tail}"));
    }
    let token = match st.token() {
        Ok(t) => t,
        Err(e) => return problem(500, e.to_string()),
    };
    let url = match req.uri().query() {
        Some(q) => format!("{}/{tail}?{q}", st.cfg.server),
        None => format!("{}/{tail}", st.cfg.server),
    };
    let Ok(method) = reqwest::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return problem(405, "method not supported");
    };
    let mut rb = st
        .cfg
        .http
        .request(method, &url)
        .bearer_auth(token)
        .body(body.to_vec());
    if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
        rb = rb.header(reqwest::header::CONTENT_TYPE, ct.as_bytes());
    }
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => return problem(502, format!("coffer-server at {}: {e}", st.cfg.server)),
    };
    let status = actix_web::http::StatusCode::from_u16(resp.status().as_u16())
        .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    match resp.bytes().await {
        Ok(b) => with_security_headers(HttpResponse::build(status))
            .content_type(ct)
            .body(b),
        Err(e) => problem(502, format!("coffer-server answer cut off: {e}")),
    }
}

#[derive(Deserialize)]
struct CheckBody {
    text: String,
}

/// `POST /console/check`: compiles a draft with the server's engine; errors with line and
/// column.
async fn check(req: HttpRequest, st: web::Data<State>, body: web::Json<CheckBody>) -> HttpResponse {
    if let Err(r) = st.authorised(&req) {
        return problem(403, r.to_string());
    }
    match st.engine.check(&body.text) {
        Ok(()) => HttpResponse::Ok().json(json!({"ok": true, "errors": []})),
        Err(e) => HttpResponse::Ok().json(json!({"ok": false, "errors": [locate(&e.to_string())]})),
    }
}

#[derive(Deserialize)]
struct TestBody {
    /// `attestation` or `resource`.
    kind: String,
    text: String,
    seqs: Vec<i64>,
    resource: Option<String>,
}

/// Most recorded attestations one test evaluates.
const MAX_TEST_ROWS: usize = 100;

/// `POST /console/test`: evaluates a draft on recorded attestations (fetched from the
/// server's audit log), nothing uploaded: an attestation policy gives each one's status and
/// trust vector (with the server's reference values), a resource policy its `allow`.
async fn test(req: HttpRequest, st: web::Data<State>, body: web::Json<TestBody>) -> HttpResponse {
    if let Err(r) = st.authorised(&req) {
        return problem(403, r.to_string());
    }
    if body.seqs.len() > MAX_TEST_ROWS {
        return problem(
            400,
            format!("at most {MAX_TEST_ROWS} attestations per test"),
        );
    }
    let resource = body.kind == "resource";
    let path: Option<ResourcePath> = match (&body.resource, resource) {
        (Some(p), true) => match p.parse() {
            Ok(p) => Some(p),
            Err(e) => return problem(400, format!("resource path {p:?}: {e}")),
        },
        (None, true) => return problem(400, "a resource policy test needs a resource path"),
        _ => None,
    };
    let rvs: HashMap<String, Value> = if resource {
        HashMap::new()
    } else {
        match st.get_json("/kbs/v0/rvps/query").await {
            Ok(Value::Object(m)) => m.into_iter().collect(),
            Ok(_) => HashMap::new(),
            Err(e) => return problem(502, format!("reference values: {e}")),
        }
    };
    let mut results = Vec::new();
    for seq in &body.seqs {
        let outcome = async {
            let row = st.get_json(&format!("/coffer/v1/audit/{seq}")).await?;
            let row: AuditEntry = serde_json::from_value(row).map_err(TestError::Row)?;
            let recorded = Recorded::from_audit_row(&row)?;
            let draft = NamedPolicy {
                name: "draft",
                text: &body.text,
            };
            let report = match &path {
                Some(p) => run(
                    &recorded,
                    None,
                    None,
                    HashMap::new(),
                    Some((draft, p, serde_json::Map::new())),
                    ResourcePathDialect::default(),
                ),
                None => run(
                    &recorded,
                    Some(draft),
                    None,
                    rvs.clone(),
                    None,
                    ResourcePathDialect::default(),
                ),
            }?;
            Ok::<Value, TestError>(match (report.appraisal, report.resource) {
                (_, Some((_, v))) => json!({"seq": seq, "allow": v.allow}),
                (Some(a), None) => {
                    json!({"seq": seq, "status": a.status, "trust_vector": a.trust_vector})
                }
                (None, None) => json!({"seq": seq, "error": "nothing evaluated"}),
            })
        }
        .await;
        results.push(outcome.unwrap_or_else(|e| json!({"seq": seq, "error": e.to_string()})));
    }
    HttpResponse::Ok().json(json!({"results": results}))
}

async fn info(req: HttpRequest, st: web::Data<State>) -> HttpResponse {
    if let Err(r) = st.authorised(&req) {
        return problem(403, r.to_string());
    }
    HttpResponse::Ok().json(json!({"server": st.cfg.server}))
}

fn random_token() -> String {
    let mut b = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    hex::encode(b)
}

/// Serves the console until the process ends. `ready` is called once with the URL to open
/// (it carries the session token). Runs its own single-threaded HTTP runtime: call it from
/// a plain thread, not from inside an async runtime.
pub fn serve(cfg: ConsoleConfig, ready: impl FnOnce(&str)) -> Result<(), ConsoleError> {
    if !cfg.listen.ip().is_loopback() {
        return Err(ConsoleError::NotLoopback(cfg.listen));
    }
    mint_admin_token(&cfg.key_pem, &cfg.issuer, &cfg.audience, 1).map_err(ConsoleError::Key)?;
    let listener =
        std::net::TcpListener::bind(cfg.listen).map_err(|source| ConsoleError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ConsoleError::Listen {
            addr: cfg.listen,
            source,
        })?;
    let port = addr.port();
    let mut hosts = vec![format!("{}", addr)];
    hosts.push(format!("localhost:{port}"));
    let session = random_token();
    let url = format!("http://{}/?t={session}", hosts[0]);
    let state = web::Data::new(State {
        cfg,
        session,
        hosts,
        engine: PolicyEngine::default(),
    });
    actix_web::rt::System::new().block_on(async move {
        let st = state.clone();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new()
                .app_data(web::Data::clone(&st))
                .app_data(web::PayloadConfig::new(MAX_BODY))
                .app_data(web::JsonConfig::default().limit(MAX_BODY))
                .route("/", web::get().to(index))
                .route("/app.js", web::get().to(asset))
                .route("/app.css", web::get().to(asset))
                .route("/console/info", web::get().to(info))
                .route("/console/check", web::post().to(check))
                .route("/console/test", web::post().to(test))
                .route("/api/{tail:.*}", web::route().to(forward))
        })
        .workers(2)
        .listen(listener)
        .map_err(ConsoleError::Serve)?
        .run();
        ready(&url);
        server.await.map_err(ConsoleError::Serve)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admin_and_probe_paths_are_forwarded() {
        for ok in [
            "kbs/v0/resource-policy",
            "kbs/v0/resource/a/b/c",
            "coffer/v1/audit",
            "healthz",
            "readyz",
        ] {
            assert!(forwardable(ok), "{ok}");
        }
        for no in ["kbs/v0/auth", "kbs/v0/attest", "", "openapi.json", "../x"] {
            assert!(!forwardable(no), "{no}");
        }
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
