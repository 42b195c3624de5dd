//! The guest side of the protocol: `/auth`, `/attest`, resource GET.

use actix_web::{web, HttpRequest, HttpResponse};
use coffer_protocol::messages::{AttestationToken, SESSION_COOKIE};
use serde_json::{Map, Value};

use super::{attestation_header, authorization, body, session_cookie, AppState};
use crate::service::{KbsError, QueryError, SerdeFailure};
use crate::store::Session;

fn set_cookie(session: &Session) -> String {
    let expires =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(session.expires_at.max(0) as u64);
    // Trustee sets only Expires (no Path/HttpOnly/Secure); clients match on the raw header.
    format!(
        "{}={}; Expires={}",
        SESSION_COOKIE,
        session.id,
        httpdate::fmt_http_date(expires)
    )
}

/// `POST /kbs/v0/auth`.
pub(super) async fn auth(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let body = body::read(&req, payload, st.max_body_bytes).await?;
    let (session, challenge) = st.kbs.auth(&body).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("set-cookie", set_cookie(&session)))
        .json(challenge))
}

/// `POST /kbs/v0/attest`.
pub(super) async fn attest(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let body = body::read(&req, payload, st.max_body_bytes).await?;
    let cookie = session_cookie(&req);
    let client = client_addr(&req);
    let (session, token) = st
        .kbs
        .attest(cookie.as_deref(), client.as_deref(), &body)
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("set-cookie", set_cookie(&session)))
        .json(AttestationToken { token }))
}

/// `GET /kbs/v0/resource/{repo}/{type}/{tag}`.
pub(super) async fn get_resource(
    req: HttpRequest,
    path: web::Path<String>,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let cookie = session_cookie(&req);
    // Alibaba's order: session cookie (preferred by release()), `Attestation`, then Bearer.
    let bearer = attestation_header(&req).or_else(|| {
        authorization(&req)
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
    });
    let query = parse_query(req.query_string())?;
    let jwe = st
        .kbs
        .release(
            cookie.as_deref(),
            bearer,
            client_addr(&req).as_deref(),
            &path,
            query,
        )
        .await?;
    Ok(HttpResponse::Ok().json(jwe))
}

/// The TCP peer's address for the audit log (not `X-Forwarded-For`: anyone can send that).
fn client_addr(req: &HttpRequest) -> Option<String> {
    req.peer_addr().map(|a| a.ip().to_string())
}

/// The query parameters the resource policy sees as `input` members. Any query reads into
/// strings today (invalid escapes are kept, invalid UTF-8 replaced); should reading ever
/// fail, the caller is refused rather than the policy shown no query at all.
fn parse_query(q: &str) -> Result<Map<String, Value>, KbsError> {
    web::Query::<std::collections::BTreeMap<String, String>>::from_query(q)
        .map(|m| {
            m.into_inner()
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect()
        })
        .map_err(|e| KbsError::SerdeError(SerdeFailure::Query(QueryError::Form(e))))
}
