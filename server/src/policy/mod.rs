//! Policies: evaluation comes from `coffer-policy` (shared with `coffer policy test`, so a
//! policy behaves the same on a laptop as in the server); this server adds its EAR tokens.

mod token;

pub use coffer_policy::*;
pub use token::{TokenIssuer, PROTOCOL_VERSION_CLAIM};
