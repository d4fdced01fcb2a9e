//! Server-side request messages that keep the `DeploymentRequest` bytes as received.
//!
//! Protobuf encodes an embedded message and a `bytes` field the same way (a length-
//! delimited field), so decoding `EvaluateRequest` with `request` declared as `bytes`
//! yields the exact bytes the client sent. `Decision.request_sha256` hashes those, and
//! they are decoded to `proto::DeploymentRequest` afterwards. Clients use the normal
//! generated types; only the server reads these.

use bytes::Bytes;

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
}
