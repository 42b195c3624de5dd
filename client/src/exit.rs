//! The `coffer` CLI's exit codes: one closed set, one mapping from [`ClientError`]
//! ([`ClientError::exit`]), the text `--help` shows, and what the integration tests assert.
//! The numbers are part of the interface (scripts and `coffer launch`'s callers test them)
//! and never change meaning.

use std::process::ExitCode;

use crate::ClientError;

/// An exit code of the `coffer` CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Exit {
    /// Everything asked for was done.
    Success = 0,
    /// A local error: files, keys, arguments, configuration; anything not named below.
    Failure = 1,
    /// The command line does not parse (clap exits with this code itself).
    Usage = 2,
    /// Refused: the KBS (attestation or resource policy), or the resource policy under
    /// `policy test`.
    Refused = 3,
    /// The KBS (or the Confidential Data Hub) has no such resource.
    NotFound = 4,
    /// The KBS (or Confidential Data Hub) is unreachable, failing, or breaks the protocol.
    Unavailable = 5,
    /// Some model entries failed to decrypt or verify (tampered, corrupt or unreadable
    /// ciphertext).
    Tampered = 6,
    /// The model key does not open the cipher directory.
    WrongKey = 7,
    /// Not enough space for the plaintext.
    NoSpace = 8,
    /// The model's digest is not the expected one.
    DigestMismatch = 9,
    /// No TEE found (`coffer launch` without `--tee sample`).
    NoTee = 10,
}

impl Exit {
    /// Every exit code, in numeric order.
    pub const ALL: [Exit; 11] = [
        Exit::Success,
        Exit::Failure,
        Exit::Usage,
        Exit::Refused,
        Exit::NotFound,
        Exit::Unavailable,
        Exit::Tampered,
        Exit::WrongKey,
        Exit::NoSpace,
        Exit::DigestMismatch,
        Exit::NoTee,
    ];

    /// The process exit status.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The exit code a process status stands for; `None` for codes coffer does not use
    /// (e.g. those of the script `coffer launch` became) or a process killed by a signal.
    pub fn from_code(code: Option<i32>) -> Option<Exit> {
        let code = code?;
        Exit::ALL.into_iter().find(|e| i32::from(e.code()) == code)
    }

    /// One line for `--help`.
    pub const fn meaning(self) -> &'static str {
        match self {
            Exit::Success => "success",
            Exit::Failure => "local error (files, keys, arguments)",
            Exit::Usage => "usage",
            Exit::Refused => {
                "refused by the KBS (attestation or policy) or by a policy under `policy test`"
            }
            Exit::NotFound => "not found",
            Exit::Unavailable => "KBS (or Confidential Data Hub) unreachable or failing",
            Exit::Tampered => "some model files failed to decrypt (tampered or corrupt ciphertext)",
            Exit::WrongKey => "wrong model key",
            Exit::NoSpace => "not enough space for the plaintext",
            Exit::DigestMismatch => "model digest mismatch",
            Exit::NoTee => "no TEE (`launch`)",
        }
    }

    /// The exit-code table `coffer --help` prints.
    pub fn help() -> String {
        let mut s = String::from("Exit codes:\n");
        for e in Exit::ALL {
            s.push_str(&format!("  {:>2}  {}\n", e.code(), e.meaning()));
        }
        s.push_str(
            "`coffer launch` becomes the service's script on success: its exit code is the script's.",
        );
        s
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

impl ClientError {
    /// The exit code this error ends the CLI with (the only place that decides it).
    pub fn exit(&self) -> Exit {
        match self {
            ClientError::Kbs { status: 404, .. } | ClientError::Cdh { status: 404, .. } => {
                Exit::NotFound
            }
            ClientError::Kbs {
                status: 401 | 403, ..
            }
            | ClientError::Cdh {
                status: 401 | 403, ..
            }
            | ClientError::PolicyDenies { .. } => Exit::Refused,
            ClientError::Kbs { .. }
            | ClientError::Transport { .. }
            | ClientError::Protocol(_)
            | ClientError::Answer { .. }
            | ClientError::Cdh { .. }
            | ClientError::CdhUnreachable { .. } => Exit::Unavailable,
            ClientError::EntriesFailed { .. } => Exit::Tampered,
            ClientError::WrongKey(_) => Exit::WrongKey,
            ClientError::NoSpace(_) => Exit::NoSpace,
            ClientError::DigestMismatch { .. } => Exit::DigestMismatch,
            ClientError::NoTee { .. } => Exit::NoTee,
            ClientError::Evidence(_)
            | ClientError::Jwe(_)
            | ClientError::Config(_)
            | ClientError::ModelConfig(_)
            | ClientError::Tree(_)
            | ClientError::CreateConfig(_)
            | ClientError::Workers(_) => Exit::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_round_trip() {
        for (i, e) in Exit::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(e.code()), i, "{e:?}");
            assert_eq!(Exit::from_code(Some(i as i32)), Some(e));
        }
        assert_eq!(Exit::from_code(Some(42)), None);
        assert_eq!(Exit::from_code(None), None);
        let help = Exit::help();
        for e in Exit::ALL {
            assert!(help.contains(e.meaning()), "{e:?}");
        }
    }
}
