//! Admin authentication (EdDSA bearer JWT) and the admin operations.

use coffer_protocol::jwt::{self, VerifyingKey};
use coffer_protocol::{b64, ErrorKind};
use serde::Deserialize;
use serde_json::Value;

use super::{now_ms, parse_resource_path, Kbs, KbsError};
use crate::policy::RESOURCE_POLICY_ID;
use crate::store::{AuditEntry, PolicyKind, StoredPolicy};

/// Checks admin bearer tokens: Ed25519 signature by the configured key, `exp` in the future,
/// `role == "admin"`, and `iss` / `aud` when configured.
pub struct AdminAuth {
    key: VerifyingKey,
    issuer: String,
    audience: String,
    deny_all: bool,
}

impl AdminAuth {
    /// A checker for tokens signed by `key`.
    pub fn new(
        key: ed25519_dalek::VerifyingKey,
        issuer: String,
        audience: String,
        deny_all: bool,
    ) -> Self {
        AdminAuth {
            key: VerifyingKey::EdDsa(key),
            issuer,
            audience,
            deny_all,
        }
    }

    /// Validates an `Authorization` header value; returns the admin identity (`sub` or `iss`)
    /// or why it was refused.
    pub fn authorize(&self, authorization: Option<&str>, now: i64) -> Result<String, String> {
        if self.deny_all {
            return Err("admin API is disabled (admin.deny_all)".into());
        }
        let header = authorization.ok_or("Failed to parse HTTP Auth Bearer header: missing")?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or("Failed to parse HTTP Auth Bearer header")?;
        let d = jwt::verify(token, &self.key, now, 30)
            .map_err(|e| format!("admin token rejected: {e}"))?;
        let claims = &d.claims;
        if claims.get("role").and_then(Value::as_str) != Some("admin") {
            return Err("admin token rejected: role claim is not \"admin\"".into());
        }
        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        if !self.issuer.is_empty() && iss != self.issuer {
            return Err(format!(
                "admin token rejected: issuer must be {:?}",
                self.issuer
            ));
        }
        if !self.audience.is_empty() {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => a == &self.audience,
                Some(Value::Array(a)) => {
                    a.iter().any(|v| v.as_str() == Some(self.audience.as_str()))
                }
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "admin token rejected: audience must include {:?}",
                    self.audience
                ));
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

/// Reference values expire after a year unless re-registered (as in Trustee's RVPS).
const REFERENCE_VALUE_TTL_SECS: i64 = 365 * 24 * 3600;

fn decode_policy(b64_text: &str) -> Result<String, KbsError> {
    let bytes = b64::lenient_decode(b64_text).map_err(|e| {
        KbsError::new(
            ErrorKind::ParsePolicyError,
            format!("Failed to parse policy: base64: {e}"),
        )
    })?;
    String::from_utf8(bytes).map_err(|_| {
        KbsError::new(
            ErrorKind::ParsePolicyError,
            "Failed to parse policy: not UTF-8",
        )
    })
}

impl Kbs {
    async fn audit_admin(&self, actor: &str, op: &str, target: &str) {
        // Every admin change may touch what handshakes read.
        self.snapshots.invalidate();
        self.audit(AuditEntry {
            at_ms: now_ms(),
            action: format!("admin:{op}"),
            decision: "ok".into(),
            resource: Some(target.to_string()),
            actor: Some(actor.to_string()),
            ..Default::default()
        })
        .await;
    }

    fn check_policy(&self, text: &str) -> Result<(), KbsError> {
        self.policies.check(text).map_err(|e| {
            KbsError::new(
                ErrorKind::PolicyEngineError,
                format!("Policy engine error: {e}"),
            )
        })
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
        self.audit_admin(actor, "set-resource", &path.to_string())
            .await;
        Ok(())
    }

    /// Deletes a resource.
    pub async fn admin_delete_resource(&self, actor: &str, path: &str) -> Result<(), KbsError> {
        let path = parse_resource_path(path)?;
        if !self.secrets.delete(&path).await? {
            return Err(KbsError::new(
                ErrorKind::ResourceNotFound,
                format!("resource {path} not found"),
            ));
        }
        self.audit_admin(actor, "delete-resource", &path.to_string())
            .await;
        Ok(())
    }

    /// `POST /resource-policy` with `{"policy": base64(rego)}`.
    pub async fn admin_set_resource_policy(
        &self,
        actor: &str,
        body: &[u8],
    ) -> Result<(), KbsError> {
        let up: PolicyUpload = serde_json::from_slice(body).map_err(|e| {
            KbsError::new(
                ErrorKind::ParsePolicyError,
                format!("Failed to parse policy: {e}"),
            )
        })?;
        let text = decode_policy(&up.policy)?;
        self.check_policy(&text)?;
        self.store
            .put_policy(
                RESOURCE_POLICY_ID,
                PolicyKind::Resource,
                &text,
                crate::now_secs(),
            )
            .await?;
        self.audit_admin(actor, "set-resource-policy", RESOURCE_POLICY_ID)
            .await;
        Ok(())
    }

    /// `POST /attestation-policy` with `{"policy_id", "policy": base64(rego), "type"}`.
    pub async fn admin_set_attestation_policy(
        &self,
        actor: &str,
        body: &[u8],
    ) -> Result<(), KbsError> {
        let fail = |d: String| {
            KbsError::new(
                ErrorKind::AttestationError,
                format!("Attestation error: Set Attestation Policy failed: {d}"),
            )
        };
        let up: AttestationPolicyUpload =
            serde_json::from_slice(body).map_err(|e| fail(e.to_string()))?;
        if up.policy_id.is_empty()
            || !up
                .policy_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        {
            return Err(fail(format!("invalid policy_id {:?}", up.policy_id)));
        }
        let text = decode_policy(&up.policy).map_err(|e| fail(e.detail))?;
        self.policies
            .check(&text)
            .map_err(|e| fail(e.to_string()))?;
        self.store
            .put_policy(
                &up.policy_id,
                PolicyKind::Attestation,
                &text,
                crate::now_secs(),
            )
            .await?;
        self.audit_admin(actor, "set-attestation-policy", &up.policy_id)
            .await;
        Ok(())
    }

    /// Ids of the stored resource policies (Trustee answers `["resource-policy"]`).
    pub async fn admin_resource_policy_ids(&self) -> Result<Vec<String>, KbsError> {
        Ok(self.store.list_policy_ids(PolicyKind::Resource).await?)
    }

    /// A stored policy with its text.
    pub async fn admin_get_policy(&self, id: &str) -> Result<StoredPolicy, KbsError> {
        self.store.get_policy(id).await?.ok_or_else(|| {
            KbsError::new(
                ErrorKind::ResourceNotFound,
                format!("policy {id} not found"),
            )
        })
    }

    /// `POST /reference-value` with an RVPS message of type `sample`.
    pub async fn admin_register_reference_value(
        &self,
        actor: &str,
        body: &[u8],
    ) -> Result<Vec<String>, KbsError> {
        let fail = |d: String| {
            KbsError::new(
                ErrorKind::RvpsError,
                format!("RVPS configuration failed: Failed to register reference value: {d}"),
            )
        };
        let msg: RvpsMessage = serde_json::from_slice(body).map_err(|e| fail(e.to_string()))?;
        if msg.version != "0.1.0" {
            return Err(fail(format!(
                "Version unmatched! Need 0.1.0, given {}.",
                msg.version
            )));
        }
        if msg.kind != "sample" {
            return Err(fail(format!(
                "extractor {:?} is not supported (supported: sample)",
                msg.kind
            )));
        }
        let payload =
            b64::lenient_decode(&msg.payload).map_err(|e| fail(format!("payload base64: {e}")))?;
        let values: serde_json::Map<String, Value> = serde_json::from_slice(&payload)
            .map_err(|e| fail(format!("payload must be a JSON object: {e}")))?;
        let now = crate::now_secs();
        let mut names = Vec::new();
        for (name, value) in values {
            self.store
                .put_reference_value(
                    &name,
                    &value.to_string(),
                    now + REFERENCE_VALUE_TTL_SECS,
                    now,
                )
                .await?;
            self.audit_admin(actor, "set-reference-value", &name).await;
            names.push(name);
        }
        Ok(names)
    }

    /// A registered reference value.
    pub async fn admin_get_reference_value(&self, name: &str) -> Result<Value, KbsError> {
        let all = self.store.reference_values(crate::now_secs()).await?;
        all.into_iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| serde_json::from_str(&v).ok())
            .ok_or_else(|| {
                KbsError::new(ErrorKind::RvpsError, format!("RVPS configuration failed: No reference value found for the given id: {name}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(sk: &ed25519_dalek::SigningKey, claims: Value) -> String {
        format!(
            "Bearer {}",
            jwt::sign(
                &claims,
                Default::default(),
                &jwt::SigningKey::EdDsa(sk.clone())
            )
        )
    }

    #[test]
    fn admin_tokens() {
        let sk = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let auth = AdminAuth::new(sk.verifying_key(), "coffer".into(), "kbs".into(), false);
        let good = json!({"iss": "coffer", "aud": ["kbs"], "role": "admin", "exp": 2000});
        assert_eq!(
            auth.authorize(Some(&token(&sk, good.clone())), 1000)
                .unwrap(),
            "coffer"
        );
        assert!(auth.authorize(None, 1000).is_err());
        assert!(auth.authorize(Some("Basic abc"), 1000).is_err());
        assert!(auth
            .authorize(Some(&token(&sk, good.clone())), 3000)
            .unwrap_err()
            .contains("expired"));
        let forged = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        assert!(auth
            .authorize(Some(&token(&forged, good)), 1000)
            .unwrap_err()
            .contains("signature"));
        let not_admin = json!({"iss": "coffer", "aud": "kbs", "role": "reader", "exp": 2000});
        assert!(auth
            .authorize(Some(&token(&sk, not_admin)), 1000)
            .unwrap_err()
            .contains("role"));
        let wrong_iss = json!({"iss": "x", "aud": "kbs", "role": "admin", "exp": 2000});
        assert!(auth
            .authorize(Some(&token(&sk, wrong_iss)), 1000)
            .unwrap_err()
            .contains("issuer"));
        let no_aud = json!({"iss": "coffer", "role": "admin", "exp": 2000});
        assert!(auth
            .authorize(Some(&token(&sk, no_aud)), 1000)
            .unwrap_err()
            .contains("audience"));
        let deny = AdminAuth::new(sk.verifying_key(), String::new(), String::new(), true);
        assert!(deny.authorize(None, 0).is_err());
    }
}
