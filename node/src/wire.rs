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
///
/// Decoding never fails: what is wrong with the encoding is kept in `malformed`, so the
/// service answers INVALID_ARGUMENT naming the field (tonic would answer INTERNAL for a
/// decode error) and a bad item of a batch fails only itself.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct EvaluateRequest {
    pub jurisdiction: String,
    pub request: Option<Bytes>,
    pub explain: bool,
    /// The first problem met while decoding; not on the wire.
    pub malformed: Option<Malformed>,
}

/// Wire-compatible with `silkgate.v1.EvaluateBatchRequest`. Each item decodes on its
/// own (see [`EvaluateRequest`]); `malformed` says the list itself could not be read.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct EvaluateBatchRequest {
    pub items: Vec<EvaluateRequest>,
    /// The first problem met while decoding the list; not on the wire.
    pub malformed: Option<Malformed>,
    /// Items past the most a batch may carry, skipped without decoding.
    pub extra: usize,
}

/// Why a message could not be taken as it came: the field, and the reason.
#[derive(Clone, PartialEq, Debug)]
pub struct Malformed {
    pub field: String,
    pub reason: String,
}

impl EvaluateRequest {
    fn flag(&mut self, field: &str, reason: impl Into<String>) {
        if self.malformed.is_none() {
            self.malformed = Some(Malformed { field: field.to_string(), reason: reason.into() });
        }
    }
}

/// The field a tag of `EvaluateRequest` stands for, for error messages.
fn item_field(tag: u32) -> String {
    match tag {
        1 => "jurisdiction".into(),
        2 => "request".into(),
        3 => "explain".into(),
        n => format!("field {n}"),
    }
}

// The hand-written `prost::Message` impls below use `prost::encoding`, the (doc-hidden)
// module the derive macro's output calls, so they encode exactly as derived code would.
use prost::encoding::{self as enc, DecodeContext, WireType};

impl prost::Message for EvaluateRequest {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        if !self.jurisdiction.is_empty() {
            enc::string::encode(1, &self.jurisdiction, buf);
        }
        if let Some(r) = &self.request {
            enc::bytes::encode(2, r, buf);
        }
        if self.explain {
            enc::bool::encode(3, &self.explain, buf);
        }
    }

    /// Strict for malformed encodings (the error names no field; [`Self::merge`] adds
    /// it); a repeated `request` or a `jurisdiction` that is not UTF-8 is recorded in
    /// `malformed` instead.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            1 => {
                let mut raw = Vec::new();
                enc::bytes::merge(wire_type, &mut raw, buf, ctx)?;
                match String::from_utf8(raw) {
                    Ok(s) => self.jurisdiction = s,
                    Err(_) => self.flag("jurisdiction", "not valid UTF-8"),
                }
            }
            2 => {
                let mut raw = Bytes::new();
                enc::bytes::merge(wire_type, &mut raw, buf, ctx)?;
                // Protobuf parsers merge repeated copies of an embedded message; this
                // node would evaluate and hash one copy while others read the merge.
                // Refused, so the bytes hashed are the one request evaluated.
                if self.request.is_some() {
                    self.flag("request", "appears more than once");
                } else {
                    self.request = Some(raw);
                }
            }
            3 => enc::bool::merge(wire_type, &mut self.explain, buf, ctx)?,
            _ => enc::skip_field(wire_type, tag, buf, ctx)?,
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        (if self.jurisdiction.is_empty() { 0 } else { enc::string::encoded_len(1, &self.jurisdiction) })
            + self.request.as_ref().map_or(0, |r| enc::bytes::encoded_len(2, r))
            + if self.explain { enc::bool::encoded_len(3, &self.explain) } else { 0 }
    }

    fn clear(&mut self) {
        *self = EvaluateRequest::default();
    }

    /// Never fails: the first problem is kept in `malformed` and decoding stops there.
    fn merge(&mut self, mut buf: impl bytes::Buf) -> Result<(), prost::DecodeError> {
        let ctx = DecodeContext::default();
        while buf.has_remaining() && self.malformed.is_none() {
            let (tag, wire_type) = match enc::decode_key(&mut buf) {
                Ok(k) => k,
                Err(e) => {
                    self.flag("", format!("not an EvaluateRequest: {e}"));
                    break;
                }
            };
            if let Err(e) = self.merge_field(tag, wire_type, &mut buf, ctx.clone()) {
                self.flag(&item_field(tag), format!("cannot be decoded: {e}"));
            }
        }
        buf.advance(buf.remaining());
        Ok(())
    }
}

impl prost::Message for EvaluateBatchRequest {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        for item in &self.items {
            enc::message::encode(1, item, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl bytes::Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        if tag != 1 {
            return enc::skip_field(wire_type, tag, buf, ctx);
        }
        if self.items.len() >= crate::service::MAX_BATCH {
            // Counted, not kept: 4 MiB of empty items would otherwise be two million
            // decoded requests in memory before the batch size is checked.
            self.extra += 1;
            return enc::skip_field(wire_type, tag, buf, ctx);
        }
        let mut raw = Bytes::new();
        enc::bytes::merge(wire_type, &mut raw, buf, ctx)?;
        let mut item = EvaluateRequest::default();
        // Lenient: a bad item is kept with its `malformed` and fails alone.
        let _ = prost::Message::merge(&mut item, raw);
        self.items.push(item);
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        enc::message::encoded_len_repeated(1, &self.items)
    }

    fn clear(&mut self) {
        *self = EvaluateBatchRequest::default();
    }

    /// Never fails: a list that cannot be read is kept in `malformed`.
    fn merge(&mut self, mut buf: impl bytes::Buf) -> Result<(), prost::DecodeError> {
        let ctx = DecodeContext::default();
        while buf.has_remaining() {
            let (tag, wire_type) = match enc::decode_key(&mut buf) {
                Ok(k) => k,
                Err(e) => {
                    let reason = format!("not an EvaluateBatchRequest: {e}");
                    self.malformed = Some(Malformed { field: String::new(), reason });
                    break;
                }
            };
            let field = if tag == 1 { format!("items[{}]", self.items.len()) } else { format!("field {tag}") };
            if let Err(e) = self.merge_field(tag, wire_type, &mut buf, ctx.clone()) {
                self.malformed = Some(Malformed { field, reason: format!("cannot be decoded: {e}") });
                break;
            }
        }
        if self.malformed.is_none() && self.extra > 0 {
            let (max, got) = (crate::service::MAX_BATCH, self.items.len() + self.extra);
            let reason = format!("at most {max} per batch, got {got}");
            self.malformed = Some(Malformed { field: "items".into(), reason });
        }
        buf.advance(buf.remaining());
        Ok(())
    }
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

    fn field(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag << 3 | 2, value.len() as u8];
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn a_repeated_request_field_is_refused_not_merged() {
        let first = proto::DeploymentRequest { request_id: "a".into(), ..Default::default() }.encode_to_vec();
        let second = proto::DeploymentRequest { node_count: 3, ..Default::default() }.encode_to_vec();
        let bytes = [field(1, b"CN"), field(2, &first), field(2, &second)].concat();
        // What any protobuf parser makes of these bytes: both copies, merged.
        let merged = proto::EvaluateRequest::decode(bytes.as_slice()).unwrap().request.unwrap();
        assert_eq!((merged.request_id.as_str(), merged.node_count), ("a", 3));

        let raw = EvaluateRequest::decode(bytes.as_slice()).unwrap();
        let m = raw.malformed.unwrap();
        assert_eq!((m.field.as_str(), m.reason.as_str()), ("request", "appears more than once"));

        let batch = [field(1, &field(2, &first)), field(1, &bytes)].concat();
        let raw = EvaluateBatchRequest::decode(batch.as_slice()).unwrap();
        assert!(raw.malformed.is_none());
        assert!(raw.items[0].malformed.is_none());
        assert_eq!(raw.items[1].malformed.as_ref().unwrap().field, "request");
    }

    #[test]
    fn undecodable_fields_are_named_not_errors() {
        let raw = EvaluateRequest::decode(field(1, b"C\xffN").as_slice()).unwrap();
        let m = raw.malformed.unwrap();
        assert_eq!((m.field.as_str(), m.reason.as_str()), ("jurisdiction", "not valid UTF-8"));

        // A length past the end of the message.
        let raw = EvaluateRequest::decode([0x12u8, 0x7f, 1, 2].as_slice()).unwrap();
        assert_eq!(raw.malformed.unwrap().field, "request");
        // `explain` sent as a string.
        let raw = EvaluateRequest::decode(field(3, b"yes").as_slice()).unwrap();
        assert_eq!(raw.malformed.unwrap().field, "explain");
        // Not even a key.
        let raw = EvaluateRequest::decode([0xffu8].as_slice()).unwrap();
        assert!(raw.malformed.unwrap().reason.starts_with("not an EvaluateRequest"));

        let raw = EvaluateBatchRequest::decode([field(1, b""), vec![0x0a, 0x7f]].concat().as_slice()).unwrap();
        assert_eq!(raw.malformed.unwrap().field, "items[1]");
    }

    #[test]
    fn items_past_the_batch_limit_are_counted_not_kept() {
        let n = crate::service::MAX_BATCH + 5000;
        let bytes = field(1, b"").repeat(n);
        let raw = EvaluateBatchRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(raw.items.len(), crate::service::MAX_BATCH);
        let m = raw.malformed.unwrap();
        assert_eq!(m.field, "items");
        assert_eq!(m.reason, format!("at most 1000 per batch, got {n}"));
    }

    #[test]
    fn requests_encode_as_the_generated_types() {
        let inner = proto::DeploymentRequest { request_id: "x".into(), ..Default::default() };
        let want = proto::EvaluateRequest { jurisdiction: "CN".into(), request: Some(inner.clone()), explain: true };
        let ours = EvaluateRequest {
            jurisdiction: "CN".into(),
            request: Some(inner.encode_to_vec().into()),
            explain: true,
            malformed: None,
        };
        assert_eq!(ours.encode_to_vec(), want.encode_to_vec());
        let batch = EvaluateBatchRequest { items: vec![ours.clone(), ours], ..Default::default() };
        let want = proto::EvaluateBatchRequest { items: vec![want.clone(), want] };
        assert_eq!(batch.encode_to_vec(), want.encode_to_vec());
        assert_eq!(batch.encoded_len(), want.encoded_len());
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
