//! Operational endpoints.

use actix_web::{web, HttpResponse};

use super::AppState;
use crate::service::{Internal, KbsError};

/// `GET /healthz`: the process is up.
pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers.
pub(super) async fn readyz(st: web::Data<AppState>) -> Result<HttpResponse, KbsError> {
    st.kbs.ping().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ready"})))
}

/// `GET /metrics`: Prometheus text format.
pub(super) async fn metrics(st: web::Data<AppState>) -> Result<HttpResponse, KbsError> {
    let page = st
        .kbs
        .metrics()
        .render()
        .map_err(|e| KbsError::InternalError(Internal::Metrics(e)))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(page))
}

/// `GET /.well-known/jwks.json`: keys that verify this server's attestation tokens.
pub(super) async fn jwks(st: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(st.kbs.jwks())
}

/// The OpenAPI 3.1 description of every endpoint (`server/src/http/openapi.json`).
const OPENAPI: &str = include_str!("openapi.json");

/// `GET /openapi.json`: this server's API description, its version filled in.
pub(super) async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI.replacen(
            "\"version\": \"VERSION\"",
            &format!("\"version\": \"{}\"", env!("CARGO_PKG_VERSION")),
            1,
        ))
}
