//! The service built in process over a temporary SQLite store, with a clock the tests
//! step (and can break), and a guest of the sample TEE.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use coffer_protocol::messages::{AttestationParts, Request};
use coffer_protocol::runtime_data::binding_hash;
use coffer_protocol::{b64, jwe, ProtocolVersion, Tee, TeeKeyPair};
use coffer_server::clock::{Clock, ClockError, ManualClock};
use coffer_server::config::Config;
use coffer_server::policy::defaults;
use coffer_server::service::{Kbs, KbsError};
use coffer_server::store::{self, Session, SessionState, Store};
use serde_json::{json, Map};

pub(crate) const RESOURCE: &str = "default/key/model";
pub(crate) const SECRET: &[u8] = b"the model key";
pub(crate) const START_SECS: i64 = 1_700_000_000;

/// A clock that can be made to fail, as the system clock does when set before 1970.
#[derive(Debug, Clone, Default)]
pub(crate) struct FlakyClock {
    pub time: ManualClock,
    pub broken: Arc<AtomicBool>,
}

impl Clock for FlakyClock {
    fn now_ms(&self) -> Result<i64, ClockError> {
        if self.broken.load(Ordering::SeqCst) {
            coffer_server::clock::BrokenClock.now_ms()
        } else {
            self.time.now_ms()
        }
    }
}

/// A running service, its clock and its database file.
pub(crate) struct Fixture {
    pub kbs: Kbs,
    pub clock: FlakyClock,
    pub db: std::path::PathBuf,
    pub dir: tempfile::TempDir,
}

/// Session and token lifetimes of the fixture: a session outlives its token, so a token's
/// expiry can be seen on a live session.
pub(crate) const SESSION_TTL_SECS: u64 = 600;
pub(crate) const TOKEN_TTL_SECS: u64 = 120;

pub(crate) fn config(dir: &std::path::Path) -> Config {
    let mut cfg = Config::default();
    cfg.server.data_dir = dir.join("data");
    cfg.attestation.session_ttl_secs = SESSION_TTL_SECS;
    cfg.attestation.token_ttl_secs = TOKEN_TTL_SECS;
    // Offline: nothing here may reach a network service.
    cfg.dcap.pccs_url = None;
    cfg.gpu.enabled = false;
    cfg
}

pub(crate) async fn fixture_with(wrap: impl FnOnce(Arc<dyn Store>) -> Arc<dyn Store>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let db = dir.path().join("coffer.db");
    let store = store::open(&format!("sqlite://{}", db.display()), 1)
        .await
        .unwrap();
    let clock = FlakyClock {
        time: ManualClock::at_secs(START_SECS),
        ..Default::default()
    };
    let kbs = Kbs::with_store(&cfg, Arc::new(clock.clone()), wrap(store))
        .await
        .unwrap();
    Fixture {
        kbs,
        clock,
        db,
        dir,
    }
}

/// The service with a resource stored and, when `allow_all`, a resource policy that
/// releases it to the sample TEE (the default policy refuses that TEE).
pub(crate) async fn fixture(allow_all: bool) -> Fixture {
    let f = fixture_with(|s| s).await;
    f.kbs
        .admin_set_resource("test-admin", RESOURCE, SECRET)
        .await
        .unwrap();
    if allow_all {
        let body = json!({"policy": b64::std_encode(defaults::RESOURCE_ALLOW_ALL)});
        f.kbs
            .admin_set_resource_policy("test-admin", body.to_string().as_bytes())
            .await
            .unwrap();
    }
    f
}

/// A guest: its TEE key and the `/attest` body for `session`'s challenge.
pub(crate) struct Guest {
    pub key: TeeKeyPair,
}

impl Guest {
    pub(crate) fn new() -> Self {
        Guest {
            key: TeeKeyPair::generate(),
        }
    }

    pub(crate) async fn auth(&self, kbs: &Kbs) -> Result<Session, KbsError> {
        let req = Request::for_version(ProtocolVersion::V0_4_0, Tee::Sample);
        kbs.auth(&serde_json::to_vec(&req).unwrap())
            .await
            .map(|(s, _)| s)
    }

    /// The `/attest` body for `session`'s challenge.
    pub(crate) fn evidence_for(&self, session: &Session) -> Vec<u8> {
        let SessionState::Authed { nonce } = &session.state else {
            panic!("not a fresh session")
        };
        self.evidence(session.protocol_version, session.hash_alg, nonce)
    }

    /// The `/attest` body of protocol `version` answering the challenge `nonce`.
    pub(crate) fn evidence(
        &self,
        version: ProtocolVersion,
        alg: coffer_protocol::HashAlgorithm,
        nonce: &str,
    ) -> Vec<u8> {
        let jwk = self.key.public_jwk();
        let hash = binding_hash(version, alg, nonce, &jwk, "");
        AttestationParts {
            tee_pubkey: jwk,
            evidence: json!({"svn": "1", "report_data": b64::std_encode(&hash)}),
            additional_evidence: String::new(),
            nonce: Some(nonce.to_string()),
            init_data: None,
        }
        .to_body(version)
        .to_string()
        .into_bytes()
    }

    /// `/auth` then `/attest`; the session and the token.
    pub(crate) async fn attest(&self, kbs: &Kbs) -> Result<(Session, String), KbsError> {
        let session = self.auth(kbs).await?;
        let body = self.evidence_for(&session);
        kbs.attest(Some(&session.id), Some("192.0.2.1"), &body)
            .await
    }

    pub(crate) async fn release(
        &self,
        kbs: &Kbs,
        session: Option<&str>,
        bearer: Option<&str>,
        path: &str,
    ) -> Result<Vec<u8>, KbsError> {
        let jwe = kbs.release(session, bearer, None, path, Map::new()).await?;
        let plain = jwe::decrypt_as(ProtocolVersion::V0_4_0.jwe_shape(), &self.key, &jwe)
            .expect("the released JWE opens with the guest's key");
        Ok(plain.to_vec())
    }
}
