//! The guest side of the KBS protocol: RCAR handshake and resource retrieval, in any
//! protocol version from 0.1.0 to 0.4.0 so that older KBSes can be reached too.

use coffer_protocol::jwe::{self, FlattenedJwe, JweShape};
use coffer_protocol::jwk::ALG_RSA1_5;
use coffer_protocol::messages::{
    AttestationParts, AttestationToken, Challenge, InitData, Request, SESSION_COOKIE,
};
use coffer_protocol::runtime_data::binding_hash;
use coffer_protocol::{HashAlgorithm, ProtocolVersion, ResourcePath, TeeKeyPair};
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
    gpus: Option<Box<dyn crate::gpu::GpuDevices>>,
    key: TeeKeyPair,
    cookie: Option<String>,
    token: Option<String>,
    init_data: Option<InitData>,
    version: ProtocolVersion,
    warned_plain_http: bool,
}

/// Why sending evidence to `url` deserves a warning: plain HTTP to a host that is not this
/// machine, where anyone on the path (the host among them) reads and can alter the exchange.
/// The released secret stays JWE-encrypted to the TEE key, but the token, the evidence and
/// the server's identity are not protected. `None` for HTTPS and for loopback.
pub fn plain_http_warning(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    if parsed.scheme() != "http" {
        return None;
    }
    let host = parsed.host_str()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let d = bare.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
    };
    if loopback {
        return None;
    }
    Some(format!(
        "warning: sending evidence to {url} over plain HTTP: the network (and the host) can read and alter the handshake and impersonate the KBS; use https://"
    ))
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
            gpus: None,
            key,
            cookie: None,
            token: None,
            init_data: None,
            version: ProtocolVersion::default(),
            warned_plain_http: false,
        }
    }

    /// Sends evidence of the GPUs and NVSwitches `gpus` finds with every attestation
    /// (KBS protocol 0.3.0 and later; older servers have no place for it).
    pub fn with_gpus(mut self, gpus: Box<dyn crate::gpu::GpuDevices>) -> Self {
        self.gpus = Some(gpus);
        self
    }

    /// Speaks KBS protocol `version` (default: the newest, 0.4.0). 0.1.x servers release
    /// only to an RSA key used with `RSA1_5`, which the key given to [`KbsClient::new`]
    /// must then be.
    pub fn with_protocol_version(mut self, version: ProtocolVersion) -> Self {
        self.version = version;
        self
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
        if self.version.jwe_shape() == JweShape::Legacy && self.key.alg() != ALG_RSA1_5 {
            return Err(ClientError::Config(format!(
                "KBS protocol {} releases secrets only to an RSA key used with RSA1_5, not {}",
                self.version,
                self.key.alg()
            )));
        }
        if self.init_data.is_some() && !self.version.has_runtime_data() {
            return Err(ClientError::Config(format!(
                "init-data needs KBS protocol 0.4.0; protocol {} has no place for it",
                self.version
            )));
        }
        // Before /auth: the handshake that follows carries the evidence.
        if !self.warned_plain_http {
            if let Some(w) = plain_http_warning(&self.base) {
                eprintln!("{w}");
            }
            self.warned_plain_http = true;
        }
        let url = self.url("auth");
        let resp = self
            .with_cookie(
                self.http
                    .post(&url)
                    .json(&Request::for_version(self.version, self.provider.tee())),
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
        // 0.1.0 had no negotiation: its servers always hash with SHA-384.
        let selected = match self.version {
            ProtocolVersion::V0_1_0 => None,
            _ => challenge.selected_hash_algorithm(),
        };
        let alg = match selected {
            None => HashAlgorithm::Sha384,
            Some(name) => HashAlgorithm::from_name(name).ok_or_else(|| {
                ClientError::Protocol(format!("server selected unsupported hash {name}"))
            })?,
        };
        let tee_pubkey = self.key.public_jwk();
        // GPU reports answer the runtime-data hash without additional evidence; the TDX
        // quote then binds the exact GPU evidence string (0.3.0 on: composite evidence).
        let additional = match &self.gpus {
            Some(gpus) if self.version.composite_evidence() => {
                let device_hash = alg.digest(
                    coffer_protocol::jcs::canonicalize(
                        &serde_json::json!({"nonce": challenge.nonce, "tee-pubkey": tee_pubkey}),
                    )
                    .as_bytes(),
                );
                crate::gpu::additional_evidence(gpus.as_ref(), &device_hash)?
            }
            _ => String::new(),
        };
        let hash = binding_hash(
            self.version,
            alg,
            &challenge.nonce,
            &tee_pubkey,
            &additional,
        );
        let evidence = self.provider.evidence(&hash).await?;
        let body = AttestationParts {
            tee_pubkey,
            evidence,
            additional_evidence: additional,
            nonce: Some(challenge.nonce),
            init_data: self.init_data.clone(),
        }
        .to_body(self.version);
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
                    return Ok(jwe::decrypt_as(self.version.jwe_shape(), &self.key, &jwe)?);
                }
                Err(e) if e.status() == Some(401) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Protocol("no attempt made".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::plain_http_warning;

    #[test]
    fn plain_http_off_this_machine_is_warned_about() {
        for quiet in [
            "https://kbs.example.com",
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://[::1]:8080/api",
            "http://localhost:8080",
            "http://kbs.localhost",
        ] {
            assert_eq!(plain_http_warning(quiet), None, "{quiet}");
        }
        for loud in [
            "http://kbs.example.com",
            "http://10.0.0.5:8080/trustee",
            "http://[fd00::1]",
            "http://localhost.example.com",
        ] {
            let w = plain_http_warning(loud).expect(loud);
            assert!(w.contains("plain HTTP") && w.contains(loud), "{w}");
        }
    }
}
