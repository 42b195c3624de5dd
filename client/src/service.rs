//! PAI-EAS service JSON: the parts `coffer launch` acts on.
//!
//! The file is read as the platform reads it and as users write it for EAS: fields coffer
//! does not use (`metadata`, `cloud`, `containers[].image`, `port`, ...) are ignored, and a
//! missing or mistyped field that it needs is named with its JSON path.

use std::path::{Path, PathBuf};

use coffer_protocol::ResourcePath;
use serde::Deserialize;

/// A service file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Unreadable file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not JSON, or a field of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde said (with line and column).
        message: String,
    },
    /// A field coffer needs is missing or unusable.
    #[error("{path}: {field}: {message}")]
    Field {
        /// The file.
        path: PathBuf,
        /// JSON path of the field, e.g. `storage[0].mount_path`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
struct Raw {
    confidential: Option<RawConfidential>,
    #[serde(default)]
    storage: Vec<RawStorage>,
    #[serde(default)]
    containers: Vec<RawContainer>,
    metadata: Option<RawMetadata>,
}

#[derive(Deserialize)]
struct RawConfidential {
    trustee_endpoint: Option<String>,
    decryption_key: Option<String>,
}

#[derive(Deserialize)]
struct RawStorage {
    mount_path: Option<String>,
    encryption: Option<RawEncryption>,
    oss: Option<RawPath>,
}

#[derive(Deserialize)]
struct RawEncryption {
    method: Option<String>,
}

#[derive(Deserialize)]
struct RawPath {
    path: Option<String>,
}

#[derive(Deserialize)]
struct RawContainer {
    script: Option<String>,
    #[serde(default)]
    env: Vec<RawEnv>,
}

#[derive(Deserialize)]
struct RawEnv {
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct RawMetadata {
    name: Option<String>,
}

/// How a storage entry is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encryption {
    /// gocryptfs v2 (what coffer decrypts).
    Gocryptfs,
    /// Alibaba's proprietary Sam format (no public specification: refused).
    Sam,
    /// Anything else, as written.
    Other(String),
}

/// One `storage[]` entry with an `encryption` block.
#[derive(Debug, Clone)]
pub struct EncryptedStorage {
    /// Index in `storage[]` (for messages).
    pub index: usize,
    /// `encryption.method`.
    pub method: Encryption,
    /// `oss.path`: where the ciphertext lives (`oss://bucket/dir/` or a local path).
    pub source: String,
    /// `mount_path`: where the plaintext goes.
    pub mount_path: PathBuf,
}

/// What `coffer launch` needs from a service file.
#[derive(Debug, Clone)]
pub struct Service {
    /// `confidential.trustee_endpoint` (may carry a path prefix, e.g. `http://alb/<release>`).
    pub trustee_endpoint: String,
    /// `confidential.decryption_key`.
    pub decryption_key: ResourcePath,
    /// Encrypted `storage[]` entries, in file order.
    pub encrypted: Vec<EncryptedStorage>,
    /// `storage[]` entries without `encryption` (left to the platform), by index.
    pub plain_storage: Vec<usize>,
    /// `containers[]` index and `script` of the container to run.
    pub script: (usize, String),
    /// That container's `env` (name, value), in order.
    pub env: Vec<(String, String)>,
    /// `metadata.name`, when given.
    pub name: Option<String>,
}

impl Service {
    /// Reads and checks a service file.
    pub fn load(path: &Path) -> Result<Self, ServiceError> {
        let text = std::fs::read(path).map_err(|source| ServiceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses service JSON (`path` names it in errors).
    pub fn parse(text: &[u8], path: &Path) -> Result<Self, ServiceError> {
        let raw: Raw = serde_json::from_slice(text).map_err(|e| ServiceError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let field = |field: &str, message: &str| ServiceError::Field {
            path: path.to_path_buf(),
            field: field.to_string(),
            message: message.to_string(),
        };
        let missing = |f: &str| field(f, "missing (required by coffer launch)");
        let conf = raw.confidential.ok_or_else(|| missing("confidential"))?;
        let trustee_endpoint = conf
            .trustee_endpoint
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| missing("confidential.trustee_endpoint"))?;
        let parsed = reqwest::Url::parse(trustee_endpoint.trim()).map_err(|e| {
            field(
                "confidential.trustee_endpoint",
                &format!("not a URL ({e}); expected e.g. http://<alb address>/<release>"),
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(field(
                "confidential.trustee_endpoint",
                "must be an http:// or https:// URL",
            ));
        }
        let key_text = conf
            .decryption_key
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| missing("confidential.decryption_key"))?;
        let decryption_key: ResourcePath = key_text.trim().parse().map_err(|e| {
            field(
                "confidential.decryption_key",
                &format!("{e} (expected kbs:///<repository>/<type>/<tag>)"),
            )
        })?;
        let mut encrypted = Vec::new();
        let mut plain_storage = Vec::new();
        for (i, s) in raw.storage.into_iter().enumerate() {
            let Some(enc) = s.encryption else {
                plain_storage.push(i);
                continue;
            };
            let method = match enc.method.as_deref().map(str::trim) {
                None | Some("") => {
                    return Err(missing(&format!("storage[{i}].encryption.method")));
                }
                Some(m) if m.eq_ignore_ascii_case("gocryptfs") => Encryption::Gocryptfs,
                Some(m) if m.eq_ignore_ascii_case("sam") => Encryption::Sam,
                Some(m) => Encryption::Other(m.to_string()),
            };
            let mount_path = s
                .mount_path
                .filter(|m| !m.trim().is_empty())
                .ok_or_else(|| missing(&format!("storage[{i}].mount_path")))?;
            if !mount_path.starts_with('/') {
                return Err(field(
                    &format!("storage[{i}].mount_path"),
                    "must be an absolute path",
                ));
            }
            let source = s
                .oss
                .and_then(|o| o.path)
                .filter(|p| !p.trim().is_empty())
                .ok_or_else(|| missing(&format!("storage[{i}].oss.path")))?;
            encrypted.push(EncryptedStorage {
                index: i,
                method,
                source,
                mount_path: PathBuf::from(mount_path),
            });
        }
        if encrypted.is_empty() {
            return Err(field(
                "storage",
                "no entry has an \"encryption\" block: nothing for coffer to decrypt",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for e in &encrypted {
            if !seen.insert(e.mount_path.clone()) {
                return Err(field(
                    &format!("storage[{}].mount_path", e.index),
                    "used by another encrypted entry",
                ));
            }
        }
        let (ci, container) = raw
            .containers
            .into_iter()
            .enumerate()
            .find(|(_, c)| c.script.as_deref().is_some_and(|s| !s.trim().is_empty()))
            .ok_or_else(|| missing("containers[].script"))?;
        let script = container.script.unwrap_or_default();
        let env = container
            .env
            .into_iter()
            .map(|e| (e.name, e.value))
            .collect();
        Ok(Service {
            trustee_endpoint: trustee_endpoint.trim().trim_end_matches('/').to_string(),
            decryption_key,
            encrypted,
            plain_storage,
            script: (ci, script),
            env,
            name: raw.metadata.and_then(|m| m.name),
        })
    }
}

/// A `--source oss://bucket/dir=/local/dir` mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMap {
    /// The prefix as written in `oss.path` (no trailing `/`).
    pub prefix: String,
    /// The local directory it stands for.
    pub local: PathBuf,
}

impl std::str::FromStr for SourceMap {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (prefix, local) = s.split_once('=').ok_or_else(|| {
            format!("{s:?}: expected PREFIX=LOCAL_DIR, e.g. oss://bucket/dir=/mnt/cipher")
        })?;
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() || local.is_empty() {
            return Err(format!("{s:?}: both PREFIX and LOCAL_DIR are needed"));
        }
        Ok(SourceMap {
            prefix: prefix.to_string(),
            local: PathBuf::from(local),
        })
    }
}

/// Where the ciphertext of `source` (an `oss.path`) is on this machine: the longest
/// `--source` prefix that matches at a `/` boundary, else `source` itself when it is a local
/// path. `None` for an unmapped `oss://` (or other URL) source.
pub fn resolve_source(source: &str, maps: &[SourceMap]) -> Option<PathBuf> {
    let trimmed = source.trim().trim_end_matches('/');
    let best = maps
        .iter()
        .filter_map(|m| {
            let rest = trimmed.strip_prefix(m.prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((m, rest))
        })
        .max_by_key(|(m, _)| m.prefix.len());
    if let Some((m, rest)) = best {
        let rest = rest.trim_start_matches('/');
        return Some(if rest.is_empty() {
            m.local.clone()
        } else {
            m.local.join(rest)
        });
    }
    if trimmed.contains("://") {
        return None;
    }
    let p = source.strip_prefix("file://").unwrap_or(source);
    Some(PathBuf::from(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PAI-EAS guide's service JSON shape (vLLM on an encrypted Qwen model).
    const GUIDE: &str = r#"{
        "cloud": {"computing": {"instances": [{"type": "ecs.gn8v-tee.4xlarge"}]}},
        "confidential": {
            "trustee_endpoint": "http://alb-xxxx.cn-hangzhou.alb.aliyuncs.com/my-trustee",
            "decryption_key": "kbs:///default/aliyun/model-decryption-key"
        },
        "containers": [{
            "image": "eas-registry-vpc.cn-hangzhou.cr.aliyuncs.com/pai-eas/vllm:v0.8.5",
            "port": 8000,
            "script": "vllm serve /models/qwen --served-model-name qwen --max-model-len 4096"
        }],
        "metadata": {"cpu": 16, "gpu": 1, "instance": 1, "memory": 64000, "name": "qwen_enc"},
        "storage": [{
            "encryption": {"method": "gocryptfs"},
            "mount_path": "/models/qwen",
            "oss": {"path": "oss://examplebucket/qwen-encrypted/", "readOnly": false},
            "properties": {"resource_burstable": "true"}
        }]
    }"#;

    #[test]
    fn the_guide_example_parses() {
        let s = Service::parse(GUIDE.as_bytes(), Path::new("svc.json")).unwrap();
        assert_eq!(
            s.trustee_endpoint,
            "http://alb-xxxx.cn-hangzhou.alb.aliyuncs.com/my-trustee"
        );
        assert_eq!(
            s.decryption_key.to_string(),
            "default/aliyun/model-decryption-key"
        );
        assert_eq!(s.encrypted.len(), 1);
        assert_eq!(s.encrypted[0].method, Encryption::Gocryptfs);
        assert_eq!(s.encrypted[0].mount_path, Path::new("/models/qwen"));
        assert_eq!(s.encrypted[0].source, "oss://examplebucket/qwen-encrypted/");
        assert!(s.script.1.starts_with("vllm serve"));
        assert_eq!(s.name.as_deref(), Some("qwen_enc"));
    }

    #[test]
    fn missing_fields_are_named() {
        let mut v: serde_json::Value = serde_json::from_str(GUIDE).unwrap();
        v["confidential"]
            .as_object_mut()
            .unwrap()
            .remove("decryption_key");
        let e = Service::parse(v.to_string().as_bytes(), Path::new("svc.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("svc.json") && e.contains("confidential.decryption_key"),
            "{e}"
        );
        let mut v: serde_json::Value = serde_json::from_str(GUIDE).unwrap();
        v["storage"][0]
            .as_object_mut()
            .unwrap()
            .remove("mount_path");
        let e = Service::parse(v.to_string().as_bytes(), Path::new("svc.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("storage[0].mount_path"), "{e}");
        let mut v: serde_json::Value = serde_json::from_str(GUIDE).unwrap();
        v["containers"][0].as_object_mut().unwrap().remove("script");
        let e = Service::parse(v.to_string().as_bytes(), Path::new("svc.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("containers[].script"), "{e}");
        let e = Service::parse(b"{\"storage\": 3}", Path::new("svc.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("svc.json"), "{e}");
    }

    #[test]
    fn sources_map_by_longest_prefix_at_a_boundary() {
        let maps: Vec<SourceMap> = ["oss://b=/data/b", "oss://b/models=/fast/models"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            resolve_source("oss://b/models/qwen/", &maps),
            Some(PathBuf::from("/fast/models/qwen"))
        );
        assert_eq!(
            resolve_source("oss://b/other", &maps),
            Some(PathBuf::from("/data/b/other"))
        );
        assert_eq!(resolve_source("oss://bx/other", &maps), None);
        assert_eq!(
            resolve_source("/mnt/cipher", &maps),
            Some(PathBuf::from("/mnt/cipher"))
        );
        assert!("no-equals".parse::<SourceMap>().is_err());
    }
}
