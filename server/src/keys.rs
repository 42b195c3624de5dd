//! Loading, and on first start generating, the server's keys: the key-encryption key for
//! resources at rest, the attestation-token signing key and the admin public key.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use p256::pkcs8::{DecodePrivateKey, LineEnding};
use rand::RngCore;
use zeroize::Zeroizing;

use crate::config::{Config, KekSource};
use crate::secrets::Kek;

/// Key loading failures; each names the file and never includes key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file exists but does not hold a key of the expected kind.
    #[error("{path}: {what}")]
    Format {
        /// File (or environment variable).
        path: PathBuf,
        /// What was expected.
        what: &'static str,
    },
    /// `keys.kek_env` names a variable that is not set (or not UTF-8).
    #[error("${var} (keys.kek_env) is not set")]
    EnvMissing {
        /// The variable.
        var: String,
        /// Why it cannot be read.
        #[source]
        source: std::env::VarError,
    },
}

/// The keys a running server needs.
pub struct ServerKeys {
    /// Wraps resources at rest; `None` when it is KMS-wrapped (unwrapped later, async).
    pub kek: Option<Kek>,
    /// Signs attestation tokens.
    pub token_signing: p256::ecdsa::SigningKey,
    /// Verifies admin tokens.
    pub admin_public: ed25519_dalek::VerifyingKey,
    /// Where a freshly generated admin private key was written, if one was.
    pub generated_admin_key: Option<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a new file readable only by the owner; refuses to overwrite.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(contents).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn read(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(io(path))
}

fn parse_kek(text: &str, path: &Path) -> Result<Kek, KeyError> {
    let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| KeyError::Format {
        path: path.to_path_buf(),
        what: "expected 64 hex digits (a 32-byte key-encryption key)",
    })?);
    Kek::from_slice(&bytes).ok_or(KeyError::Format {
        path: path.to_path_buf(),
        what: "expected 64 hex digits (a 32-byte key-encryption key)",
    })
}

/// Creates the data directory (and missing parents) readable by the owner only. An existing
/// directory keeps its mode (it may be a mounted volume whose group access is deliberate),
/// with a warning when others can enter it.
pub fn create_data_dir(dir: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        // `mode` is filtered by the umask; make sure of the result.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    let mode = std::fs::metadata(dir)
        .map_err(io(dir))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", mode & 0o777),
            "the data directory (database, keys) is accessible to other users; chmod 700 it"
        );
    }
    Ok(())
}

/// Loads every key, generating the ones whose path was left at its data-directory default.
pub fn load_or_create(cfg: &Config) -> Result<ServerKeys, KeyError> {
    let dir = &cfg.server.data_dir;
    create_data_dir(dir)?;

    let kek = match &cfg.keys.kek {
        KekSource::AliyunKms { .. } => None,
        KekSource::Env(var) => Some({
            let value =
                Zeroizing::new(std::env::var(var).map_err(|source| KeyError::EnvMissing {
                    var: var.clone(),
                    source,
                })?);
            parse_kek(&value, Path::new(&format!("${var}")))?
        }),
        KekSource::File(path) => Some(parse_kek(&read(path)?, path)?),
        KekSource::DataDir => Some({
            let path = dir.join("kek.hex");
            if !path.exists() {
                let mut k = Zeroizing::new([0u8; 32]);
                rand::rngs::OsRng.fill_bytes(k.as_mut());
                write_private_file(&path, hex::encode(k.as_ref()).as_bytes())?;
            }
            parse_kek(&read(&path)?, &path)?
        }),
    };

    let (path, default) = pick(&cfg.keys.token_signing_key, dir, "token-signing.pem");
    if default && !path.exists() {
        let k = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let pem =
            p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&k, LineEnding::LF).map_err(|_| {
                KeyError::Format {
                    path: path.clone(),
                    what: "cannot encode key",
                }
            })?;
        write_private_file(&path, pem.as_bytes())?;
    }
    let token_signing = parse_token_signing_key(&read(&path)?).ok_or(KeyError::Format {
        path: path.clone(),
        what: "expected a P-256 private key in PEM (PKCS#8 or SEC1)",
    })?;

    let (path, default) = pick(&cfg.admin.public_key, dir, "admin.pub");
    let mut generated_admin_key = None;
    if default && !path.exists() {
        let sk = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let key_path = dir.join("admin.key");
        let pem = sk
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| KeyError::Format {
                path: key_path.clone(),
                what: "cannot encode key",
            })?;
        write_private_file(&key_path, pem.as_bytes())?;
        let public = sk
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| KeyError::Format {
                path: path.clone(),
                what: "cannot encode key",
            })?;
        // Public, but everything the server writes is owner-only: nothing to reason about.
        write_private_file(&path, public.as_bytes())?;
        generated_admin_key = Some(key_path);
    }
    let admin_public = parse_admin_public_key(&read(&path)?).ok_or(KeyError::Format {
        path: path.clone(),
        what: "expected an Ed25519 public key in PEM (SPKI, or an X.509 certificate carrying one)",
    })?;

    Ok(ServerKeys {
        kek,
        token_signing,
        admin_public,
        generated_admin_key,
    })
}

/// PKCS#8, or SEC1 (`EC PRIVATE KEY`): the form Helm's `genPrivateKey "ecdsa"` writes, so a
/// chart can generate the key without a job.
fn parse_token_signing_key(pem: &str) -> Option<p256::ecdsa::SigningKey> {
    p256::ecdsa::SigningKey::from_pkcs8_pem(pem)
        .ok()
        .or_else(|| p256::SecretKey::from_sec1_pem(pem).ok().map(Into::into))
}

/// SPKI PEM, or an X.509 certificate whose key is Ed25519: Helm has no function that prints
/// a bare public key, but `genSelfSignedCertWithKey` wraps one from `genPrivateKey "ed25519"`
/// in a certificate, which is how the chart generates the admin key pair. Only the key is
/// used; the certificate's names and dates mean nothing here.
fn parse_admin_public_key(pem: &str) -> Option<ed25519_dalek::VerifyingKey> {
    if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
        return Some(k);
    }
    let cert = openssl::x509::X509::from_pem(pem.as_bytes()).ok()?;
    let der = cert.public_key().ok()?.public_key_to_der().ok()?;
    ed25519_dalek::VerifyingKey::from_public_key_der(&der).ok()
}

fn pick(configured: &Option<PathBuf>, dir: &Path, name: &str) -> (PathBuf, bool) {
    match configured {
        Some(p) => (p.clone(), false),
        None => (dir.join(name), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generates_once_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default();
        cfg.server.data_dir = dir.path().join("data");
        let a = load_or_create(&cfg).unwrap();
        let admin_key = a.generated_admin_key.clone().unwrap();
        for f in ["kek.hex", "token-signing.pem", "admin.key", "admin.pub"] {
            let mode = std::fs::metadata(cfg.server.data_dir.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        let dir_mode = std::fs::metadata(&cfg.server.data_dir)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let b = load_or_create(&cfg).unwrap();
        assert!(b.generated_admin_key.is_none());
        assert_eq!(a.admin_public, b.admin_public);
        assert_eq!(
            a.token_signing.verifying_key(),
            b.token_signing.verifying_key()
        );
        assert!(admin_key.exists());
    }

    /// The forms Helm's `genPrivateKey "ecdsa"` and `genSelfSignedCertWithKey` (over an
    /// Ed25519 key) produce, which the chart writes into its generated Secret.
    #[test]
    fn sec1_token_key_and_certificate_wrapped_admin_key_are_accepted() {
        use openssl::{ec, nid::Nid, pkey::PKey, x509};
        let group = ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let sec1 = ec::EcKey::generate(&group)
            .unwrap()
            .private_key_to_pem()
            .unwrap();
        let sec1 = String::from_utf8(sec1).unwrap();
        assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"));
        assert!(parse_token_signing_key(&sec1).is_some());

        let admin = PKey::generate_ed25519().unwrap();
        let mut name = x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "coffer-admin").unwrap();
        let name = name.build();
        let mut b = x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&admin).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.sign(&admin, openssl::hash::MessageDigest::null())
            .unwrap();
        let pem = String::from_utf8(b.build().to_pem().unwrap()).unwrap();
        let k = parse_admin_public_key(&pem).unwrap();
        assert_eq!(k.as_bytes().as_slice(), admin.raw_public_key().unwrap());

        // A certificate over another key type is not an admin key.
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let mut b = x509::X509Builder::new().unwrap();
        b.set_pubkey(&rsa).unwrap();
        b.sign(&rsa, openssl::hash::MessageDigest::sha256())
            .unwrap();
        let pem = String::from_utf8(b.build().to_pem().unwrap()).unwrap();
        assert!(parse_admin_public_key(&pem).is_none());
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default();
        cfg.server.data_dir = dir.path().to_path_buf();
        let kek = dir.path().join("custom-kek");
        std::fs::write(&kek, "zz").unwrap();
        cfg.keys.kek = KekSource::File(kek);
        let e = load_or_create(&cfg).err().unwrap().to_string();
        assert!(e.contains("custom-kek") && e.contains("hex"), "{e}");
        cfg.keys.kek = KekSource::File(dir.path().join("missing"));
        let e = load_or_create(&cfg).err().unwrap().to_string();
        assert!(e.contains("missing"), "{e}");
    }

    /// An unset `keys.kek_env` variable is named as unset, not read as an empty key.
    #[test]
    fn an_unset_kek_variable_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default();
        cfg.server.data_dir = dir.path().to_path_buf();
        cfg.keys.kek = KekSource::Env("COFFER_TEST_KEK_THAT_IS_NEVER_SET".into());
        match load_or_create(&cfg) {
            Err(KeyError::EnvMissing { var, .. }) => {
                assert_eq!(var, "COFFER_TEST_KEK_THAT_IS_NEVER_SET")
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("loaded a KEK from an unset variable"),
        }
    }
}
