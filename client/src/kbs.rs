//! The guest side of the KBS protocol: RCAR handshake and resource retrieval.

use coffer_protocol::jwe::{self, FlattenedJwe};
use coffer_protocol::messages::{
    Attestation, AttestationToken, Challenge, InitData, Request, RuntimeData, TeeEvidence,
    SESSION_COOKIE,
};
use coffer_protocol::runtime_data::runtime_data_hash;
use coffer_protocol::{HashAlgorithm, ResourcePath, TeeKeyPair};
use zeroize::Zeroizing;

use crate::error::check;
use crate::evidence::EvidenceProvider;
use crate::ClientError;

/// How many times a resource GET is tried, re-attesting after each 401 (as guest-components).
const RESOURCE_ATTEMPTS: usize = 3;

/// A KBS client holding one TEE key and, after attesting, a session cookie and token.
pub struct KbsClient {
    http: reqwest::Client,
    base: String,
    provider: Box<dyn EvidenceProvider>,
    key: TeeKeyPair,
    cookie: Option<String>,
    token: Option<String>,
    init_data: Option<InitData>,
}

impl KbsClient {
    /// A client for the KBS at `url` (e.g. `http://127.0.0.1:8080`).
    pub fn new(
        http: reqwest::Client,
        url: &str,
        provider: Box<dyn EvidenceProvider>,
        key: TeeKeyPair,
    ) -> Self {
        KbsClient {
            http,
            base: url.trim_end_matches('/').to_string(),
            provider,
            key,
            cookie: None,
            token: None,
            init_data: None,
        }
    }

    /// Sends this init-data (TOML) with the evidence; a TD's MRCONFIGID must carry its
    /// digest (the `algorithm` it names), and policies see it as `init_data_claims`.
    pub fn with_init_data(mut self, toml: String) -> Self {
        self.init_data = Some(InitData {
            format: "toml".into(),
            body: toml,
        });
        self
    }

    /// The attestation token from the last successful handshake.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    fn url(&self, path: &str) -> String {
        format!("{}/kbs/v0/{path}", self.base)
    }

    fn transport(url: &str) -> impl FnOnce(reqwest::Error) -> ClientError + '_ {
        move |source| ClientError::Transport {
            url: url.to_string(),
            source,
        }
    }

    fn remember_cookie(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            if let Some(pair) = v.to_str().ok().and_then(|s| s.split(';').next()) {
                if let Some(id) = pair.trim().strip_prefix(&format!("{SESSION_COOKIE}=")) {
                    self.cookie = Some(id.to_string());
                }
            }
        }
    }

    fn with_cookie(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(c) => rb.header(reqwest::header::COOKIE, format!("{SESSION_COOKIE}={c}")),
            None => rb,
        }
    }

    /// Runs the RCAR handshake (`/auth` then `/attest`) and returns the attestation token.
    pub async fn attest(&mut self) -> Result<String, ClientError> {
        let url = self.url("auth");
        let resp = self
            .with_cookie(
                self.http
                    .post(&url)
                    .json(&Request::new(self.provider.tee())),
            )
            .send()
            .await
            .map_err(Self::transport(&url))?;
        let resp = check("auth", resp).await?;
        self.remember_cookie(&resp);
        let challenge: Challenge = resp
            .json()
            .await
            .map_err(|e| ClientError::Protocol(format!("invalid challenge: {e}")))?;
        let alg = match challenge.selected_hash_algorithm() {
            None => HashAlgorithm::Sha384,
            Some(name) => HashAlgorithm::from_name(name).ok_or_else(|| {
                ClientError::Protocol(format!("server selected unsupported hash {name}"))
            })?,
        };
        let tee_pubkey = self.key.public_jwk();
        let hash = runtime_data_hash(alg, &challenge.nonce, &tee_pubkey, "");
        let evidence = self.provider.evidence(&hash).await?;
        let body = Attestation {
            init_data: self.init_data.clone(),
            runtime_data: RuntimeData {
                nonce: challenge.nonce,
                tee_pubkey,
            },
            tee_evidence: TeeEvidence {
                primary_evidence: evidence,
                additional_evidence: String::new(),
            },
        };
        let url = self.url("attest");
        let resp = self
            .with_cookie(self.http.post(&url).json(&body))
            .send()
            .await
            .map_err(Self::transport(&url))?;
        let resp = check("attest", resp).await?;
        self.remember_cookie(&resp);
        let t: AttestationToken = resp
            .json()
            .await
            .map_err(|e| ClientError::Protocol(format!("invalid attest answer: {e}")))?;
        self.token = Some(t.token.clone());
        Ok(t.token)
    }

    /// Fetches and decrypts a resource. Tries first with the current session (if any); on
    /// 401 it attests and retries, up to three attempts in all.
    pub async fn get_resource(
        &mut self,
        path: &ResourcePath,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let url = self.url(&format!("resource/{path}"));
        let mut last = None;
        for attempt in 0..RESOURCE_ATTEMPTS {
            if attempt > 0 || self.cookie.is_none() {
                // A refused attestation will not get better by repeating it.
                self.attest().await?;
            }
            let resp = self
                .with_cookie(self.http.get(&url))
                .send()
                .await
                .map_err(Self::transport(&url))?;
            match check(&format!("resource {path}"), resp).await {
                Ok(resp) => {
                    let jwe: FlattenedJwe = resp.json().await.map_err(|e| {
                        ClientError::Protocol(format!("resource answer is not a JWE: {e}"))
                    })?;
                    return Ok(jwe::decrypt(&self.key, &jwe)?);
                }
                Err(e) if e.status() == Some(401) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Protocol("no attempt made".into())))
    }
}
