//! The HTTP edge in process: problem bodies built from the service's errors, one span per
//! request (method, route, short session id) and one log line per failure inside it.

mod common;

use std::sync::{Arc, Mutex};

use actix_web::{test, web};
use coffer_protocol::messages::{Challenge, Request, SESSION_COOKIE};
use coffer_protocol::{ErrorKind, HashAlgorithm, Problem, ProtocolVersion, Tee};
use coffer_server::http::{app, AppState};

use common::{fixture, Guest};

/// Everything logged while the test runs, as text.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

#[actix_web::test]
async fn a_refusal_is_a_problem_body_logged_once_in_the_request_span() {
    let (logs, _guard) = capture();
    let f = fixture(true).await;
    let cfg = common::config(f.dir.path());
    let state = web::Data::new(AppState::new(Arc::new(f.kbs), &cfg.server));
    let svc = test::init_service(app(state)).await;

    let req = test::TestRequest::post()
        .uri("/kbs/v0/auth")
        .set_payload("not json")
        .to_request();
    let res = test::call_service(&svc, req).await;
    assert_eq!(res.status(), 401);
    let p: Problem = test::read_body_json(res).await;
    assert_eq!(p.kind(), Some(ErrorKind::AttestationError));
    assert!(
        p.detail
            .starts_with("Attestation error: RCAR handshake Auth failed: invalid request body"),
        "{}",
        p.detail
    );
    let refused = logs.lines_with("request refused");
    assert_eq!(refused.len(), 1, "{}", logs.text());
    assert!(refused[0].contains("method=POST"), "{}", refused[0]);
    assert!(refused[0].contains("route=/kbs/v0/auth"), "{}", refused[0]);
    assert!(refused[0].contains("AttestationError"), "{}", refused[0]);

    // The session id in the span is shortened; the cookie itself is never logged.
    let cookie = "0123456789abcdef0123456789abcdef";
    let req = test::TestRequest::get()
        .uri("/kbs/v0/resource/default/key/model")
        .cookie(actix_web::cookie::Cookie::new(SESSION_COOKIE, cookie))
        .to_request();
    let res = test::call_service(&svc, req).await;
    assert_eq!(res.status(), 401);
    let p: Problem = test::read_body_json(res).await;
    assert_eq!(p.kind(), Some(ErrorKind::TokenNotFound));
    assert_eq!(p.detail, "Attestation Token not found");
    let refused = logs.lines_with("TokenNotFound");
    assert_eq!(refused.len(), 1, "{}", logs.text());
    assert!(refused[0].contains("session=01234567"), "{}", refused[0]);
    assert!(!logs.text().contains(cookie));

    // Routes nobody serves still answer with problem bodies, and are logged the same way.
    let res = test::call_service(
        &svc,
        test::TestRequest::get().uri("/kbs/v0/nope").to_request(),
    )
    .await;
    assert_eq!(res.status(), 404);
    let p: Problem = test::read_body_json(res).await;
    assert_eq!(
        (p.kind(), p.detail.as_str()),
        (Some(ErrorKind::PluginNotFound), "Plugin nope not found")
    );
    assert_eq!(
        logs.lines_with("PluginNotFound").len(),
        1,
        "{}",
        logs.text()
    );
}

/// A handshake over HTTP: the debug lines of its decisions (verifier, policy, appraisal,
/// release) are logged inside its request spans.
#[actix_web::test]
async fn decisions_are_logged_at_debug_inside_the_request_span() {
    let (logs, _guard) = capture();
    let f = fixture(true).await;
    let cfg = common::config(f.dir.path());
    let state = web::Data::new(AppState::new(Arc::new(f.kbs), &cfg.server));
    let svc = test::init_service(app(state)).await;
    let guest = Guest::new();

    let req = test::TestRequest::post()
        .uri("/kbs/v0/auth")
        .set_json(Request::for_version(ProtocolVersion::V0_4_0, Tee::Sample))
        .to_request();
    let res = test::call_service(&svc, req).await;
    assert_eq!(res.status(), 200);
    let session = res
        .response()
        .cookies()
        .find(|c| c.name() == SESSION_COOKIE)
        .unwrap()
        .value()
        .to_string();
    let challenge: Challenge = test::read_body_json(res).await;
    let body = guest.evidence(
        ProtocolVersion::V0_4_0,
        HashAlgorithm::Sha384,
        &challenge.nonce,
    );

    let cookie = || actix_web::cookie::Cookie::new(SESSION_COOKIE, session.clone());
    let req = test::TestRequest::post()
        .uri("/kbs/v0/attest")
        .cookie(cookie())
        .set_payload(body)
        .to_request();
    assert_eq!(test::call_service(&svc, req).await.status(), 200);
    let req = test::TestRequest::get()
        .uri("/kbs/v0/resource/default/key/model")
        .cookie(cookie())
        .to_request();
    assert_eq!(test::call_service(&svc, req).await.status(), 200);

    let short = &session[..8];
    for event in [
        "verifier chosen",
        "appraising with attestation policy",
        "appraisal status",
        "resource policy decided",
        "resource released",
    ] {
        let lines = logs.lines_with(event);
        assert_eq!(lines.len(), 1, "{event}:\n{}", logs.text());
        assert!(
            lines[0].contains(&format!("session={short}")),
            "{event} outside its request span: {}",
            lines[0]
        );
    }
    assert!(
        logs.lines_with("request refused").is_empty(),
        "{}",
        logs.text()
    );
}
