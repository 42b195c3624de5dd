//! Admin endpoints. Every handler authenticates first; nothing is read or written otherwise.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use coffer_protocol::{ErrorKind, Problem};
use serde::Deserialize;

use super::{authorization, body, AppState};
use crate::service::{KbsError, RvListError};

/// Trustee reports admin failures on plugin calls (resource writes) as
/// `AdminAuthInitialization` and on built-in endpoints as `AdminAuthAccess`.
fn require_admin(req: &HttpRequest, st: &AppState, plugin: bool) -> Result<String, KbsError> {
    st.kbs
        .admin
        .authorize(authorization(req), crate::now_secs())
        .map_err(|reason| {
            tracing::warn!(path = %req.path(), %reason, "admin call refused");
            if plugin {
                KbsError::new(
                    ErrorKind::AdminAuthInitialization,
                    format!("failed to initialize [admin] configuration: {reason}"),
                )
            } else {
                KbsError::new(
                    ErrorKind::AdminAuthAccess,
                    format!("admin access denied for endpoint {}: {reason}", req.path()),
                )
            }
        })
}

/// Authenticates, then reads the body: nothing is read from an unauthenticated caller.
async fn admin_body(
    req: &HttpRequest,
    payload: web::Payload,
    st: &AppState,
    plugin: bool,
) -> Result<(String, web::Bytes), KbsError> {
    let actor = require_admin(req, st, plugin)?;
    Ok((actor, body::read(req, payload, st.max_body_bytes).await?))
}

/// `POST /kbs/v0/resource/{path}` (raw bytes).
pub async fn set_resource(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let (actor, body) = admin_body(&req, payload, &st, true).await?;
    st.kbs.admin_set_resource(&actor, &path, &body).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `DELETE /kbs/v0/resource/{path}`.
pub async fn delete_resource(
    req: HttpRequest,
    path: web::Path<String>,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let actor = require_admin(&req, &st, true)?;
    st.kbs.admin_delete_resource(&actor, &path).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `POST /kbs/v0/resource-policy`.
pub async fn set_resource_policy(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let (actor, body) = admin_body(&req, payload, &st, false).await?;
    st.kbs.admin_set_resource_policy(&actor, &body).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `GET /kbs/v0/resource-policy`: the policy ids, as Trustee answers.
pub async fn list_resource_policies(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, false)?;
    Ok(HttpResponse::Ok().json(st.kbs.admin_resource_policy_ids().await?))
}

/// `POST /kbs/v0/attestation-policy`.
pub async fn set_attestation_policy(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let (actor, body) = admin_body(&req, payload, &st, false).await?;
    st.kbs.admin_set_attestation_policy(&actor, &body).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `POST /kbs/v0/reference-value`.
pub async fn register_reference_value(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let (actor, body) = admin_body(&req, payload, &st, false).await?;
    st.kbs.admin_register_reference_value(&actor, &body).await?;
    Ok(HttpResponse::Ok().content_type("application/json").finish())
}

/// `GET /kbs/v0/reference-value/{name}`.
pub async fn get_reference_value(
    req: HttpRequest,
    name: web::Path<String>,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, false)?;
    Ok(HttpResponse::Ok().json(st.kbs.admin_get_reference_value(&name).await?))
}

/// `GET /kbs/v0/attestation-policy/{id}` (Alibaba): the bare base64url-nopad Rego text,
/// labelled `application/json` as Alibaba's KBS does.
pub async fn get_attestation_policy(
    req: HttpRequest,
    id: web::Path<String>,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, false)?;
    let text = st.kbs.admin_get_attestation_policy(&id).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(coffer_protocol::b64::url_encode(text)))
}

/// `DELETE /kbs/v0/attestation-policy/{id}` (Alibaba).
pub async fn delete_attestation_policy(
    req: HttpRequest,
    id: web::Path<String>,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let actor = require_admin(&req, &st, false)?;
    st.kbs.admin_delete_attestation_policy(&actor, &id).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `GET /kbs/v0/attestation-policies` (Alibaba): `{id: b64url-nopad(SHA-384(text))}`.
pub async fn list_attestation_policies(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, false)?;
    Ok(HttpResponse::Ok().json(st.kbs.admin_list_attestation_policies().await?))
}

#[derive(Deserialize)]
pub struct ResourcesQuery {
    repository: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// `GET /kbs/v0/resources[?repository=&type=]` (Alibaba; its gateway applies the filters).
pub async fn list_resources(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, false)?;
    let q = web::Query::<ResourcesQuery>::from_query(req.query_string())
        .map_err(|e| KbsError::new(ErrorKind::SerdeError, format!("invalid query: {e}")))?;
    // The gateway treats an empty parameter as no filter.
    let nonempty = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(String::from);
    let (repo, kind) = (nonempty(&q.repository), nonempty(&q.kind));
    let list = st
        .kbs
        .admin_list_resources(repo.as_deref(), kind.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// `GET /kbs/v0/rvps/query` (Alibaba): `{name: value}`.
pub async fn rvps_query(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, false)?;
    Ok(HttpResponse::Ok().json(st.kbs.admin_rvps_query().await?))
}

/// `POST /kbs/v0/rvps/register` (Alibaba): `{"message": "<RVPS message JSON text>"}`.
pub async fn rvps_register(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let (actor, body) = admin_body(&req, payload, &st, false).await?;
    st.kbs.admin_rvps_register(&actor, &body).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `POST /kbs/v0/rvps/set_reference_value_list` (Alibaba): validated, then refused with
/// 501 (see [`crate::service::Kbs::admin_rvps_set_list`]); malformed lists get 400.
pub async fn rvps_set_reference_value_list(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let (_actor, body) = admin_body(&req, payload, &st, false).await?;
    let (status, detail) = match st.kbs.admin_rvps_set_list(&body).await {
        Ok(()) => return Ok(HttpResponse::Ok().finish()),
        Err(e @ RvListError::Invalid(_)) => (StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ RvListError::Unsupported(_)) => (StatusCode::NOT_IMPLEMENTED, e.to_string()),
    };
    Ok(HttpResponse::build(status).json(Problem::new(
        ErrorKind::RvpsError,
        format!("RVPS configuration failed: {detail}"),
    )))
}

/// `DELETE /kbs/v0/rvps/delete/{name}` (Alibaba): 200 whether or not it existed.
pub async fn rvps_delete(
    req: HttpRequest,
    name: web::Path<String>,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let actor = require_admin(&req, &st, false)?;
    st.kbs.admin_rvps_delete(&actor, &name).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `GET /coffer/v1/policies/{id}`: a stored policy with its Rego text.
pub async fn get_policy(
    req: HttpRequest,
    id: web::Path<String>,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, false)?;
    Ok(HttpResponse::Ok().json(st.kbs.admin_get_policy(&id).await?))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    100
}

/// `GET /coffer/v1/audit?after=SEQ&limit=N`.
pub async fn audit(req: HttpRequest, st: web::Data<AppState>) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, false)?;
    let q = web::Query::<AuditQuery>::from_query(req.query_string())
        .map_err(|e| KbsError::new(ErrorKind::SerdeError, format!("invalid query: {e}")))?;
    let rows = st
        .kbs
        .store
        .list_audit(q.after, q.limit.clamp(1, 10_000))
        .await?;
    Ok(HttpResponse::Ok().json(rows))
}
