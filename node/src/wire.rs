//! Server-side messages that carry an embedded message as its encoded bytes.
//!
//! Protobuf encodes an embedded message and a `bytes` field the same way (a length-
//! delimited field), so these types are wire-compatible with the generated ones:
//! - requests keep the `DeploymentRequest` bytes exactly as received:
//!   `Decision.request_sha256` hashes those, and they are decoded afterwards;
//! - responses carry the `SignedDecision` already encoded, the same bytes the decision
//!   log stores, so a decision is encoded once.
//!
//! Clients use the normal generated types; only the server uses these.

use bytes::Bytes;

use crate::proto;

/// Wire-compatible with `silkgate.v1.EvaluateRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EvaluateRequest {
    #[prost(string, tag = "1")]
    pub jurisdiction: String,
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub request: Option<Bytes>,
    #[prost(bool, tag = "3")]
    pub explain: bool,
}

/// Wire-compatible with `silkgate.v1.EvaluateBatchRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EvaluateBatchRequest {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<EvaluateRequest>,
}

/// Wire-compatible with `silkgate.v1.EvaluateResponse`; `decision` holds an encoded
/// `SignedDecision`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EvaluateResponse {
    #[prost(bytes = "bytes", optional, tag = "1")]
    pub decision: Option<Bytes>,
    #[prost(uint64, tag = "2")]
    pub log_index: u64,
    #[prost(message, repeated, tag = "3")]
    pub explanation: Vec<proto::RuleTrace>,
    #[prost(string, tag = "4")]
    pub decision_id: String,
}

/// Wire-compatible with `silkgate.v1.EvaluateBatchResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EvaluateBatchResponse {
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<BatchResult>,
}

/// Wire-compatible with `silkgate.v1.BatchResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchResult {
    #[prost(oneof = "batch_result::Result", tags = "1, 2")]
    pub result: Option<batch_result::Result>,
}

pub mod batch_result {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Result {
        #[prost(message, tag = "1")]
        Ok(super::EvaluateResponse),
        #[prost(message, tag = "2")]
        Error(crate::proto::ItemError),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto;

    #[test]
    fn keeps_the_exact_request_bytes() {
        let inner = proto::DeploymentRequest { request_id: "x".into(), node_count: 7, ..Default::default() };
        let outer = proto::EvaluateRequest { jurisdiction: "CN".into(), request: Some(inner.clone()), explain: true };
        let raw = EvaluateRequest::decode(outer.encode_to_vec().as_slice()).unwrap();
        assert_eq!(raw.jurisdiction, "CN");
        assert!(raw.explain);
        assert_eq!(raw.request.unwrap().as_ref(), inner.encode_to_vec().as_slice());

        let batch = proto::EvaluateBatchRequest { items: vec![outer.clone(), outer] };
        let raw = EvaluateBatchRequest::decode(batch.encode_to_vec().as_slice()).unwrap();
        assert_eq!(raw.items.len(), 2);
    }

    #[test]
    fn responses_decode_as_the_generated_types() {
        let signed = proto::SignedDecision {
            payload: vec![1, 2, 3],
            payload_type: "application/vnd.test".into(),
            signatures: vec![proto::Signature { sig: vec![9; 64], keyid: "k".into() }],
        };
        let trace = proto::RuleTrace { rule_id: "r".into(), matched: true, ..Default::default() };
        let one = EvaluateResponse {
            decision: Some(signed.encode_to_vec().into()),
            log_index: 42,
            explanation: vec![trace.clone()],
            decision_id: "d".into(),
        };
        let want = proto::EvaluateResponse {
            decision: Some(signed),
            log_index: 42,
            explanation: vec![trace],
            decision_id: "d".into(),
        };
        assert_eq!(proto::EvaluateResponse::decode(one.encode_to_vec().as_slice()).unwrap(), want);
        assert_eq!(one.encoded_len(), want.encoded_len());

        let error = proto::ItemError { code: 3, message: "m".into(), field: "f".into() };
        let batch = EvaluateBatchResponse {
            results: vec![
                BatchResult { result: Some(batch_result::Result::Ok(one)) },
                BatchResult { result: Some(batch_result::Result::Error(error.clone())) },
            ],
        };
        let got = proto::EvaluateBatchResponse::decode(batch.encode_to_vec().as_slice()).unwrap();
        let want = proto::EvaluateBatchResponse {
            results: vec![
                proto::BatchResult { result: Some(proto::batch_result::Result::Ok(want)) },
                proto::BatchResult { result: Some(proto::batch_result::Result::Error(error)) },
            ],
        };
        assert_eq!(got, want);
    }
}
