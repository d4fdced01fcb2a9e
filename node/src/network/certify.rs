//! `Network.Certify`: this node as the gateway for one deployment. It asks one member
//! node of every jurisdiction the deployment touches, in parallel under one deadline,
//! verifies each answer and its log inclusion against the roster, and answers one
//! certificate that it signs and logs first.
//!
//! The request bytes are forwarded exactly as received (each decision's
//! `request_sha256` is over them), so `CertifyRequest` is decoded by hand like
//! `crate::wire::EvaluateRequest`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use prost::encoding::{self as enc, DecodeContext, WireType};
use sha2::{Digest, Sha256};
use silkgate_core::time::UnixTime;
use silkgate_verify::certificate;
use silkgate_verify::proto::{JurisdictionEvidence, MissingJurisdiction, RegionJurisdiction};
use silkgate_verify::roster::{self, VerifiedRoster};
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use crate::limits::{Admitted, Limits};
use crate::log::Entry;
use crate::proto::{self, decision_log_client::DecisionLogClient, server::network_server::Network as NetworkRpc};
use crate::service::{NodeState, capped};
use crate::tls::{Authz, Group};
use crate::wire::{self, Malformed};

/// Wire-compatible with `silkgate.v1.CertifyRequest`, keeping the `DeploymentRequest`
/// bytes as received. Decoding never fails; the first problem is kept in `malformed`.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct CertifyRequest {
    pub request: Option<Bytes>,
    pub malformed: Option<Malformed>,
}

impl prost::Message for CertifyRequest {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        if let Some(r) = &self.request {
            enc::bytes::encode(1, r, buf);
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
        let mut raw = Bytes::new();
        enc::bytes::merge(wire_type, &mut raw, buf, ctx)?;
        // As for Evaluate: a repeated copy would be merged by other parsers, so the
        // bytes hashed would not be the request evaluated.
        if self.request.is_some() {
            self.flag("request", "appears more than once");
        } else {
            self.request = Some(raw);
        }
        Ok(())
    }

    fn encoded_len(&self) -> usize {
        self.request.as_ref().map_or(0, |r| enc::bytes::encoded_len(1, r))
    }

    fn clear(&mut self) {
        *self = CertifyRequest::default();
    }

    fn merge(&mut self, mut buf: impl bytes::Buf) -> Result<(), prost::DecodeError> {
        let ctx = DecodeContext::default();
        while buf.has_remaining() && self.malformed.is_none() {
            let (tag, wire_type) = match enc::decode_key(&mut buf) {
                Ok(k) => k,
                Err(e) => {
                    self.flag("", format!("not a CertifyRequest: {e}"));
                    break;
                }
            };
            if let Err(e) = self.merge_field(tag, wire_type, &mut buf, ctx.clone()) {
                let field = if tag == 1 { "request".to_string() } else { format!("field {tag}") };
                self.flag(&field, format!("cannot be decoded: {e}"));
            }
        }
        buf.advance(buf.remaining());
        Ok(())
    }
}

impl CertifyRequest {
    fn flag(&mut self, field: &str, reason: impl Into<String>) {
        if self.malformed.is_none() {
            self.malformed = Some(Malformed { field: field.to_string(), reason: reason.into() });
        }
    }
}

#[derive(Clone)]
pub struct NetworkService {
    state: Arc<NodeState>,
    limits: Arc<Limits>,
    authz: Arc<Authz>,
}

impl NetworkService {
    pub fn new(state: Arc<NodeState>, limits: Arc<Limits>, authz: Arc<Authz>) -> Self {
        NetworkService { state, limits, authz }
    }
}

fn invalid(field: &str, reason: impl std::fmt::Display) -> Status {
    Status::invalid_argument(capped(format!("{field}: {reason}")))
}

/// The regions of a request that decide where it is hosted, upper-cased, first
/// occurrence first, each with the field it came from.
fn regions(req: &proto::DeploymentRequest) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let storage = req.data.as_ref().map(|d| d.storage_regions.as_slice()).unwrap_or_default();
    let lists = [
        ("node_regions", &req.node_regions[..]),
        ("consensus_node_regions", &req.consensus_node_regions[..]),
        ("data.storage_regions", storage),
    ];
    for (name, list) in lists {
        for (i, r) in list.iter().enumerate() {
            let r = r.to_ascii_uppercase();
            if !out.iter().any(|(have, _)| *have == r) {
                out.push((r, format!("request.{name}[{i}]")));
            }
        }
    }
    out
}

/// One jurisdiction's outcome: verified evidence and its decision, or why not.
type Answer = Result<(JurisdictionEvidence, proto::Decision), String>;

impl NetworkService {
    async fn certify_inner(&self, item: CertifyRequest) -> Result<proto::CertifyResponse, Status> {
        let CertifyRequest { request, malformed } = item;
        if let Some(m) = malformed {
            return Err(invalid(&m.field, m.reason));
        }
        let bytes = request.ok_or_else(|| invalid("request", "required"))?;
        let net = &self.state.network;
        let Some(roster) = net.roster() else {
            return Err(Status::failed_precondition("this node has no network roster (roster setting)"));
        };
        let me = roster.node(&self.state.node_id).ok_or_else(|| {
            Status::failed_precondition(format!(
                "this node `{}` is not a member of network `{}` version {}",
                self.state.node_id, roster.roster.network_id, roster.roster.version
            ))
        })?;
        if !me.keys.iter().any(|k| k.key_id == self.state.signer.key_id()) {
            return Err(Status::failed_precondition(format!(
                "this node's key `{}` is not among its keys in the roster",
                self.state.signer.key_id()
            )));
        }
        let Some(log) = self.state.log.clone() else {
            return Err(Status::failed_precondition("this node keeps no decision log, so it cannot log a certificate"));
        };
        let request_sha256: [u8; 32] = Sha256::digest(&bytes).into();
        let parsed = proto::DeploymentRequest::decode(bytes.clone())
            .map_err(|e| invalid("request", format!("not a DeploymentRequest: {e}")))?;
        let checked = silkgate_core::request::Request::try_from(parsed.clone())
            .map_err(|e| invalid(&format!("request.{}", e.field), e.reason))?;
        let regions = regions(&parsed);
        if regions.is_empty() {
            return Err(invalid(
                "request.node_regions",
                "required to certify: no region names where the deployment runs",
            ));
        }
        let mut mapped = Vec::with_capacity(regions.len());
        for (region, field) in &regions {
            let Some(j) = roster.jurisdiction_of(region) else {
                return Err(Status::failed_precondition(capped(format!(
                    "{field}: region `{}` has no member node in network `{}` version {}",
                    silkgate_core::request::echo(region),
                    roster.roster.network_id,
                    roster.roster.version
                ))));
            };
            mapped.push(RegionJurisdiction { region: region.clone(), jurisdiction: j.to_string() });
        }
        let jurisdictions: BTreeSet<String> = mapped.iter().map(|m| m.jurisdiction.clone()).collect();

        let peers = net.peers();
        let deadline = Instant::now() + peers.deadline;
        let mut tasks = tokio::task::JoinSet::new();
        for j in &jurisdictions {
            let (this, roster, j, bytes) = (self.clone(), roster.clone(), j.clone(), bytes.clone());
            tasks.spawn(async move {
                let answer = this.ask_jurisdiction(&roster, &j, bytes, request_sha256, deadline).await;
                (j, answer)
            });
        }
        let mut answers: BTreeMap<String, Answer> = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((j, a)) => {
                    answers.insert(j, a);
                }
                Err(e) => tracing::error!(error = %e, "certify task failed"),
            }
        }
        let mut evidence = Vec::new();
        let mut decisions = Vec::new();
        let mut missing = Vec::new();
        for j in &jurisdictions {
            match answers.remove(j) {
                Some(Ok((ev, d))) => {
                    evidence.push(ev);
                    decisions.push(d);
                }
                Some(Err(reason)) => {
                    missing.push(MissingJurisdiction { jurisdiction: j.clone(), reason: capped(reason) })
                }
                None => missing.push(MissingJurisdiction { jurisdiction: j.clone(), reason: "task failed".into() }),
            }
        }
        let verdict = certificate::verdict(&decisions, !missing.is_empty());
        let issued_at = UnixTime::now().to_timestamp();
        let id = uuid::Uuid::now_v7();
        let cert = proto::DeploymentCertificate {
            certificate_id: id.to_string(),
            verdict: verdict as i32,
            request_sha256: request_sha256.to_vec(),
            request_id: checked.request_id.clone(),
            node_id: self.state.node_id.clone(),
            key_id: self.state.signer.key_id().to_string(),
            issued_at: Some(issued_at),
            not_after: Some(certificate::not_after(&decisions, issued_at)),
            roster: Some(roster.reference()),
            jurisdictions: jurisdictions.iter().cloned().collect(),
            regions: mapped,
            evidence,
            missing,
        };
        let mut env = proto::SignedDecision {
            payload: cert.encode_to_vec(),
            payload_type: certificate::PAYLOAD_TYPE.into(),
            signatures: vec![],
        };
        roster::add_signature(&mut env, self.state.signer.signing_key());
        let data = Bytes::from(env.encode_to_vec());
        let log_index = log.append(vec![Entry { data, id: Some(id.as_u128()) }]).await.map_err(|e| {
            tracing::error!(error = %e, "decision log append failed");
            Status::unavailable(format!("decision log: {e}"))
        })?;
        let missing: Vec<&str> = cert.missing.iter().map(|m| m.jurisdiction.as_str()).collect();
        tracing::info!(
            certificate.id = %cert.certificate_id,
            request.id = %cert.request_id,
            jurisdictions = %cert.jurisdictions.join(","),
            verdict = verdict.as_str_name(),
            missing = %missing.join(","),
            log_index,
            "certificate"
        );
        Ok(proto::CertifyResponse { certificate: Some(env), log_index, certificate_id: cert.certificate_id })
    }

    /// Asks the member nodes of `j`, healthy ones first, one after another until one
    /// answers verified evidence or the deadline passes. Each attempt gets an even share
    /// of the time left, so a stalled node leaves time for the next.
    async fn ask_jurisdiction(
        &self,
        roster: &VerifiedRoster,
        j: &str,
        bytes: Bytes,
        digest: [u8; 32],
        deadline: Instant,
    ) -> Answer {
        let net = &self.state.network;
        let mut nodes: Vec<&proto::RosterNode> = roster.nodes_for(j).collect();
        nodes.sort_by_key(|n| net.recently_failed(&n.node_id));
        let mut why = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let now = Instant::now();
            if now >= deadline {
                why.push(format!("{}: not tried, deadline passed", node.node_id));
                continue;
            }
            let share = (deadline - now) / (nodes.len() - i) as u32;
            let attempt = tokio::time::timeout(share, self.ask_node(roster, node, j, bytes.clone(), &digest)).await;
            match attempt {
                Ok(Ok(answer)) => {
                    net.mark_ok(&node.node_id);
                    return Ok(answer);
                }
                Ok(Err(e)) => why.push(format!("{}: {e}", node.node_id)),
                Err(_) => why.push(format!("{}: no answer within {} ms", node.node_id, share.as_millis())),
            }
            net.mark_failed(&node.node_id);
        }
        Err(why.join("; "))
    }

    async fn ask_node(
        &self,
        roster: &VerifiedRoster,
        node: &proto::RosterNode,
        j: &str,
        bytes: Bytes,
        digest: &[u8; 32],
    ) -> Result<(JurisdictionEvidence, proto::Decision), String> {
        let channel = self.state.network.channel(&node.grpc_endpoint)?;
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.map_err(|e| format!("connect: {e}"))?;
        let request = wire::EvaluateRequest {
            jurisdiction: j.to_string(),
            request: Some(bytes),
            explain: false,
            malformed: None,
        };
        // The response's decision is kept as the bytes the node sent and logged.
        let codec = tonic_prost::ProstCodec::<wire::EvaluateRequest, wire::EvaluateResponse>::default();
        let path = http::uri::PathAndQuery::from_static("/silkgate.v1.Compliance/Evaluate");
        let answer = grpc
            .unary(Request::new(request), path, codec)
            .await
            .map_err(|s| format!("Evaluate: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        let decision = answer.decision.ok_or("Evaluate answered no decision")?;
        let proof = DecisionLogClient::new(channel)
            .get_inclusion_proof(proto::GetInclusionProofRequest {
                target: Some(proto::get_inclusion_proof_request::Target::DecisionId(answer.decision_id.clone())),
                tree_size: 0,
            })
            .await
            .map_err(|s| format!("GetInclusionProof: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        if proof.entry != decision {
            return Err("the logged entry is not the decision answered".into());
        }
        if proof.index != answer.log_index {
            return Err(format!("decision answered at log index {}, proved at {}", answer.log_index, proof.index));
        }
        let ev = JurisdictionEvidence {
            jurisdiction: j.to_string(),
            node_id: node.node_id.clone(),
            decision: decision.to_vec(),
            log_index: proof.index,
            tree_size: proof.tree_size,
            inclusion_proof: proof.hashes,
            checkpoint: proof.checkpoint.map(|c| c.note).unwrap_or_default(),
        };
        let d = certificate::check_evidence(roster, j, digest, &ev)?;
        Ok((ev, d))
    }
}

#[tonic::async_trait]
impl NetworkRpc for NetworkService {
    async fn certify(&self, request: Request<CertifyRequest>) -> Result<Response<proto::CertifyResponse>, Status> {
        self.authz.check(request.peer_certs(), Group::Network)?;
        let client = request.remote_addr().map(|a| a.ip());
        let permit = self.limits.admit(client).map_err(|r| {
            self.state.metrics.reject(r.reason());
            r.status()
        })?;
        // The fan-out has its own deadline; this bounds the log append after it too.
        let limit = self.state.network.peers().deadline + Duration::from_secs(5);
        let answer = tokio::time::timeout(limit, self.certify_inner(request.into_inner()))
            .await
            .map_err(|_| Status::deadline_exceeded("certificate not made in time"))??;
        let mut response = Response::new(answer);
        response.extensions_mut().insert(Admitted(Arc::new(permit)));
        Ok(response)
    }
}
