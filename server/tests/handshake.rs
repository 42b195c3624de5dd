//! The service in process: `/auth` → `/attest` → release with the sample TEE on a temporary
//! SQLite store, time driven by a [`ManualClock`] (expiry is a clock step, not a sleep), and
//! failures injected through the store and the clock. Each refusal is checked by its
//! [`KbsError`] variant.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coffer_protocol::jwt::JwtError;
use coffer_server::service::{
    AttestError, AttestationError, Internal, Kbs, KbsError, NotFound, TokenFailure,
};
use coffer_server::store::{
    AuditAction, AuditEntry, AuditFilter, AuditPage, Decision, PolicyKind, Session, SessionState,
    Store, StoreError, StoredPolicy,
};

use common::{
    fixture, fixture_with, Guest, RESOURCE, SECRET, SESSION_TTL_SECS, START_SECS, TOKEN_TTL_SECS,
};

async fn audit_rows(kbs: &Kbs, action: AuditAction) -> Vec<AuditEntry> {
    let filter = AuditFilter {
        action: Some(coffer_server::store::ActionFilter::Is(action)),
        limit: 100,
        oldest_first: true,
        ..Default::default()
    };
    kbs.audit_page(&filter).await.unwrap().entries
}

#[tokio::test]
async fn auth_attest_release_round_trip() {
    let f = fixture(true).await;
    let guest = Guest::new();
    let (session, token) = guest.attest(&f.kbs).await.unwrap();
    assert!(matches!(session.state, SessionState::Authed { .. }));
    // by the session cookie, and by the token as a bearer
    assert_eq!(
        guest
            .release(&f.kbs, Some(&session.id), None, RESOURCE)
            .await
            .unwrap(),
        SECRET
    );
    assert_eq!(
        guest
            .release(&f.kbs, None, Some(&token), RESOURCE)
            .await
            .unwrap(),
        SECRET
    );
    // Token times and audit times come from the service's clock.
    let claims = coffer_protocol::jwt::decode_unverified(&token)
        .unwrap()
        .claims;
    assert_eq!(claims["iat"], START_SECS);
    assert_eq!(claims["exp"], START_SECS + TOKEN_TTL_SECS as i64);
    let attests = audit_rows(&f.kbs, AuditAction::Attest).await;
    assert_eq!(attests.len(), 1);
    assert_eq!(attests[0].decision, Decision::Allow);
    assert_eq!(attests[0].at_ms, START_SECS * 1000);
    assert_eq!(attests[0].tee.as_deref(), Some("sample"));
    let releases = audit_rows(&f.kbs, AuditAction::Release).await;
    assert_eq!(releases.len(), 2);
    assert!(releases.iter().all(|r| r.decision == Decision::Allow));
}

#[tokio::test]
async fn a_session_expires_when_the_clock_passes_its_lifetime() {
    let f = fixture(true).await;
    let guest = Guest::new();
    let session = guest.auth(&f.kbs).await.unwrap();
    assert_eq!(session.expires_at, START_SECS + SESSION_TTL_SECS as i64);
    let body = guest.evidence_for(&session);
    f.clock.time.advance(Duration::from_secs(SESSION_TTL_SECS));
    let e = f
        .kbs
        .attest(Some(&session.id), None, &body)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            KbsError::AttestationError(AttestationError::Attest(AttestError::NoSession))
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_session_one_second_before_expiry_still_attests() {
    let f = fixture(true).await;
    let guest = Guest::new();
    let session = guest.auth(&f.kbs).await.unwrap();
    let body = guest.evidence_for(&session);
    f.clock
        .time
        .advance(Duration::from_secs(SESSION_TTL_SECS - 1));
    f.kbs.attest(Some(&session.id), None, &body).await.unwrap();
}

#[tokio::test]
async fn a_token_expires_when_the_clock_passes_its_lifetime() {
    let f = fixture(true).await;
    let guest = Guest::new();
    let (session, token) = guest.attest(&f.kbs).await.unwrap();
    f.clock.time.advance(Duration::from_secs(TOKEN_TTL_SECS));
    // The session is still live; the token it holds is not.
    let expired = |e: &KbsError| {
        matches!(
            e,
            KbsError::TokenVerifierError(TokenFailure::Jwt(JwtError::Expired))
        )
    };
    let by_cookie = guest
        .release(&f.kbs, Some(&session.id), None, RESOURCE)
        .await
        .unwrap_err();
    assert!(expired(&by_cookie), "{by_cookie:?}");
    let by_bearer = guest
        .release(&f.kbs, None, Some(&token), RESOURCE)
        .await
        .unwrap_err();
    assert!(expired(&by_bearer), "{by_bearer:?}");
    // Once the session is gone too, the cookie names no token at all.
    f.clock.time.advance(Duration::from_secs(SESSION_TTL_SECS));
    assert!(matches!(
        guest
            .release(&f.kbs, Some(&session.id), None, RESOURCE)
            .await,
        Err(KbsError::TokenNotFound)
    ));
}

#[tokio::test]
async fn the_default_resource_policy_denies_the_sample_tee() {
    let f = fixture(false).await;
    let guest = Guest::new();
    let (session, _) = guest.attest(&f.kbs).await.unwrap();
    let e = guest
        .release(&f.kbs, Some(&session.id), None, RESOURCE)
        .await
        .unwrap_err();
    assert!(matches!(e, KbsError::PolicyDeny), "{e:?}");
    let rows = audit_rows(&f.kbs, AuditAction::Release).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].decision, Decision::Deny);
    assert_eq!(rows[0].detail.as_deref(), Some("resource policy"));
}

#[tokio::test]
async fn a_missing_resource_is_not_found() {
    let f = fixture(true).await;
    let guest = Guest::new();
    let (session, _) = guest.attest(&f.kbs).await.unwrap();
    let e = guest
        .release(&f.kbs, Some(&session.id), None, "default/key/absent")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, KbsError::ResourceNotFound(NotFound::Resource(p)) if p.to_string() == "default/key/absent"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_release_without_a_session_or_token_is_refused() {
    let f = fixture(true).await;
    let guest = Guest::new();
    assert!(matches!(
        guest.release(&f.kbs, None, None, RESOURCE).await,
        Err(KbsError::TokenNotFound)
    ));
    assert!(matches!(
        guest
            .release(&f.kbs, Some("no-such-session"), None, RESOURCE)
            .await,
        Err(KbsError::TokenNotFound)
    ));
}

/// The nonce is consumed by another replica between this one's reading of the session and
/// its consumption: the second consumption fails, and the refusal is audited.
#[tokio::test]
async fn a_nonce_consumed_by_another_replica_is_a_replay() {
    let f = fixture_with(|inner| Arc::new(RacingReplica { inner }) as Arc<dyn Store>).await;
    let guest = Guest::new();
    let e = guest.attest(&f.kbs).await.unwrap_err();
    assert!(
        matches!(
            e,
            KbsError::AttestationError(AttestationError::Attest(AttestError::Replay))
        ),
        "{e:?}"
    );
    let rows = audit_rows(&f.kbs, AuditAction::Attest).await;
    assert_eq!(rows.len(), 1, "only the refusal is recorded");
    assert_eq!(rows[0].decision, Decision::Deny);
    assert!(rows[0].detail.as_deref().unwrap().contains("replay"));
}

/// A second `/attest` on an attested session answers its token again; it does not
/// consume anything twice.
#[tokio::test]
async fn attesting_an_attested_session_returns_its_token() {
    let f = fixture(true).await;
    let guest = Guest::new();
    let session = guest.auth(&f.kbs).await.unwrap();
    let body = guest.evidence_for(&session);
    let (_, first) = f.kbs.attest(Some(&session.id), None, &body).await.unwrap();
    let (_, again) = f.kbs.attest(Some(&session.id), None, &body).await.unwrap();
    assert_eq!(first, again);
}

/// A stored hash algorithm this build does not know fails the attestation; before, it was
/// read as SHA-384.
#[tokio::test]
async fn an_unknown_stored_hash_algorithm_is_an_internal_error() {
    let f = fixture(true).await;
    let guest = Guest::new();
    let session = guest.auth(&f.kbs).await.unwrap();
    let body = guest.evidence_for(&session);
    let db = rusqlite::Connection::open(&f.db).unwrap();
    db.execute(
        "UPDATE sessions SET hash_alg = 'sm3' WHERE id = ?1",
        [&session.id],
    )
    .unwrap();
    let e = f
        .kbs
        .attest(Some(&session.id), None, &body)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &e,
            KbsError::InternalError(Internal::Store(StoreError::Corrupt {
                column: "sessions.hash_alg",
                ..
            }))
        ),
        "{e:?}"
    );
    assert!(
        !e.to_string().contains("sm3"),
        "stored values stay in the log"
    );
}

/// A clock that cannot be read refuses the handshake; it is never time 0 (at which every
/// session and token would be unexpired).
#[tokio::test]
async fn an_unreadable_clock_refuses_instead_of_reading_zero() {
    let f = fixture(true).await;
    let guest = Guest::new();
    let (session, token) = guest.attest(&f.kbs).await.unwrap();
    f.clock.broken.store(true, Ordering::SeqCst);
    assert!(matches!(
        guest.auth(&f.kbs).await,
        Err(KbsError::InternalError(Internal::Clock(_)))
    ));
    assert!(matches!(
        guest.release(&f.kbs, None, Some(&token), RESOURCE).await,
        Err(KbsError::InternalError(Internal::Clock(_)))
    ));
    assert!(matches!(
        f.kbs.attest(Some(&session.id), None, b"{}").await,
        Err(KbsError::InternalError(Internal::Clock(_)))
    ));
    assert!(matches!(
        f.kbs.purge_expired_sessions().await,
        Err(KbsError::InternalError(Internal::Clock(_)))
    ));
}

/// Evidence bound to another challenge is refused by the verifier, and recorded.
#[tokio::test]
async fn evidence_for_another_session_is_refused() {
    let f = fixture(true).await;
    let guest = Guest::new();
    let first = guest.auth(&f.kbs).await.unwrap();
    let second = guest.auth(&f.kbs).await.unwrap();
    let e = f
        .kbs
        .attest(Some(&second.id), None, &guest.evidence_for(&first))
        .await
        .unwrap_err();
    // 0.4.0 echoes the nonce, so the mismatch is caught before the evidence is read.
    assert!(
        matches!(
            e,
            KbsError::AttestationError(AttestationError::Attest(AttestError::NonceMismatch))
        ),
        "{e:?}"
    );
}

/// Another replica that consumes every nonce just before this one does.
struct RacingReplica {
    inner: Arc<dyn Store>,
}

#[async_trait]
impl Store for RacingReplica {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn create_session(&self, s: &Session) -> Result<(), StoreError> {
        self.inner.create_session(s).await
    }
    async fn load_session(&self, id: &str, now: i64) -> Result<Option<Session>, StoreError> {
        self.inner.load_session(id, now).await
    }
    async fn consume_nonce(
        &self,
        id: &str,
        nonce: &str,
        token: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.inner.consume_nonce(id, nonce, token, now).await
    }
    async fn purge_expired_sessions(&self, now: i64) -> Result<u64, StoreError> {
        self.inner.purge_expired_sessions(now).await
    }
    async fn count_sessions(&self) -> Result<u64, StoreError> {
        self.inner.count_sessions().await
    }
    async fn evict_sessions(&self, limit: u64, before: i64) -> Result<u64, StoreError> {
        self.inner.evict_sessions(limit, before).await
    }
    async fn put_policy(
        &self,
        id: &str,
        kind: PolicyKind,
        body: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.inner.put_policy(id, kind, body, now).await
    }
    async fn put_policy_if_absent(
        &self,
        id: &str,
        kind: PolicyKind,
        body: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.inner.put_policy_if_absent(id, kind, body, now).await
    }
    async fn get_policy(&self, id: &str) -> Result<Option<StoredPolicy>, StoreError> {
        self.inner.get_policy(id).await
    }
    async fn list_policy_ids(&self, kind: PolicyKind) -> Result<Vec<String>, StoreError> {
        self.inner.list_policy_ids(kind).await
    }
    async fn delete_policy(&self, id: &str, kind: PolicyKind) -> Result<bool, StoreError> {
        self.inner.delete_policy(id, kind).await
    }
    async fn put_reference_value(
        &self,
        name: &str,
        value: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.inner
            .put_reference_value(name, value, expires_at, now)
            .await
    }
    async fn reference_values(&self, now: i64) -> Result<Vec<(String, String)>, StoreError> {
        self.inner.reference_values(now).await
    }
    async fn delete_reference_value(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.delete_reference_value(name).await
    }
    async fn put_resource(&self, path: &str, sealed: &[u8], now: i64) -> Result<(), StoreError> {
        self.inner.put_resource(path, sealed, now).await
    }
    async fn get_resource(&self, path: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_resource(path).await
    }
    async fn delete_resource(&self, path: &str) -> Result<bool, StoreError> {
        self.inner.delete_resource(path).await
    }
    async fn list_resource_paths(&self) -> Result<Vec<String>, StoreError> {
        self.inner.list_resource_paths().await
    }
    async fn list_resource_meta(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        self.inner.list_resource_meta().await
    }
    async fn put_collateral(
        &self,
        key: &str,
        body: &str,
        not_after: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.inner.put_collateral(key, body, not_after, now).await
    }
    async fn get_collateral(
        &self,
        key: &str,
        now: i64,
    ) -> Result<Option<(String, i64, i64)>, StoreError> {
        self.inner.get_collateral(key, now).await
    }
    async fn put_wrapped_key_if_absent(
        &self,
        name: &str,
        body: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.inner.put_wrapped_key_if_absent(name, body, now).await
    }
    async fn get_wrapped_key(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.inner.get_wrapped_key(name).await
    }
    async fn consume_nonce_audited(
        &self,
        id: &str,
        nonce: &str,
        token: &str,
        now: i64,
        entry: &AuditEntry,
    ) -> Result<bool, StoreError> {
        assert!(
            self.inner
                .consume_nonce(id, nonce, "the other replica's token", now)
                .await?
        );
        self.inner
            .consume_nonce_audited(id, nonce, token, now, entry)
            .await
    }
    async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.inner.append_audit(entry).await
    }
    async fn list_audit(&self, filter: &AuditFilter) -> Result<AuditPage, StoreError> {
        self.inner.list_audit(filter).await
    }
    async fn get_audit(&self, seq: i64) -> Result<Option<AuditEntry>, StoreError> {
        self.inner.get_audit(seq).await
    }
    async fn audit_counts(&self, since_ms: i64) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.inner.audit_counts(since_ms).await
    }
    async fn prune_audit(
        &self,
        before_ms: Option<i64>,
        keep_rows: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.inner.prune_audit(before_ms, keep_rows).await
    }
}
