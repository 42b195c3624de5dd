//! `/auth`, `/attest` and resource release, for every KBS protocol version at once: the
//! version named at `/auth` is stored in the session and decides how `/attest` is read,
//! which object the evidence is bound to and the layout of the released JWE.

use std::sync::atomic::Ordering;

use coffer_protocol::jwe::{self, FlattenedJwe, JweShape};
use coffer_protocol::jwk::ALG_RSA1_5;
use coffer_protocol::messages::{AttestationParts, Challenge, Request};
use coffer_protocol::runtime_data::{binding_claims, binding_hash};
use coffer_protocol::{b64, HashAlgorithm, ProtocolVersion, Tee, TeePubKey};
use rand::RngCore;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::error::{
    AttestError, AuthError, Internal, NotFound, PolicyEngineFailure, TokenFailure, Unavailable,
};
use super::{claims_digest, parse_resource_path, Kbs, KbsError};
use crate::attestation::gpu::GpuEvidence;
use crate::attestation::{Binding, VerifyError};
use crate::policy::PROTOCOL_VERSION_CLAIM;
use crate::store::{AuditAction, AuditEntry, Decision, Session, SessionState};

/// The `init_data_claims` the policy sees: the parsed init-data document as JSON. A
/// document without a JSON form is refused, never passed on as `null`.
fn init_data_claims(parsed: &impl Serialize) -> Result<Value, AttestError> {
    serde_json::to_value(parsed).map_err(AttestError::InitDataClaims)
}

/// JSON pointers where a token may carry the TEE public key (Trustee's search order).
const TEE_PUBKEY_POINTERS: [&str; 5] = [
    "/tdx/attester_runtime_data/tee-pubkey",
    "/tdx/attester_user_data/tee-pubkey",
    "/customized_claims/runtime_data/tee-pubkey",
    "/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey",
    "/tee-pubkey",
];

/// Keys of the annotated evidence that are not a TEE's claims.
const NON_TEE_KEYS: [&str; 3] = ["report_data", "runtime_data_claims", "init_data_claims"];

/// Parses a `tee-pubkey` as the protocol `version` defines it: 0.1.0 knew only RSA and
/// never read `kty`.
fn parse_tee_key(
    version: ProtocolVersion,
    jwk: &Value,
) -> Result<TeePubKey, coffer_protocol::jwk::JwkError> {
    if version == ProtocolVersion::V0_1_0 {
        TeePubKey::from_legacy_jwk(jwk)
    } else {
        TeePubKey::from_jwk(jwk)
    }
}

/// The protocol version a token was earned with, from the private claim this server adds.
fn version_of_claims(claims: &Value) -> Option<ProtocolVersion> {
    claims.get(PROTOCOL_VERSION_CLAIM)?.as_str()?.parse().ok()
}

/// JWE layout for a release without a session and without the version claim (a token from
/// an older coffer): guest-components exports `RSA1_5` keys only in 0.1.x, so such a key is
/// the best hint for the legacy layout.
fn shape_hint(jwk: &Value) -> JweShape {
    let is = |member: &str, want: &str| jwk.get(member).and_then(Value::as_str) == Some(want);
    if is("kty", "RSA") && is("alg", ALG_RSA1_5) {
        JweShape::Legacy
    } else {
        JweShape::Rfc7516
    }
}

fn tee_of_claims(claims: &Value) -> Option<String> {
    claims
        .pointer("/submods/cpu0/ear.veraison.annotated-evidence")?
        .as_object()?
        .keys()
        .find(|k| !NON_TEE_KEYS.contains(&k.as_str()))
        .cloned()
}

/// What a successful appraisal produced: the token and what the audit log records.
struct Appraised {
    token: String,
    annotated: Value,
    appraisal: crate::policy::Appraisal,
}

/// How long a session is kept even when the table is full: a guest attests within seconds of
/// `/auth`, and its resource requests follow its attestation within seconds.
const SESSION_GRACE_SECS: i64 = 5;

impl Kbs {
    /// `POST /auth`: validates the request and opens a session with a fresh nonce.
    pub async fn auth(&self, body: &[u8]) -> Result<(Session, Challenge), KbsError> {
        // `extra-params` is read as any JSON value: 0.1.0 guests send a string (PAI-EAS's
        // probe sends "foo"), later ones an object.
        let req: Request =
            serde_json::from_slice(body).map_err(|e| KbsError::auth(AuthError::Body(e)))?;
        let version: ProtocolVersion = req.version.parse().map_err(|_| {
            let parses = req.version.split('.').count() == 3
                && req
                    .version
                    .split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            let requested = req.version.clone();
            KbsError::auth(if parses {
                AuthError::VersionMismatch { requested }
            } else {
                AuthError::BadVersion { requested }
            })
        })?;
        if self.verifiers.get(req.tee).is_none() {
            return Err(KbsError::auth(AuthError::UnsupportedTee {
                tee: req.tee,
                supported: self.verifiers.names().join(", "),
            }));
        }
        let now = self.clock.now_secs()?;
        self.check_session_room(now, req.tee).await?;
        let mut nonce = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let session = Session {
            id: uuid::Uuid::new_v4().simple().to_string(),
            tee: req.tee,
            hash_alg: HashAlgorithm::Sha384,
            protocol_version: version,
            state: SessionState::Authed {
                nonce: b64::std_encode(nonce),
            },
            created_at: now,
            expires_at: now + self.session_ttl_secs,
        };
        self.store.create_session(&session).await?;
        tracing::debug!(session = %session.id, protocol = %version, tee = %session.tee, "handshake opened");
        let SessionState::Authed { nonce } = &session.state else {
            unreachable!("just built")
        };
        // `""` means SHA-384 to every version, and is the only form a 0.1.0 guest parses.
        let challenge = Challenge {
            nonce: nonce.clone(),
            extra_params: json!(""),
        };
        Ok((session, challenge))
    }

    /// About 1% of `max_sessions` (at least 1): how many `/auth` calls pass between counts
    /// of the session table, and how many sessions one eviction removes.
    fn session_batch(&self) -> u64 {
        (self.max_sessions / 100).max(1)
    }

    /// `/auth` is unauthenticated and each call stores a row, so the table is bounded: when
    /// it is full, expired sessions go first, then sessions older than [`SESSION_GRACE_SECS`]
    /// — never-attested ones (what a flood of bare `/auth` calls leaves) before attested ones
    /// (their guest fetched its resources long ago, or re-attests on 401 as guest-components
    /// does). A guest's own handshake finishes within the grace period, so neither a flood
    /// nor a busy hour breaks it; only a table filled within the grace period refuses (429).
    /// The table is counted once per [`Self::session_batch`] calls of this process, so the bound
    /// may be overshot by one batch per replica plus the calls in flight.
    async fn check_session_room(&self, now: i64, tee: Tee) -> Result<(), KbsError> {
        if self.max_sessions == 0 {
            return Ok(());
        }
        let batch = self.session_batch();
        let since = self.auths_since_count.fetch_add(1, Ordering::Relaxed) + 1;
        if since < batch {
            return Ok(());
        }
        let n = self.store.count_sessions().await?;
        if n < self.max_sessions.saturating_sub(batch) {
            // Room for at least one more batch: count again only after it.
            self.auths_since_count.store(0, Ordering::Relaxed);
            return Ok(());
        }
        // Near or at the bound: count on every call until there is room again.
        if n < self.max_sessions {
            return Ok(());
        }
        self.store.purge_expired_sessions(now).await?;
        if self.store.count_sessions().await? < self.max_sessions {
            return Ok(());
        }
        // A batch, so a sustained flood pays one eviction per ~1% of the table, not per call.
        if self
            .store
            .evict_sessions(batch + (n - self.max_sessions), now - SESSION_GRACE_SECS)
            .await?
            > 0
        {
            self.metrics
                .attestations
                .with_label_values(&[tee.name(), "evicted"])
                .inc();
            // A batch of room was made: count again only after it is used, as above.
            self.auths_since_count.store(0, Ordering::Relaxed);
            return Ok(());
        }
        // Another replica may have evicted the same rows a moment earlier.
        if self.store.count_sessions().await? < self.max_sessions {
            return Ok(());
        }
        self.metrics
            .attestations
            .with_label_values(&[tee.name(), "session_limit"])
            .inc();
        tracing::warn!(
            max_sessions = self.max_sessions,
            "session limit reached; /auth refused (attestation.max_sessions)"
        );
        Err(KbsError::TooManyRequests)
    }

    /// `POST /attest`: verifies evidence bound to the session's nonce, appraises it and
    /// issues a token. The nonce is consumed atomically: a replay (on this or any replica)
    /// fails. Every outcome for a live session is audited: a success in the same store call
    /// that consumes the nonce, a refusal with its reason. `client` is the caller's address.
    pub async fn attest(
        &self,
        session_id: Option<&str>,
        client: Option<&str>,
        body: &[u8],
    ) -> Result<(Session, String), KbsError> {
        let id = session_id.ok_or(KbsError::attest(AttestError::NoCookie))?;
        let now = self.clock.now_secs()?;
        let session = self
            .store
            .load_session(id, now)
            .await?
            .ok_or(KbsError::attest(AttestError::NoSession))?;
        let nonce = match &session.state {
            SessionState::Attested { token } => return Ok((session.clone(), token.clone())),
            SessionState::Authed { nonce } => nonce.clone(),
        };
        let result = self.appraise(&session, &nonce, body, now).await;
        let tee = session.tee.name();
        let at_ms = self.clock.now_ms()?;
        let record = |decision| AuditEntry {
            session_id: Some(session.id.clone()),
            tee: Some(tee.to_string()),
            client_addr: client.map(str::to_string),
            ..AuditEntry::new(at_ms, AuditAction::Attest, decision)
        };
        let Appraised {
            token,
            annotated,
            appraisal,
        } = match result {
            Ok(t) => t,
            Err(e) => {
                self.metrics
                    .attestations
                    .with_label_values(&[tee, "refused"])
                    .inc();
                // A storage failure is not the guest's doing and has nowhere to be written.
                if !matches!(e, KbsError::StorageUnavailable(_)) {
                    self.audit(AuditEntry {
                        detail: Some(e.to_string()),
                        ..record(Decision::Deny)
                    })
                    .await;
                }
                return Err(e);
            }
        };
        let allowed = AuditEntry {
            verdict: Some(appraisal.status.to_string()),
            detail: Some(format!("token issued ({})", appraisal.status)),
            trust_vector: Some(Value::Object(appraisal.trust_vector)),
            claims: Some(super::capped_claims(annotated, self.audit_claims_max_bytes)),
            ..record(Decision::Allow)
        };
        if !self
            .store
            .consume_nonce_audited(id, &nonce, &token, now, &allowed)
            .await?
        {
            self.metrics
                .attestations
                .with_label_values(&[tee, "replay"])
                .inc();
            let refusal = AttestError::Replay;
            self.audit(AuditEntry {
                detail: Some(refusal.to_string()),
                ..record(Decision::Deny)
            })
            .await;
            return Err(KbsError::attest(refusal));
        }
        self.metrics
            .attestations
            .with_label_values(&[tee, "issued"])
            .inc();
        tracing::debug!(session = %super::short_session_id(&session.id), "token issued");
        Ok((session, token))
    }

    async fn appraise(
        &self,
        session: &Session,
        nonce: &str,
        body: &[u8],
        now: i64,
    ) -> Result<Appraised, KbsError> {
        let version = session.protocol_version;
        let att = AttestationParts::parse(version, body)
            .map_err(|e| KbsError::attest(AttestError::Body(e)))?;
        // Only 0.4.0 echoes the nonce; older versions bind it through the evidence alone.
        if att.nonce.as_deref().is_some_and(|n| n != nonce) {
            return Err(KbsError::attest(AttestError::NonceMismatch));
        }
        parse_tee_key(version, &att.tee_pubkey)
            .map_err(|e| KbsError::attest(AttestError::TeeKey(e)))?;
        let additional = &att.additional_evidence;
        let gpus = GpuEvidence::read(additional, &att.evidence)
            .map_err(|e| KbsError::attest(AttestError::GpuEvidence(e)))?;
        let verifier = self
            .verifiers
            .get(session.tee)
            .ok_or(KbsError::attest(AttestError::UnsupportedTee(session.tee)))?;
        tracing::debug!(tee = %verifier.tee(), protocol = %version, "verifier chosen");
        let alg = session.hash_alg;
        let hash = binding_hash(version, alg, nonce, &att.tee_pubkey, additional);
        let binding = Binding {
            report_data: &hash,
            init_data: att.init_data.as_ref(),
            now,
        };
        let tee_claims = verifier
            .verify(&att.evidence, &binding)
            .await
            .map_err(|e| match e {
                e @ VerifyError::Unavailable { .. } => {
                    KbsError::StorageUnavailable(Unavailable::Verification(e))
                }
                e => KbsError::attest(AttestError::Evidence(e)),
            })?;

        let mut annotated = Map::new();
        annotated.insert("report_data".into(), json!(b64::std_encode(&hash)));
        annotated.insert(
            "runtime_data_claims".into(),
            binding_claims(version, nonce, &att.tee_pubkey, additional),
        );
        if let Some(init) = &att.init_data {
            if init.format != "toml" {
                return Err(KbsError::attest(AttestError::InitDataFormat(
                    init.format.clone(),
                )));
            }
            let parsed: toml::Value = toml::from_str(&init.body)
                .map_err(|e| KbsError::attest(AttestError::InitDataToml(e)))?;
            annotated.insert(
                "init_data_claims".into(),
                init_data_claims(&parsed).map_err(KbsError::attest)?,
            );
        }
        annotated.insert(verifier.tee().name().to_string(), tee_claims);
        let annotated = Value::Object(annotated);

        let snapshot = self.snapshot().await?;
        tracing::debug!(
            policy = snapshot.cpu_policy_id,
            "appraising with attestation policy"
        );
        let appraisal = self
            .policies
            .appraise(
                &snapshot.cpu_policy,
                &annotated,
                snapshot.reference_values.clone(),
            )
            .map_err(|source| {
                KbsError::PolicyEngineError(PolicyEngineFailure::Appraisal {
                    policy: snapshot.cpu_policy_id,
                    source,
                })
            })?;
        tracing::debug!(
            policy = snapshot.cpu_policy_id,
            status = %appraisal.status,
            "appraisal status"
        );
        log_appraisal(
            verifier.tee(),
            version,
            &annotated,
            snapshot.cpu_policy_id,
            &appraisal,
        );
        let devices = self
            .device_submods(gpus, &att.tee_pubkey, nonce, alg, &hash, &snapshot, now)
            .await?;
        let token = self
            .tokens
            .issue(annotated.clone(), &appraisal, devices, now, version)
            .map_err(|e| KbsError::InternalError(Internal::Sign(e)))?;
        Ok(Appraised {
            token,
            annotated,
            appraisal,
        })
    }

    /// `GET /resource/...`: checks the token (session or bearer) and the resource policy,
    /// then returns the resource encrypted to the token's TEE key.
    pub async fn release(
        &self,
        session_id: Option<&str>,
        bearer: Option<&str>,
        client: Option<&str>,
        path: &str,
        query: Map<String, Value>,
    ) -> Result<FlattenedJwe, KbsError> {
        let path = parse_resource_path(path)?;
        let now = self.clock.now_secs()?;
        let session = match session_id {
            Some(id) => self.store.load_session(id, now).await?,
            None => None,
        };
        let claims = match (&session, bearer) {
            (
                Some(Session {
                    state: SessionState::Attested { token },
                    ..
                }),
                _,
            ) => self.tokens.claims_of_stored(token, now),
            (_, Some(b)) => self.tokens.verify(b, now),
            _ => return Err(KbsError::TokenNotFound),
        };
        let session_version = session
            .as_ref()
            .filter(|s| matches!(s.state, SessionState::Attested { .. }))
            .map(|s| s.protocol_version);
        let claims = claims.map_err(|e| KbsError::TokenVerifierError(TokenFailure::Jwt(e)))?;
        let tee_key = TEE_PUBKEY_POINTERS
            .iter()
            .find_map(|p| claims.pointer(p))
            .ok_or(KbsError::TokenVerifierError(TokenFailure::NoTeeKey))?;
        let version = session_version.or_else(|| version_of_claims(&claims));
        let shape = version.map_or_else(|| shape_hint(tee_key), ProtocolVersion::jwe_shape);
        // A token without the version claim (an older coffer's) is read as the newest
        // version's, whose key rules are the strictest.
        let tee_key = parse_tee_key(version.unwrap_or_default(), tee_key)
            .map_err(|e| KbsError::TokenVerifierError(TokenFailure::BadTeeKey(e)))?;
        // Refused before the secret is read: a 0.1.x guest cannot open anything else.
        if shape == JweShape::Legacy && tee_key.alg() != ALG_RSA1_5 {
            return Err(KbsError::JweError(jwe::JweError::LegacyKey(
                tee_key.alg().to_string(),
            )));
        }

        let snapshot = self.snapshot().await?;
        let request = crate::policy::ResourceRequest {
            segments: path.segments(),
            query,
        };
        let verdict = self
            .policies
            .allow_resource(
                &snapshot.resource_policy,
                &claims,
                &request,
                self.resource_path_dialect,
            )
            .map_err(|e| KbsError::PolicyEngineError(PolicyEngineFailure::Evaluation(e)))?;
        let allowed = verdict.allow;
        tracing::info!(
            resource = %path,
            allow = allowed,
            resource_path = %verdict.dialect.as_str(),
            "resource policy decided"
        );
        let at_ms = self.clock.now_ms()?;
        let entry = |decision, detail: Option<&str>| AuditEntry {
            session_id: session.as_ref().map(|s| s.id.clone()),
            tee: session
                .as_ref()
                .map(|s| s.tee.name().to_string())
                .or_else(|| tee_of_claims(&claims)),
            claims_digest: Some(claims_digest(&claims)),
            resource: Some(path.to_string()),
            client_addr: client.map(str::to_string),
            detail: detail.map(str::to_string),
            ..AuditEntry::new(at_ms, AuditAction::Release, decision)
        };
        if !allowed {
            self.metrics.releases.with_label_values(&["deny"]).inc();
            self.audit(entry(Decision::Deny, Some("resource policy")))
                .await;
            tracing::debug!(resource = %path, "release refused by the resource policy");
            return Err(KbsError::PolicyDeny);
        }
        let Some(secret) = self.secrets.get(&path).await? else {
            self.metrics
                .releases
                .with_label_values(&["not_found"])
                .inc();
            self.audit(entry(Decision::Deny, Some("no such resource")))
                .await;
            return Err(KbsError::ResourceNotFound(NotFound::Resource(path)));
        };
        let jwe = jwe::encrypt_as(shape, &tee_key, &secret).map_err(KbsError::JweError)?;
        self.metrics.releases.with_label_values(&["allow"]).inc();
        self.audit(entry(Decision::Allow, None)).await;
        tracing::debug!(resource = %path, shape = ?shape, "resource released");
        Ok(jwe)
    }
}

/// The one log line per appraised attestation an operator reads to see whether a guest was
/// verified: TEE, the measurements policies usually pin, the TCB status, the policy and its
/// verdict. Only public values (measurements, claims); never keys or secrets.
fn log_appraisal(
    tee: Tee,
    version: ProtocolVersion,
    annotated: &Value,
    policy_id: &str,
    appraisal: &crate::policy::Appraisal,
) {
    let claims = annotated.get(tee.name()).unwrap_or(&Value::Null);
    let field = |ptr: &str| {
        claims
            .pointer(ptr)
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string()
    };
    let vector = Value::Object(appraisal.trust_vector.clone()).to_string();
    tracing::info!(
        tee = %tee,
        protocol = %version,
        mr_td = %field("/quote/body/mr_td"),
        rtmr_3 = %field("/quote/body/rtmr_3"),
        mr_enclave = %field("/quote/body/mr_enclave"),
        tcb_status = %field("/tcb_status"),
        debug = claims.pointer("/td_attributes/debug").and_then(serde_json::Value::as_bool),
        policy = %policy_id,
        policy_form = %appraisal.form.as_str(),
        status = %appraisal.status,
        trust_vector = %vector,
        "attestation appraised"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parsed init-data document whose claims have no JSON form is an error, not `null`
    /// in the policy input. (TOML values always have one; the conversion is checked with a
    /// value that has not: a map with non-string keys.)
    #[test]
    fn init_data_without_a_json_form_is_refused() {
        let no_json: std::collections::BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert!(matches!(
            init_data_claims(&no_json),
            Err(AttestError::InitDataClaims(_))
        ));
        let parsed: toml::Value = toml::from_str("[image]\ndigest = \"ab\"").unwrap();
        assert_eq!(
            init_data_claims(&parsed).unwrap(),
            json!({"image": {"digest": "ab"}})
        );
    }
}
