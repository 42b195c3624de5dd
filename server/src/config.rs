//! Server configuration (TOML). Every key has a default, so an empty file (or none) gives a
//! working single-node server on 127.0.0.1:8080 with its state under `./coffer-data`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

/// Errors reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file named by `--config`.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema: an unknown key, a value of the wrong type
    /// or outside its set, or keys that exclude each other.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file named by `--config`.
        path: PathBuf,
        /// The parser's error: line, column, the offending line (with its key) and why.
        source: toml::de::Error,
    },
    /// A value is inconsistent with another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Top-level configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP listener.
    pub server: ServerConfig,
    /// Where state lives.
    pub database: DatabaseConfig,
    /// Key files.
    pub keys: KeysConfig,
    /// Admin API authentication.
    pub admin: AdminConfig,
    /// Handshake and token lifetimes.
    pub attestation: AttestationConfig,
    /// TDX/SGX quote verification: collateral sources and trust anchor.
    pub dcap: crate::attestation::collateral::DcapConfig,
    /// NVIDIA GPU evidence verification: roots and collateral sources.
    pub gpu: crate::attestation::gpu::GpuConfig,
    /// Resources under `default/aliyun/` read from an Aliyun KMS instance (optional).
    pub aliyun_kms: Option<crate::secrets::aliyun::AliyunKmsConfig>,
    /// Audit log: what an attestation row keeps and how long rows are kept.
    pub audit: AuditConfig,
}

/// `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Largest verified-claims JSON an attestation row keeps; longer claims have their long
    /// values elided (event logs first), and are left out when that is not enough.
    pub max_claims_bytes: usize,
    /// Rows older than this many seconds are removed by the server. 0 keeps them forever.
    pub max_age_secs: u64,
    /// Only the newest this many rows are kept. 0: no bound.
    pub max_rows: u64,
    /// How often the server applies the retention, seconds (and once at start).
    pub prune_interval_secs: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            max_claims_bytes: 64 * 1024,
            max_age_secs: 90 * 24 * 3600,
            max_rows: 1_000_000,
            prune_interval_secs: 300,
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Directory for the SQLite file and generated keys (created if missing).
    pub data_dir: PathBuf,
    /// Largest accepted request body, in bytes (Trustee's default is 2 MiB).
    pub max_body_bytes: usize,
    /// HTTP worker threads; 0 means one per CPU.
    pub workers: usize,
    /// Serve plain HTTP on a non-loopback address. Refused unless set: secrets released over
    /// plain HTTP are still JWE-encrypted, but admin tokens and policies are not.
    pub insecure_http: bool,
    /// TLS certificate and key; when present the server speaks HTTPS only.
    pub tls: Option<TlsConfig>,
    /// Directory of Rego policies installed (overwriting) at start-up:
    /// `resource-policy.rego` is the resource policy, any other `<id>.rego` the attestation
    /// policy `<id>` (e.g. `default_cpu.rego`). For policies managed as files (a ConfigMap).
    pub policy_dir: Option<PathBuf>,
    /// Extra path prefixes under which the whole KBS API (`/kbs/v0/...`) is served as well,
    /// e.g. `/api` (Alibaba's trustee-gateway, whose guests use `https://host/api`) or a
    /// release name (`/trustee`, as in the PAI-EAS guide's `http://<alb>/<release>`). Under
    /// each prefix `<prefix>/rvps/...` also maps to `/kbs/v0/rvps/...`, as the gateway does,
    /// and coffer's `/coffer/v1/...` and `/.well-known/jwks.json` are served too.
    /// Each must start with `/`, have no trailing `/` and no `.`/`..` segment.
    pub path_prefixes: Vec<String>,
}

/// The path prefixes served unless configured otherwise: Alibaba's gateway prefix.
pub const DEFAULT_PATH_PREFIXES: &[&str] = &["/api"];

/// Why a path prefix is refused, or `None` when it is acceptable.
pub fn path_prefix_problem(prefix: &str) -> Option<&'static str> {
    if !prefix.starts_with('/') {
        return Some("must start with '/'");
    }
    if prefix.len() == 1 || prefix.ends_with('/') {
        return Some("must not end with '/' (the API itself is served at the root)");
    }
    let segments = prefix[1..].split('/');
    for seg in segments {
        if seg.is_empty() {
            return Some("must not contain empty segments ('//')");
        }
        if seg == "." || seg == ".." {
            return Some("must not contain '.' or '..' segments");
        }
        // Prefixes are compared with the raw request path, so only characters that a client
        // never has to percent-encode can match.
        if !seg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
        {
            return Some("segments may only contain ASCII letters, digits, '-', '.', '_', '~'");
        }
    }
    // A prefix inside /kbs/ or /coffer/ would capture requests those routes serve (e.g.
    // /kbs/v0/resource/kbs/v0/x is a resource path). Exactly /kbs or /coffer is fine (a
    // helm release named `kbs`): /kbs/kbs/v0/... is no route of its own.
    if prefix.starts_with("/kbs/") || prefix.starts_with("/coffer/") {
        return Some("must not lie inside coffer's own /kbs/ or /coffer/ paths");
    }
    None
}

impl ServerConfig {
    /// HTTP worker threads: `workers`, or one per CPU when it is 0.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("coffer-data"),
            max_body_bytes: 2 * 1024 * 1024,
            workers: 0,
            insecure_http: false,
            tls: None,
            policy_dir: None,
            path_prefixes: DEFAULT_PATH_PREFIXES
                .iter()
                .map(|p| p.to_string())
                .collect(),
        }
    }
}

/// `[server.tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (default: `sqlite://<data_dir>/coffer.db`).
    pub url: Option<String>,
    /// Connection pool size.
    pub max_connections: Option<u32>,
}

/// `[keys]`. Unset paths default to files in the data directory, generated on first start.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(try_from = "KeysToml")]
pub struct KeysConfig {
    /// Where the key-encryption key comes from (`kek_file`, `kek_env` or `kek_kms_key_id`).
    pub kek: KekSource,
    /// PKCS#8 PEM P-256 key that signs attestation tokens. Default `<data_dir>/token-signing.pem`.
    pub token_signing_key: Option<PathBuf>,
}

/// Where the 32-byte key-encryption key of resources at rest comes from: one source, so no
/// combination of keys can be half-applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum KekSource {
    /// `<data_dir>/kek.hex`, generated on first start (no `kek_*` key set).
    #[default]
    DataDir,
    /// A file holding the key as hex (`keys.kek_file`); never generated.
    File(PathBuf),
    /// An environment variable holding the key as hex (`keys.kek_env`; it wins over
    /// `kek_file`, as documented since the key exists).
    Env(String),
    /// A key generated once and kept only wrapped by an Aliyun KMS key
    /// (`keys.kek_kms_key_id`; needs `[aliyun_kms]` in its ClientKey mode).
    AliyunKms {
        /// The symmetric KMS key that wraps it.
        key_id: String,
        /// Where the wrapped key is kept (`keys.kek_wrapped_file`); `None`: the database's
        /// `wrapped_keys` table, which every replica shares.
        wrapped_file: Option<PathBuf>,
    },
}

/// `[keys]` as written in the file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct KeysToml {
    kek_file: Option<PathBuf>,
    kek_env: Option<String>,
    token_signing_key: Option<PathBuf>,
    kek_kms_key_id: Option<String>,
    kek_wrapped_file: Option<PathBuf>,
}

/// `[keys]` entries that exclude or need each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeysConflict {
    /// A KMS-wrapped KEK with a plain one.
    #[error("keys.kek_kms_key_id excludes keys.kek_file and keys.kek_env")]
    KmsAndPlain,
    /// Where to keep a wrapped KEK, without a KMS key to wrap it.
    #[error("keys.kek_wrapped_file needs keys.kek_kms_key_id")]
    WrappedFileWithoutKms,
}

impl TryFrom<KeysToml> for KeysConfig {
    type Error = KeysConflict;

    fn try_from(k: KeysToml) -> Result<Self, KeysConflict> {
        let kek = match (k.kek_kms_key_id, k.kek_env, k.kek_file, k.kek_wrapped_file) {
            (Some(key_id), None, None, wrapped_file) => KekSource::AliyunKms {
                key_id,
                wrapped_file,
            },
            (Some(_), _, _, _) => return Err(KeysConflict::KmsAndPlain),
            (None, _, _, Some(_)) => return Err(KeysConflict::WrappedFileWithoutKms),
            (None, Some(var), _, None) => KekSource::Env(var),
            (None, None, Some(path), None) => KekSource::File(path),
            (None, None, None, None) => KekSource::DataDir,
        };
        Ok(KeysConfig {
            kek,
            token_signing_key: k.token_signing_key,
        })
    }
}

/// Reads an optional check: an empty string means "no check" (how the file says it).
fn empty_is_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    Ok(Some(s).filter(|s| !s.is_empty()))
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Ed25519 public key (PEM) that verifies admin tokens. Default `<data_dir>/admin.pub`,
    /// generated with its private half `<data_dir>/admin.key` on first start.
    pub public_key: Option<PathBuf>,
    /// Required `iss` claim; `None` (an empty string in the file) disables the check.
    #[serde(deserialize_with = "empty_is_none")]
    pub issuer: Option<String>,
    /// Required member of `aud`; `None` (an empty string in the file) disables the check.
    #[serde(deserialize_with = "empty_is_none")]
    pub audience: Option<String>,
    /// Refuse every admin call (read-only deployments).
    pub deny_all: bool,
    /// Also accept admin tokens as Alibaba's Trustee tooling mints them: EdDSA, signed by the
    /// admin key, with `exp` but no `role` (and no `iss`/`aud` checks). Off by default: such
    /// a token says nothing about who it is for, so one minted with the same key for another
    /// service would be accepted too.
    pub accept_alibaba_tokens: bool,
    /// Longest lifetime of an admin token, seconds: both `exp - iat` and `exp - now` must
    /// be within it (plus 30 s of clock skew for the latter).
    pub token_max_ttl_secs: u64,
    /// The same bound for role-less (Alibaba-style) tokens; default: `token_max_ttl_secs`.
    /// Alibaba's generator mints 2-hour tokens, so set 7200 to accept them unchanged.
    pub alibaba_token_max_ttl_secs: Option<u64>,
}

impl AdminConfig {
    /// The lifetime bound for role-less tokens.
    pub fn alibaba_max_ttl(&self) -> u64 {
        self.alibaba_token_max_ttl_secs
            .unwrap_or(self.token_max_ttl_secs)
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            public_key: None,
            issuer: Some("coffer".into()),
            audience: Some("kbs".into()),
            deny_all: false,
            accept_alibaba_tokens: false,
            token_max_ttl_secs: crate::service::DEFAULT_ADMIN_TOKEN_MAX_TTL_SECS,
            alibaba_token_max_ttl_secs: None,
        }
    }
}

/// `[attestation]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttestationConfig {
    /// Lifetime of a handshake session (cookie), seconds.
    pub session_ttl_secs: u64,
    /// Lifetime of an attestation token, seconds.
    pub token_ttl_secs: u64,
    /// `iss` of attestation tokens.
    pub token_issuer: String,
    /// How long policies and reference values read from the database are reused, in
    /// milliseconds. Changes made through this server apply at once; changes made through
    /// another replica within this delay. 0 reads the database on every handshake.
    pub policy_cache_ms: u64,
    /// How resource policies see `data["resource-path"]`: `auto` (upstream's array; a
    /// policy that cannot be evaluated with it, such as Alibaba's `split(...)`, gets
    /// Alibaba's string `resource/<repo>/<type>/<tag>`), `upstream` or `alibaba`.
    pub resource_path_dialect: crate::policy::ResourcePathDialect,
    /// Most handshake sessions the database holds at once (live and not yet purged). When
    /// full, `/auth` purges expired sessions, then evicts sessions older than 5 s
    /// (never-attested ones first), and answers 429 `TooManyRequests` only when all were
    /// created in the last 5 s. Expired
    /// sessions are also purged every minute. 0 disables the bound.
    pub max_sessions: u64,
}

/// Default of `attestation.max_sessions`: with the default 300 s session lifetime, room for
/// about 33 new handshakes a second, and a table of at most a few tens of megabytes.
pub const DEFAULT_MAX_SESSIONS: u64 = 10_000;

impl Default for AttestationConfig {
    fn default() -> Self {
        AttestationConfig {
            session_ttl_secs: 300,
            token_ttl_secs: 300,
            token_issuer: "coffer".into(),
            policy_cache_ms: 1000,
            resource_path_dialect: Default::default(),
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

impl Config {
    /// Reads `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses TOML text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Checks cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.tls.is_none() && !s.listen.ip().is_loopback() && !s.insecure_http {
            return Err(ConfigError::Invalid(format!(
                "refusing plain HTTP on non-loopback address {}: configure [server.tls] or set server.insecure_http = true",
                s.listen
            )));
        }
        if self.audit.prune_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "audit.prune_interval_secs must be at least 1".into(),
            ));
        }
        if s.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "server.max_body_bytes must be at least 1024".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for p in &s.path_prefixes {
            if let Some(why) = path_prefix_problem(p) {
                return Err(ConfigError::Invalid(format!(
                    "server.path_prefixes: {p:?} {why}"
                )));
            }
            if !seen.insert(p.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "server.path_prefixes: {p:?} is listed twice"
                )));
            }
        }
        if self.admin.token_max_ttl_secs == 0 || self.admin.alibaba_max_ttl() == 0 {
            return Err(ConfigError::Invalid(
                "admin.token_max_ttl_secs and admin.alibaba_token_max_ttl_secs must be positive"
                    .into(),
            ));
        }
        let a = &self.attestation;
        if a.session_ttl_secs == 0 || a.token_ttl_secs == 0 {
            return Err(ConfigError::Invalid(
                "attestation TTLs must be positive".into(),
            ));
        }
        let kms_mode = match &self.aliyun_kms {
            Some(k) => Some(k.mode().map_err(|e| ConfigError::Invalid(e.to_string()))?),
            None => None,
        };
        if let KekSource::AliyunKms { .. } = self.keys.kek {
            match kms_mode {
                None => {
                    return Err(ConfigError::Invalid(
                        "keys.kek_kms_key_id needs an [aliyun_kms] table (the KMS client)".into(),
                    ))
                }
                Some(crate::secrets::aliyun::KmsMode::AccessKey) => {
                    return Err(ConfigError::Invalid(
                        "keys.kek_kms_key_id needs the ClientKey mode of [aliyun_kms] (KMS Encrypt/Decrypt); the AccessKey mode only reads secrets".into(),
                    ))
                }
                Some(crate::secrets::aliyun::KmsMode::ClientKey { .. }) => {}
            }
        }
        Ok(())
    }

    /// Database connections: `database.max_connections`, else twice the HTTP workers
    /// (4 to 16).
    pub fn pool_size(&self) -> u32 {
        self.database.max_connections.unwrap_or_else(|| {
            let workers = u32::try_from(self.server.worker_threads()).unwrap_or(u32::MAX);
            workers.saturating_mul(2).clamp(4, 16)
        })
    }

    /// The database URL, defaulting to a SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        self.database.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.server.data_dir.join("coffer.db").display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let text = include_str!("../../coffer-server.example.toml");
        let c = Config::parse(text, Path::new("example")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.server.listen.port(), 8080);
    }

    #[test]
    fn kms_wrapped_kek_needs_the_kms_table_and_excludes_other_sources() {
        let c = Config::parse("[keys]\nkek_kms_key_id = \"key-1\"", Path::new("c")).unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("[aliyun_kms]"));
        let with_kms = "[keys]\nkek_kms_key_id = \"key-1\"\nkek_env = \"K\"\n[aliyun_kms]\nkms_instance_id = \"kst-x\"\nclient_key_file = \"a\"\npassword_file = \"b\"\ncert_pem_file = \"c\"\n";
        // One source: the combination is refused as the file is read.
        let e = Config::parse(with_kms, Path::new("c")).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }));
        assert!(e.to_string().contains("excludes"), "{e}");
        let access_key =
            "[keys]\nkek_kms_key_id = \"key-1\"\n[aliyun_kms]\nregion_id = \"cn-hangzhou\"\n";
        let c = Config::parse(access_key, Path::new("c")).unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("ClientKey mode"));
    }

    #[test]
    fn kms_modes_are_chosen_from_the_keys_present() {
        use crate::secrets::aliyun::KmsMode;
        let c = Config::parse(
            "[aliyun_kms]\nregion_id = \"cn-hangzhou\"\naccess_key_id = \"LTAI\"\n",
            Path::new("c"),
        )
        .unwrap();
        c.validate().unwrap();
        assert!(matches!(
            c.aliyun_kms.as_ref().map(|k| k.mode()),
            Some(Ok(KmsMode::AccessKey))
        ));
        let partial = "[aliyun_kms]\nkms_instance_id = \"kst-x\"\nclient_key_file = \"a\"\n";
        let e = Config::parse(partial, Path::new("c"))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("password_file, cert_pem_file"), "{e}");
        let mixed = "[aliyun_kms]\nkms_instance_id = \"kst-x\"\nclient_key_file = \"a\"\npassword_file = \"b\"\ncert_pem_file = \"c\"\naccess_key_id = \"LTAI\"\n";
        let e = Config::parse(mixed, Path::new("c"))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn path_prefixes_are_validated() {
        assert_eq!(Config::default().server.path_prefixes, vec!["/api"]);
        for good in ["/api", "/trustee", "/a/b-c_1", "/kbs", "/coffer"] {
            assert_eq!(path_prefix_problem(good), None, "{good}");
        }
        for bad in [
            "api",
            "/",
            "/api/",
            "/a//b",
            "/a/../b",
            "/..",
            "/a/.",
            "/a b",
            "/kbs/v0",
            "/coffer/v1",
        ] {
            assert!(path_prefix_problem(bad).is_some(), "{bad}");
        }
        let c = Config::parse("[server]\npath_prefixes = [\"/x/\"]", Path::new("c")).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("path_prefixes") && e.contains("/x/"), "{e}");
        let c = Config::parse("[server]\npath_prefixes = []", Path::new("c")).unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn compose_config_parses() {
        let text = include_str!("../../deploy/compose/coffer-server.toml");
        let c = Config::parse(text, Path::new("compose")).unwrap();
        c.validate().unwrap();
        assert_eq!(c.keys.kek, KekSource::DataDir);
    }

    /// What `helm/coffer/templates/configmap.yaml` renders, for both KEK branches.
    #[test]
    fn helm_rendered_configs_parse() {
        let rendered = |kek: &str| {
            format!(
                "[server]\nlisten = \"0.0.0.0:8080\"\ninsecure_http = true\npath_prefixes = [\"/api\"]\n\
                 [keys]\n{kek}\ntoken_signing_key = \"/etc/coffer/keys/token-signing.pem\"\n\
                 [admin]\npublic_key = \"/etc/coffer/keys/admin.pub\"\nissuer = \"coffer\"\naudience = \"\"\n\
                 [attestation]\nsession_ttl_secs = 300\ntoken_ttl_secs = 300\n\
                 [dcap]\npccs_update = \"early\"\n\
                 [aliyun_kms]\nkms_instance_id = \"kst-x\"\nclient_key_file = \"a\"\npassword_file = \"b\"\ncert_pem_file = \"c\"\n"
            )
        };
        let c = Config::parse(
            &rendered("kek_file = \"/etc/coffer/keys/kek.hex\""),
            Path::new("h"),
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.keys.kek,
            KekSource::File(PathBuf::from("/etc/coffer/keys/kek.hex"))
        );
        assert_eq!(c.admin.issuer.as_deref(), Some("coffer"));
        assert_eq!(
            c.admin.audience, None,
            "an empty audience disables the check"
        );
        assert_eq!(
            c.dcap.pccs_update,
            crate::attestation::collateral::PccsUpdate::Early
        );
        let c = Config::parse(&rendered("kek_kms_key_id = \"key-1\""), Path::new("h")).unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.keys.kek,
            KekSource::AliyunKms {
                key_id: "key-1".into(),
                wrapped_file: None
            }
        );
    }

    #[test]
    fn kek_sources_are_one_of_a_kind() {
        let kek = |text: &str| Config::parse(text, Path::new("c")).map(|c| c.keys.kek);
        assert_eq!(kek("").unwrap(), KekSource::DataDir);
        assert_eq!(
            kek("[keys]\nkek_env = \"K\"\nkek_file = \"/k\"").unwrap(),
            KekSource::Env("K".into()),
            "kek_env wins over kek_file, as documented"
        );
        assert_eq!(
            kek("[keys]\nkek_kms_key_id = \"k\"\nkek_wrapped_file = \"/w\"").unwrap(),
            KekSource::AliyunKms {
                key_id: "k".into(),
                wrapped_file: Some("/w".into())
            }
        );
        let e = kek("[keys]\nkek_wrapped_file = \"/w\"").unwrap_err();
        assert!(
            e.to_string()
                .contains("keys.kek_wrapped_file needs keys.kek_kms_key_id"),
            "{e}"
        );
        let e = kek("[keys]\nkek_kms_key_id = \"k\"\nkek_file = \"/k\"").unwrap_err();
        assert!(e.to_string().contains("excludes"), "{e}");
        let e = kek("[keys]\nkek_fil = \"/k\"").unwrap_err();
        assert!(e.to_string().contains("kek_fil"), "{e}");
    }

    /// A value outside a closed set is refused as the file is read, naming the key.
    #[test]
    fn pccs_url_is_optional_and_checked_while_parsing() {
        let offline = Config::parse("[dcap]\npccs_url = \"\"", Path::new("c")).unwrap();
        assert_eq!(offline.dcap.pccs_url, None);
        let default = Config::parse("", Path::new("c")).unwrap();
        assert_eq!(
            default.dcap.pccs_url.as_deref(),
            Some(crate::attestation::collateral::INTEL_PCS)
        );
        let e = Config::parse("[dcap]\npccs_url = \"pccs.local\"", Path::new("c")).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }));
        assert!(e.to_string().contains("dcap.pccs_url"), "{e}");
    }

    #[test]
    fn pccs_update_is_a_closed_set() {
        let e = Config::parse("[dcap]\npccs_update = \"latest\"", Path::new("c.toml")).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }));
        let text = e.to_string();
        assert!(
            text.contains("pccs_update") && text.contains("standard") && text.contains("early"),
            "{text}"
        );
        let c = Config::parse("[dcap]\npccs_update = \"standard\"", Path::new("c")).unwrap();
        assert_eq!(
            c.dcap.pccs_update,
            crate::attestation::collateral::PccsUpdate::Standard
        );
    }

    #[test]
    fn unknown_keys_and_plain_http_are_refused() {
        let e = Config::parse("[server]\nlisen = \"x\"", Path::new("c.toml")).unwrap_err();
        assert!(
            e.to_string().contains("c.toml") && e.to_string().contains("lisen"),
            "{e}"
        );
        let c = Config::parse("[server]\nlisten = \"0.0.0.0:8080\"", Path::new("c")).unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("insecure_http"));
    }
}
