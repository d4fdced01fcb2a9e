//! End-to-end: decisions land in the log before the answer, proofs verify with a
//! verifier written from the README alone.

use silkgate::proto;
use silkgate::proto::decision_log_client::DecisionLogClient;
use silkgate_tests::*;

#[tokio::test]
async fn every_answer_is_logged_and_provable() {
    let node = TestNode::start(None).await;
    let mut c = node.client().await;
    let mut log = DecisionLogClient::connect(format!("http://{}", node.addr)).await.unwrap();
    let info = c.node_info(proto::NodeInfoRequest {}).await.unwrap().into_inner();
    let key = info.keys[0].public_key.clone();
    assert!(info.keys[0].purposes.contains(&"checkpoints".to_string()));

    let first = log.get_checkpoint(proto::GetCheckpointRequest {}).await.unwrap().into_inner();
    let (origin, size0, root0) = readme_open_checkpoint(&first.note, &key).expect("initial checkpoint verifies");
    assert_eq!((origin.as_str(), size0), ("silkgate/test-node/1", 0));

    let mut answers = Vec::new();
    for i in 0..7 {
        let r = proto::EvaluateRequest {
            jurisdiction: "XX".into(),
            request: Some(allowed_request(&format!("l-{i}"))),
            explain: false,
        };
        answers.push(c.evaluate(r).await.unwrap().into_inner());
    }
    let items = (0..5)
        .map(|i| proto::EvaluateRequest {
            jurisdiction: "XX".into(),
            request: Some(allowed_request(&format!("lb-{i}"))),
            explain: false,
        })
        .collect();
    let batch = c.evaluate_batch(proto::EvaluateBatchRequest { items }).await.unwrap().into_inner();
    for r in batch.results {
        let Some(proto::batch_result::Result::Ok(ok)) = r.result else { panic!("batch item failed") };
        answers.push(ok);
    }
    let indexes: Vec<u64> = answers.iter().map(|a| a.log_index).collect();
    assert_eq!(indexes, (0..12).collect::<Vec<u64>>());

    let latest = log.get_checkpoint(proto::GetCheckpointRequest {}).await.unwrap().into_inner();
    let (_, size, root) = readme_open_checkpoint(&latest.note, &key).unwrap();
    assert_eq!(size, 12);
    assert_eq!(root, latest.root_hash);

    for a in &answers {
        let env = a.decision.clone().unwrap();
        let d = readme_verify(&env, &info.keys).unwrap();
        for target in [
            proto::get_inclusion_proof_request::Target::Index(a.log_index),
            proto::get_inclusion_proof_request::Target::DecisionId(d.decision_id.clone()),
        ] {
            let p = log
                .get_inclusion_proof(proto::GetInclusionProofRequest { target: Some(target), tree_size: 0 })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(p.index, a.log_index);
            assert_eq!(p.entry, prost::Message::encode_to_vec(&env), "the leaf holds the SignedDecision bytes");
            let cp = p.checkpoint.unwrap();
            let (_, cp_size, cp_root) = readme_open_checkpoint(&cp.note, &key).unwrap();
            assert_eq!(cp_size, p.tree_size);
            assert!(readme_verify_inclusion(readme_leaf_hash(&p.entry), p.index, p.tree_size, &p.hashes, &cp_root));
            assert!(!readme_verify_inclusion(readme_leaf_hash(b"other"), p.index, p.tree_size, &p.hashes, &cp_root));
        }
    }

    // Consistency from an intermediate size (4) to the latest; size 0 is trivially consistent.
    let p4 = log
        .get_inclusion_proof(proto::GetInclusionProofRequest {
            target: Some(proto::get_inclusion_proof_request::Target::Index(0)),
            tree_size: 4,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(p4.checkpoint.is_none());
    let entries = log.get_entries(proto::GetEntriesRequest { start: 0, count: 0 }).await.unwrap().into_inner();
    assert_eq!((entries.entries.len(), entries.next), (12, 12));
    let leaves: Vec<[u8; 32]> = entries.entries.iter().map(|e| readme_leaf_hash(&e.data)).collect();
    let root4 = mth(&leaves[..4]);
    let cons =
        log.get_consistency_proof(proto::GetConsistencyProofRequest { size1: 4, size2: 0 }).await.unwrap().into_inner();
    assert_eq!(cons.size2, 12);
    assert!(readme_verify_consistency(4, 12, &cons.hashes, &root4, &root));
    assert_eq!(mth(&leaves).to_vec(), root);
    assert!(root0.len() == 32);

    let page = log.get_entries(proto::GetEntriesRequest { start: 10, count: 5 }).await.unwrap().into_inner();
    assert_eq!((page.entries.len(), page.next), (2, 12));
    let err = log.get_entries(proto::GetEntriesRequest { start: 13, count: 1 }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange);
    // An index past the end is OUT_OF_RANGE too, as for GetEntries.
    let err = log
        .get_inclusion_proof(proto::GetInclusionProofRequest {
            target: Some(proto::get_inclusion_proof_request::Target::Index(13)),
            tree_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    let err = log
        .get_inclusion_proof(proto::GetInclusionProofRequest {
            target: Some(proto::get_inclusion_proof_request::Target::DecisionId("nope".into())),
            tree_size: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    node.stop().await;
}

/// RFC 6962 Merkle tree hash, computed naively.
fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = n.next_power_of_two() / 2;
            let (l, r) = (mth(&leaves[..k]), mth(&leaves[k..]));
            let mut h = Sha256::new();
            h.update([1u8]);
            h.update(l);
            h.update(r);
            h.finalize().into()
        }
    }
}
