//! Client errors: transport, KBS problem answers, protocol violations.

use coffer_protocol::Problem;

/// Anything that can go wrong talking to a KBS.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not reach the server or read its answer.
    #[error("cannot reach KBS at {url}: {source}")]
    Transport {
        /// Request URL.
        url: String,
        /// Cause.
        source: reqwest::Error,
    },
    /// The KBS answered with an error.
    #[error("KBS refused {what} (HTTP {status}): {}", problem.as_ref().map(|p| format!("{}: {}", p.kind_name(), p.detail)).unwrap_or_else(|| body.clone()))]
    Kbs {
        /// What was attempted.
        what: String,
        /// HTTP status.
        status: u16,
        /// Parsed problem body, when there was one.
        problem: Option<Problem>,
        /// Raw body (truncated) when it was not a problem body.
        body: String,
    },
    /// The server's answer did not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Evidence could not be collected.
    #[error("evidence: {0}")]
    Evidence(String),
    /// The released secret could not be decrypted.
    #[error("cannot decrypt the released resource: {0}")]
    Jwe(#[from] coffer_protocol::jwe::JweError),
    /// The Confidential Data Hub could not be reached.
    #[error("cannot reach the Confidential Data Hub at {url}: {source}")]
    CdhUnreachable {
        /// Request URL.
        url: String,
        /// Cause.
        source: reqwest::Error,
    },
    /// The Confidential Data Hub answered with an error: HTTP 500 with the reason when its
    /// attestation failed, the KBS refused or the resource does not exist; 404 when the URL
    /// is not its resource API.
    #[error("the Confidential Data Hub at {url} answered HTTP {status}: {body}")]
    Cdh {
        /// Request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Its error text (truncated).
        body: String,
    },
    /// Local configuration (keys, certificates) is unusable.
    #[error("{0}")]
    Config(String),
    /// The model key does not open the cipher directory (gocryptfs password check).
    #[error("{0}")]
    WrongKey(String),
    /// The destination cannot hold the plaintext.
    #[error("{0}")]
    NoSpace(String),
}

impl ClientError {
    /// HTTP status of a KBS refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Kbs { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Problem kind name of a KBS refusal.
    pub fn kind(&self) -> Option<&str> {
        match self {
            ClientError::Kbs {
                problem: Some(p), ..
            } => Some(p.kind_name()),
            _ => None,
        }
    }
}

/// Turns a non-success response into [`ClientError::Kbs`].
pub(crate) async fn check(
    what: &str,
    resp: reqwest::Response,
) -> Result<reqwest::Response, ClientError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    let problem = serde_json::from_str::<Problem>(&body).ok();
    let mut shown: String = body.chars().take(300).collect();
    if shown.is_empty() {
        shown = "(empty body)".into();
    }
    Err(ClientError::Kbs {
        what: what.to_string(),
        status,
        problem,
        body: shown,
    })
}
