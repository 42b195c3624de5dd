//! Why a KBS call failed: [`KbsError`] has one variant per Trustee error kind, each holding
//! the reason as its own type with the cause that produced it (a driver, parser or verifier
//! error) kept as `#[source]`. [`KbsError::kind`] is the one mapping to the wire kind.
//!
//! The `Display` text of a [`KbsError`] is the `detail` of the problem body: Trustee's
//! message prefix (`Attestation error: RCAR handshake Auth failed: ...`) and what the caller
//! may know. Causes that are not the caller's business (database and backend errors) are kept
//! as sources for the server log and are not in the text. No text contains secret material.

use coffer_protocol::jwe::JweError;
use coffer_protocol::jwk::JwkError;
use coffer_protocol::jwt::JwtError;
use coffer_protocol::messages::MessageError;
use coffer_protocol::resource::ResourcePathError;
use coffer_protocol::{ErrorKind, ProtocolVersion, ResourcePath, Tee};

use crate::attestation::gpu::GpuEvidenceError;
use crate::attestation::VerifyError;
use crate::clock::ClockError;
use crate::policy::PolicyError;
use crate::secrets::SecretError;
use crate::store::StoreError;

/// A failed KBS call. See the module documentation for what the texts may contain.
#[derive(Debug, thiserror::Error)]
pub enum KbsError {
    /// An admin call on a plugin route (resource writes) without an acceptable admin token
    /// (Trustee's wording for plugin calls).
    #[error("failed to initialize [admin] configuration: {0}")]
    AdminAuthInitialization(#[source] AdminAuthError),
    /// An admin call on a built-in endpoint without an acceptable admin token.
    #[error("admin access denied for endpoint {endpoint}: {source}")]
    AdminAuthAccess {
        /// The request path.
        endpoint: String,
        /// Why the token was refused.
        #[source]
        source: AdminAuthError,
    },
    /// The RCAR handshake failed, or an attestation policy upload was refused.
    #[error("Attestation error: {0}")]
    AttestationError(#[source] AttestationError),
    /// No route for the path.
    #[error("{0}")]
    InvalidRequestPath(#[source] InvalidPath),
    /// The resource cannot be encrypted to the token's TEE key.
    #[error("JWE failed: {0}")]
    JweError(#[source] JweError),
    /// An unknown first segment under `/kbs/v0` (Trustee treats it as a plugin name).
    #[error("Plugin {name} not found")]
    PluginNotFound {
        /// The segment.
        name: String,
    },
    /// The resource plugin refused the request (bad path, refusing or read-only backend).
    #[error("{0}")]
    PluginInternalError(#[source] PluginError),
    /// The resource policy did not allow the release.
    #[error("Access denied by policy")]
    PolicyDeny,
    /// An uploaded policy is not base64 of UTF-8 text, or its JSON envelope is wrong.
    #[error("Failed to parse policy: {0}")]
    ParsePolicyError(#[source] PolicyParseError),
    /// A policy does not compile or failed to evaluate, or may not be deleted.
    #[error("{0}")]
    PolicyEngineError(#[source] PolicyEngineFailure),
    /// A reference value could not be registered, listed or found.
    #[error("RVPS configuration failed: {0}")]
    RvpsError(#[source] RvpsFailure),
    /// The request body or query cannot be read.
    #[error("{0}")]
    SerdeError(#[source] SerdeFailure),
    /// A resource request carried neither an attested session nor a token.
    #[error("Attestation Token not found")]
    TokenNotFound,
    /// The presented (or stored) token is unacceptable.
    #[error("{0}")]
    TokenVerifierError(#[source] TokenFailure),
    /// The resource, policy or audit row does not exist.
    #[error("{0}")]
    ResourceNotFound(#[source] NotFound),
    /// The body exceeds `server.max_body_bytes`.
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// A service the call needs (database, secret backend, collateral source) failed; the
    /// caller may retry.
    #[error("{0}")]
    StorageUnavailable(#[source] Unavailable),
    /// A failure of this server (clock, corrupt stored data, a bug).
    #[error("{0}")]
    InternalError(#[source] Internal),
    /// `attestation.max_sessions` is reached.
    #[error("too many handshakes in progress; retry later")]
    TooManyRequests,
}

impl KbsError {
    /// The Trustee error kind: the problem body's `type` and, through it, the HTTP status.
    pub fn kind(&self) -> ErrorKind {
        match self {
            KbsError::AdminAuthInitialization(_) => ErrorKind::AdminAuthInitialization,
            KbsError::AdminAuthAccess { .. } => ErrorKind::AdminAuthAccess,
            KbsError::AttestationError(_) => ErrorKind::AttestationError,
            KbsError::InvalidRequestPath(_) => ErrorKind::InvalidRequestPath,
            KbsError::JweError(_) => ErrorKind::JweError,
            KbsError::PluginNotFound { .. } => ErrorKind::PluginNotFound,
            KbsError::PluginInternalError(_) => ErrorKind::PluginInternalError,
            KbsError::PolicyDeny => ErrorKind::PolicyDeny,
            KbsError::ParsePolicyError(_) => ErrorKind::ParsePolicyError,
            KbsError::PolicyEngineError(_) => ErrorKind::PolicyEngineError,
            KbsError::RvpsError(_) => ErrorKind::RvpsError,
            KbsError::SerdeError(_) => ErrorKind::SerdeError,
            KbsError::TokenNotFound => ErrorKind::TokenNotFound,
            KbsError::TokenVerifierError(_) => ErrorKind::TokenVerifierError,
            KbsError::ResourceNotFound(_) => ErrorKind::ResourceNotFound,
            KbsError::PayloadTooLarge { .. } => ErrorKind::PayloadTooLarge,
            KbsError::StorageUnavailable(_) => ErrorKind::StorageUnavailable,
            KbsError::InternalError(_) => ErrorKind::InternalError,
            KbsError::TooManyRequests => ErrorKind::TooManyRequests,
        }
    }

    /// The HTTP status: the kind's, except for a reference value list, which Alibaba's RVPS
    /// answers with 400 (malformed) or 501 (valid, but needs provenance coffer cannot fetch).
    pub fn status(&self) -> u16 {
        match self {
            KbsError::RvpsError(RvpsFailure::List(RvListError::Invalid(_))) => 400,
            KbsError::RvpsError(RvpsFailure::List(RvListError::Unsupported(_))) => 501,
            other => other.kind().status(),
        }
    }

    /// Whether the server, not the caller, is at fault (logged as an error, not a refusal).
    pub fn is_server_fault(&self) -> bool {
        matches!(
            self,
            KbsError::StorageUnavailable(_) | KbsError::InternalError(_)
        )
    }

    /// The attestation failure `e` (`Attestation error: RCAR handshake Attest failed: ...`).
    pub(crate) fn attest(e: AttestError) -> Self {
        KbsError::AttestationError(AttestationError::Attest(e))
    }

    /// The `/auth` failure `e` (`Attestation error: RCAR handshake Auth failed: ...`).
    pub(crate) fn auth(e: AuthError) -> Self {
        KbsError::AttestationError(AttestationError::Auth(e))
    }
}

impl From<StoreError> for KbsError {
    fn from(e: StoreError) -> Self {
        match e {
            e @ (StoreError::Misuse(_) | StoreError::Corrupt { .. }) => {
                KbsError::InternalError(Internal::Store(e))
            }
            e => KbsError::StorageUnavailable(Unavailable::Store(e)),
        }
    }
}

impl From<SecretError> for KbsError {
    fn from(e: SecretError) -> Self {
        match e {
            SecretError::Store(e) => KbsError::from(e).secrets_wording(),
            e @ SecretError::Unavailable(_) => {
                KbsError::StorageUnavailable(Unavailable::Secrets(e))
            }
            SecretError::Integrity(path) => KbsError::InternalError(Internal::Integrity { path }),
            SecretError::Refused(reason) => {
                KbsError::PluginInternalError(PluginError::Refused { reason })
            }
            SecretError::ReadOnly(path) => {
                KbsError::PluginInternalError(PluginError::ReadOnly { path })
            }
            SecretError::Clock(e) => KbsError::from(e),
            e @ SecretError::Seal(_) => KbsError::InternalError(Internal::Seal(e)),
        }
    }
}

impl From<ClockError> for KbsError {
    fn from(e: ClockError) -> Self {
        KbsError::InternalError(Internal::Clock(e))
    }
}

impl KbsError {
    /// A store failure met while reading or writing a resource is reported as the secret
    /// backend's, as before the store error kept its cause.
    fn secrets_wording(self) -> Self {
        match self {
            KbsError::StorageUnavailable(Unavailable::Store(e)) => {
                KbsError::StorageUnavailable(Unavailable::SecretStore(e))
            }
            other => other,
        }
    }
}

/// Why an admin token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminAuthError {
    /// `admin.deny_all` is set.
    #[error("admin API is disabled (admin.deny_all)")]
    Disabled,
    /// No `Authorization` header.
    #[error("an admin token is required: send `Authorization: Bearer <admin JWT>`")]
    Missing,
    /// The header is not `Bearer <token>`.
    #[error("Failed to parse HTTP Auth Bearer header")]
    NotBearer,
    /// The JWT does not verify (signature, expiry, form).
    #[error("admin token rejected: {0}")]
    Token(#[source] JwtError),
    /// The token lives longer than allowed.
    #[error("admin token rejected: its lifetime ({lived} s) is too long: an admin token may live at most {max_ttl} s ({setting}); mint a shorter one (coffer admin token --ttl)")]
    TooLong {
        /// `exp - iat`, or `exp - now` without `iat`.
        lived: i64,
        /// The bound.
        max_ttl: i64,
        /// The setting that holds the bound.
        setting: &'static str,
    },
    /// A role-less (Alibaba-style) token while those are not accepted.
    #[error("admin token rejected: it has no role claim (tokens minted by Alibaba's Trustee tooling need admin.accept_alibaba_tokens = true)")]
    NoRole,
    /// `role` is not `admin`.
    #[error("admin token rejected: role claim is not \"admin\"")]
    NotAdmin,
    /// `iss` differs from `admin.issuer`.
    #[error("admin token rejected: issuer must be {expected:?}")]
    Issuer {
        /// `admin.issuer`.
        expected: String,
    },
    /// `aud` lacks `admin.audience`.
    #[error("admin token rejected: audience must include {expected:?}")]
    Audience {
        /// `admin.audience`.
        expected: String,
    },
}

/// The attestation failures, by step.
#[derive(Debug, thiserror::Error)]
pub enum AttestationError {
    /// `/auth` refused.
    #[error("RCAR handshake Auth failed: {0}")]
    Auth(#[source] AuthError),
    /// `/attest` refused.
    #[error("RCAR handshake Attest failed: {0}")]
    Attest(#[source] AttestError),
    /// `POST /attestation-policy` refused.
    #[error("Set Attestation Policy failed: {0}")]
    SetPolicy(#[source] SetPolicyError),
}

/// Why `/auth` refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Not a `Request` (JSON shape, unknown TEE name).
    #[error("invalid request body: {0}")]
    Body(#[source] serde_json::Error),
    /// A well-formed version this server does not speak.
    #[error("KBS Client Protocol Version Mismatch: expect one of {list} while the request is {requested}", list = ProtocolVersion::accepted_list())]
    VersionMismatch {
        /// The version sent.
        requested: String,
    },
    /// Not a version number.
    #[error("failed to parse KBS version {requested:?} (accepted: {list})", list = ProtocolVersion::accepted_list())]
    BadVersion {
        /// The text sent.
        requested: String,
    },
    /// No verifier for the TEE.
    #[error("unsupported TEE \"{tee}\" (this server verifies: {supported})")]
    UnsupportedTee {
        /// The TEE named.
        tee: Tee,
        /// The TEEs verified, comma-separated.
        supported: String,
    },
}

/// Why `/attest` refused.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// No session cookie.
    #[error("cookie not found")]
    NoCookie,
    /// The session is unknown or expired.
    #[error("session not found")]
    NoSession,
    /// The nonce was consumed meanwhile (by a concurrent call, on any replica) or the
    /// session expired between its reading and the consumption.
    #[error("challenge already used or session expired (replay refused)")]
    Replay,
    /// The body does not fit the session's protocol version.
    #[error("{0}")]
    Body(#[source] MessageError),
    /// 0.4.0's echoed nonce differs from the challenge.
    #[error("nonce mismatch: runtime-data does not carry this session's challenge")]
    NonceMismatch,
    /// The `tee-pubkey` is not a key the version allows.
    #[error("{0}")]
    TeeKey(#[source] JwkError),
    /// The GPU evidence cannot be read.
    #[error("{0}")]
    GpuEvidence(#[source] GpuEvidenceError),
    /// No verifier for the session's TEE (it was removed from the configuration since
    /// `/auth`).
    #[error("unsupported TEE \"{0}\"")]
    UnsupportedTee(Tee),
    /// The evidence was refused.
    #[error("evidence verification failed: {0}")]
    Evidence(#[source] VerifyError),
    /// The GPU evidence was refused.
    #[error("GPU evidence verification failed: {0}")]
    GpuVerification(#[source] VerifyError),
    /// Init-data in a format other than TOML.
    #[error("init-data format {0:?} is not supported (use toml)")]
    InitDataFormat(String),
    /// Init-data that is not TOML.
    #[error("init-data is not valid TOML: {0}")]
    InitDataToml(#[source] toml::de::Error),
    /// Init-data whose TOML has no JSON form for the policy input.
    #[error("init-data cannot be given to the policy as JSON: {0}")]
    InitDataClaims(#[source] serde_json::Error),
}

/// Why an attestation policy upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum SetPolicyError {
    /// Not `{"policy_id", "policy", "type"}`.
    #[error("{0}")]
    Body(#[source] serde_json::Error),
    /// An id with characters other than ASCII letters, digits, `_`, `-`, `.`.
    #[error("invalid policy_id {0:?}")]
    InvalidId(String),
    /// The policy text cannot be decoded.
    #[error("Failed to parse policy: {0}")]
    Decode(#[source] PolicyParseError),
    /// The policy does not compile.
    #[error("{0}")]
    Compile(#[source] PolicyError),
}

/// An unknown path.
#[derive(Debug, thiserror::Error)]
pub enum InvalidPath {
    /// No route serves it.
    #[error("Request path {0} is invalid")]
    NoRoute(String),
    /// `DELETE /rvps/delete/` without a name.
    #[error("a reference value name is required: /kbs/v0/rvps/delete/{{name}}")]
    MissingReferenceValueName,
}

/// The resource plugin's refusals.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The path is not `repository/type/tag`.
    #[error("Plugin internal error: illegal resource path: {0}")]
    IllegalPath(#[source] ResourcePathError),
    /// The backend refused (credentials, permissions).
    #[error("Plugin internal error: secret backend refused the request ({reason})")]
    Refused {
        /// The backend's reason (no secret material).
        reason: String,
    },
    /// The backend serving the path does not accept writes.
    #[error("resource backend for {path} is read-only")]
    ReadOnly {
        /// The path.
        path: String,
    },
}

/// Why an uploaded policy text cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PolicyParseError {
    /// Not `{"policy": "<base64>"}`.
    #[error("{0}")]
    Body(#[source] serde_json::Error),
    /// Not base64.
    #[error("base64: {0}")]
    Base64(#[source] base64::DecodeError),
    /// Not UTF-8.
    #[error("not UTF-8")]
    NotUtf8(#[source] std::string::FromUtf8Error),
}

/// Policy engine failures.
#[derive(Debug, thiserror::Error)]
pub enum PolicyEngineFailure {
    /// An appraisal policy failed to evaluate.
    #[error("Policy engine error ({policy}): {source}")]
    Appraisal {
        /// The policy id.
        policy: &'static str,
        /// What the engine said.
        #[source]
        source: PolicyError,
    },
    /// The resource policy failed to evaluate, or an uploaded policy does not compile.
    #[error("Policy engine error: {0}")]
    Evaluation(#[source] PolicyError),
    /// `default_cpu` cannot be deleted, only replaced.
    #[error("Policy engine error: attestation policy {id} cannot be deleted; upload a replacement instead")]
    Protected {
        /// The policy id.
        id: String,
    },
}

/// Reference value failures.
#[derive(Debug, thiserror::Error)]
pub enum RvpsFailure {
    /// The registration message is unacceptable.
    #[error("Failed to register reference value: {0}")]
    Register(#[source] RegisterError),
    /// No unexpired value has the name.
    #[error("No reference value found for the given id: {0}")]
    NotFound(String),
    /// A `set_reference_value_list` body was refused.
    #[error("{0}")]
    List(#[source] RvListError),
}

/// Why an RVPS registration message was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The message is not `{version, type, payload}` JSON.
    #[error("{0}")]
    Message(#[source] serde_json::Error),
    /// Alibaba's wrapper is not `{"message": "..."}`.
    #[error("body must be {{\"message\": \"<RVPS message JSON text>\"}}: {0}")]
    Wrapper(#[source] serde_json::Error),
    /// A message version other than 0.1.0.
    #[error("Version unmatched! Need 0.1.0, given {0}.")]
    Version(String),
    /// An extractor other than `sample`.
    #[error("extractor {0:?} is not supported (supported: sample)")]
    Extractor(String),
    /// The payload is not base64.
    #[error("payload base64: {0}")]
    PayloadBase64(#[source] base64::DecodeError),
    /// The payload is not a JSON object.
    #[error("payload must be a JSON object: {0}")]
    PayloadJson(#[source] serde_json::Error),
}

/// Why `set_reference_value_list` was refused.
#[derive(Debug, thiserror::Error)]
pub enum RvListError {
    /// The body is not a valid `rv_list` (400).
    #[error("invalid reference value list: {0}")]
    Invalid(String),
    /// Valid, but needs provenance coffer cannot fetch (501).
    #[error("unsupported reference value provenance: {0}")]
    Unsupported(String),
}

/// Why a request body or query cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SerdeFailure {
    /// The body stream failed.
    #[error("cannot read request body: {0}")]
    Body(#[source] actix_web::error::PayloadError),
    /// The query is malformed.
    #[error("invalid query: {0}")]
    Query(#[source] QueryError),
}

/// A malformed query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Not `key=value&...` of the known keys.
    #[error("{0}")]
    Form(#[source] actix_web::error::QueryPayloadError),
    /// `limit` out of range.
    #[error("limit must be 1..{max}, got {got}")]
    Limit {
        /// The value sent.
        got: i64,
        /// The largest page.
        max: i64,
    },
    /// `offset` below zero.
    #[error("offset must not be negative")]
    NegativeOffset,
    /// `order` other than `asc`/`desc`.
    #[error("order must be asc or desc, got {0:?}")]
    Order(String),
    /// A time in neither accepted form.
    #[error("{name}={value:?} is neither Unix milliseconds nor an RFC 3339 time ({source})")]
    Time {
        /// The parameter.
        name: &'static str,
        /// The value sent.
        value: String,
        /// Why RFC 3339 parsing failed.
        #[source]
        source: time::error::Parse,
    },
    /// An audit sequence number that is not an integer.
    #[error("audit sequence number {0:?} is not an integer")]
    Seq(String),
    /// An audit `action` no version of this server records.
    #[error("{0}")]
    Action(#[source] crate::store::UnknownAction),
    /// An audit `decision` no version of this server records.
    #[error("{0}")]
    Decision(#[source] crate::store::UnknownDecision),
}

/// Why a token was not accepted for a release.
#[derive(Debug, thiserror::Error)]
pub enum TokenFailure {
    /// Signature, expiry or issuer.
    #[error("Token Verifier error: {0}")]
    Jwt(#[source] JwtError),
    /// None of the places Trustee looks holds a `tee-pubkey`.
    #[error("Tee public key not found in Attestation Token")]
    NoTeeKey,
    /// The `tee-pubkey` is not a usable key.
    #[error("Failed to parse Tee public key")]
    BadTeeKey(#[source] JwkError),
}

/// What was not found.
#[derive(Debug, thiserror::Error)]
pub enum NotFound {
    /// A resource.
    #[error("resource {0} not found")]
    Resource(ResourcePath),
    /// An attestation policy.
    #[error("attestation policy {0} not found")]
    AttestationPolicy(String),
    /// A policy of any kind.
    #[error("policy {0} not found")]
    Policy(String),
    /// An audit row.
    #[error("no audit row {0} (never written, or removed by retention)")]
    AuditRow(i64),
}

/// A service the call needs failed; the texts say only which one.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The database.
    #[error("storage unavailable; retry later")]
    Store(#[source] StoreError),
    /// The database, reached through the resource backend.
    #[error("secret backend unavailable; retry later")]
    SecretStore(#[source] StoreError),
    /// A remote secret backend (KMS).
    #[error("secret backend unavailable; retry later")]
    Secrets(#[source] SecretError),
    /// A collateral service needed to verify evidence.
    #[error("{0}; retry later")]
    Verification(#[source] VerifyError),
    /// The readiness probe's ping.
    #[error("database unreachable")]
    Ping(#[source] StoreError),
}

/// A failure of this server.
#[derive(Debug, thiserror::Error)]
pub enum Internal {
    /// The system clock cannot be read.
    #[error("the server cannot read its clock")]
    Clock(#[source] ClockError),
    /// A stored value is unreadable, or the store was misused.
    #[error("stored data cannot be read; see the server log")]
    Store(#[source] StoreError),
    /// A sealed resource failed authentication.
    #[error("stored resource {path} failed its integrity check")]
    Integrity {
        /// The resource path.
        path: String,
    },
    /// The attestation token cannot be signed.
    #[error("attestation token could not be signed")]
    Sign(#[source] coffer_protocol::jwt::SignError),
    /// A resource cannot be sealed.
    #[error("the resource cannot be stored")]
    Seal(#[source] SecretError),
    /// Metrics cannot be rendered.
    #[error("metrics cannot be rendered")]
    Metrics(#[source] prometheus::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The problem details of each kind, exactly as the wire carried them before the error
    /// was typed (the integration tests and clients match on them).
    #[test]
    fn details_keep_trustee_prefixes() {
        let cases: Vec<(KbsError, ErrorKind, &str)> = vec![
            (
                KbsError::auth(AuthError::UnsupportedTee {
                    tee: Tee::Snp,
                    supported: "sample, tdx".into(),
                }),
                ErrorKind::AttestationError,
                "Attestation error: RCAR handshake Auth failed: unsupported TEE \"snp\" (this server verifies: sample, tdx)",
            ),
            (
                KbsError::attest(AttestError::Replay),
                ErrorKind::AttestationError,
                "Attestation error: RCAR handshake Attest failed: challenge already used or session expired (replay refused)",
            ),
            (
                KbsError::PolicyDeny,
                ErrorKind::PolicyDeny,
                "Access denied by policy",
            ),
            (
                KbsError::TokenNotFound,
                ErrorKind::TokenNotFound,
                "Attestation Token not found",
            ),
            (
                KbsError::TokenVerifierError(TokenFailure::Jwt(JwtError::Expired)),
                ErrorKind::TokenVerifierError,
                "Token Verifier error: JWT has expired",
            ),
            (
                KbsError::from(StoreError::Misuse("x")),
                ErrorKind::InternalError,
                "stored data cannot be read; see the server log",
            ),
            (
                KbsError::from(StoreError::unavailable(std::io::Error::other("db password=hunter2"))),
                ErrorKind::StorageUnavailable,
                "storage unavailable; retry later",
            ),
            (
                KbsError::from(SecretError::Refused("no permission".into())),
                ErrorKind::PluginInternalError,
                "Plugin internal error: secret backend refused the request (no permission)",
            ),
            (
                KbsError::from(SecretError::Store(StoreError::unavailable(std::io::Error::other("x")))),
                ErrorKind::StorageUnavailable,
                "secret backend unavailable; retry later",
            ),
            (
                KbsError::RvpsError(RvpsFailure::NotFound("m".into())),
                ErrorKind::RvpsError,
                "RVPS configuration failed: No reference value found for the given id: m",
            ),
            (
                KbsError::ParsePolicyError(PolicyParseError::NotUtf8(
                    String::from_utf8(vec![0xff]).unwrap_err(),
                )),
                ErrorKind::ParsePolicyError,
                "Failed to parse policy: not UTF-8",
            ),
            (
                KbsError::InvalidRequestPath(InvalidPath::MissingReferenceValueName),
                ErrorKind::InvalidRequestPath,
                "a reference value name is required: /kbs/v0/rvps/delete/{name}",
            ),
        ];
        for (e, kind, detail) in cases {
            assert_eq!(e.kind(), kind, "{e:?}");
            assert_eq!(e.to_string(), detail);
        }
    }

    /// The cause of a storage failure stays reachable for the log, and out of the detail.
    #[test]
    fn causes_are_kept_as_sources_not_shown() {
        let e = KbsError::from(StoreError::unavailable(std::io::Error::other(
            "connection refused by 10.0.0.5",
        )));
        assert!(!e.to_string().contains("10.0.0.5"));
        let mut chain = Vec::new();
        let mut cur: Option<&dyn std::error::Error> = Some(&e);
        while let Some(c) = cur {
            chain.push(c.to_string());
            cur = c.source();
        }
        assert!(chain.iter().any(|c| c.contains("10.0.0.5")), "{chain:?}");
    }

    #[test]
    fn reference_value_lists_keep_their_statuses() {
        let invalid = KbsError::RvpsError(RvpsFailure::List(RvListError::Invalid("x".into())));
        let unsupported =
            KbsError::RvpsError(RvpsFailure::List(RvListError::Unsupported("y".into())));
        assert_eq!((invalid.status(), unsupported.status()), (400, 501));
        assert_eq!(invalid.kind(), ErrorKind::RvpsError);
        assert_eq!(
            unsupported.to_string(),
            "RVPS configuration failed: unsupported reference value provenance: y"
        );
        assert_eq!(KbsError::PolicyDeny.status(), 401);
    }
}
