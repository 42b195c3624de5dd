//! Aliyun KMS instance API (ClientKey authentication): credential loading, protobuf request
//! bodies and the RSA_PKCS1_SHA_256 request signature; and the choice between that and the
//! AccessKey mode of [`super::aliyun_rpc`].
//!
//! [`AliyunKms`] is the `SecretBackend` for `default/aliyun/<secret name>`: the tag is the
//! KMS secret name, read with GetSecretValue (current version); the backend is read-only.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use sha2::{Digest, Sha256};

use super::aliyun_rpc::{
    self, AccessKey, AccessKeyError, ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_REGION_ID,
};
use super::SecretError;
use zeroize::Zeroizing;

/// API version sent in `x-kms-apiversion`.
pub const API_VERSION: &str = "dkms-gcs-0.2";
/// Signature method sent in `x-kms-signaturemethod`.
pub const SIGNATURE_METHOD: &str = "RSA_PKCS1_SHA_256";
/// Content type of every request and response.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// Credential problems; never include the password or key.
#[derive(Debug, thiserror::Error)]
pub enum KmsCredentialError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The ClientKey file is not the expected JSON.
    #[error("{0}: not a ClientKey file (need KeyId and PrivateKeyData)")]
    Format(String),
    /// The PKCS#12 does not open with the password (or is corrupt).
    #[error(
        "{0}: cannot open the ClientKey private key (wrong password or corrupt PrivateKeyData)"
    )]
    Unlock(String),
}

/// A KMS application-access-point ClientKey: its id and RSA private key.
pub struct ClientKey {
    /// `KAAP.<uuid>`, sent as `x-kms-acccesskeyid`.
    pub key_id: String,
    key: PKey<Private>,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKey({}, ..)", self.key_id)
    }
}

/// The password text: a JSON object's `ClientKeyPassword`, or the trimmed file content.
pub fn password_from_text(text: &str) -> Zeroizing<String> {
    let trimmed = text.trim();
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(trimmed) {
        if let Some(p) = m.get("ClientKeyPassword").and_then(|v| v.as_str()) {
            return Zeroizing::new(p.to_string());
        }
    }
    Zeroizing::new(trimmed.to_string())
}

impl ClientKey {
    /// Loads `clientKey_<id>.json` and opens it with the password file.
    pub fn load(client_key: &Path, password_file: &Path) -> Result<Self, KmsCredentialError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map(Zeroizing::new)
                .map_err(|source| KmsCredentialError::Io {
                    path: p.display().to_string(),
                    source,
                })
        };
        let name = client_key.display().to_string();
        let json = read(client_key)?;
        let password = password_from_text(&read(password_file)?);
        let v: serde_json::Value =
            serde_json::from_str(&json).map_err(|_| KmsCredentialError::Format(name.clone()))?;
        let key_id = v
            .get("KeyId")
            .and_then(|x| x.as_str())
            .ok_or_else(|| KmsCredentialError::Format(name.clone()))?;
        let data = v
            .get("PrivateKeyData")
            .and_then(|x| x.as_str())
            .ok_or_else(|| KmsCredentialError::Format(name.clone()))?;
        let der = Zeroizing::new(
            STANDARD
                .decode(data.trim())
                .map_err(|_| KmsCredentialError::Format(name.clone()))?,
        );
        // The certificate bag uses RC2-40, which OpenSSL 3 only reads with the legacy provider.
        let _legacy = openssl::provider::Provider::try_load(None, "legacy", true);
        let pfx = openssl::pkcs12::Pkcs12::from_der(&der)
            .map_err(|_| KmsCredentialError::Format(name.clone()))?;
        let parsed = pfx
            .parse2(&password)
            .map_err(|_| KmsCredentialError::Unlock(name.clone()))?;
        let key = parsed
            .pkey
            .ok_or_else(|| KmsCredentialError::Unlock(name.clone()))?;
        Ok(ClientKey {
            key_id: key_id.to_string(),
            key,
        })
    }

    /// RSASSA-PKCS1-v1_5 / SHA-256 over `string_to_sign`, standard base64.
    pub fn sign(&self, string_to_sign: &str) -> Option<String> {
        let mut s = openssl::sign::Signer::new(MessageDigest::sha256(), &self.key).ok()?;
        s.update(string_to_sign.as_bytes()).ok()?;
        s.sign_to_vec().ok().map(|sig| STANDARD.encode(sig))
    }
}

/// Upper-case hex SHA-256 of a request body (the `content-sha256` header).
pub fn content_sha256(body: &[u8]) -> String {
    hex::encode_upper(Sha256::digest(body))
}

/// The string the signature covers.
pub fn string_to_sign(content_sha256: &str, date: &str, key_id: &str, api_name: &str) -> String {
    format!(
        "POST\n{content_sha256}\n{CONTENT_TYPE}\n{date}\nx-kms-acccesskeyid:{key_id}\nx-kms-apiname:{api_name}\nx-kms-apiversion:{API_VERSION}\nx-kms-signaturemethod:{SIGNATURE_METHOD}\n/"
    )
}

fn put_len_delimited(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    if data.is_empty() {
        return; // proto3: empty strings/bytes are not encoded
    }
    put_varint(buf, u64::from(field << 3 | 2));
    put_varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// `dkms_api.GetSecretValueRequest` (FetchExtendedConfig always true, as reference clients).
pub fn get_secret_value_request(
    secret_name: &str,
    version_stage: &str,
    version_id: &str,
) -> Vec<u8> {
    let mut b = Vec::new();
    put_len_delimited(&mut b, 1, secret_name.as_bytes());
    put_len_delimited(&mut b, 2, version_stage.as_bytes());
    put_len_delimited(&mut b, 3, version_id.as_bytes());
    put_varint(&mut b, 4 << 3);
    put_varint(&mut b, 1);
    b
}

/// Reads a protobuf message into (field number → last value) for the length-delimited and
/// varint fields this client needs. `None` if the bytes are not protobuf.
fn decode_fields(mut b: &[u8]) -> Option<std::collections::HashMap<u32, Vec<u8>>> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut out = std::collections::HashMap::new();
    while !b.is_empty() {
        let key = varint(&mut b)?;
        let (field, wire) = ((key >> 3) as u32, key & 7);
        match wire {
            0 => {
                let v = varint(&mut b)?;
                out.insert(field, v.to_le_bytes().to_vec());
            }
            2 => {
                let len = varint(&mut b)? as usize;
                if len > b.len() {
                    return None;
                }
                out.insert(field, b[..len].to_vec());
                b = &b[len..];
            }
            _ => return None,
        }
    }
    Some(out)
}

/// `[aliyun_kms]`: how to reach Aliyun KMS. Two modes, as in Alibaba's Trustee:
/// ClientKey (the KMS instance API; the PAI-EAS guide's values) when any of
/// `kms_instance_id`, `client_key_file`, `password_file` is set, otherwise AccessKey (the
/// public KMS OpenAPI, GetSecretValue only; see [`super::aliyun_rpc`]).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliyunKmsConfig {
    /// Region, e.g. `cn-hangzhou`. AccessKey mode sends it as `RegionId` and derives the
    /// endpoint `kms.<region>.aliyuncs.com` from it; empty there means `$ALIYUN_KMS_REGION_ID`.
    #[serde(default)]
    pub region_id: String,
    /// ClientKey mode: KMS instance id, `kst-...`; the endpoint is
    /// `<id>.cryptoservice.kms.aliyuncs.com`.
    #[serde(default)]
    pub kms_instance_id: Option<String>,
    /// ClientKey mode: `clientKey_<KeyId>.json`.
    #[serde(default)]
    pub client_key_file: Option<std::path::PathBuf>,
    /// ClientKey mode: password file (plain text or `{"ClientKeyPassword": ...}`).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    /// `PrivateKmsCA_<instance id>.pem`. ClientKey mode: required, the only CAs trusted.
    /// AccessKey mode: optional extra CAs beside the public roots (private cloud, tests).
    #[serde(default)]
    pub cert_pem_file: Option<std::path::PathBuf>,
    /// AccessKey mode: the AccessKey id; empty means `$ALIYUN_KMS_ACCESS_KEY_ID`. The secret
    /// is only ever read from `$ALIYUN_KMS_ACCESS_KEY_SECRET`.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// `host:port` override of the endpoint (private cloud, tests).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Repository routed to KMS (default `default`).
    #[serde(default = "default_repository")]
    pub repository: String,
    /// Type routed to KMS (default `aliyun`).
    #[serde(default = "default_type")]
    pub resource_type: String,
}

/// Which authentication an `[aliyun_kms]` table selects, with the ClientKey files resolved.
#[derive(Debug, Clone, Copy)]
pub enum KmsMode<'a> {
    /// The KMS instance API with an application access point's ClientKey.
    ClientKey {
        /// `kst-...`.
        instance: &'a str,
        /// `clientKey_<KeyId>.json`.
        client_key: &'a Path,
        /// Its password file.
        password: &'a Path,
        /// The instance CA bundle.
        ca: &'a Path,
    },
    /// The public OpenAPI with a RAM AccessKey (GetSecretValue only).
    AccessKey,
}

impl AliyunKmsConfig {
    /// The mode these settings select; an incomplete ClientKey set or a ClientKey set mixed
    /// with `access_key_id` is an error naming the keys, not a silent switch of mode.
    pub fn mode(&self) -> Result<KmsMode<'_>, KmsModeError> {
        let instance = self.kms_instance_id.as_deref().filter(|s| !s.is_empty());
        let client_key = self.client_key_file.as_deref();
        let password = self.password_file.as_deref();
        if instance.is_none() && client_key.is_none() && password.is_none() {
            return Ok(KmsMode::AccessKey);
        }
        if self.access_key_id.is_some() {
            return Err(KmsModeError::Mixed);
        }
        match (
            instance,
            client_key,
            password,
            self.cert_pem_file.as_deref(),
        ) {
            (Some(instance), Some(client_key), Some(password), Some(ca)) => {
                Ok(KmsMode::ClientKey {
                    instance,
                    client_key,
                    password,
                    ca,
                })
            }
            _ => Err(KmsModeError::Incomplete(
                [
                    ("kms_instance_id", instance.is_none()),
                    ("client_key_file", client_key.is_none()),
                    ("password_file", password.is_none()),
                    ("cert_pem_file", self.cert_pem_file.is_none()),
                ]
                .iter()
                .filter(|(_, missing)| *missing)
                .map(|(k, _)| *k)
                .collect(),
            )),
        }
    }
}

/// An `[aliyun_kms]` table that selects no mode.
#[derive(Debug, thiserror::Error)]
pub enum KmsModeError {
    /// ClientKey keys beside `access_key_id`.
    #[error("aliyun_kms: set either the ClientKey keys (kms_instance_id, client_key_file, password_file, cert_pem_file) or access_key_id, not both")]
    Mixed,
    /// Some ClientKey keys are set, these are not.
    #[error("aliyun_kms: ClientKey mode needs {} as well", .0.join(", "))]
    Incomplete(Vec<&'static str>),
}

fn default_repository() -> String {
    "default".into()
}
fn default_type() -> String {
    "aliyun".into()
}

/// Setup failures.
#[derive(Debug, thiserror::Error)]
pub enum KmsSetupError {
    /// Credentials.
    #[error(transparent)]
    Credential(#[from] KmsCredentialError),
    /// AccessKey mode settings.
    #[error(transparent)]
    AccessKey(#[from] AccessKeyError),
    /// The `[aliyun_kms]` table selects no usable mode.
    #[error(transparent)]
    Mode(#[from] KmsModeError),
    /// CA bundle or HTTP client.
    #[error("{0}")]
    Tls(String),
}

/// How requests are authenticated.
enum Auth {
    ClientKey(ClientKey),
    AccessKey { key: AccessKey, region_id: String },
}

/// The Aliyun KMS secret backend.
pub struct AliyunKms {
    http: reqwest::Client,
    url: String,
    auth: Auth,
    outcomes: Option<prometheus::IntCounterVec>,
}

/// Attempts per request; only transport errors, 429 (throttling), 500 and 503 are retried.
const ATTEMPTS: u32 = 3;

impl AliyunKms {
    /// Loads credentials and the CA bundle (AccessKey mode: from the environment).
    pub fn new(cfg: &AliyunKmsConfig) -> Result<Self, KmsSetupError> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let (auth, host, ca, public_roots) = match cfg.mode()? {
            KmsMode::ClientKey {
                instance,
                client_key,
                password,
                ca,
            } => (
                Auth::ClientKey(ClientKey::load(client_key, password)?),
                format!("{instance}.cryptoservice.kms.aliyuncs.com"),
                Some(ca),
                false,
            ),
            KmsMode::AccessKey => {
                let id = cfg
                    .access_key_id
                    .clone()
                    .filter(|v| !v.trim().is_empty())
                    .or_else(|| env(ENV_ACCESS_KEY_ID))
                    .ok_or(AccessKeyError::Missing {
                        what: "the AccessKey id",
                        key: "access_key_id",
                        env: ENV_ACCESS_KEY_ID,
                    })?;
                let missing_secret = AccessKeyError::Missing {
                    what: "the AccessKey secret",
                    key: "-",
                    env: ENV_ACCESS_KEY_SECRET,
                };
                let secret = Zeroizing::new(env(ENV_ACCESS_KEY_SECRET).ok_or(missing_secret)?);
                let key = AccessKey::new(&id, secret).ok_or(AccessKeyError::Missing {
                    what: "the AccessKey id",
                    key: "access_key_id",
                    env: ENV_ACCESS_KEY_ID,
                })?;
                let region_id = Some(cfg.region_id.trim().to_string())
                    .filter(|r| !r.is_empty())
                    .or_else(|| env(ENV_REGION_ID))
                    .ok_or(AccessKeyError::Missing {
                        what: "the region",
                        key: "region_id",
                        env: ENV_REGION_ID,
                    })?;
                let host = format!("kms.{region_id}.aliyuncs.com");
                (
                    Auth::AccessKey { key, region_id },
                    host,
                    cfg.cert_pem_file.as_deref(),
                    true,
                )
            }
        };
        let mut b = reqwest::Client::builder()
            .tls_built_in_root_certs(public_roots)
            .timeout(std::time::Duration::from_secs(10))
            .https_only(true);
        if let Some(ca) = ca {
            let pem = std::fs::read(ca)
                .map_err(|e| KmsSetupError::Tls(format!("{}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| KmsSetupError::Tls(format!("{}: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(KmsSetupError::Tls(format!(
                    "{}: no certificate",
                    ca.display()
                )));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b.build().map_err(|e| KmsSetupError::Tls(e.to_string()))?;
        let host = cfg.endpoint.clone().unwrap_or(host);
        Ok(AliyunKms {
            http,
            url: format!("https://{host}/"),
            auth,
            outcomes: None,
        })
    }

    /// What the server logs about this client: mode and the public half of the credential.
    pub fn describe(&self) -> String {
        match &self.auth {
            Auth::ClientKey(k) => format!("ClientKey {} at {}", k.key_id, self.url),
            Auth::AccessKey { key, region_id } => {
                format!("AccessKey {} in {region_id} at {}", key.id(), self.url)
            }
        }
    }

    /// Counts request outcomes in `counter` (label `outcome`).
    pub fn with_metrics(mut self, counter: prometheus::IntCounterVec) -> Self {
        self.outcomes = Some(counter);
        self
    }

    fn count(&self, outcome: &str) {
        if let Some(c) = &self.outcomes {
            c.with_label_values(&[outcome]).inc();
        }
    }

    /// GetSecretValue(current version); `None` when the secret does not exist.
    pub async fn get_secret_value(
        &self,
        name: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, SecretError> {
        let r = self.fetch(name).await;
        self.count(match &r {
            Ok(Some(_)) => "ok",
            Ok(None) => "not_found",
            Err(SecretError::Refused(_)) => "refused",
            Err(_) => "unavailable",
        });
        r
    }

    async fn fetch(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, SecretError> {
        if let Auth::AccessKey { key, region_id } = &self.auth {
            return self.fetch_rpc(key, region_id, name).await;
        }
        let body = get_secret_value_request(name, "", "");
        self.call("GetSecretValue", body)
            .await?
            .map(|mut f| {
                f.remove(&3).map(Zeroizing::new).ok_or_else(|| {
                    SecretError::Unavailable("KMS GetSecretValue answer lacks SecretData".into())
                })
            })
            .transpose()
    }

    /// Encrypt with a symmetric KMS key (AES_GCM): returns (CiphertextBlob, Iv).
    pub async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), SecretError> {
        let mut b = Vec::new();
        put_len_delimited(&mut b, 1, key_id.as_bytes());
        put_len_delimited(&mut b, 2, plaintext);
        put_len_delimited(&mut b, 3, b"AES_GCM");
        let mut f = self
            .call("Encrypt", b)
            .await?
            .ok_or_else(|| SecretError::Refused(format!("KMS key {key_id} not found")))?;
        let (blob, iv) = (
            f.remove(&2).unwrap_or_default(),
            f.remove(&3).unwrap_or_default(),
        );
        if blob.is_empty() || iv.is_empty() {
            return Err(SecretError::Unavailable(
                "KMS Encrypt answer lacks CiphertextBlob or Iv".into(),
            ));
        }
        Ok((blob, iv))
    }

    /// Decrypt what [`AliyunKms::encrypt`] returned.
    pub async fn decrypt(
        &self,
        key_id: &str,
        blob: &[u8],
        iv: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SecretError> {
        let mut b = Vec::new();
        put_len_delimited(&mut b, 1, blob);
        put_len_delimited(&mut b, 2, key_id.as_bytes());
        put_len_delimited(&mut b, 3, b"AES_GCM");
        put_len_delimited(&mut b, 5, iv);
        let mut f = self
            .call("Decrypt", b)
            .await?
            .ok_or_else(|| SecretError::Refused(format!("KMS key {key_id} not found")))?;
        f.remove(&2)
            .map(Zeroizing::new)
            .ok_or_else(|| SecretError::Unavailable("KMS Decrypt answer lacks Plaintext".into()))
    }

    /// One signed request with retries; `None` for a 404 other than Unauthorized.
    async fn call(
        &self,
        api: &str,
        body: Vec<u8>,
    ) -> Result<Option<std::collections::HashMap<u32, Vec<u8>>>, SecretError> {
        let Auth::ClientKey(key) = &self.auth else {
            return Err(SecretError::Refused(format!(
                "KMS {api} needs the ClientKey mode (the AccessKey mode only reads secrets)"
            )));
        };
        let sha = content_sha256(&body);
        let mut delay = std::time::Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            let date = httpdate::fmt_http_date(std::time::SystemTime::now());
            let sig = key
                .sign(&string_to_sign(&sha, &date, &key.key_id, api))
                .ok_or_else(|| SecretError::Refused("cannot sign the KMS request".into()))?;
            let resp = self
                .http
                .post(&self.url)
                .header("accept", CONTENT_TYPE)
                .header("content-type", CONTENT_TYPE)
                .header("content-sha256", &sha)
                .header("date", &date)
                .header("x-kms-apiversion", API_VERSION)
                .header("x-kms-apiname", api)
                .header("x-kms-signaturemethod", SIGNATURE_METHOD)
                .header("x-kms-acccesskeyid", &key.key_id)
                .header("authorization", format!("Bearer {sig}"))
                .body(body.clone())
                .send()
                .await;
            let retry = match resp {
                Err(e) => format!("KMS unreachable: {e}"),
                Ok(r) => 'answer: {
                    let status = r.status().as_u16();
                    let bytes = match r.bytes().await {
                        Ok(b) => b,
                        Err(e) => {
                            break 'answer format!("KMS answer cut short: {}", e.without_url())
                        }
                    };
                    if status == 200 {
                        let f = decode_fields(&bytes).ok_or_else(|| {
                            SecretError::Unavailable("KMS answer is not protobuf".into())
                        })?;
                        return Ok(Some(f));
                    }
                    let f = decode_fields(&bytes).ok_or_else(|| {
                        SecretError::Unavailable(format!(
                            "KMS answered HTTP {status} without an Error body"
                        ))
                    })?;
                    let text = |n: u32| {
                        String::from_utf8_lossy(f.get(&n).map(Vec::as_slice).unwrap_or_default())
                            .into_owned()
                    };
                    let (code, request_id) = (text(2), text(4));
                    tracing::warn!(status, code = %code, request_id = %request_id, attempt, "KMS error");
                    match status {
                        404 if code != "Unauthorized" => return Ok(None),
                        429 | 500 | 503 => format!("KMS {status} {code} (request {request_id})"),
                        _ => {
                            return Err(SecretError::Refused(format!(
                                "KMS {status} {code} (request {request_id})"
                            )))
                        }
                    }
                }
            };
            if attempt == ATTEMPTS {
                return Err(SecretError::Unavailable(retry));
            }
            self.count("retry");
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        Err(SecretError::Unavailable("KMS retries exhausted".into()))
    }
}

impl AliyunKms {
    /// GetSecretValue through the OpenAPI (AccessKey mode), with the same retry rules as the
    /// instance API; a fresh timestamp and nonce per attempt, since the service refuses a
    /// reused nonce.
    async fn fetch_rpc(
        &self,
        key: &AccessKey,
        region_id: &str,
        name: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, SecretError> {
        let mut delay = std::time::Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            let ts = aliyun_rpc::timestamp(time::OffsetDateTime::now_utc());
            let nonce = aliyun_rpc::nonce();
            let params =
                aliyun_rpc::get_secret_value_params(key.id(), region_id, name, &ts, &nonce);
            let query = aliyun_rpc::signed_query(key, &params)
                .map_err(|e| SecretError::Refused(e.to_string()))?;
            let resp = self
                .http
                .post(format!("{}?{query}", self.url))
                .header(
                    "user-agent",
                    concat!("coffer-server/", env!("CARGO_PKG_VERSION")),
                )
                .header("x-acs-version", aliyun_rpc::API_VERSION)
                .header("x-acs-action", "GetSecretValue")
                .header("x-sdk-invoke-type", "normal")
                .send()
                .await;
            let retry = match resp {
                Err(e) => format!("KMS unreachable: {e}"),
                Ok(r) => 'answer: {
                    let status = r.status().as_u16();
                    let bytes = match r.bytes().await {
                        Ok(b) => b,
                        Err(e) => {
                            break 'answer format!("KMS answer cut short: {}", e.without_url())
                        }
                    };
                    let json: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
                    if (200..300).contains(&status) {
                        let data = json
                            .as_ref()
                            .and_then(|v| v.get("SecretData"))
                            .and_then(|v| v.as_str())
                            .ok_or_else(|| {
                                SecretError::Unavailable(
                                    "KMS answer is not JSON with a SecretData string".into(),
                                )
                            })?;
                        return Ok(Some(Zeroizing::new(data.as_bytes().to_vec())));
                    }
                    let Some(json) = json else {
                        return Err(SecretError::Unavailable(format!(
                            "KMS answered HTTP {status} without a JSON error body"
                        )));
                    };
                    let text = |k: &str| {
                        json.get(k)
                            .and_then(|v| v.as_str())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let (code, request_id) = (text("Code"), text("RequestId"));
                    tracing::warn!(status, code = %code, request_id = %request_id, attempt, "KMS error");
                    match status {
                        404 if code == "Forbidden.ResourceNotFound" => return Ok(None),
                        429 | 500 | 503 => format!("KMS {status} {code} (request {request_id})"),
                        _ => {
                            // The service's Message can quote the string to sign; only the
                            // code goes out, with a hint for the usual credential mistakes.
                            let hint = match code.as_str() {
                                "SignatureDoesNotMatch" | "IncompleteSignature" => {
                                    ": the AccessKey secret does not match the AccessKey id"
                                }
                                c if c.starts_with("InvalidAccessKeyId") => {
                                    ": unknown or disabled AccessKey id"
                                }
                                c if c.starts_with("InvalidTimeStamp") => {
                                    ": the server clock is off"
                                }
                                _ => "",
                            };
                            return Err(SecretError::Refused(format!(
                                "KMS {status} {code} (request {request_id}){hint}"
                            )));
                        }
                    }
                }
            };
            if attempt == ATTEMPTS {
                return Err(SecretError::Unavailable(retry));
            }
            self.count("retry");
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        Err(SecretError::Unavailable("KMS retries exhausted".into()))
    }
}

#[async_trait::async_trait]
impl super::SecretBackend for AliyunKms {
    async fn get(
        &self,
        path: &coffer_protocol::ResourcePath,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, SecretError> {
        self.get_secret_value(path.tag()).await
    }
    async fn put(
        &self,
        path: &coffer_protocol::ResourcePath,
        _value: &[u8],
    ) -> Result<(), SecretError> {
        Err(SecretError::ReadOnly(path.to_string()))
    }
    async fn delete(&self, path: &coffer_protocol::ResourcePath) -> Result<bool, SecretError> {
        Err(SecretError::ReadOnly(path.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn data(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/aliyun-kms")
            .join(name)
    }

    #[test]
    fn known_answer_signatures() {
        let vectors: Value =
            serde_json::from_str(&std::fs::read_to_string(data("vectors.json")).unwrap()).unwrap();
        let key = ClientKey::load(
            &data("clientKey_test-id.json"),
            &data("password_test-id.json"),
        )
        .unwrap();
        assert_eq!(key.key_id, "test-id");
        assert_eq!(format!("{key:?}"), "ClientKey(test-id, ..)");
        let cases = [
            ("get_secret_latest", "test_secret", ""),
            ("get_secret_previous", "model-decryption-key", "ACSPrevious"),
        ];
        for (name, secret, stage) in cases {
            let v = vectors["requests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .unwrap();
            let body = get_secret_value_request(secret, stage, "");
            assert_eq!(hex::encode(&body), v["body_hex"], "{name}");
            let sha = content_sha256(&body);
            assert_eq!(sha, v["content_sha256"], "{name}");
            let sts = string_to_sign(
                &sha,
                v["date"].as_str().unwrap(),
                "test-id",
                "GetSecretValue",
            );
            assert_eq!(sts, v["string_to_sign"], "{name}");
            assert_eq!(key.sign(&sts).unwrap(), v["signature_b64"], "{name}");
        }
    }

    #[test]
    fn passwords_and_bad_credentials() {
        assert_eq!(&*password_from_text("abc\n"), "abc");
        assert_eq!(&*password_from_text("{\"ClientKeyPassword\": \"p\"}"), "p");
        let dir = tempfile::tempdir().unwrap();
        let wrong = dir.path().join("pw");
        std::fs::write(&wrong, "not-the-password").unwrap();
        let e = ClientKey::load(&data("clientKey_test-id.json"), &wrong)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("wrong password") && !e.contains("not-the-password"),
            "{e}"
        );
    }
}
