//! One conformance suite that every [`Store`] implementation must pass; each backend's
//! module runs it against a real database (a SQLite file, the machine's PostgreSQL).

use super::*;

/// Exercises every operation of the trait.
pub(crate) async fn conformance(s: &dyn Store) {
    s.ping().await.unwrap();

    // sessions: a nonce is consumed once; sessions expire
    let sess = Session {
        id: "abc".into(),
        tee: "sample".into(),
        hash_alg: "sha384".into(),
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
    assert_eq!((loaded.tee.as_str(), loaded.expires_at), ("sample", 100));
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

    // audit: ordered, newest `limit` rows after a sequence number
    for i in 0..3 {
        s.append_audit(&AuditEntry {
            at_ms: i,
            action: "release".into(),
            decision: "allow".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let rows = s.list_audit(0, 2).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.at_ms).collect::<Vec<_>>(), vec![1, 2]);
    let after = s.list_audit(rows[0].seq, 10).await.unwrap();
    assert_eq!(after.len(), 1);

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
    assert_eq!(
        s.get_policy("resource-policy").await.unwrap().unwrap().body,
        "c"
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
