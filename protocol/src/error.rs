//! KBS error kinds and the JSON problem body that carries them.
//!
//! The kinds, their names and their HTTP statuses follow Trustee's KBS so that existing
//! clients (which branch on 401 versus 404 versus anything else) behave the same against
//! coffer. coffer adds a few kinds for conditions Trustee folds into 401 but a operator needs
//! to tell apart (body too large, storage unavailable, internal failure).

use serde::{Deserialize, Serialize};

/// Prefix of the `type` member of every problem body (kept identical to Trustee's).
pub const ERROR_TYPE_PREFIX: &str = "https://github.com/confidential-containers/kbs/errors/";

macro_rules! kinds {
    ($($kind:ident => $status:expr),* $(,)?) => {
        /// An error kind as it appears at the end of the problem body's `type` URL.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorKind { $(#[allow(missing_docs)] $kind),* }

        impl ErrorKind {
            /// The kind's name, e.g. `TokenNotFound`.
            pub fn name(self) -> &'static str {
                match self { $(ErrorKind::$kind => stringify!($kind)),* }
            }
            /// HTTP status the KBS answers with for this kind.
            pub fn status(self) -> u16 {
                match self { $(ErrorKind::$kind => $status),* }
            }
            /// Parses a kind name; unknown names give `None`.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $(stringify!($kind) => Some(ErrorKind::$kind),)* _ => None }
            }
        }
    };
}

kinds! {
    AdminAuthInitialization => 401,
    AdminAuthAccess => 401,
    AttestationError => 401,
    InvalidRequestPath => 404,
    JweError => 401,
    PluginNotFound => 404,
    PluginInternalError => 401,
    PolicyDeny => 401,
    ParsePolicyError => 401,
    PolicyEngineError => 401,
    RvpsError => 401,
    SerdeError => 401,
    TokenNotFound => 401,
    TokenVerifierError => 401,
    PrometheusError => 401,
    // coffer additions
    ResourceNotFound => 404,
    PayloadTooLarge => 413,
    StorageUnavailable => 503,
    InternalError => 500,
    TooManyRequests => 429,
}

/// The JSON body of every error answer: `{"type": "<prefix><Kind>", "detail": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `https://github.com/confidential-containers/kbs/errors/<Kind>`.
    #[serde(rename = "type")]
    pub kind_url: String,
    /// Human-readable explanation. Never contains secret material.
    pub detail: String,
}

impl Problem {
    /// Builds a problem body for `kind`.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Problem {
            kind_url: format!("{ERROR_TYPE_PREFIX}{}", kind.name()),
            detail: detail.into(),
        }
    }

    /// The kind name at the end of the `type` URL (whatever its prefix).
    pub fn kind_name(&self) -> &str {
        self.kind_url.rsplit('/').next().unwrap_or(&self.kind_url)
    }

    /// The kind, when it is one this crate knows.
    pub fn kind(&self) -> Option<ErrorKind> {
        ErrorKind::from_name(self.kind_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_trustee_body_round_trips() {
        let wire = r#"{"type":"https://github.com/confidential-containers/kbs/errors/TokenNotFound","detail":"Attestation Token not found"}"#;
        let p: Problem = serde_json::from_str(wire).unwrap();
        assert_eq!(p.kind(), Some(ErrorKind::TokenNotFound));
        assert_eq!(ErrorKind::TokenNotFound.status(), 401);
        assert_eq!(serde_json::to_string(&p).unwrap(), wire);
        let mine = Problem::new(ErrorKind::TokenNotFound, "Attestation Token not found");
        assert_eq!(mine, p);
    }

    #[test]
    fn statuses_match_trustee() {
        assert_eq!(ErrorKind::PluginNotFound.status(), 404);
        assert_eq!(ErrorKind::InvalidRequestPath.status(), 404);
        assert_eq!(ErrorKind::PolicyDeny.status(), 401);
        assert_eq!(
            ErrorKind::from_name("PolicyDeny"),
            Some(ErrorKind::PolicyDeny)
        );
        assert_eq!(ErrorKind::from_name("Nope"), None);
    }
}
