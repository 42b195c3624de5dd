//! Admin endpoints. Every handler authenticates first; nothing is read or written otherwise.

use actix_web::{web, HttpRequest, HttpResponse};
use coffer_protocol::{AuditCount, AuditStats};
use serde::Deserialize;

use super::{authorization, body, AppState};
use crate::service::{AdminRoute, KbsError, QueryError, SerdeFailure};

/// Checks the admin token; Trustee reports failures on plugin calls (resource writes) as
/// `AdminAuthInitialization` and on built-in endpoints as `AdminAuthAccess`.
fn require_admin(req: &HttpRequest, st: &AppState, route: AdminRoute) -> Result<String, KbsError> {
    st.kbs
        .authorize_admin(authorization(req), req.path(), route)
}

/// Authenticates, then reads the body: nothing is read from an unauthenticated caller.
async fn admin_body(
    req: &HttpRequest,
    payload: web::Payload,
    st: &AppState,
    route: AdminRoute,
) -> Result<(String, web::Bytes), KbsError> {
    let actor = require_admin(req, st, route)?;
    Ok((actor, body::read(req, payload, st.max_body_bytes).await?))
}

/// `POST /kbs/v0/resource/{path}` (raw bytes).
pub(super) async fn set_resource(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let (actor, body) = admin_body(&req, payload, &st, AdminRoute::Plugin).await?;
    st.kbs.admin_set_resource(&actor, &path, &body).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `DELETE /kbs/v0/resource/{path}`.
pub(super) async fn delete_resource(
    req: HttpRequest,
    path: web::Path<String>,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let actor = require_admin(&req, &st, AdminRoute::Plugin)?;
    st.kbs.admin_delete_resource(&actor, &path).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `POST /kbs/v0/resource-policy`.
pub(super) async fn set_resource_policy(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let (actor, body) = admin_body(&req, payload, &st, AdminRoute::BuiltIn).await?;
    st.kbs.admin_set_resource_policy(&actor, &body).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `GET /kbs/v0/resource-policy`: the policy ids, as Trustee answers.
pub(super) async fn list_resource_policies(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, AdminRoute::BuiltIn)?;
    Ok(HttpResponse::Ok().json(st.kbs.admin_resource_policy_ids().await?))
}

/// `POST /kbs/v0/attestation-policy`.
pub(super) async fn set_attestation_policy(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let (actor, body) = admin_body(&req, payload, &st, AdminRoute::BuiltIn).await?;
    st.kbs.admin_set_attestation_policy(&actor, &body).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `POST /kbs/v0/reference-value`.
pub(super) async fn register_reference_value(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let (actor, body) = admin_body(&req, payload, &st, AdminRoute::BuiltIn).await?;
    st.kbs.admin_register_reference_value(&actor, &body).await?;
    Ok(HttpResponse::Ok().content_type("application/json").finish())
}

/// `GET /kbs/v0/reference-value/{name}`.
pub(super) async fn get_reference_value(
    req: HttpRequest,
    name: web::Path<String>,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, AdminRoute::BuiltIn)?;
    Ok(HttpResponse::Ok().json(st.kbs.admin_get_reference_value(&name).await?))
}

/// `GET /kbs/v0/attestation-policy/{id}` (Alibaba): the bare base64url-nopad Rego text,
/// labelled `application/json` as Alibaba's KBS does.
pub(super) async fn get_attestation_policy(
    req: HttpRequest,
    id: web::Path<String>,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, AdminRoute::BuiltIn)?;
    let text = st.kbs.admin_get_attestation_policy(&id).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(coffer_protocol::b64::url_encode(text)))
}

/// `DELETE /kbs/v0/attestation-policy/{id}` (Alibaba).
pub(super) async fn delete_attestation_policy(
    req: HttpRequest,
    id: web::Path<String>,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let actor = require_admin(&req, &st, AdminRoute::BuiltIn)?;
    st.kbs.admin_delete_attestation_policy(&actor, &id).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `GET /kbs/v0/attestation-policies` (Alibaba): `{id: b64url-nopad(SHA-384(text))}`.
pub(super) async fn list_attestation_policies(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, AdminRoute::BuiltIn)?;
    Ok(HttpResponse::Ok().json(st.kbs.admin_list_attestation_policies().await?))
}

#[derive(Deserialize)]
pub(super) struct ResourcesQuery {
    repository: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// `GET /kbs/v0/resources[?repository=&type=]` (Alibaba; its gateway applies the filters).
pub(super) async fn list_resources(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, AdminRoute::BuiltIn)?;
    let q = web::Query::<ResourcesQuery>::from_query(req.query_string())
        .map_err(|e| bad_query(QueryError::Form(e)))?;
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
pub(super) async fn rvps_query(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, AdminRoute::BuiltIn)?;
    Ok(HttpResponse::Ok().json(st.kbs.admin_rvps_query().await?))
}

/// `POST /kbs/v0/rvps/register` (Alibaba): `{"message": "<RVPS message JSON text>"}`.
pub(super) async fn rvps_register(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let (actor, body) = admin_body(&req, payload, &st, AdminRoute::BuiltIn).await?;
    st.kbs.admin_rvps_register(&actor, &body).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `POST /kbs/v0/rvps/set_reference_value_list` (Alibaba): validated, then refused with
/// 501 (see [`crate::service::Kbs::admin_rvps_set_list`]); malformed lists get 400.
pub(super) async fn rvps_set_reference_value_list(
    req: HttpRequest,
    payload: web::Payload,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let (_actor, body) = admin_body(&req, payload, &st, AdminRoute::BuiltIn).await?;
    st.kbs.admin_rvps_set_list(&body).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `DELETE /kbs/v0/rvps/delete/{name}` (Alibaba): 200 whether or not it existed.
pub(super) async fn rvps_delete(
    req: HttpRequest,
    name: web::Path<String>,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    let actor = require_admin(&req, &st, AdminRoute::BuiltIn)?;
    st.kbs.admin_rvps_delete(&actor, &name).await?;
    Ok(HttpResponse::Ok().finish())
}

/// `GET /coffer/v1/policies/{id}`: a stored policy with its Rego text.
pub(super) async fn get_policy(
    req: HttpRequest,
    id: web::Path<String>,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, AdminRoute::BuiltIn)?;
    Ok(HttpResponse::Ok().json(st.kbs.admin_get_policy(&id).await?))
}

/// Query of `GET /coffer/v1/audit`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    /// Rows at or after this time: Unix milliseconds or RFC 3339.
    since: Option<String>,
    /// Rows before this time: Unix milliseconds or RFC 3339.
    until: Option<String>,
    action: Option<String>,
    tee: Option<String>,
    /// Exact, or a prefix when it ends in `*`.
    resource: Option<String>,
    decision: Option<String>,
    session: Option<String>,
    /// Rows with a larger sequence number (tailing).
    after: Option<i64>,
    /// `desc` (newest first, default) or `asc`.
    order: Option<String>,
    #[serde(default)]
    offset: i64,
    #[serde(default = "default_limit")]
    limit: i64,
    /// Include each row's recorded claims.
    #[serde(default)]
    claims: bool,
}

fn default_limit() -> i64 {
    100
}

/// Most rows one audit page holds.
pub(super) const MAX_AUDIT_PAGE: i64 = 1000;

fn bad_query(e: QueryError) -> KbsError {
    KbsError::SerdeError(SerdeFailure::Query(e))
}

/// A time given as Unix milliseconds or RFC 3339.
fn parse_time(name: &'static str, v: &str) -> Result<i64, KbsError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|source| {
            bad_query(QueryError::Time {
                name,
                value: v.to_string(),
                source,
            })
        })
}

impl AuditQuery {
    fn into_filter(self) -> Result<crate::store::AuditFilter, KbsError> {
        if !(1..=MAX_AUDIT_PAGE).contains(&self.limit) {
            return Err(bad_query(QueryError::Limit {
                got: self.limit,
                max: MAX_AUDIT_PAGE,
            }));
        }
        if self.offset < 0 {
            return Err(bad_query(QueryError::NegativeOffset));
        }
        let oldest_first = match self.order.as_deref() {
            None | Some("desc") => false,
            Some("asc") => true,
            Some(o) => return Err(bad_query(QueryError::Order(o.to_string()))),
        };
        let time = |name: &'static str, v: &Option<String>| {
            v.as_deref().map(|v| parse_time(name, v)).transpose()
        };
        let empty_none = |v: Option<String>| v.filter(|s| !s.is_empty());
        let action = empty_none(self.action)
            .map(|a| a.parse().map_err(|e| bad_query(QueryError::Action(e))))
            .transpose()?;
        let decision = empty_none(self.decision)
            .map(|d| d.parse().map_err(|e| bad_query(QueryError::Decision(e))))
            .transpose()?;
        Ok(crate::store::AuditFilter {
            since_ms: time("since", &self.since)?,
            until_ms: time("until", &self.until)?,
            action,
            tee: empty_none(self.tee),
            resource: empty_none(self.resource),
            decision,
            session_id: empty_none(self.session),
            after_seq: self.after,
            oldest_first,
            offset: self.offset,
            limit: self.limit,
            with_claims: self.claims,
        })
    }
}

/// `GET /coffer/v1/audit?since=&until=&action=&tee=&resource=&decision=&session=&after=&order=&offset=&limit=&claims=`:
/// one page `{total, offset, limit, entries}`.
pub(super) async fn audit(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, AdminRoute::BuiltIn)?;
    let q = web::Query::<AuditQuery>::from_query(req.query_string())
        .map_err(|e| bad_query(QueryError::Form(e)))?;
    let filter = q.into_inner().into_filter()?;
    Ok(HttpResponse::Ok().json(st.kbs.audit_page(&filter).await?))
}

/// `GET /coffer/v1/audit/{seq}`: one row with its recorded claims.
pub(super) async fn audit_entry(
    req: HttpRequest,
    seq: web::Path<String>,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, AdminRoute::BuiltIn)?;
    let seq: i64 = seq
        .parse()
        .map_err(|_| bad_query(QueryError::Seq(seq.to_string())))?;
    Ok(HttpResponse::Ok().json(st.kbs.audit_entry(seq).await?))
}

/// `GET /coffer/v1/resources`: `[{path, size, updated_at}]`, never values.
pub(super) async fn resource_meta(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, AdminRoute::BuiltIn)?;
    Ok(HttpResponse::Ok().json(st.kbs.admin_resource_meta().await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatsQuery {
    since: Option<String>,
}

/// `GET /coffer/v1/audit/stats?since=`: `[{action, decision, count}]` since a time (default
/// the last 24 hours), admin changes counted together as `admin`.
pub(super) async fn audit_stats(
    req: HttpRequest,
    st: web::Data<AppState>,
) -> Result<HttpResponse, KbsError> {
    require_admin(&req, &st, AdminRoute::BuiltIn)?;
    let q = web::Query::<StatsQuery>::from_query(req.query_string())
        .map_err(|e| bad_query(QueryError::Form(e)))?;
    let since = q
        .since
        .as_deref()
        .map(|v| parse_time("since", v))
        .transpose()?;
    let (since, counts) = st.kbs.audit_counts(since).await?;
    let counts = counts
        .into_iter()
        .map(|(action, decision, count)| AuditCount {
            action,
            decision,
            count,
        })
        .collect();
    Ok(HttpResponse::Ok().json(AuditStats { since, counts }))
}
