//! The admin API of coffer-server (and the subset Trustee's KBS shares).

use coffer_protocol::jwt::{self, SigningKey};
use coffer_protocol::{b64, AuditEntry, AuditPage, ResourcePath, StoredPolicy};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::error::check;
use crate::ClientError;

/// Mints an admin token (EdDSA JWT) from an Ed25519 PKCS#8 PEM private key.
pub fn mint_admin_token(
    key_pem: &str,
    issuer: &str,
    audience: &str,
    ttl_secs: i64,
) -> Result<String, ClientError> {
    let sk = ed25519_dalek::SigningKey::from_pkcs8_pem(key_pem).map_err(|_| {
        ClientError::Config("admin key is not an Ed25519 PKCS#8 PEM private key".into())
    })?;
    // A clock before 1970 would mint tokens that expired decades ago: say so instead.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .map_err(|_| ClientError::Config("the system clock is set before 1970".into()))?;
    let claims = json!({"iss": issuer, "aud": [audience], "role": "admin", "iat": now, "exp": now + ttl_secs});
    jwt::sign(&claims, Default::default(), &SigningKey::EdDsa(sk))
        .map_err(|e| ClientError::Config(format!("admin token: {e}")))
}

/// An authenticated admin client.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl AdminClient {
    /// A client for `url` presenting `token`.
    pub fn new(http: reqwest::Client, url: &str, token: String) -> Self {
        AdminClient {
            http,
            base: url.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
        }
    }

    async fn send(
        &self,
        what: &str,
        rb: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let resp =
            rb.bearer_auth(&self.token)
                .send()
                .await
                .map_err(|source| ClientError::Transport {
                    url: url.to_string(),
                    source,
                })?;
        check(what, resp).await
    }

    async fn post(&self, what: &str, path: &str, body: Value) -> Result<(), ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(what, self.http.post(&url).json(&body), &url)
            .await
            .map(|_| ())
    }

    async fn get_json(&self, what: &str, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self.send(what, self.http.get(&url), &url).await?;
        resp.json()
            .await
            .map_err(|e| ClientError::Protocol(format!("{what}: invalid JSON answer: {e}")))
    }

    /// GETs `path` and reads the answer as a `T`; an answer of another shape is
    /// [`ClientError::Answer`] naming what is wrong, never a default value.
    async fn get_typed<T: DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
    ) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        let resp = self.send(what, self.http.get(&url), &url).await?;
        let body = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Transport { url, source })?;
        decode(what, &body)
    }

    /// Stores resource bytes.
    pub async fn set_resource(
        &self,
        path: &ResourcePath,
        value: Vec<u8>,
    ) -> Result<(), ClientError> {
        let url = format!("{}/kbs/v0/resource/{path}", self.base);
        let rb = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(value);
        self.send("set-resource", rb, &url).await.map(|_| ())
    }

    /// Deletes a resource.
    pub async fn delete_resource(&self, path: &ResourcePath) -> Result<(), ClientError> {
        let url = format!("{}/kbs/v0/resource/{path}", self.base);
        self.send("delete-resource", self.http.delete(&url), &url)
            .await
            .map(|_| ())
    }

    /// Uploads the resource policy.
    pub async fn set_resource_policy(&self, rego: &str) -> Result<(), ClientError> {
        self.post(
            "set-resource-policy",
            "/kbs/v0/resource-policy",
            json!({"policy": b64::url_encode(rego)}),
        )
        .await
    }

    /// Uploads an attestation policy under `id` (Trustee's CPU policy id is `default_cpu`).
    pub async fn set_attestation_policy(&self, id: &str, rego: &str) -> Result<(), ClientError> {
        let body = json!({"type": "rego", "policy_id": id, "policy": b64::url_encode(rego)});
        self.post("set-attestation-policy", "/kbs/v0/attestation-policy", body)
            .await
    }

    /// A stored policy's Rego text (coffer-server only).
    pub async fn get_policy(&self, id: &str) -> Result<String, ClientError> {
        let policy: StoredPolicy = self
            .get_typed("get-policy", &format!("/coffer/v1/policies/{id}"))
            .await?;
        Ok(policy.body)
    }

    /// Registers sample-format reference values `{name: value}`.
    pub async fn set_reference_values(&self, values: &Value) -> Result<(), ClientError> {
        let body = json!({"version": "0.1.0", "type": "sample", "payload": b64::std_encode(values.to_string())});
        self.post("set-reference-value", "/kbs/v0/reference-value", body)
            .await
    }

    /// Reads a reference value.
    pub async fn get_reference_value(&self, name: &str) -> Result<Value, ClientError> {
        self.get_json(
            "get-reference-value",
            &format!("/kbs/v0/reference-value/{name}"),
        )
        .await
    }

    async fn delete(&self, what: &str, path: &str) -> Result<(), ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(what, self.http.delete(&url), &url)
            .await
            .map(|_| ())
    }

    /// Names of the stored resources as `(repository, type, tag)`, optionally only one
    /// repository's and/or type's (Alibaba's `GET /kbs/v0/resources`; values never leave).
    pub async fn list_resources(
        &self,
        repository: Option<&str>,
        kind: Option<&str>,
    ) -> Result<Vec<(String, String, String)>, ClientError> {
        let mut query = Vec::new();
        if let Some(r) = repository {
            query.push(format!("repository={}", urlencode(r)));
        }
        if let Some(t) = kind {
            query.push(format!("type={}", urlencode(t)));
        }
        let path = if query.is_empty() {
            "/kbs/v0/resources".to_string()
        } else {
            format!("/kbs/v0/resources?{}", query.join("&"))
        };
        let v = self.get_json("list-resources", &path).await?;
        let bad = || ClientError::Protocol("list-resources: answer is not a resource list".into());
        let field = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
        v.as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|e| {
                let entry = || {
                    Some((
                        field(e, "repository_name")?,
                        field(e, "resource_type")?,
                        field(e, "resource_tag")?,
                    ))
                };
                entry().ok_or_else(bad)
            })
            .collect()
    }

    /// Attestation policy ids with the base64url SHA-384 of their text.
    pub async fn list_attestation_policies(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, ClientError> {
        let v = self
            .get_json("list-attestation-policies", "/kbs/v0/attestation-policies")
            .await?;
        serde_json::from_value(v).map_err(|e| {
            ClientError::Protocol(format!("list-attestation-policies: unexpected answer: {e}"))
        })
    }

    /// An attestation policy's Rego text (Alibaba's `GET /kbs/v0/attestation-policy/{id}`).
    pub async fn get_attestation_policy(&self, id: &str) -> Result<String, ClientError> {
        let url = format!("{}/kbs/v0/attestation-policy/{}", self.base, urlencode(id));
        let resp = self
            .send("get-attestation-policy", self.http.get(&url), &url)
            .await?;
        let body = resp.text().await.map_err(|source| ClientError::Transport {
            url: url.clone(),
            source,
        })?;
        // The body is bare base64url; tolerate a JSON-quoted string too.
        let b64_text = body.trim().trim_matches('"');
        let bytes = b64::lenient_decode(b64_text).map_err(|e| {
            ClientError::Protocol(format!("get-attestation-policy: answer is not base64: {e}"))
        })?;
        String::from_utf8(bytes).map_err(|_| {
            ClientError::Protocol("get-attestation-policy: policy is not UTF-8".into())
        })
    }

    /// Deletes an attestation policy (the default ones cannot be deleted).
    pub async fn delete_attestation_policy(&self, id: &str) -> Result<(), ClientError> {
        self.delete(
            "delete-attestation-policy",
            &format!("/kbs/v0/attestation-policy/{}", urlencode(id)),
        )
        .await
    }

    /// Every unexpired reference value, `{name: value}` (Alibaba's `GET /kbs/v0/rvps/query`).
    pub async fn list_reference_values(&self) -> Result<Value, ClientError> {
        self.get_json("list-reference-values", "/kbs/v0/rvps/query")
            .await
    }

    /// Deletes a reference value; succeeds when it did not exist.
    pub async fn delete_reference_value(&self, name: &str) -> Result<(), ClientError> {
        self.delete(
            "delete-reference-value",
            &format!("/kbs/v0/rvps/delete/{}", urlencode(name)),
        )
        .await
    }

    /// One page of audit rows (coffer-server only). `query` holds the filters of
    /// `GET /coffer/v1/audit` as (name, value) pairs.
    pub async fn audit(&self, query: &[(&str, String)]) -> Result<AuditPage, ClientError> {
        let qs: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect();
        self.get_typed("audit", &format!("/coffer/v1/audit?{}", qs.join("&")))
            .await
    }

    /// One audit row with its recorded claims (coffer-server only).
    pub async fn audit_entry(&self, seq: i64) -> Result<AuditEntry, ClientError> {
        self.get_typed("audit", &format!("/coffer/v1/audit/{seq}"))
            .await
    }
}

/// Reads a JSON answer of the server as a `T`.
fn decode<T: DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|source| ClientError::Answer { what, source })
}

/// Percent-encodes one path segment or query value.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Answers one HTTP request with `body` as JSON; returns the base URL.
    async fn answer_once(body: &'static str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            // Read the request head (a GET has no body), then answer and close.
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(reply.as_bytes()).await.unwrap();
        });
        url
    }

    async fn audit_answer(body: &'static str) -> Result<AuditPage, ClientError> {
        let url = answer_once(body).await;
        AdminClient::new(reqwest::Client::new(), &url, "t".into())
            .audit(&[])
            .await
    }

    #[tokio::test]
    async fn an_audit_page_is_read_typed() {
        let page = audit_answer(
            r#"{"total":1,"offset":0,"limit":100,"entries":[{"seq":3,"at_ms":5,"action":"admin:delete-resource","decision":"ok","session_id":null,"tee":null,"claims_digest":null,"resource":"a/b/c","actor":"coffer","detail":null,"client_addr":null,"verdict":null,"trust_vector":null,"has_claims":false}]}"#,
        )
        .await
        .unwrap();
        assert_eq!(page.entries[0].seq, 3);
        assert_eq!(
            page.entries[0].action,
            coffer_protocol::AuditAction::Admin(coffer_protocol::AdminOp::DeleteResource)
        );
    }

    #[tokio::test]
    async fn a_malformed_audit_answer_is_an_error_not_a_zero() {
        for body in [
            // seq as a string, where the old client read `as_i64().unwrap_or(0)`
            r#"{"total":1,"offset":0,"limit":100,"entries":[{"seq":"3","at_ms":5,"action":"attest","decision":"deny","has_claims":false}]}"#,
            // a decision no server writes
            r#"{"total":1,"offset":0,"limit":100,"entries":[{"seq":3,"at_ms":5,"action":"attest","decision":"maybe","has_claims":false}]}"#,
            // no entries list at all
            r#"{"total":0,"offset":0,"limit":100}"#,
        ] {
            let r = audit_answer(body).await;
            assert!(
                matches!(&r, Err(ClientError::Answer { what: "audit", source }) if source.is_data()),
                "{body}: {r:?}"
            );
        }
    }
}
