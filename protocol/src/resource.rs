//! Resource paths `repository/type/tag` and their `kbs:///` URI form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a resource path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourcePathError {
    /// Not exactly three segments.
    #[error("resource path must have three segments repository/type/tag, got {0}")]
    SegmentCount(usize),
    /// A segment is empty or has characters outside `[A-Za-z0-9_.-]` (or starts with `.`).
    #[error("illegal resource path segment {0:?}: use letters, digits, '_', '-', '.' (not first)")]
    BadSegment(String),
}

/// A validated resource path. Each segment matches `[A-Za-z0-9_-][A-Za-z0-9_.-]*`, as
/// Trustee's resource plugin requires, so a path can never escape its repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResourcePath {
    repository: String,
    kind: String,
    tag: String,
}

impl ResourcePath {
    /// Builds a path from its three segments.
    pub fn new(repository: &str, kind: &str, tag: &str) -> Result<Self, ResourcePathError> {
        for seg in [repository, kind, tag] {
            check_segment(seg)?;
        }
        Ok(ResourcePath {
            repository: repository.to_string(),
            kind: kind.to_string(),
            tag: tag.to_string(),
        })
    }

    /// Repository (conventionally `default`).
    pub fn repository(&self) -> &str {
        &self.repository
    }
    /// Type segment (e.g. `aliyun`, `key`).
    pub fn kind(&self) -> &str {
        &self.kind
    }
    /// Tag segment.
    pub fn tag(&self) -> &str {
        &self.tag
    }
    /// The three segments in order (the policy's `data["resource-path"]`).
    pub fn segments(&self) -> [&str; 3] {
        [&self.repository, &self.kind, &self.tag]
    }
    /// `kbs:///repo/type/tag`.
    pub fn to_uri(&self) -> String {
        format!("kbs:///{self}")
    }
}

fn check_segment(seg: &str) -> Result<(), ResourcePathError> {
    let mut chars = seg.chars();
    let ok = match chars.next() {
        None => false,
        Some(first) => {
            (first.is_ascii_alphanumeric() || first == '_' || first == '-')
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(ResourcePathError::BadSegment(seg.to_string()))
    }
}

impl FromStr for ResourcePath {
    type Err = ResourcePathError;

    /// Accepts `repo/type/tag`, `/repo/type/tag`, `kbs:///repo/type/tag` and
    /// `kbs://<host>/repo/type/tag` (the host is ignored, as guest-components does).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = match s.strip_prefix("kbs://") {
            Some(after) => after.split_once('/').map(|(_, p)| p).unwrap_or(""),
            None => s.strip_prefix('/').unwrap_or(s),
        };
        let segs: Vec<&str> = rest.split('/').collect();
        if segs.len() != 3 {
            return Err(ResourcePathError::SegmentCount(segs.len()));
        }
        ResourcePath::new(segs[0], segs[1], segs[2])
    }
}

impl TryFrom<String> for ResourcePath {
    type Error = ResourcePathError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ResourcePath> for String {
    fn from(p: ResourcePath) -> String {
        p.to_string()
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.repository, self.kind, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let p: ResourcePath = "default/test/key1".parse().unwrap();
        assert_eq!(p.segments(), ["default", "test", "key1"]);
        assert_eq!(
            "kbs:///default/test/key1".parse::<ResourcePath>().unwrap(),
            p
        );
        assert_eq!(
            "kbs://kbs.example:8080/default/test/key1"
                .parse::<ResourcePath>()
                .unwrap(),
            p
        );
        assert_eq!(p.to_uri(), "kbs:///default/test/key1");
        assert_eq!(
            "default/aliyun/model-decryption-key.v2"
                .parse::<ResourcePath>()
                .unwrap()
                .tag(),
            "model-decryption-key.v2"
        );
    }

    #[test]
    fn rejects() {
        for bad in [
            "default/test",
            "a/b/c/d",
            "default//key",
            "../etc/passwd",
            "a/b/.hidden",
            "a/b/c d",
            "",
        ] {
            assert!(bad.parse::<ResourcePath>().is_err(), "{bad}");
        }
    }
}
