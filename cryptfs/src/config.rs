//! `gocryptfs.conf`: parsing, feature-flag checks and unwrapping the master key.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::gcm::GcmError;
use crate::keys::{gcm_open, gcm_seal, hkdf32, split_nonce, MasterKey, INFO_CONTENT_GCM};

/// Flags this implementation reads. Anything else is refused by name.
const SUPPORTED: [&str; 6] = [
    "HKDF",
    "GCMIV128",
    "DirIV",
    "EMENames",
    "LongNames",
    "Raw64",
];
/// Flags a filesystem must have for the content/name formats implemented here.
const REQUIRED: [&str; 5] = ["HKDF", "GCMIV128", "EMENames", "LongNames", "Raw64"];

/// Highest scrypt cost accepted, as log2(N) (what `gocryptfs -init -scryptn` allows).
pub const MAX_SCRYPT_LOG_N: u8 = 28;
/// Accepted scrypt block sizes R (gocryptfs writes 8).
pub const SCRYPT_R: std::ops::RangeInclusive<u32> = 8..=32;
/// Accepted scrypt parallelism P (gocryptfs writes 1).
pub const SCRYPT_P: std::ops::RangeInclusive<u32> = 1..=16;
/// Most memory scrypt may take (128 · R · N bytes): 32 GiB, what N = 2^28 with R = 8 needs.
pub const MAX_SCRYPT_MEMORY: u64 = 32 << 30;
/// Largest `gocryptfs.conf` read (real ones are under 1 KiB).
pub const MAX_CONFIG_SIZE: u64 = 64 << 10;

/// Configuration problems; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Cannot read the file.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not JSON of the expected shape.
    #[error("{path}: not a gocryptfs config: {message}")]
    Parse {
        /// File.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
    /// A flag this implementation does not support.
    #[error("{path}: unsupported gocryptfs feature flag {flag} ({why})")]
    UnsupportedFlag {
        /// File.
        path: PathBuf,
        /// Flag name.
        flag: String,
        /// Why.
        why: &'static str,
    },
    /// Other unsupported or invalid settings.
    #[error("{path}: {message}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The password does not open the master key.
    #[error("{path}: wrong password (the master key failed authentication)")]
    WrongPassword {
        /// File.
        path: PathBuf,
    },
    /// OpenSSL could not run AES-256-GCM to unwrap the master key (says nothing about the
    /// password).
    #[error("{path}: {source}")]
    Gcm {
        /// File.
        path: PathBuf,
        /// Cause.
        source: GcmError,
    },
}

/// Why [`Config::create_text`] could not make a configuration.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// gocryptfs refuses empty passwords, and so does coffer.
    #[error("empty password")]
    EmptyPassword,
    /// The scrypt cost is outside what gocryptfs accepts.
    #[error("scrypt log2(N) = {0} is outside 10..=28")]
    ScryptCost(u8),
    /// scrypt refused its parameters or output length (not expected for checked costs).
    #[error("scrypt refused its parameters")]
    Scrypt,
    /// OpenSSL could not wrap the master key.
    #[error(transparent)]
    Gcm(#[from] GcmError),
    /// The configuration did not serialize (not expected: it is built in memory).
    #[error("cannot serialize gocryptfs.conf: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawScrypt {
    salt: String,
    #[serde(rename = "N")]
    n: u64,
    #[serde(rename = "R")]
    r: u32,
    #[serde(rename = "P")]
    p: u32,
    key_len: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    #[serde(default)]
    creator: String,
    encrypted_key: String,
    scrypt_object: RawScrypt,
    version: u16,
    #[serde(default)]
    feature_flags: Option<Vec<String>>,
}

/// A validated gocryptfs configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// Free-text creator.
    pub creator: String,
    /// Per-directory IVs (`DirIV`); without it names use a zero tweak (deterministic names).
    pub dir_iv: bool,
    encrypted_key: Vec<u8>,
    salt: Vec<u8>,
    log_n: u8,
    r: u32,
    p: u32,
}

fn why_unsupported(flag: &str) -> &'static str {
    match flag {
        "AESSIV" => "AES-SIV content encryption is not supported",
        "XChaCha20Poly1305" => "XChaCha20-Poly1305 content encryption is not supported",
        "PlaintextNames" => "plaintext names are not supported",
        "FIDO2" => "FIDO2-protected filesystems are not supported",
        "LongNameMax" => "a custom long-name limit is not supported",
        _ => "unknown flag",
    }
}

impl Config {
    /// Reads `CIPHERDIR/gocryptfs.conf`.
    pub fn load_from_dir(cipher_dir: &Path) -> Result<Self, ConfigError> {
        let reverse = cipher_dir.join(".gocryptfs.reverse.conf");
        let path = cipher_dir.join("gocryptfs.conf");
        if !path.exists() && reverse.exists() {
            return Err(ConfigError::UnsupportedFlag {
                path: reverse,
                flag: "reverse".into(),
                why: "reverse-mode directories are plaintext; mount them with gocryptfs -reverse",
            });
        }
        Self::load(&path)
    }

    /// Reads and validates a config file. It must be a regular file (not a FIFO, device or
    /// symlink, which could block or never end) of at most [`MAX_CONFIG_SIZE`] bytes.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let (dir, name) = match (path.parent(), path.file_name()) {
            (Some(d), Some(n)) => (
                if d.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    d
                },
                n,
            ),
            _ => {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a file path",
                )))
            }
        };
        let dir = crate::fsat::open_root(dir).map_err(io)?;
        let text = crate::fsat::read_small_at(&dir, name, 0, MAX_CONFIG_SIZE).map_err(io)?;
        Self::parse(&text, path)
    }

    /// Parses config bytes; `path` is used in errors.
    pub fn parse(text: &[u8], path: &Path) -> Result<Self, ConfigError> {
        let path = path.to_path_buf();
        let invalid = |message: String| ConfigError::Invalid {
            path: path.clone(),
            message,
        };
        let raw: RawConfig = serde_json::from_slice(text).map_err(|e| ConfigError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let flags = raw.feature_flags.clone().unwrap_or_default();
        if raw.version != 2 {
            return Err(invalid(format!(
                "on-disk format version {} is not supported (need 2)",
                raw.version
            )));
        }
        for f in &flags {
            if !SUPPORTED.contains(&f.as_str()) {
                return Err(ConfigError::UnsupportedFlag {
                    path,
                    flag: f.clone(),
                    why: why_unsupported(f),
                });
            }
        }
        for f in REQUIRED {
            if !flags.iter().any(|x| x == f) {
                return Err(invalid(format!("feature flag {f} is missing (filesystems older than gocryptfs 1.3 are not supported)")));
            }
        }
        // The host can edit this file: bound the work it can make unlocking cost before
        // anything is allocated.
        let s = &raw.scrypt_object;
        if s.n < 1024 || !s.n.is_power_of_two() {
            return Err(invalid(format!(
                "scrypt N = {} must be a power of two >= 1024",
                s.n
            )));
        }
        if s.n.trailing_zeros() > u32::from(MAX_SCRYPT_LOG_N) {
            return Err(invalid(format!(
                "scrypt N = 2^{} exceeds the ceiling 2^{MAX_SCRYPT_LOG_N}: refused (a tampered config could make unlocking take unbounded memory and time)",
                s.n.trailing_zeros()
            )));
        }
        if !SCRYPT_R.contains(&s.r) {
            return Err(invalid(format!(
                "scrypt R = {} is outside {}..={}: refused",
                s.r,
                SCRYPT_R.start(),
                SCRYPT_R.end()
            )));
        }
        if !SCRYPT_P.contains(&s.p) {
            return Err(invalid(format!(
                "scrypt P = {} is outside {}..={}: refused",
                s.p,
                SCRYPT_P.start(),
                SCRYPT_P.end()
            )));
        }
        let memory = 128u64.saturating_mul(u64::from(s.r)).saturating_mul(s.n);
        if memory > MAX_SCRYPT_MEMORY {
            return Err(invalid(format!(
                "scrypt N = 2^{} with R = {} needs {} GiB, over the ceiling of {} GiB: refused",
                s.n.trailing_zeros(),
                s.r,
                memory >> 30,
                MAX_SCRYPT_MEMORY >> 30
            )));
        }
        if s.key_len != 32 {
            return Err(invalid(format!("scrypt KeyLen = {} (need 32)", s.key_len)));
        }
        let salt = STANDARD
            .decode(&s.salt)
            .map_err(|_| invalid("ScryptObject.Salt is not base64".into()))?;
        if salt.len() < 32 {
            return Err(invalid("scrypt salt shorter than 32 bytes".into()));
        }
        let encrypted_key = STANDARD
            .decode(&raw.encrypted_key)
            .map_err(|_| invalid("EncryptedKey is not base64".into()))?;
        if encrypted_key.len() != 64 {
            return Err(invalid(format!(
                "EncryptedKey has {} bytes (need 64)",
                encrypted_key.len()
            )));
        }
        Ok(Config {
            creator: raw.creator,
            dir_iv: flags.iter().any(|f| f == "DirIV"),
            encrypted_key,
            salt,
            log_n: s.n.trailing_zeros() as u8,
            r: s.r,
            p: s.p,
            path,
        })
    }

    /// Creates the text of a new `gocryptfs.conf` (default flags, scrypt N = 2^`log_n`)
    /// wrapping `master` under `password`.
    pub fn create_text(
        password: &[u8],
        master: &MasterKey,
        log_n: u8,
    ) -> Result<String, CreateError> {
        use rand::RngCore;
        if password.is_empty() {
            return Err(CreateError::EmptyPassword);
        }
        if !(10..=MAX_SCRYPT_LOG_N).contains(&log_n) {
            return Err(CreateError::ScryptCost(log_n));
        }
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let params = scrypt::Params::new(log_n, 8, 1, 32).map_err(|_| CreateError::Scrypt)?;
        let mut s = Zeroizing::new([0u8; 32]);
        scrypt::scrypt(password, &salt, &params, s.as_mut()).map_err(|_| CreateError::Scrypt)?;
        let kek = hkdf32(s.as_ref(), INFO_CONTENT_GCM);
        let mut nonce = [0u8; 16];
        while nonce == [0u8; 16] {
            rand::rngs::OsRng.fill_bytes(&mut nonce);
        }
        let mut wrapped = nonce.to_vec();
        wrapped.extend(gcm_seal(&kek, &nonce, &[0u8; 8], master.bytes())?);
        let conf = serde_json::json!({
            "Creator": concat!("coffer ", env!("CARGO_PKG_VERSION")),
            "EncryptedKey": STANDARD.encode(&wrapped),
            "ScryptObject": {"Salt": STANDARD.encode(salt), "N": 1u64 << log_n, "R": 8, "P": 1, "KeyLen": 32},
            "Version": 2,
            "FeatureFlags": ["HKDF", "GCMIV128", "DirIV", "EMENames", "LongNames", "Raw64"],
        });
        Ok(format!("{}\n", serde_json::to_string_pretty(&conf)?))
    }

    /// Unwraps the master key with `password` (scrypt, then HKDF, then AES-256-GCM).
    pub fn unlock(&self, password: &[u8]) -> Result<MasterKey, ConfigError> {
        if password.is_empty() {
            return Err(ConfigError::Invalid {
                path: self.path.clone(),
                message: "empty password".into(),
            });
        }
        let params = scrypt::Params::new(self.log_n, self.r, self.p, 32).map_err(|e| {
            ConfigError::Invalid {
                path: self.path.clone(),
                message: format!("scrypt parameters: {e}"),
            }
        })?;
        let mut s = Zeroizing::new([0u8; 32]);
        scrypt::scrypt(password, &self.salt, &params, s.as_mut()).map_err(|e| {
            ConfigError::Invalid {
                path: self.path.clone(),
                message: format!("scrypt: {e}"),
            }
        })?;
        let kek = hkdf32(s.as_ref(), INFO_CONTENT_GCM);
        // `parse` checked the length (64 bytes).
        let (nonce, ct) = split_nonce(&self.encrypted_key).ok_or(ConfigError::Invalid {
            path: self.path.clone(),
            message: "EncryptedKey is too short".into(),
        })?;
        let master = gcm_open(&kek, nonce, &[0u8; 8], ct)
            .map_err(|source| ConfigError::Gcm {
                path: self.path.clone(),
                source,
            })?
            .ok_or(ConfigError::WrongPassword {
                path: self.path.clone(),
            })?;
        MasterKey::from_slice(&master).ok_or(ConfigError::Invalid {
            path: self.path.clone(),
            message: "master key is not 32 bytes".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_configs_unlock_and_bad_requests_are_typed() {
        let master = MasterKey::from_slice(&[3u8; 32]).unwrap();
        let text = Config::create_text(b"pw", &master, 10).unwrap();
        let cfg = Config::parse(text.as_bytes(), Path::new("c.conf")).unwrap();
        assert_eq!(cfg.unlock(b"pw").unwrap().bytes(), master.bytes());
        assert!(matches!(
            cfg.unlock(b"other"),
            Err(ConfigError::WrongPassword { .. })
        ));
        assert!(matches!(
            Config::create_text(b"", &master, 10),
            Err(CreateError::EmptyPassword)
        ));
        assert!(matches!(
            Config::create_text(b"pw", &master, 9),
            Err(CreateError::ScryptCost(9))
        ));
    }

    /// A failing OpenSSL is neither a wrong password nor a config without its key.
    #[test]
    fn openssl_failures_are_not_wrong_passwords() {
        let master = MasterKey::from_slice(&[3u8; 32]).unwrap();
        let text = Config::create_text(b"pw", &master, 10).unwrap();
        let cfg = Config::parse(text.as_bytes(), Path::new("c.conf")).unwrap();
        crate::gcm::break_on_this_thread(true);
        let created = Config::create_text(b"pw", &master, 10);
        let unlocked = cfg.unlock(b"pw");
        crate::gcm::break_on_this_thread(false);
        assert!(matches!(created, Err(CreateError::Gcm(_))), "{created:?}");
        assert!(
            matches!(unlocked, Err(ConfigError::Gcm { .. })),
            "{unlocked:?}"
        );
    }
}
