//! `/auth`, `/attest` and resource release, for every KBS protocol version at once: the
//! version named at `/auth` is stored in the session and decides how `/attest` is read,
//! which object the evidence is bound to and the layout of the released JWE.

use std::sync::atomic::Ordering;

use coffer_protocol::jwe::{self, FlattenedJwe, JweShape};
use coffer_protocol::jwk::ALG_RSA1_5;
use coffer_protocol::messages::{AttestationParts, Challenge, Request};
use coffer_protocol::runtime_data::{binding_claims, binding_hash};
use coffer_protocol::{b64, ErrorKind, HashAlgorithm, ProtocolVersion, TeePubKey};
use rand::RngCore;
use serde_json::{json, Map, Value};

use super::{claims_digest, now_ms, parse_resource_path, Kbs, KbsError};
use crate::attestation::gpu::GpuEvidence;
use crate::attestation::{Binding, VerifyError};
use crate::policy::PROTOCOL_VERSION_CLAIM;
use crate::store::{AuditEntry, Session, SessionState};

fn auth_err(detail: impl std::fmt::Display) -> KbsError {
    KbsError::new(
        ErrorKind::AttestationError,
        format!("Attestation error: RCAR handshake Auth failed: {detail}"),
    )
}

fn attest_err(detail: impl std::fmt::Display) -> KbsError {
    KbsError::new(
        ErrorKind::AttestationError,
        format!("Attestation error: RCAR handshake Attest failed: {detail}"),
    )
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
        let req: Request = serde_json::from_slice(body)
            .map_err(|e| auth_err(format!("invalid request body: {e}")))?;
        let version: ProtocolVersion = req.version.parse().map_err(|_| {
            let list = ProtocolVersion::accepted_list();
            let parses = req.version.split('.').count() == 3
                && req
                    .version
                    .split('.')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            auth_err(if parses {
                format!(
                    "KBS Client Protocol Version Mismatch: expect one of {list} while the request is {}",
                    req.version
                )
            } else {
                format!("failed to parse KBS version {:?} (accepted: {list})", req.version)
            })
        })?;
        if self.verifiers.get(req.tee.name()).is_none() {
            return Err(auth_err(format!(
                "unsupported TEE \"{}\" (this server verifies: {})",
                req.tee,
                self.verifiers.names().join(", ")
            )));
        }
        let now = crate::now_secs();
        self.check_session_room(now, req.tee.name()).await?;
        let mut nonce = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let session = Session {
            id: uuid::Uuid::new_v4().simple().to_string(),
            tee: req.tee.to_string(),
            hash_alg: HashAlgorithm::Sha384.name().to_string(),
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
    async fn check_session_room(&self, now: i64, tee: &str) -> Result<(), KbsError> {
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
                .with_label_values(&[tee, "evicted"])
                .inc();
            return Ok(());
        }
        // Another replica may have evicted the same rows a moment earlier.
        if self.store.count_sessions().await? < self.max_sessions {
            return Ok(());
        }
        self.metrics
            .attestations
            .with_label_values(&[tee, "session_limit"])
            .inc();
        tracing::warn!(
            max_sessions = self.max_sessions,
            "session limit reached; /auth refused (attestation.max_sessions)"
        );
        Err(KbsError::new(
            ErrorKind::TooManyRequests,
            "too many handshakes in progress; retry later",
        ))
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
        let id = session_id.ok_or_else(|| attest_err("cookie not found"))?;
        let now = crate::now_secs();
        let session = self
            .store
            .load_session(id, now)
            .await?
            .ok_or_else(|| attest_err("session not found"))?;
        let nonce = match &session.state {
            SessionState::Attested { token } => return Ok((session.clone(), token.clone())),
            SessionState::Authed { nonce } => nonce.clone(),
        };
        let result = self.appraise(&session, &nonce, body, now).await;
        let tee = session.tee.clone();
        let record = AuditEntry {
            at_ms: now_ms(),
            action: "attest".into(),
            session_id: Some(session.id.clone()),
            tee: Some(tee.clone()),
            client_addr: client.map(str::to_string),
            ..Default::default()
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
                    .with_label_values(&[&tee, "refused"])
                    .inc();
                // A storage failure is not the guest's doing and has nowhere to be written.
                if e.kind != ErrorKind::StorageUnavailable {
                    self.audit(AuditEntry {
                        decision: "deny".into(),
                        detail: Some(e.detail.clone()),
                        ..record
                    })
                    .await;
                }
                return Err(e);
            }
        };
        let record = AuditEntry {
            decision: "allow".into(),
            verdict: Some(appraisal.status.to_string()),
            detail: Some(format!("token issued ({})", appraisal.status)),
            trust_vector: Some(Value::Object(appraisal.trust_vector)),
            claims: Some(super::capped_claims(annotated, self.audit_claims_max_bytes)),
            ..record
        };
        if !self
            .store
            .consume_nonce_audited(id, &nonce, &token, now, &record)
            .await?
        {
            self.metrics
                .attestations
                .with_label_values(&[&tee, "replay"])
                .inc();
            let detail = "challenge already used or session expired (replay refused)";
            self.audit(AuditEntry {
                decision: "deny".into(),
                detail: Some(detail.into()),
                verdict: None,
                trust_vector: None,
                claims: None,
                ..record
            })
            .await;
            return Err(attest_err(detail));
        }
        self.metrics
            .attestations
            .with_label_values(&[&tee, "issued"])
            .inc();
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
        let att = AttestationParts::parse(version, body).map_err(attest_err)?;
        // Only 0.4.0 echoes the nonce; older versions bind it through the evidence alone.
        if att.nonce.as_deref().is_some_and(|n| n != nonce) {
            return Err(attest_err(
                "nonce mismatch: runtime-data does not carry this session's challenge",
            ));
        }
        parse_tee_key(version, &att.tee_pubkey).map_err(attest_err)?;
        let additional = &att.additional_evidence;
        let gpus = GpuEvidence::read(additional, &att.evidence).map_err(attest_err)?;
        let verifier = self
            .verifiers
            .get(&session.tee)
            .ok_or_else(|| attest_err(format!("unsupported TEE {:?}", session.tee)))?;
        let alg = HashAlgorithm::from_name(&session.hash_alg).unwrap_or_default();
        let hash = binding_hash(version, alg, nonce, &att.tee_pubkey, additional);
        let binding = Binding {
            report_data: &hash,
            init_data: att.init_data.as_ref(),
        };
        let tee_claims = verifier
            .verify(&att.evidence, &binding)
            .await
            .map_err(|e| match e {
                VerifyError::Unavailable { .. } => {
                    tracing::warn!(error = %e, "evidence verification unavailable");
                    KbsError::new(ErrorKind::StorageUnavailable, format!("{e}; retry later"))
                }
                e => attest_err(format!("evidence verification failed: {e}")),
            })?;

        let mut annotated = Map::new();
        annotated.insert("report_data".into(), json!(b64::std_encode(&hash)));
        annotated.insert(
            "runtime_data_claims".into(),
            binding_claims(version, nonce, &att.tee_pubkey, additional),
        );
        if let Some(init) = &att.init_data {
            if init.format != "toml" {
                return Err(attest_err(format!(
                    "init-data format {:?} is not supported (use toml)",
                    init.format
                )));
            }
            let parsed: toml::Value = toml::from_str(&init.body)
                .map_err(|e| attest_err(format!("init-data is not valid TOML: {e}")))?;
            annotated.insert(
                "init_data_claims".into(),
                serde_json::to_value(parsed).unwrap_or(Value::Null),
            );
        }
        annotated.insert(verifier.tee().to_string(), tee_claims);
        let annotated = Value::Object(annotated);

        let snapshot = self.snapshot().await?;
        let appraisal = self
            .policies
            .appraise(
                &snapshot.cpu_policy,
                &annotated,
                snapshot.reference_values.clone(),
            )
            .map_err(|e| {
                KbsError::new(
                    ErrorKind::PolicyEngineError,
                    format!("Policy engine error ({}): {e}", snapshot.cpu_policy_id),
                )
            })?;
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
            .map_err(|e| {
                tracing::error!(error = %e, "attestation token not signed");
                KbsError::new(
                    ErrorKind::InternalError,
                    "attestation token could not be signed",
                )
            })?;
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
        let now = crate::now_secs();
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
            _ => {
                return Err(KbsError::new(
                    ErrorKind::TokenNotFound,
                    "Attestation Token not found",
                ))
            }
        };
        let session_version = session
            .as_ref()
            .filter(|s| matches!(s.state, SessionState::Attested { .. }))
            .map(|s| s.protocol_version);
        let claims = claims.map_err(|e| {
            KbsError::new(
                ErrorKind::TokenVerifierError,
                format!("Token Verifier error: {e}"),
            )
        })?;
        let tee_key = TEE_PUBKEY_POINTERS
            .iter()
            .find_map(|p| claims.pointer(p))
            .ok_or_else(|| {
                KbsError::new(
                    ErrorKind::TokenVerifierError,
                    "Tee public key not found in Attestation Token",
                )
            })?;
        let version = session_version.or_else(|| version_of_claims(&claims));
        let shape = version.map_or_else(|| shape_hint(tee_key), ProtocolVersion::jwe_shape);
        let tee_key = parse_tee_key(version.unwrap_or_default(), tee_key).map_err(|_| {
            KbsError::new(
                ErrorKind::TokenVerifierError,
                "Failed to parse Tee public key",
            )
        })?;
        // Refused before the secret is read: a 0.1.x guest cannot open anything else.
        if shape == JweShape::Legacy && tee_key.alg() != ALG_RSA1_5 {
            return Err(KbsError::new(
                ErrorKind::JweError,
                format!(
                    "JWE failed: {}",
                    jwe::JweError::LegacyKey(tee_key.alg().to_string())
                ),
            ));
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
            .map_err(|e| {
                KbsError::new(
                    ErrorKind::PolicyEngineError,
                    format!("Policy engine error: {e}"),
                )
            })?;
        let allowed = verdict.allow;
        tracing::info!(
            resource = %path,
            allow = allowed,
            resource_path = %verdict.dialect.as_str(),
            "resource policy decided"
        );
        let entry = AuditEntry {
            at_ms: now_ms(),
            session_id: session.as_ref().map(|s| s.id.clone()),
            tee: session
                .as_ref()
                .map(|s| s.tee.clone())
                .or_else(|| tee_of_claims(&claims)),
            claims_digest: Some(claims_digest(&claims)),
            resource: Some(path.to_string()),
            client_addr: client.map(str::to_string),
            ..Default::default()
        };
        if !allowed {
            self.metrics.releases.with_label_values(&["deny"]).inc();
            self.audit(AuditEntry {
                action: "release".into(),
                decision: "deny".into(),
                detail: Some("resource policy".into()),
                ..entry
            })
            .await;
            return Err(KbsError::new(
                ErrorKind::PolicyDeny,
                "Access denied by policy",
            ));
        }
        let Some(secret) = self.secrets.get(&path).await? else {
            self.metrics
                .releases
                .with_label_values(&["not_found"])
                .inc();
            self.audit(AuditEntry {
                action: "release".into(),
                decision: "deny".into(),
                detail: Some("no such resource".into()),
                ..entry
            })
            .await;
            return Err(KbsError::new(
                ErrorKind::ResourceNotFound,
                format!("resource {path} not found"),
            ));
        };
        let jwe = jwe::encrypt_as(shape, &tee_key, &secret)
            .map_err(|e| KbsError::new(ErrorKind::JweError, format!("JWE failed: {e}")))?;
        self.metrics.releases.with_label_values(&["allow"]).inc();
        self.audit(AuditEntry {
            action: "release".into(),
            decision: "allow".into(),
            ..entry
        })
        .await;
        Ok(jwe)
    }
}

/// The one log line per appraised attestation an operator reads to see whether a guest was
/// verified: TEE, the measurements policies usually pin, the TCB status, the policy and its
/// verdict. Only public values (measurements, claims); never keys or secrets.
fn log_appraisal(
    tee: &str,
    version: ProtocolVersion,
    annotated: &Value,
    policy_id: &str,
    appraisal: &crate::policy::Appraisal,
) {
    let claims = annotated.get(tee).unwrap_or(&Value::Null);
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
