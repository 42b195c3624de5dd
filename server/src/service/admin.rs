//! Admin authentication (EdDSA bearer JWT) and the admin operations.

use coffer_protocol::b64;
use coffer_protocol::jwt::{self, VerifyingKey};
use serde::Deserialize;
use serde_json::Value;

use super::error::{
    AdminAuthError, AttestationError, InvalidPath, NotFound, PolicyEngineFailure, PolicyParseError,
    RegisterError, RvListError, RvpsFailure, SetPolicyError,
};
use super::{parse_resource_path, Kbs, KbsError};
use crate::policy::RESOURCE_POLICY_ID;
use crate::store::{
    AdminOp, AuditAction, AuditEntry, AuditFilter, AuditPage, Decision, PolicyKind, StoredPolicy,
};

/// Checks admin bearer tokens: Ed25519 signature by the configured key, `exp` in the future,
/// `role == "admin"`, and `iss` / `aud` when configured. Optionally also role-less tokens as
/// Alibaba's Trustee tooling mints them (see [`AdminAuth::with_alibaba_tokens`]).
pub struct AdminAuth {
    /// `None`: every admin call is refused (`admin.deny_all`).
    key: Option<VerifyingKey>,
    /// Required `iss`, when checked.
    issuer: Option<String>,
    /// Required member of `aud`, when checked.
    audience: Option<String>,
    /// Longest lifetime of an admin token, seconds.
    max_ttl: i64,
    /// `Some(max lifetime, seconds)` when role-less tokens are accepted.
    alibaba_max_ttl: Option<i64>,
}

/// Which of Trustee's two admin error kinds a refusal is reported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRoute {
    /// A resource plugin call (resource writes): `AdminAuthInitialization`.
    Plugin,
    /// A built-in endpoint (policies, reference values, audit): `AdminAuthAccess`.
    BuiltIn,
}

/// Default longest lifetime of an admin token: a leaked token is useful for an hour at most.
pub const DEFAULT_ADMIN_TOKEN_MAX_TTL_SECS: u64 = 3600;

/// Clock skew tolerated between the minting machine and the server, seconds (as for `exp`).
const CLOCK_SKEW_SECS: i64 = 30;

/// Refuses a token whose lifetime is too long: both the lifetime it was minted with
/// (`exp - iat`, when it has an `iat`) and what is left of it (`exp - now`) must be within
/// `max_ttl`.
fn check_lifetime(
    claims: &Value,
    now: i64,
    max_ttl: i64,
    setting: &'static str,
) -> Result<(), AdminAuthError> {
    // verify() has already required a future `exp`.
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .unwrap_or(i64::MAX);
    let minted_for = claims
        .get("iat")
        .and_then(Value::as_i64)
        .map(|iat| exp.saturating_sub(iat));
    let left = exp.saturating_sub(now);
    if minted_for.is_some_and(|t| t > max_ttl) || left > max_ttl.saturating_add(CLOCK_SKEW_SECS) {
        return Err(AdminAuthError::TooLong {
            lived: minted_for.unwrap_or(left),
            max_ttl,
            setting,
        });
    }
    Ok(())
}

/// The identity recorded in the audit log for a role-less (Alibaba-style) admin token.
pub const ALIBABA_TOKEN_ACTOR: &str = "alibaba-admin-token";

impl AdminAuth {
    /// A checker for tokens signed by `key`, requiring `iss == issuer` and `aud` to include
    /// `audience` where those are given.
    pub fn new(
        key: ed25519_dalek::VerifyingKey,
        issuer: Option<String>,
        audience: Option<String>,
    ) -> Self {
        AdminAuth {
            key: Some(VerifyingKey::EdDsa(key)),
            issuer,
            audience,
            max_ttl: DEFAULT_ADMIN_TOKEN_MAX_TTL_SECS as i64,
            alibaba_max_ttl: None,
        }
    }

    /// A checker that refuses every admin call (`admin.deny_all`: read-only deployments).
    pub fn deny_all() -> Self {
        AdminAuth {
            key: None,
            issuer: None,
            audience: None,
            max_ttl: 0,
            alibaba_max_ttl: None,
        }
    }

    /// Refuses tokens that live longer than `max_ttl` seconds (`exp - iat`, or `exp - now`).
    pub fn with_max_ttl(mut self, max_ttl: i64) -> Self {
        self.max_ttl = max_ttl;
        self
    }

    /// With `Some(max_ttl)`, also accepts tokens that carry no `role` claim (Alibaba's
    /// generator signs only `iat`/`exp`), provided they expire within `max_ttl` seconds;
    /// `iss`/`aud` are not checked for them since they have none. A `role` other than
    /// `admin` is still refused.
    pub fn with_alibaba_tokens(mut self, max_ttl: Option<i64>) -> Self {
        self.alibaba_max_ttl = max_ttl;
        self
    }

    /// Validates an `Authorization` header value at `now` (Unix seconds); returns the admin
    /// identity (`sub` or `iss`) or why it was refused.
    pub fn authorize(
        &self,
        authorization: Option<&str>,
        now: i64,
    ) -> Result<String, AdminAuthError> {
        let Some(key) = &self.key else {
            return Err(AdminAuthError::Disabled);
        };
        let header = authorization.ok_or(AdminAuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AdminAuthError::NotBearer)?;
        let d = jwt::verify(token, key, now, CLOCK_SKEW_SECS).map_err(AdminAuthError::Token)?;
        let claims = &d.claims;
        if let (None, Some(max_ttl)) = (claims.get("role"), self.alibaba_max_ttl) {
            check_lifetime(claims, now, max_ttl, "admin.alibaba_token_max_ttl_secs")?;
            return Ok(ALIBABA_TOKEN_ACTOR.to_string());
        }
        match claims.get("role") {
            None => return Err(AdminAuthError::NoRole),
            Some(role) if role.as_str() != Some("admin") => return Err(AdminAuthError::NotAdmin),
            Some(_) => {}
        }
        check_lifetime(claims, now, self.max_ttl, "admin.token_max_ttl_secs")?;
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        if let Some(expected) = self.issuer.as_ref().filter(|want| iss != want.as_str()) {
            return Err(AdminAuthError::Issuer {
                expected: expected.clone(),
            });
        }
        if let Some(expected) = &self.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => a == expected,
                Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(expected.as_str())),
                _ => false,
            };
            if !ok {
                return Err(AdminAuthError::Audience {
                    expected: expected.clone(),
                });
            }
        }
        Ok(claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or(iss)
            .to_string())
    }
}

#[derive(Deserialize)]
struct PolicyUpload {
    policy: String,
}

#[derive(Deserialize)]
struct AttestationPolicyUpload {
    policy_id: String,
    policy: String,
    #[serde(default, rename = "type")]
    _kind: Option<String>,
}

#[derive(Deserialize)]
struct RvpsMessage {
    #[serde(default = "rvps_version")]
    version: String,
    #[serde(rename = "type")]
    kind: String,
    payload: String,
}

fn rvps_version() -> String {
    "0.1.0".into()
}

/// Attestation policies that can be replaced but not deleted. Alibaba's `default` is not one:
/// it overrides `default_cpu` while it exists, and deleting it is how to stop that.
const PROTECTED_POLICY_IDS: &[&str] = &[crate::policy::CPU_POLICY_ID];

/// One entry of `GET /kbs/v0/resources`, as Alibaba's KBS answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResourceListEntry {
    /// First path segment.
    pub repository_name: String,
    /// Second path segment.
    pub resource_type: String,
    /// Third path segment.
    pub resource_tag: String,
}

pub use coffer_protocol::ResourceMeta;

/// Reference values expire after a year unless re-registered (as in Trustee's RVPS).
const REFERENCE_VALUE_TTL_SECS: i64 = 365 * 24 * 3600;

fn decode_policy(b64_text: &str) -> Result<String, PolicyParseError> {
    let bytes = b64::lenient_decode(b64_text).map_err(PolicyParseError::Base64)?;
    String::from_utf8(bytes).map_err(PolicyParseError::NotUtf8)
}

fn rvps_error(e: RegisterError) -> KbsError {
    KbsError::RvpsError(RvpsFailure::Register(e))
}

/// Parses an RVPS message (`{version, type: "sample", payload: base64({name: value})}`).
fn parse_sample_message(body: &[u8]) -> Result<serde_json::Map<String, Value>, KbsError> {
    let msg: RvpsMessage =
        serde_json::from_slice(body).map_err(|e| rvps_error(RegisterError::Message(e)))?;
    if msg.version != "0.1.0" {
        return Err(rvps_error(RegisterError::Version(msg.version)));
    }
    if msg.kind != "sample" {
        return Err(rvps_error(RegisterError::Extractor(msg.kind)));
    }
    let payload = b64::lenient_decode(&msg.payload)
        .map_err(|e| rvps_error(RegisterError::PayloadBase64(e)))?;
    serde_json::from_slice(&payload).map_err(|e| rvps_error(RegisterError::PayloadJson(e)))
}

fn string_array(v: &Value) -> Option<Vec<&str>> {
    v.as_array()?.iter().map(Value::as_str).collect()
}

/// Alibaba's RVPS merge: two digest lists (arrays of strings) are united, keeping the old
/// order and appending what is new; anything else is replaced by the new value.
fn merge_digests(old_json: &str, new: Value) -> Value {
    let Ok(old) = serde_json::from_str::<Value>(old_json) else {
        return new;
    };
    match (string_array(&old), string_array(&new)) {
        (Some(old_list), Some(new_list)) => {
            let mut merged: Vec<String> = old_list.iter().map(|s| s.to_string()).collect();
            for d in new_list {
                if !merged.iter().any(|m| m == d) {
                    merged.push(d.to_string());
                }
            }
            Value::from(merged)
        }
        _ => new,
    }
}

#[derive(Deserialize)]
struct RvList {
    rv_list: Vec<RvListItem>,
}

#[derive(Deserialize)]
struct RvListItem {
    id: String,
    version: String,
    #[serde(rename = "type")]
    rv_type: String,
    provenance_info: ProvenanceInfo,
    #[serde(default)]
    provenance_source: Option<ProvenanceSource>,
    operation_type: String,
    #[serde(default)]
    rv_name: Option<String>,
}

#[derive(Deserialize)]
struct ProvenanceInfo {
    #[serde(rename = "type")]
    kind: String,
    rekor_url: String,
    #[serde(default)]
    #[allow(dead_code)]
    rekor_api_version: Option<u8>,
}

#[derive(Deserialize)]
struct ProvenanceSource {
    protocol: String,
    uri: String,
    #[serde(default)]
    #[allow(dead_code)]
    artifact: Option<String>,
}

/// A validated `rv_list` entry: the reference value it would set and where its digests
/// would come from.
struct RvListEntry {
    name: String,
    provenance_type: String,
    source: String,
}

/// Checks an `rv_list` body entry by entry, with the rules of Alibaba's RVPS.
fn parse_rv_list(body: &[u8]) -> Result<Vec<RvListEntry>, RvListError> {
    let list: RvList = serde_json::from_slice(body)
        .map_err(|e| RvListError::Invalid(format!("body must be {{\"rv_list\": [...]}}: {e}")))?;
    let mut out = Vec::with_capacity(list.rv_list.len());
    for (i, item) in list.rv_list.into_iter().enumerate() {
        let bad = |d: String| RvListError::Invalid(format!("rv_list[{i}]: {d}"));
        if !matches!(
            item.operation_type.to_ascii_lowercase().as_str(),
            "add" | "refresh"
        ) {
            return Err(bad(format!(
                "unsupported operation_type {:?} (add or refresh)",
                item.operation_type
            )));
        }
        let ptype = item.provenance_info.kind.as_str();
        if !matches!(ptype, "rv-release-manifest" | "slsa-intoto-statements") {
            return Err(bad(format!(
                "unsupported provenance_info.type {ptype:?} (rv-release-manifest or slsa-intoto-statements)"
            )));
        }
        if item.id.is_empty() || item.version.is_empty() || item.rv_type.is_empty() {
            return Err(bad("id, version and type must not be empty".into()));
        }
        let name = match &item.rv_name {
            Some(n) if n.trim().is_empty() => {
                return Err(bad("rv_name must not be blank".into()));
            }
            Some(n) => n.trim().to_string(),
            None if ptype == "rv-release-manifest" => item.id.clone(),
            None => format!("measurement.{}.{}", item.rv_type, item.id),
        };
        let source = match &item.provenance_source {
            Some(src) => {
                if !matches!(src.protocol.as_str(), "oci" | "file") {
                    return Err(bad(format!(
                        "unsupported provenance_source.protocol {:?} (oci or file)",
                        src.protocol
                    )));
                }
                format!("{} {}", src.protocol, src.uri)
            }
            None if ptype == "rv-release-manifest" => {
                return Err(bad("rv-release-manifest requires provenance_source".into()));
            }
            None => format!("rekor {}", item.provenance_info.rekor_url),
        };
        out.push(RvListEntry {
            name,
            provenance_type: ptype.to_string(),
            source,
        });
    }
    Ok(out)
}

impl Kbs {
    /// Checks the `Authorization` header of an admin call on `endpoint`; returns the admin
    /// identity for the audit log. `route` decides which of Trustee's kinds a refusal is.
    pub fn authorize_admin(
        &self,
        authorization: Option<&str>,
        endpoint: &str,
        route: AdminRoute,
    ) -> Result<String, KbsError> {
        let now = self.clock.now_secs()?;
        self.admin
            .authorize(authorization, now)
            .map_err(|source| match route {
                AdminRoute::Plugin => KbsError::AdminAuthInitialization(source),
                AdminRoute::BuiltIn => KbsError::AdminAuthAccess {
                    endpoint: endpoint.to_string(),
                    source,
                },
            })
    }

    async fn audit_admin(&self, actor: &str, op: AdminOp, target: &str) {
        // Every admin change may touch what handshakes read.
        self.snapshots.invalidate();
        let at_ms = match self.clock.now_ms() {
            Ok(t) => t,
            Err(e) => {
                // The change is made; its record cannot be dated.
                self.metrics.audit_failures.inc();
                tracing::error!(
                    error = &e as &(dyn std::error::Error + 'static),
                    op = op.name(),
                    "audit write failed"
                );
                return;
            }
        };
        self.audit(AuditEntry {
            resource: Some(target.to_string()),
            actor: Some(actor.to_string()),
            ..AuditEntry::new(at_ms, AuditAction::Admin(op), Decision::Ok)
        })
        .await;
    }

    fn check_policy(&self, text: &str) -> Result<(), KbsError> {
        self.policies
            .check(text)
            .map_err(|e| KbsError::PolicyEngineError(PolicyEngineFailure::Evaluation(e)))
    }

    /// Stores a resource.
    pub async fn admin_set_resource(
        &self,
        actor: &str,
        path: &str,
        value: &[u8],
    ) -> Result<(), KbsError> {
        let path = parse_resource_path(path)?;
        self.secrets.put(&path, value).await?;
        self.audit_admin(actor, AdminOp::SetResource, &path.to_string())
            .await;
        Ok(())
    }

    /// Deletes a resource.
    pub async fn admin_delete_resource(&self, actor: &str, path: &str) -> Result<(), KbsError> {
        let path = parse_resource_path(path)?;
        if !self.secrets.delete(&path).await? {
            return Err(KbsError::ResourceNotFound(NotFound::Resource(path)));
        }
        self.audit_admin(actor, AdminOp::DeleteResource, &path.to_string())
            .await;
        Ok(())
    }

    /// `POST /resource-policy` with `{"policy": base64(rego)}`.
    pub async fn admin_set_resource_policy(
        &self,
        actor: &str,
        body: &[u8],
    ) -> Result<(), KbsError> {
        let up: PolicyUpload = serde_json::from_slice(body)
            .map_err(|e| KbsError::ParsePolicyError(PolicyParseError::Body(e)))?;
        let text = decode_policy(&up.policy).map_err(KbsError::ParsePolicyError)?;
        self.check_policy(&text)?;
        self.store
            .put_policy(
                RESOURCE_POLICY_ID,
                PolicyKind::Resource,
                &text,
                self.clock.now_secs()?,
            )
            .await?;
        self.audit_admin(actor, AdminOp::SetResourcePolicy, RESOURCE_POLICY_ID)
            .await;
        if let Some(why) = super::unmeasured_release(&text) {
            tracing::warn!(
                policy = RESOURCE_POLICY_ID,
                actor,
                "the new resource policy releases secrets without checking any measurement: {why}"
            );
        }
        Ok(())
    }

    /// `POST /attestation-policy` with `{"policy_id", "policy": base64(rego), "type"}`.
    pub async fn admin_set_attestation_policy(
        &self,
        actor: &str,
        body: &[u8],
    ) -> Result<(), KbsError> {
        let fail = |e| KbsError::AttestationError(AttestationError::SetPolicy(e));
        let up: AttestationPolicyUpload =
            serde_json::from_slice(body).map_err(|e| fail(SetPolicyError::Body(e)))?;
        if up.policy_id.is_empty()
            || !up
                .policy_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(fail(SetPolicyError::InvalidId(up.policy_id)));
        }
        let text = decode_policy(&up.policy).map_err(|e| fail(SetPolicyError::Decode(e)))?;
        self.policies
            .check(&text)
            .map_err(|e| fail(SetPolicyError::Compile(e)))?;
        self.store
            .put_policy(
                &up.policy_id,
                PolicyKind::Attestation,
                &text,
                self.clock.now_secs()?,
            )
            .await?;
        self.audit_admin(actor, AdminOp::SetAttestationPolicy, &up.policy_id)
            .await;
        Ok(())
    }

    /// `GET /attestation-policy/{id}`: the Rego text of an attestation policy.
    pub async fn admin_get_attestation_policy(&self, id: &str) -> Result<String, KbsError> {
        match self.store.get_policy(id).await? {
            Some(p) if p.kind == PolicyKind::Attestation => Ok(p.body),
            _ => Err(KbsError::ResourceNotFound(NotFound::AttestationPolicy(
                id.to_string(),
            ))),
        }
    }

    /// `DELETE /attestation-policy/{id}`. `default_cpu` cannot be deleted, only replaced:
    /// with it gone the server would reinstall the built-in policy at its next start,
    /// silently. Deleting Alibaba's `default` returns CPU appraisal to `default_cpu`.
    pub async fn admin_delete_attestation_policy(
        &self,
        actor: &str,
        id: &str,
    ) -> Result<(), KbsError> {
        if PROTECTED_POLICY_IDS.contains(&id) {
            return Err(KbsError::PolicyEngineError(
                PolicyEngineFailure::Protected { id: id.to_string() },
            ));
        }
        if !self
            .store
            .delete_policy(id, PolicyKind::Attestation)
            .await?
        {
            return Err(KbsError::ResourceNotFound(NotFound::AttestationPolicy(
                id.to_string(),
            )));
        }
        self.audit_admin(actor, AdminOp::DeleteAttestationPolicy, id)
            .await;
        Ok(())
    }

    /// `GET /attestation-policies`: `{id: base64url-nopad(SHA-384(text))}`.
    pub async fn admin_list_attestation_policies(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, KbsError> {
        use sha2::Digest;
        let mut out = std::collections::BTreeMap::new();
        for id in self.store.list_policy_ids(PolicyKind::Attestation).await? {
            // A policy deleted between the two reads is simply not listed.
            if let Some(p) = self.store.get_policy(&id).await? {
                out.insert(id, b64::url_encode(sha2::Sha384::digest(p.body.as_bytes())));
            }
        }
        Ok(out)
    }

    /// `GET /resources`: the stored resources' names, optionally only those of one
    /// repository and/or type (the gateway's `?repository=&type=`). Never their values.
    /// Resources served by a routed backend (Aliyun KMS) cannot be listed and are absent.
    pub async fn admin_list_resources(
        &self,
        repository: Option<&str>,
        kind: Option<&str>,
    ) -> Result<Vec<ResourceListEntry>, KbsError> {
        let mut out = Vec::new();
        for path in self.store.list_resource_paths().await? {
            // Stored paths were validated on the way in; one that no longer parses is skipped.
            let Ok(path) = path.parse::<coffer_protocol::ResourcePath>() else {
                continue;
            };
            let [r, t, g] = path.segments();
            if repository.is_some_and(|want| want != r) || kind.is_some_and(|want| want != t) {
                continue;
            }
            out.push(ResourceListEntry {
                repository_name: r.to_string(),
                resource_type: t.to_string(),
                resource_tag: g.to_string(),
            });
        }
        Ok(out)
    }

    /// Every resource stored in the database with its size and last update, never its
    /// value (`GET /coffer/v1/resources`); resources in Aliyun KMS are not listed.
    pub async fn admin_resource_meta(&self) -> Result<Vec<ResourceMeta>, KbsError> {
        Ok(self
            .store
            .list_resource_meta()
            .await?
            .into_iter()
            .map(|(path, sealed, updated_at)| ResourceMeta {
                path,
                size: (sealed - crate::secrets::SEALED_OVERHEAD).max(0),
                updated_at,
            })
            .collect())
    }

    /// Ids of the stored resource policies (Trustee answers `["resource-policy"]`).
    pub async fn admin_resource_policy_ids(&self) -> Result<Vec<String>, KbsError> {
        Ok(self.store.list_policy_ids(PolicyKind::Resource).await?)
    }

    /// A stored policy with its text.
    pub async fn admin_get_policy(&self, id: &str) -> Result<StoredPolicy, KbsError> {
        self.store
            .get_policy(id)
            .await?
            .ok_or_else(|| KbsError::ResourceNotFound(NotFound::Policy(id.to_string())))
    }

    /// `POST /reference-value` (upstream Trustee) with an RVPS message of type `sample`:
    /// each value replaces any earlier one of that name.
    pub async fn admin_register_reference_value(
        &self,
        actor: &str,
        body: &[u8],
    ) -> Result<Vec<String>, KbsError> {
        let values = parse_sample_message(body)?;
        self.store_reference_values(actor, values, false).await
    }

    /// `POST /rvps/register` (Alibaba) with `{"message": "<RVPS message JSON text>"}`: an
    /// array of strings is merged (set union, old order first) into an unexpired array of
    /// strings of the same name; any other value replaces it.
    pub async fn admin_rvps_register(
        &self,
        actor: &str,
        body: &[u8],
    ) -> Result<Vec<String>, KbsError> {
        #[derive(Deserialize)]
        struct Register {
            message: String,
        }
        let req: Register =
            serde_json::from_slice(body).map_err(|e| rvps_error(RegisterError::Wrapper(e)))?;
        let values = parse_sample_message(req.message.as_bytes())?;
        self.store_reference_values(actor, values, true).await
    }

    async fn store_reference_values(
        &self,
        actor: &str,
        values: serde_json::Map<String, Value>,
        merge: bool,
    ) -> Result<Vec<String>, KbsError> {
        let now = self.clock.now_secs()?;
        let existing: std::collections::HashMap<String, String> = if merge {
            self.store
                .reference_values(now)
                .await?
                .into_iter()
                .collect()
        } else {
            Default::default()
        };
        let mut names = Vec::new();
        for (name, value) in values {
            let value = match existing.get(&name) {
                Some(old) => merge_digests(old, value),
                None => value,
            };
            self.store
                .put_reference_value(
                    &name,
                    &value.to_string(),
                    now + REFERENCE_VALUE_TTL_SECS,
                    now,
                )
                .await?;
            self.audit_admin(actor, AdminOp::SetReferenceValue, &name)
                .await;
            names.push(name);
        }
        Ok(names)
    }

    /// `GET /rvps/query`: every unexpired reference value, `{name: value}`.
    pub async fn admin_rvps_query(&self) -> Result<serde_json::Map<String, Value>, KbsError> {
        let mut out = serde_json::Map::new();
        for (name, text) in self.store.reference_values(self.clock.now_secs()?).await? {
            // Only this server writes the column, always as JSON; a row that is not JSON
            // (edited by hand) is left out rather than failing the whole listing.
            match serde_json::from_str(&text) {
                Ok(v) => {
                    out.insert(name, v);
                }
                Err(e) => {
                    tracing::warn!(%name, error = %e, "reference value is not JSON; skipped")
                }
            }
        }
        Ok(out)
    }

    /// `DELETE /rvps/delete/{name}`: succeeds whether or not the value existed.
    pub async fn admin_rvps_delete(&self, actor: &str, name: &str) -> Result<(), KbsError> {
        if name.is_empty() {
            return Err(KbsError::InvalidRequestPath(
                InvalidPath::MissingReferenceValueName,
            ));
        }
        if self.store.delete_reference_value(name).await? {
            self.audit_admin(actor, AdminOp::DeleteReferenceValue, name)
                .await;
        }
        Ok(())
    }

    /// `POST /rvps/set_reference_value_list`: validates the list as Alibaba's RVPS does, then
    /// refuses it, because every entry's digests come from provenance (Rekor, an OCI
    /// registry or a file on the RVPS host) that coffer does not fetch; the format has no
    /// way to carry values inline.
    pub async fn admin_rvps_set_list(&self, body: &[u8]) -> Result<(), KbsError> {
        let list_error = |e| KbsError::RvpsError(RvpsFailure::List(e));
        let list = parse_rv_list(body).map_err(list_error)?;
        let first = list.first().ok_or_else(|| {
            list_error(RvListError::Invalid(
                "rv_list is empty: nothing to register".into(),
            ))
        })?;
        Err(list_error(RvListError::Unsupported(format!(
            "reference value {:?} ({}): coffer-server does not fetch provenance ({}); register the digests with POST /kbs/v0/rvps/register instead",
            first.name,
            first.provenance_type,
            first.source
        ))))
    }

    /// A registered reference value.
    pub async fn admin_get_reference_value(&self, name: &str) -> Result<Value, KbsError> {
        let all = self.store.reference_values(self.clock.now_secs()?).await?;
        all.into_iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| serde_json::from_str(&v).ok())
            .ok_or_else(|| KbsError::RvpsError(RvpsFailure::NotFound(name.to_string())))
    }

    /// One page of the audit log (`GET /coffer/v1/audit`).
    pub async fn audit_page(&self, filter: &AuditFilter) -> Result<AuditPage, KbsError> {
        Ok(self.store.list_audit(filter).await?)
    }

    /// One audit row with its recorded claims (`GET /coffer/v1/audit/{seq}`).
    pub async fn audit_entry(&self, seq: i64) -> Result<AuditEntry, KbsError> {
        self.store
            .get_audit(seq)
            .await?
            .ok_or(KbsError::ResourceNotFound(NotFound::AuditRow(seq)))
    }

    /// Audit row counts by (action, decision) since `since_ms`, admin changes folded into
    /// `admin`; `None` counts the last 24 hours (`GET /coffer/v1/audit/stats`). Returns the
    /// start used and the counts.
    pub async fn audit_counts(
        &self,
        since_ms: Option<i64>,
    ) -> Result<(i64, Vec<(String, String, i64)>), KbsError> {
        let since = match since_ms {
            Some(t) => t,
            None => self.clock.now_ms()?.saturating_sub(24 * 3600 * 1000),
        };
        Ok((since, self.store.audit_counts(since).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_protocol::jwt::JwtError;
    use serde_json::json;

    fn token(sk: &ed25519_dalek::SigningKey, claims: Value) -> String {
        format!(
            "Bearer {}",
            jwt::sign(
                &claims,
                Default::default(),
                &jwt::SigningKey::EdDsa(sk.clone())
            )
            .unwrap()
        )
    }

    fn key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng)
    }

    fn checker(sk: &ed25519_dalek::SigningKey) -> AdminAuth {
        AdminAuth::new(
            sk.verifying_key(),
            Some("coffer".into()),
            Some("kbs".into()),
        )
    }

    fn good() -> Value {
        json!({"iss": "coffer", "aud": ["kbs"], "role": "admin", "exp": 2000})
    }

    #[test]
    fn a_good_token_names_its_issuer() {
        let sk = key();
        assert_eq!(
            checker(&sk)
                .authorize(Some(&token(&sk, good())), 1000)
                .unwrap(),
            "coffer"
        );
    }

    #[test]
    fn a_missing_or_non_bearer_header_is_refused() {
        let sk = key();
        assert!(matches!(
            checker(&sk).authorize(None, 1000),
            Err(AdminAuthError::Missing)
        ));
        assert!(matches!(
            checker(&sk).authorize(Some("Basic abc"), 1000),
            Err(AdminAuthError::NotBearer)
        ));
    }

    #[test]
    fn an_expired_token_is_refused() {
        let sk = key();
        assert!(matches!(
            checker(&sk).authorize(Some(&token(&sk, good())), 3000),
            Err(AdminAuthError::Token(JwtError::Expired))
        ));
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused() {
        let sk = key();
        assert!(matches!(
            checker(&sk).authorize(Some(&token(&key(), good())), 1000),
            Err(AdminAuthError::Token(JwtError::Signature))
        ));
    }

    #[test]
    fn a_role_other_than_admin_is_refused() {
        let sk = key();
        let not_admin = json!({"iss": "coffer", "aud": "kbs", "role": "reader", "exp": 2000});
        assert!(matches!(
            checker(&sk).authorize(Some(&token(&sk, not_admin)), 1000),
            Err(AdminAuthError::NotAdmin)
        ));
    }

    #[test]
    fn a_foreign_issuer_is_refused() {
        let sk = key();
        let wrong_iss = json!({"iss": "x", "aud": "kbs", "role": "admin", "exp": 2000});
        assert!(matches!(
            checker(&sk).authorize(Some(&token(&sk, wrong_iss)), 1000),
            Err(AdminAuthError::Issuer { expected }) if expected == "coffer"
        ));
    }

    #[test]
    fn a_missing_audience_is_refused() {
        let sk = key();
        let no_aud = json!({"iss": "coffer", "role": "admin", "exp": 2000});
        assert!(matches!(
            checker(&sk).authorize(Some(&token(&sk, no_aud)), 1000),
            Err(AdminAuthError::Audience { expected }) if expected == "kbs"
        ));
    }

    /// Without configured `iss`/`aud` those claims are not checked.
    #[test]
    fn unconfigured_issuer_and_audience_are_not_checked() {
        let sk = key();
        let open = AdminAuth::new(sk.verifying_key(), None, None);
        let bare = json!({"role": "admin", "exp": 2000, "sub": "ops"});
        assert_eq!(
            open.authorize(Some(&token(&sk, bare)), 1000).unwrap(),
            "ops"
        );
    }

    #[test]
    fn deny_all_refuses_everything() {
        let sk = key();
        let deny = AdminAuth::deny_all();
        assert!(matches!(
            deny.authorize(None, 0),
            Err(AdminAuthError::Disabled)
        ));
        assert!(matches!(
            deny.authorize(Some(&token(&sk, good())), 1000),
            Err(AdminAuthError::Disabled)
        ));
    }

    /// A leaked long-lived admin token is a standing key to the server: lifetimes are
    /// bounded (default one hour), by what the token was minted for and by what is left.
    #[test]
    fn admin_token_lifetime_is_bounded() {
        let sk = key();
        let auth = checker(&sk);
        let claims = |iat: Option<i64>, exp: i64| {
            let mut c = json!({"iss": "coffer", "aud": ["kbs"], "role": "admin", "exp": exp});
            if let Some(iat) = iat {
                c["iat"] = json!(iat);
            }
            token(&sk, c)
        };
        let now = 10_000;
        // What `coffer admin token` mints by default fits.
        assert!(auth
            .authorize(Some(&claims(Some(now), now + 3600)), now)
            .is_ok());
        assert!(auth.authorize(Some(&claims(None, now + 3600)), now).is_ok());
        let e = auth
            .authorize(Some(&claims(Some(now), now + 3601)), now)
            .unwrap_err();
        assert!(
            matches!(
                e,
                AdminAuthError::TooLong {
                    max_ttl: 3600,
                    setting: "admin.token_max_ttl_secs",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("at most 3600 s"), "{e}");
        // minted a day ago for two days: still too long though half of it is left
        let e = auth
            .authorize(Some(&claims(Some(now - 86_400), now + 3000)), now)
            .unwrap_err();
        assert!(
            matches!(e, AdminAuthError::TooLong { lived: 89_400, .. }),
            "{e}"
        );
        // no iat: what is left counts
        assert!(matches!(
            auth.authorize(Some(&claims(None, now + 7200)), now),
            Err(AdminAuthError::TooLong { max_ttl: 3600, .. })
        ));
        // configurable
        let long = checker(&sk).with_max_ttl(86_400);
        assert!(long
            .authorize(Some(&claims(Some(now), now + 7200)), now)
            .is_ok());
    }

    #[test]
    fn alibaba_tokens_only_when_enabled() {
        let sk = key();
        let ali = json!({"iat": 1000, "exp": 1000 + 7200});
        let strict = checker(&sk);
        assert!(matches!(
            strict.authorize(Some(&token(&sk, ali.clone())), 1000),
            Err(AdminAuthError::NoRole)
        ));
        let lax = checker(&sk).with_alibaba_tokens(Some(86400));
        assert_eq!(
            lax.authorize(Some(&token(&sk, ali.clone())), 1000).unwrap(),
            ALIBABA_TOKEN_ACTOR
        );
        // still signed by the admin key, still unexpired, still bounded in lifetime
        assert!(matches!(
            lax.authorize(Some(&token(&key(), ali)), 1000),
            Err(AdminAuthError::Token(JwtError::Signature))
        ));
        assert!(matches!(
            lax.authorize(Some(&token(&sk, json!({"iat": 0, "exp": 10}))), 1000),
            Err(AdminAuthError::Token(JwtError::Expired))
        ));
        assert!(lax
            .authorize(Some(&token(&sk, json!({"iat": 0}))), 1000)
            .is_err());
        assert!(matches!(
            lax.authorize(Some(&token(&sk, json!({"exp": 1000 + 86400 + 31}))), 1000),
            Err(AdminAuthError::TooLong {
                setting: "admin.alibaba_token_max_ttl_secs",
                ..
            })
        ));
        // a role other than admin is refused either way
        assert!(matches!(
            lax.authorize(
                Some(&token(&sk, json!({"role": "reader", "exp": 2000}))),
                1000
            ),
            Err(AdminAuthError::NotAdmin)
        ));
    }
}
