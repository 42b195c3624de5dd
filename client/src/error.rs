//! Client errors: transport, KBS problem answers, protocol violations, model trees. Each
//! kind of failure is its own variant, keeping its cause as the source, so callers (and
//! [`ClientError::exit`], the CLI's exit code) tell them apart by type.

use std::path::PathBuf;

use coffer_cryptfs::tree::EntryError;
use coffer_cryptfs::{ConfigError, CreateError, ModelDigest, TreeError};
use coffer_protocol::Problem;

/// Anything that can go wrong in the client.
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
    /// A JSON answer of the server is not the shape this client reads (a member missing
    /// or of the wrong type, an action or decision no server writes): a server of another
    /// version, or not a coffer-server.
    #[error("the answer to {what} is not what this client expects: {source}")]
    Answer {
        /// What was asked (`audit`, `get-policy`, ...).
        what: &'static str,
        /// What is wrong, and where in the answer.
        #[source]
        source: serde_json::Error,
    },
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
    /// A cipher directory's `gocryptfs.conf` cannot be read, or asks for what is not
    /// supported (never a wrong password: that is [`ClientError::WrongKey`]).
    #[error("{0}")]
    ModelConfig(#[source] ConfigError),
    /// The model key does not open the cipher directory (gocryptfs password check); the
    /// source is [`ConfigError::WrongPassword`].
    #[error("{0}")]
    WrongKey(#[source] ConfigError),
    /// A root of a model run (cipher directory, destination, source) is unusable.
    #[error("{0}")]
    Tree(#[source] TreeError),
    /// A new cipher directory's `gocryptfs.conf` could not be made.
    #[error("{0}")]
    CreateConfig(#[source] CreateError),
    /// Entries of a model tree failed (tampered, corrupt or unreadable ciphertext): how
    /// many, and the first one with its cause.
    #[error("{count} entries failed (first: {}: {first})", path.display())]
    EntriesFailed {
        /// Entries that failed.
        count: usize,
        /// The first failing entry's ciphertext path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        first: EntryError,
    },
    /// A model tree is not the model that was expected.
    #[error("{}: model digest {actual} is not the expected {expected} (files swapped, rolled back, deleted, added or truncated on the storage, or another model); the plaintext was removed", tree.display())]
    DigestMismatch {
        /// The cipher directory.
        tree: PathBuf,
        /// What was expected.
        expected: ModelDigest,
        /// What the tree has.
        actual: ModelDigest,
    },
    /// The destination cannot hold the plaintext.
    #[error("{0}")]
    NoSpace(String),
    /// The worker threads of a model run could not be started.
    #[error("cannot start the worker threads: {0}")]
    Workers(#[source] rayon::ThreadPoolBuildError),
    /// No TEE was found where one is required (what was looked for).
    #[error("no TEE detected ({0}): coffer launch runs in a TDX guest; give --tee sample for development only")]
    NoTee(String),
    /// A resource policy evaluated locally (`coffer policy test`) denies the resource.
    #[error("the resource policy denies {resource}")]
    PolicyDenies {
        /// The resource asked for.
        resource: String,
    },
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
    let body = match resp.text().await {
        Ok(b) => b,
        Err(e) => format!("(the body could not be read: {e})"),
    };
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
