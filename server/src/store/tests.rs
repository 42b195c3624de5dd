//! One conformance suite that every [`Store`] implementation must pass; each backend's
//! module runs it against a real database (a SQLite file, the machine's PostgreSQL).

use super::*;

/// Exercises every operation of the trait.
pub(crate) async fn conformance(s: &dyn Store) {
    s.ping().await.unwrap();

    // sessions: a nonce is consumed once; sessions expire
    let sess = Session {
        id: "abc".into(),
        tee: coffer_protocol::Tee::Sample,
        hash_alg: coffer_protocol::HashAlgorithm::Sha384,
        protocol_version: coffer_protocol::ProtocolVersion::V0_1_0,
        state: SessionState::Authed { nonce: "n1".into() },
        created_at: 0,
        expires_at: 100,
    };
    s.create_session(&sess).await.unwrap();
    assert!(
        s.create_session(&sess).await.is_err(),
        "session ids are unique"
    );
    // A session must start unattested: anything else is the caller's bug, not the database's.
    let attested = Session {
        id: "attested".into(),
        state: SessionState::Attested { token: "t".into() },
        ..sess.clone()
    };
    assert!(matches!(
        s.create_session(&attested).await,
        Err(StoreError::Misuse(_))
    ));
    assert!(!s.consume_nonce("abc", "wrong", "t", 50).await.unwrap());
    assert!(s.consume_nonce("abc", "n1", "tok", 50).await.unwrap());
    assert!(!s.consume_nonce("abc", "n1", "tok2", 50).await.unwrap());
    let loaded = s.load_session("abc", 50).await.unwrap().unwrap();
    assert_eq!(
        loaded.state,
        SessionState::Attested {
            token: "tok".into()
        }
    );
    assert_eq!((loaded.tee.name(), loaded.expires_at), ("sample", 100));
    // The version survives the round trip (and the nonce consumption).
    assert_eq!(
        loaded.protocol_version,
        coffer_protocol::ProtocolVersion::V0_1_0
    );
    assert!(s.load_session("abc", 100).await.unwrap().is_none());
    assert!(s.load_session("nope", 0).await.unwrap().is_none());
    // Expired rows still occupy the table until purged; purging keeps live ones.
    let live = Session {
        id: "live".into(),
        state: SessionState::Authed { nonce: "n2".into() },
        expires_at: 200,
        ..sess.clone()
    };
    s.create_session(&live).await.unwrap();
    assert_eq!(s.count_sessions().await.unwrap(), 2);
    assert_eq!(s.purge_expired_sessions(100).await.unwrap(), 1);
    assert_eq!(s.count_sessions().await.unwrap(), 1);
    assert!(s.load_session("live", 150).await.unwrap().is_some());
    assert_eq!(s.purge_expired_sessions(200).await.unwrap(), 1);
    assert_eq!(s.count_sessions().await.unwrap(), 0);
    // Eviction takes sessions created before the given time: never-attested ones first,
    // oldest first, then attested ones.
    for (i, id) in ["p1", "p2", "p3"].iter().enumerate() {
        s.create_session(&Session {
            id: id.to_string(),
            state: SessionState::Authed {
                nonce: format!("n{id}"),
            },
            created_at: 1000 + i as i64,
            expires_at: 5000,
            ..sess.clone()
        })
        .await
        .unwrap();
    }
    assert!(s.consume_nonce("p1", "np1", "tok", 1500).await.unwrap());
    assert_eq!(s.evict_sessions(10, 1000).await.unwrap(), 0);
    assert_eq!(s.evict_sessions(1, 1003).await.unwrap(), 1);
    assert!(s.load_session("p1", 1500).await.unwrap().is_some());
    assert!(s.load_session("p2", 1500).await.unwrap().is_none());
    assert!(s.load_session("p3", 1500).await.unwrap().is_some());
    // p3 (created at 1002) is not older than 1002.
    assert_eq!(s.evict_sessions(10, 1002).await.unwrap(), 1);
    assert!(s.load_session("p3", 1500).await.unwrap().is_some());
    assert_eq!(s.evict_sessions(10, 1003).await.unwrap(), 1);
    assert_eq!(s.count_sessions().await.unwrap(), 0);
    s.purge_expired_sessions(5000).await.unwrap();

    audit(s).await;

    // resource metadata: sealed sizes and times, sorted, without the bytes
    s.put_resource("b/x/y", &[0u8; 40], 7).await.unwrap();
    s.put_resource("a/x/y", &[1u8; 29], 8).await.unwrap();
    assert_eq!(
        s.list_resource_meta().await.unwrap(),
        vec![("a/x/y".to_string(), 29, 8), ("b/x/y".to_string(), 40, 7)]
    );
    s.delete_resource("a/x/y").await.unwrap();
    s.delete_resource("b/x/y").await.unwrap();

    // policies: defaults never overwrite
    s.put_policy_if_absent("resource-policy", PolicyKind::Resource, "a", 1)
        .await
        .unwrap();
    s.put_policy_if_absent("resource-policy", PolicyKind::Resource, "b", 2)
        .await
        .unwrap();
    assert_eq!(
        s.get_policy("resource-policy").await.unwrap().unwrap().body,
        "a"
    );
    s.put_policy("resource-policy", PolicyKind::Resource, "c", 3)
        .await
        .unwrap();
    let stored = s.get_policy("resource-policy").await.unwrap().unwrap();
    assert_eq!(
        (stored.body.as_str(), stored.kind),
        ("c", PolicyKind::Resource)
    );
    s.put_policy("default_cpu", PolicyKind::Attestation, "x", 3)
        .await
        .unwrap();
    assert_eq!(
        s.list_policy_ids(PolicyKind::Resource).await.unwrap(),
        vec!["resource-policy"]
    );
    assert!(s.get_policy("missing").await.unwrap().is_none());
    // deleting checks the kind, and reports whether something was deleted
    assert!(!s
        .delete_policy("default_cpu", PolicyKind::Resource)
        .await
        .unwrap());
    s.put_policy("extra", PolicyKind::Attestation, "y", 4)
        .await
        .unwrap();
    assert_eq!(
        s.list_policy_ids(PolicyKind::Attestation).await.unwrap(),
        vec!["default_cpu", "extra"]
    );
    assert!(s
        .delete_policy("extra", PolicyKind::Attestation)
        .await
        .unwrap());
    assert!(!s
        .delete_policy("extra", PolicyKind::Attestation)
        .await
        .unwrap());
    assert!(s.get_policy("extra").await.unwrap().is_none());
    assert!(s.get_policy("default_cpu").await.unwrap().is_some());

    // reference values: replace, expire
    s.put_reference_value("svn", "[\"1\"]", 10, 0)
        .await
        .unwrap();
    s.put_reference_value("svn", "[\"2\"]", 10, 1)
        .await
        .unwrap();
    s.put_reference_value("old", "1", 5, 0).await.unwrap();
    assert_eq!(
        s.reference_values(6).await.unwrap(),
        vec![("svn".to_string(), "[\"2\"]".to_string())]
    );
    // delete: expired rows too, and absence is reported, not an error
    assert!(s.delete_reference_value("old").await.unwrap());
    assert!(!s.delete_reference_value("old").await.unwrap());
    assert!(s.delete_reference_value("svn").await.unwrap());
    assert!(s.reference_values(0).await.unwrap().is_empty());

    // resources: bytes round-trip, delete reports existence
    let blob: Vec<u8> = (0..=255).collect();
    s.put_resource("default/a/b", &blob, 1).await.unwrap();
    assert_eq!(s.get_resource("default/a/b").await.unwrap().unwrap(), blob);
    s.put_resource("default/a/b", b"new", 2).await.unwrap();
    assert_eq!(
        s.get_resource("default/a/b").await.unwrap().unwrap(),
        b"new"
    );
    s.put_resource("other/x/1", b"o", 2).await.unwrap();
    s.put_resource("default/a/a", b"z", 2).await.unwrap();
    assert_eq!(
        s.list_resource_paths().await.unwrap(),
        vec!["default/a/a", "default/a/b", "other/x/1"]
    );
    assert!(s.delete_resource("default/a/a").await.unwrap());
    assert!(s.delete_resource("other/x/1").await.unwrap());
    assert!(s.delete_resource("default/a/b").await.unwrap());
    assert!(!s.delete_resource("default/a/b").await.unwrap());
    assert!(s.get_resource("default/a/b").await.unwrap().is_none());
    assert!(s.list_resource_paths().await.unwrap().is_empty());

    // collateral cache: replaced on refresh, invisible once past not_after
    let k = "TDX/90C06F000000/platform";
    assert!(s.get_collateral(k, 0).await.unwrap().is_none());
    s.put_collateral(k, "{\"v\":1}", 100, 1).await.unwrap();
    s.put_collateral(k, "{\"v\":2}", 200, 2).await.unwrap();
    assert_eq!(
        s.get_collateral(k, 150).await.unwrap(),
        Some(("{\"v\":2}".to_string(), 200, 2))
    );
    assert!(s.get_collateral(k, 200).await.unwrap().is_none());

    // wrapped keys: the first writer wins, later writes change nothing
    assert!(s.get_wrapped_key("kek").await.unwrap().is_none());
    s.put_wrapped_key_if_absent("kek", "{\"first\":1}", 1)
        .await
        .unwrap();
    s.put_wrapped_key_if_absent("kek", "{\"second\":2}", 2)
        .await
        .unwrap();
    assert_eq!(
        s.get_wrapped_key("kek").await.unwrap().as_deref(),
        Some("{\"first\":1}")
    );
    assert!(s.get_wrapped_key("other").await.unwrap().is_none());
}

/// The audit log: filters, paging with totals, claims kept and left out, the nonce
/// consumption that writes its row, retention.
async fn audit(s: &dyn Store) {
    let page = |f: AuditFilter| async move { s.list_audit(&f).await.unwrap() };
    let all = || AuditFilter {
        limit: 100,
        ..Default::default()
    };
    let rows = [
        ("attest", "allow", Some("s1"), Some("tdx"), None),
        (
            "release",
            "allow",
            Some("s1"),
            Some("tdx"),
            Some("default/key/a"),
        ),
        (
            "release",
            "deny",
            Some("s2"),
            Some("sample"),
            Some("default/key/b"),
        ),
        (
            "release",
            "deny",
            None,
            Some("sample"),
            Some("default/key_/c"),
        ),
        (
            "admin:set-resource",
            "ok",
            None,
            None,
            Some("default/key/a"),
        ),
        ("attest", "deny", Some("s3"), Some("sample"), None),
    ];
    for (i, (action, decision, session, tee, resource)) in rows.iter().enumerate() {
        s.append_audit(&AuditEntry {
            session_id: session.map(str::to_string),
            tee: tee.map(str::to_string),
            resource: resource.map(str::to_string),
            client_addr: Some("192.0.2.7".into()),
            actor: action
                .starts_with("admin")
                .then(|| "ops@example".to_string()),
            verdict: (*action == "attest").then(|| "affirming".to_string()),
            trust_vector: (*action == "attest").then(|| serde_json::json!({"executables": 3})),
            claims: (*action == "attest" && *decision == "allow")
                .then(|| serde_json::json!({"tdx": {"mr_td": "ab"}})),
            ..AuditEntry::new(
                1000 * (i as i64 + 1),
                action.parse().unwrap(),
                decision.parse().unwrap(),
            )
        })
        .await
        .unwrap();
    }
    let p = page(all()).await;
    assert_eq!((p.total, p.entries.len()), (6, 6));
    let ats: Vec<i64> = p.entries.iter().map(|r| r.at_ms).collect();
    assert_eq!(
        ats,
        vec![6000, 5000, 4000, 3000, 2000, 1000],
        "newest first"
    );
    assert!(
        p.entries.iter().all(|r| r.claims.is_none()),
        "claims left out of listings"
    );
    assert_eq!(p.entries.iter().filter(|r| r.has_claims).count(), 1);
    let attest = p.entries.iter().find(|r| r.has_claims).unwrap();
    assert_eq!(
        attest.trust_vector,
        Some(serde_json::json!({"executables": 3}))
    );
    assert_eq!(attest.client_addr.as_deref(), Some("192.0.2.7"));
    assert_eq!(attest.verdict.as_deref(), Some("affirming"));
    let one = s.get_audit(attest.seq).await.unwrap().unwrap();
    assert_eq!(
        one.claims,
        Some(serde_json::json!({"tdx": {"mr_td": "ab"}}))
    );
    assert!(s.get_audit(attest.seq + 1000).await.unwrap().is_none());
    let with = page(AuditFilter {
        with_claims: true,
        ..all()
    })
    .await;
    assert_eq!(
        with.entries.iter().filter(|r| r.claims.is_some()).count(),
        1
    );

    // paging: totals stay, pages move
    let p2 = page(AuditFilter {
        limit: 2,
        offset: 2,
        ..all()
    })
    .await;
    assert_eq!(p2.total, 6);
    assert_eq!(
        p2.entries.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
        vec![4000, 3000]
    );
    let asc = page(AuditFilter {
        limit: 2,
        oldest_first: true,
        ..all()
    })
    .await;
    assert_eq!(
        asc.entries.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
        vec![1000, 2000]
    );
    let tail = page(AuditFilter {
        after_seq: Some(asc.entries[1].seq),
        oldest_first: true,
        ..all()
    })
    .await;
    assert_eq!(tail.total, 4);

    // filters, alone and together
    let count = |f: AuditFilter| async move { s.list_audit(&f).await.unwrap().total };
    assert_eq!(
        count(AuditFilter {
            since_ms: Some(2000),
            until_ms: Some(4000),
            ..all()
        })
        .await,
        2
    );
    assert_eq!(
        count(AuditFilter {
            tee: Some("sample".into()),
            ..all()
        })
        .await,
        3
    );
    assert_eq!(
        count(AuditFilter {
            decision: Some(Decision::Deny),
            ..all()
        })
        .await,
        3
    );
    assert_eq!(
        count(AuditFilter {
            session_id: Some("s1".into()),
            ..all()
        })
        .await,
        2
    );
    assert_eq!(
        count(AuditFilter {
            action: Some("attest".parse().unwrap()),
            ..all()
        })
        .await,
        2
    );
    assert_eq!(
        count(AuditFilter {
            action: Some("admin".parse().unwrap()),
            ..all()
        })
        .await,
        1
    );
    assert_eq!(
        count(AuditFilter {
            resource: Some("default/key/a".into()),
            ..all()
        })
        .await,
        2
    );
    // a prefix match is literal: `_` is no wildcard, case matters
    assert_eq!(
        count(AuditFilter {
            resource: Some("default/key/*".into()),
            ..all()
        })
        .await,
        3
    );
    assert_eq!(
        count(AuditFilter {
            resource: Some("default/key_/*".into()),
            ..all()
        })
        .await,
        1
    );
    assert_eq!(
        count(AuditFilter {
            resource: Some("DEFAULT/*".into()),
            ..all()
        })
        .await,
        0
    );
    assert_eq!(
        count(AuditFilter {
            action: Some("release".parse().unwrap()),
            decision: Some(Decision::Deny),
            tee: Some("sample".into()),
            session_id: Some("s2".into()),
            ..all()
        })
        .await,
        1
    );
    let counts = s.audit_counts(0).await.unwrap();
    assert!(counts.contains(&("admin".into(), "ok".into(), 1)));
    assert!(counts.contains(&("release".into(), "deny".into(), 2)));
    assert_eq!(
        s.audit_counts(5500).await.unwrap(),
        vec![("attest".into(), "deny".into(), 1)]
    );

    // the nonce consumption writes the attestation's row, once
    let sess = Session {
        id: "aud".into(),
        tee: coffer_protocol::Tee::Sample,
        hash_alg: coffer_protocol::HashAlgorithm::Sha384,
        protocol_version: Default::default(),
        state: SessionState::Authed { nonce: "n".into() },
        created_at: 0,
        expires_at: 100,
    };
    s.create_session(&sess).await.unwrap();
    let rec = AuditEntry {
        session_id: Some("aud".into()),
        claims: Some(serde_json::json!({"sample": {"svn": "1"}})),
        trust_vector: Some(serde_json::json!({"hardware": 2})),
        ..AuditEntry::new(7000, AuditAction::Attest, Decision::Allow)
    };
    assert!(!s
        .consume_nonce_audited("aud", "wrong", "t", 50, &rec)
        .await
        .unwrap());
    assert!(s
        .consume_nonce_audited("aud", "n", "t", 50, &rec)
        .await
        .unwrap());
    assert!(!s
        .consume_nonce_audited("aud", "n", "t", 50, &rec)
        .await
        .unwrap());
    let mine = page(AuditFilter {
        session_id: Some("aud".into()),
        with_claims: true,
        ..all()
    })
    .await;
    assert_eq!(
        mine.total, 1,
        "one row, only for the consumption that happened"
    );
    assert_eq!(mine.entries[0].claims, rec.claims);
    assert_eq!(mine.entries[0].trust_vector, rec.trust_vector);
    assert!(matches!(
        s.load_session("aud", 50).await.unwrap().unwrap().state,
        SessionState::Attested { .. }
    ));

    // retention: by age, then by count (the newest stay)
    assert_eq!(s.prune_audit(Some(2500), None).await.unwrap(), 2);
    assert_eq!(page(all()).await.total, 5);
    assert_eq!(s.prune_audit(None, Some(3)).await.unwrap(), 2);
    let left = page(all()).await;
    assert_eq!(
        left.entries.iter().map(|r| r.at_ms).collect::<Vec<_>>(),
        vec![7000, 6000, 5000]
    );
    assert_eq!(s.prune_audit(Some(0), Some(3)).await.unwrap(), 0);
    // many rows: removed in batches, exactly the newest kept
    for i in 0..(super::sql::PRUNE_BATCH + 20) {
        s.append_audit(&AuditEntry::new(
            10_000 + i,
            AuditAction::Release,
            Decision::Allow,
        ))
        .await
        .unwrap();
    }
    let n = page(all()).await.total as u64;
    assert_eq!(s.prune_audit(None, Some(10)).await.unwrap(), n - 10);
    let left = page(all()).await;
    assert_eq!(left.total, 10);
    assert_eq!(left.entries[0].at_ms, 10_000 + super::sql::PRUNE_BATCH + 19);
    // A row a newer replica wrote (an admin operation this build does not know) is listed
    // as stored, beside the others, not a failure of the whole listing.
    let newer = AuditAction::Unrecognised("admin:rotate-keys".into());
    s.append_audit(&AuditEntry::new(90_000, newer.clone(), Decision::Ok))
        .await
        .unwrap();
    let listed = page(all()).await;
    assert_eq!(listed.total, 11);
    assert_eq!(listed.entries[0].action, newer);
    assert_eq!(listed.entries[1].action, AuditAction::Release);
}
