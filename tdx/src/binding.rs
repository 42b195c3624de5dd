//! Binding evidence to the KBS session (REPORTDATA) and to init-data (MRCONFIGID),
//! with Trustee's regularisation (right-pad with zeros or truncate).

use sha2::{Digest, Sha256, Sha384, Sha512};

/// `bytes` padded with zeros or truncated to `len`.
pub fn regularise(bytes: &[u8], len: usize) -> Vec<u8> {
    let mut v = bytes[..bytes.len().min(len)].to_vec();
    v.resize(len, 0);
    v
}

/// Whether a 64-byte REPORTDATA carries `expected` (the runtime-data hash).
pub fn report_data_matches(report_data: &[u8], expected: &[u8]) -> bool {
    report_data == regularise(expected, report_data.len()).as_slice()
}

/// Why init-data cannot be digested.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InitDataError {
    /// The TOML names an algorithm other than sha256/sha384/sha512.
    #[error("init-data algorithm {0:?} is not one of sha256, sha384, sha512")]
    Algorithm(String),
    /// The body is not TOML with an `algorithm` string.
    #[error("init-data is not TOML with an `algorithm` field: {0}")]
    Malformed(String),
}

/// Digest of an init-data TOML document with the algorithm it names.
pub fn init_data_digest(toml_text: &str) -> Result<Vec<u8>, InitDataError> {
    let alg = toml_text
        .lines()
        .map(str::trim)
        .find_map(|l| {
            let rest = l
                .strip_prefix("algorithm")?
                .trim_start()
                .strip_prefix('=')?;
            Some(
                rest.trim()
                    .trim_matches(|c| c == '"' || c == '\'')
                    .to_string(),
            )
        })
        .ok_or_else(|| InitDataError::Malformed("no `algorithm = \"...\"` line".into()))?;
    let b = toml_text.as_bytes();
    Ok(match alg.as_str() {
        "sha256" => Sha256::digest(b).to_vec(),
        "sha384" => Sha384::digest(b).to_vec(),
        "sha512" => Sha512::digest(b).to_vec(),
        other => return Err(InitDataError::Algorithm(other.to_string())),
    })
}

/// Whether a TD's MRCONFIGID (48 bytes) or an SGX CONFIGID (64) carries the init-data digest.
pub fn config_id_matches(config_id: &[u8], digest: &[u8]) -> bool {
    config_id == regularise(digest, config_id.len()).as_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regularise_pads_and_truncates() {
        assert_eq!(regularise(&[1, 2], 4), vec![1, 2, 0, 0]);
        assert_eq!(regularise(&[1, 2, 3], 2), vec![1, 2]);
        assert!(report_data_matches(&[7, 0, 0, 0], &[7]));
        assert!(!report_data_matches(&[7, 0, 0, 1], &[7]));
    }

    #[test]
    fn init_data_algorithms() {
        let t = "algorithm = \"sha384\"\nversion = \"0.1.0\"\n";
        assert_eq!(init_data_digest(t).unwrap().len(), 48);
        assert!(matches!(
            init_data_digest("algorithm = \"md5\""),
            Err(InitDataError::Algorithm(_))
        ));
        assert!(init_data_digest("version = 1").is_err());
    }
}
