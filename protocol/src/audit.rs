//! coffer-server's audit log as its admin API serves it (`GET /coffer/v1/audit`,
//! `/coffer/v1/audit/{seq}`, `/coffer/v1/audit/stats`): one definition for the server that
//! writes and serves the rows and for the client that reads them.
//!
//! The JSON shapes are those coffer-server has always served, and the action and decision
//! spellings are also what its database stores: changing a member name or a spelling here
//! breaks older clients and the rows already stored.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// An admin change recorded in the audit log as `admin:<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminOp {
    /// A resource stored.
    SetResource,
    /// A resource deleted.
    DeleteResource,
    /// The resource policy replaced.
    SetResourcePolicy,
    /// An attestation policy stored.
    SetAttestationPolicy,
    /// An attestation policy deleted.
    DeleteAttestationPolicy,
    /// A reference value stored.
    SetReferenceValue,
    /// A reference value deleted.
    DeleteReferenceValue,
}

impl AdminOp {
    /// Every operation.
    pub const ALL: [AdminOp; 7] = [
        AdminOp::SetResource,
        AdminOp::DeleteResource,
        AdminOp::SetResourcePolicy,
        AdminOp::SetAttestationPolicy,
        AdminOp::DeleteAttestationPolicy,
        AdminOp::SetReferenceValue,
        AdminOp::DeleteReferenceValue,
    ];

    /// The name after `admin:`.
    pub fn name(self) -> &'static str {
        match self {
            AdminOp::SetResource => "set-resource",
            AdminOp::DeleteResource => "delete-resource",
            AdminOp::SetResourcePolicy => "set-resource-policy",
            AdminOp::SetAttestationPolicy => "set-attestation-policy",
            AdminOp::DeleteAttestationPolicy => "delete-attestation-policy",
            AdminOp::SetReferenceValue => "set-reference-value",
            AdminOp::DeleteReferenceValue => "delete-reference-value",
        }
    }
}

/// What an audit row records; stored and served as `attest`, `release` or
/// `admin:<operation>` (the strings earlier versions wrote).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// An `/attest` call for a live session.
    Attest,
    /// A resource request that reached the resource policy.
    Release,
    /// An admin change.
    Admin(AdminOp),
    /// A row written by a newer server (an admin operation this build does not know), read
    /// back as it is stored. Replicas of different versions share one database during an
    /// upgrade, and one such row must not make the whole log unreadable. Never written by
    /// this build; a filter naming an unknown action is still refused ([`FromStr`]).
    Unrecognised(String),
}

impl AuditAction {
    /// Reads an action as stored or served: the known names as [`FromStr`] does, anything
    /// else as [`AuditAction::Unrecognised`].
    pub fn from_stored(s: &str) -> Self {
        s.parse()
            .unwrap_or_else(|UnknownAction(raw)| AuditAction::Unrecognised(raw))
    }
}

/// An audit action name no version of coffer-server writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit action {0:?} (attest, release, admin or admin:<operation>)")]
pub struct UnknownAction(pub String);

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditAction::Attest => f.write_str("attest"),
            AuditAction::Release => f.write_str("release"),
            AuditAction::Admin(op) => write!(f, "admin:{}", op.name()),
            AuditAction::Unrecognised(raw) => f.write_str(raw),
        }
    }
}

impl FromStr for AuditAction {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, UnknownAction> {
        match s {
            "attest" => Ok(AuditAction::Attest),
            "release" => Ok(AuditAction::Release),
            _ => s
                .strip_prefix("admin:")
                .and_then(|name| AdminOp::ALL.into_iter().find(|op| op.name() == name))
                .map(AuditAction::Admin)
                .ok_or_else(|| UnknownAction(s.to_string())),
        }
    }
}

impl Serialize for AuditAction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AuditAction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(AuditAction::from_stored(&s))
    }
}

/// The outcome an audit row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Token issued, or resource released.
    Allow,
    /// Attestation or release refused.
    Deny,
    /// An admin change applied.
    Ok,
}

impl Decision {
    /// The stored and served spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Ok => "ok",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A decision name no version of coffer-server writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit decision {0:?} (allow, deny or ok)")]
pub struct UnknownDecision(pub String);

impl FromStr for Decision {
    type Err = UnknownDecision;

    fn from_str(s: &str) -> Result<Self, UnknownDecision> {
        match s {
            "allow" => Ok(Decision::Allow),
            "deny" => Ok(Decision::Deny),
            "ok" => Ok(Decision::Ok),
            _ => Err(UnknownDecision(s.to_string())),
        }
    }
}

/// One audit row.
///
/// `tee` stays a string rather than a [`crate::Tee`]: a release authorised by a token
/// without a session records the TEE named in the token's claims, which another issuer
/// may spell as no [`crate::Tee`] does, and rows stored by older versions keep the
/// pre-0.14 Azure spellings that [`crate::Tee`] would rewrite.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    /// Sequence number (assigned by the store).
    pub seq: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// What was done: `attest`, `release`, `admin:<operation>`.
    pub action: AuditAction,
    /// `allow`, `deny` (attestations and releases), `ok` (admin changes).
    pub decision: Decision,
    /// Session id (cookie), when the call had one.
    pub session_id: Option<String>,
    /// TEE type, as named at `/auth` or in the token's claims.
    pub tee: Option<String>,
    /// SHA-256 (hex) of the token claims the decision was based on.
    pub claims_digest: Option<String>,
    /// Resource path or policy id concerned.
    pub resource: Option<String>,
    /// Admin identity (`sub`/`iss` of the admin token) for admin changes.
    pub actor: Option<String>,
    /// Short reason; never secret material.
    pub detail: Option<String>,
    /// The caller's address (TCP peer), when known.
    #[serde(default)]
    pub client_addr: Option<String>,
    /// For attestations: the EAR status (`affirming`, `warning`, `contraindicated`, `none`).
    #[serde(default)]
    pub verdict: Option<String>,
    /// For attestations: the trust vector the attestation policy gave.
    #[serde(default)]
    pub trust_vector: Option<Value>,
    /// For attestations: the verified claims (annotated evidence; public values only,
    /// size-capped). Listings leave them out unless asked; the single-row answer
    /// (`/coffer/v1/audit/{seq}`) has them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Value>,
    /// Whether the row has recorded claims (also when a listing leaves them out).
    #[serde(default)]
    pub has_claims: bool,
}

impl AuditEntry {
    /// A row recording `action` with `decision` at `at_ms`, every optional member empty
    /// (the store assigns `seq`).
    pub fn new(at_ms: i64, action: AuditAction, decision: Decision) -> Self {
        AuditEntry {
            seq: 0,
            at_ms,
            action,
            decision,
            session_id: None,
            tee: None,
            claims_digest: None,
            resource: None,
            actor: None,
            detail: None,
            client_addr: None,
            verdict: None,
            trust_vector: None,
            claims: None,
            has_claims: false,
        }
    }
}

/// One page of audit rows and how many rows match the filter in all
/// (`GET /coffer/v1/audit`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditPage {
    /// Rows matching the filter, before paging.
    pub total: i64,
    /// Rows skipped.
    pub offset: i64,
    /// Most rows asked for.
    pub limit: i64,
    /// The rows of this page.
    pub entries: Vec<AuditEntry>,
}

/// Audit row counts since a time (`GET /coffer/v1/audit/stats`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditStats {
    /// Start of the counted span (Unix milliseconds).
    pub since: i64,
    /// One count per (action, decision) pair that occurs, sorted by action then decision.
    pub counts: Vec<AuditCount>,
}

/// How many audit rows have one (action, decision) pair.
///
/// Both are the stored text rather than [`AuditAction`] and [`Decision`]: admin changes are
/// folded into `admin`, which is no [`AuditAction`], and the counts report what the
/// database holds, including a value this version would not read back.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditCount {
    /// `attest`, `release` or `admin` (every admin change).
    pub action: String,
    /// `allow`, `deny` or `ok`.
    pub decision: String,
    /// Rows with this pair.
    pub count: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers of coffer-server recorded from its audit integration test: one row of an
    /// allowed attestation (`GET /coffer/v1/audit/{seq}`, with its claims), a listing page of
    /// an admin change (claims left out) and the counts (`/coffer/v1/audit/stats`).
    const ATTEST_ROW: &str = r#"{"seq":3,"at_ms":1796194530653,"action":"attest","decision":"allow","session_id":"c4a29834f3744e5a8b227a4ef861e7b5","tee":"sample","claims_digest":null,"resource":null,"actor":null,"detail":"token issued (contraindicated)","client_addr":"127.0.0.1","verdict":"contraindicated","trust_vector":{"instance-identity":0,"configuration":2,"executables":33,"file-system":0,"hardware":97,"runtime-opaque":0,"storage-opaque":0,"sourced-data":0},"claims":{"report_data":"ObVahY2a3+owqXw2E27QA6LbQuwB7+71gCoYZ4oOHSDQVIALS2jCKsO3f6nPbH7z","runtime_data_claims":{"additional-evidence":"","nonce":"bBDtfOylCMEBye8leeIOMj2bCD4+C4Ia7vh3sSydPqI=","tee-pubkey":{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"00dBS2cPZVDWSwZJK984Q77hN9IVbXuW8Jaezgj5OLk","y":"pwyiA5aXQ7KPMD0xKxAxILigbuQQYSwu9i5qTgBYUzM"}},"sample":{"debug":false,"launch_digest":"abcde","platform_version":{"major":1,"minor":4},"svn":"1"}},"has_claims":true}"#;

    const ADMIN_PAGE: &str = r#"{"total":2,"offset":0,"limit":1,"entries":[{"seq":2,"at_ms":1796194530586,"action":"admin:set-resource-policy","decision":"ok","session_id":null,"tee":null,"claims_digest":null,"resource":"resource-policy","actor":"coffer","detail":null,"client_addr":null,"verdict":null,"trust_vector":null,"has_claims":false}]}"#;

    const STATS: &str = r#"{"since":1796108131308,"counts":[{"action":"admin","decision":"ok","count":2},{"action":"attest","decision":"allow","count":2},{"action":"attest","decision":"deny","count":1},{"action":"release","decision":"allow","count":1},{"action":"release","decision":"deny","count":1}]}"#;

    #[test]
    fn recorded_answers_round_trip_byte_for_byte() {
        let entry: AuditEntry = serde_json::from_str(ATTEST_ROW).unwrap();
        assert_eq!(entry.action, AuditAction::Attest);
        assert_eq!(entry.decision, Decision::Allow);
        assert_eq!(entry.tee.as_deref(), Some("sample"));
        assert!(entry.has_claims && entry.claims.is_some());
        assert_eq!(serde_json::to_string(&entry).unwrap(), ATTEST_ROW);

        let page: AuditPage = serde_json::from_str(ADMIN_PAGE).unwrap();
        let admin = &page.entries[0];
        assert_eq!(admin.action, AuditAction::Admin(AdminOp::SetResourcePolicy));
        assert_eq!((admin.decision, &admin.claims), (Decision::Ok, &None));
        assert_eq!(serde_json::to_string(&page).unwrap(), ADMIN_PAGE);

        let stats: AuditStats = serde_json::from_str(STATS).unwrap();
        assert_eq!(stats.counts[0].action, "admin");
        assert_eq!(serde_json::to_string(&stats).unwrap(), STATS);
    }

    #[test]
    fn every_action_and_decision_spelling_round_trips() {
        let actions = [AuditAction::Attest, AuditAction::Release]
            .into_iter()
            .chain(AdminOp::ALL.into_iter().map(AuditAction::Admin));
        for a in actions {
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{a}\""));
            assert_eq!(serde_json::from_str::<AuditAction>(&json).unwrap(), a);
        }
        for d in [Decision::Allow, Decision::Deny, Decision::Ok] {
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
            assert_eq!(d.as_str().parse::<Decision>(), Ok(d));
        }
        assert_eq!(
            "admin:reboot".parse::<AuditAction>(),
            Err(UnknownAction("admin:reboot".into()))
        );
        // A newer server's row is read as it is stored, and served back unchanged.
        let newer: AuditAction = serde_json::from_str("\"admin:rotate-keys\"").unwrap();
        assert_eq!(newer, AuditAction::Unrecognised("admin:rotate-keys".into()));
        assert_eq!(
            serde_json::to_string(&newer).unwrap(),
            "\"admin:rotate-keys\""
        );
        assert_eq!(
            "maybe".parse::<Decision>(),
            Err(UnknownDecision("maybe".into()))
        );
    }

    #[test]
    fn malformed_rows_are_refused() {
        for bad in [
            ATTEST_ROW.replace(r#""seq":3"#, r#""seq":"3""#),
            ATTEST_ROW.replace(r#""decision":"allow""#, r#""decision":"yes""#),
            ATTEST_ROW.replace(r#""at_ms":1796194530653,"#, ""),
        ] {
            assert_ne!(
                bad, ATTEST_ROW,
                "the recorded row changed; update the edits"
            );
            assert!(
                matches!(serde_json::from_str::<AuditEntry>(&bad), Err(e) if e.is_data()),
                "{bad}"
            );
        }
    }
}
