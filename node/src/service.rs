//! The `Compliance` gRPC service: request in, signed decision out, logged first.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Code, Request, Response, Status};

use crate::authority::Authorities;
use crate::limits::{Admitted, Limits};
use crate::log::Entry;
use crate::log::LogHandle;
use crate::metrics::{DecisionLabels, Metrics};
use crate::proto::{self, server::compliance_server::Compliance};
use crate::reload::ReloadStatus;
use crate::tls::{Authz, Group};
use crate::wire;
use silkgate_core::decision::{self, Signer};
use silkgate_core::policy::PolicySet;
use silkgate_core::request::Request as Deployment;
use silkgate_core::time::UnixTime;

/// Most items one EvaluateBatch may carry.
pub const MAX_BATCH: usize = 1000;

/// Everything the service needs, shared by all requests.
pub struct NodeState {
    pub node_id: String,
    /// Swapped as a whole on reload, so a request sees one consistent policy set.
    pub policies: ArcSwap<PolicySet>,
    pub signer: Arc<Signer>,
    pub key_valid_from: UnixTime,
    /// How long a decision stays valid evidence, in seconds.
    pub validity_secs: i64,
    /// The decision log; `None` runs without one (benchmarks only: no evidence is kept).
    pub log: Option<LogHandle>,
    pub metrics: Arc<Metrics>,
    pub reload: Arc<Mutex<ReloadStatus>>,
    /// The decision series the console shows (fixed memory).
    pub activity: crate::console::Activity,
    /// The network roster and peer settings; without a roster the node works alone.
    pub network: Arc<crate::network::Network>,
    /// This node's witness, when it witnesses other logs (set once at start).
    pub witness: std::sync::OnceLock<Arc<crate::witness::Witness>>,
    /// The policy authorities: with them, a policy applies only with a valid signed
    /// release (see [`crate::authority`]). `None`: any valid policy applies, as written.
    pub authorities: Option<Arc<Authorities>>,
    /// The waiver directory (`--waiver-dir`), reloaded with the policies.
    pub waiver_dir: Option<std::path::PathBuf>,
}

impl NodeState {
    pub fn new(
        node_id: String,
        policies: PolicySet,
        signer: Arc<Signer>,
        key_valid_from: UnixTime,
        validity_secs: i64,
        log: Option<LogHandle>,
    ) -> Self {
        let reload = Arc::new(Mutex::new(ReloadStatus::new(&policies, UnixTime::now())));
        NodeState {
            node_id,
            policies: ArcSwap::from_pointee(policies),
            signer,
            key_valid_from,
            validity_secs,
            log,
            metrics: Arc::new(Metrics::new()),
            reload,
            activity: crate::console::Activity::new(),
            network: Arc::default(),
            witness: std::sync::OnceLock::new(),
            authorities: None,
            waiver_dir: None,
        }
    }
}

#[derive(Clone)]
pub struct ComplianceService {
    state: Arc<NodeState>,
    limits: Arc<Limits>,
    authz: Arc<Authz>,
}

/// Why one evaluation failed: a gRPC code, and the field it is about.
#[derive(Debug)]
pub struct Failure {
    pub code: Code,
    pub field: String,
    pub message: String,
}

impl Failure {
    fn new(code: Code, field: &str, message: impl Into<String>) -> Self {
        Failure { code, field: field.to_string(), message: message.into() }
    }

    fn status(&self) -> Status {
        if self.field.is_empty() {
            Status::new(self.code, capped(self.message.clone()))
        } else {
            Status::new(self.code, capped(format!("{}: {}", self.field, self.message)))
        }
    }
}

/// Longest status or item error message, in bytes. Client input in messages is already
/// cut (see [`silkgate_core::request::echo`]); this bounds what several such parts add up to.
pub const MAX_MESSAGE_LEN: usize = 1024;

/// `message` cut to [`MAX_MESSAGE_LEN`] bytes (on a character boundary) with an ellipsis.
pub fn capped(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN - '…'.len_utf8();
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

/// A signed answer waiting for its log entry to be durable.
pub struct Decided {
    pub response: wire::EvaluateResponse,
    entry: Entry,
    summary: Summary,
    /// When evaluation of this request began, for the latency in the decision event.
    started: std::time::Instant,
}

/// What the per-decision log event says.
struct Summary {
    decision_id: String,
    request_id: String,
    /// The policy evaluated: its jurisdiction and digest are read from it, not copied.
    policy: Arc<silkgate_core::policy::Policy>,
    verdict: &'static str,
    rules: String,
}

impl ComplianceService {
    pub fn new(state: Arc<NodeState>, limits: Arc<Limits>, authz: Arc<Authz>) -> Self {
        ComplianceService { state, limits, authz }
    }

    /// Admission (rate limit, concurrency) and the per-call timeout around `call`. The
    /// answer carries the admission permit in its extensions, for the server to hold
    /// until the answer is sent.
    async fn limited<T>(
        &self,
        client: Option<std::net::IpAddr>,
        call: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let permit = self.limits.admit(client).map_err(|r| {
            self.state.metrics.reject(r.reason());
            r.status()
        })?;
        let timeout = self.limits.config.request_timeout;
        let answer = tokio::time::timeout(timeout, call).await.unwrap_or_else(|_| {
            self.state.metrics.reject("timeout");
            Err(Status::deadline_exceeded(format!("not answered within the {} ms limit", timeout.as_millis())))
        })?;
        let mut response = Response::new(answer);
        response.extensions_mut().insert(Admitted(Arc::new(permit)));
        Ok(response)
    }

    /// Evaluates and signs one request. Never panics on any input; fails closed. The
    /// answer must not leave the node before [`ComplianceService::commit`] logged it.
    pub fn decide(&self, item: wire::EvaluateRequest, now: UnixTime) -> Result<Decided, Failure> {
        let started = std::time::Instant::now();
        let wire::EvaluateRequest { mut jurisdiction, request, explain, malformed } = item;
        // Upper-cased like every other region code in a request: "cn" finds the CN policy.
        jurisdiction.make_ascii_uppercase();
        if let Some(m) = malformed {
            return Err(Failure::new(Code::InvalidArgument, &m.field, m.reason));
        }
        if jurisdiction.is_empty() {
            return Err(Failure::new(Code::InvalidArgument, "jurisdiction", "required"));
        }
        let bytes: Bytes = request.ok_or_else(|| Failure::new(Code::InvalidArgument, "request", "required"))?;
        let request_sha256: [u8; 32] = Sha256::digest(&bytes).into();
        let parsed = proto::DeploymentRequest::decode(bytes)
            .map_err(|e| Failure::new(Code::InvalidArgument, "request", format!("not a DeploymentRequest: {e}")))?;
        let req = Deployment::try_from(parsed)
            .map_err(|e| Failure::new(Code::InvalidArgument, &format!("request.{}", e.field), e.reason))?;

        let policies = self.state.policies.load();
        let Some(policy) = policies.get(&jurisdiction) else {
            let known: Vec<&str> = policies.policies.keys().map(String::as_str).collect();
            return Err(Failure::new(
                Code::NotFound,
                "jurisdiction",
                format!(
                    "no policy for `{}` on this node (it enforces: {})",
                    silkgate_core::request::echo(&jurisdiction),
                    known.join(", ")
                ),
            ));
        };
        let day = now.day();
        let (outcome, traces) = if explain {
            let (o, t) = policy.explain(&req, day);
            (o, Some(t))
        } else {
            (policy.evaluate(&req, day), None)
        };
        let decision_uuid = uuid::Uuid::now_v7();
        let ctx = decision::Context {
            decision_id: decision_uuid.to_string(),
            node_id: &self.state.node_id,
            request_sha256,
            request_id: &req.request_id,
            issued_at: now,
            validity_secs: self.state.validity_secs,
        };
        // Waivers come from the same set as the policy, as does its activation: both are
        // already in the log.
        let waivers = policies.waivers.get(&jurisdiction).map(Vec::as_slice).unwrap_or_default();
        let applied = silkgate_core::waiver::apply(policy, outcome, waivers, &req, Some(&request_sha256), now);
        let outcome = &applied.outcome;
        let mut d = decision::build(policy, outcome, &ctx, self.state.signer.key_id());
        silkgate_core::waiver::annotate(&mut d, policy, &applied);
        d.activation_index = policies.activations.get(&jurisdiction).copied();
        let signed = decision::sign(&d, &self.state.signer);
        let rules: Vec<&str> = outcome.matched.iter().map(|&i| policy.rules[i as usize].id.as_str()).collect();
        let summary = Summary {
            decision_id: ctx.decision_id.clone(),
            request_id: req.request_id.clone(),
            policy: policy.clone(),
            verdict: outcome.verdict.as_str(),
            rules: rules.join(","),
        };
        let id = Some(decision_uuid.as_u128());
        // Encoded once: the log stores these bytes and the answer carries them.
        let data = Bytes::from(signed.encode_to_vec());
        let entry = Entry { data: data.clone(), id };
        let explanation = traces
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                let r = &policy.rules[t.rule];
                let (failed_condition, actual) = t.failed.unwrap_or_default();
                proto::RuleTrace {
                    rule_id: r.id.clone(),
                    effect: decision::effect_to_proto(r.effect) as i32,
                    in_force: t.in_force,
                    matched: t.matched,
                    failed_condition,
                    actual,
                }
            })
            .collect();
        let response = wire::EvaluateResponse {
            decision: Some(data),
            log_index: 0,
            explanation,
            decision_id: summary.decision_id.clone(),
        };
        Ok(Decided { response, entry, summary, started })
    }

    /// Appends decided answers to the log as one group, fills in their log indexes and
    /// logs one event per decision. Fails closed: without a durable entry, no answer.
    pub async fn commit(&self, decided: &mut [Decided]) -> Result<(), Status> {
        if let Some(log) = &self.state.log {
            let entries = decided
                .iter_mut()
                .map(|d| std::mem::replace(&mut d.entry, Entry { data: Bytes::new(), id: None }))
                .collect();
            let first = log.append(entries).await.map_err(|e| {
                self.state.metrics.reject("log_unavailable");
                tracing::error!(error = %e, "decision log append failed");
                Status::unavailable(format!("decision log: {e}"))
            })?;
            for (i, d) in decided.iter_mut().enumerate() {
                d.response.log_index = first + i as u64;
            }
        }
        for d in decided.iter() {
            let s = &d.summary;
            let labels = DecisionLabels { jurisdiction: s.policy.jurisdiction.clone(), verdict: s.verdict.to_string() };
            self.state.metrics.decisions.get_or_create(&labels).inc();
            self.state.activity.record(&s.policy.jurisdiction, s.verdict, &s.rules, &s.decision_id);
            tracing::info!(
                decision.id = %s.decision_id,
                request.id = %s.request_id,
                jurisdiction = %s.policy.jurisdiction,
                verdict = s.verdict,
                rules = %s.rules,
                policy.digest = %s.policy.digest_hex,
                log_index = d.response.log_index,
                latency_us = d.started.elapsed().as_micros() as u64,
                "decision"
            );
        }
        Ok(())
    }

    /// What NodeInfo answers.
    pub fn describe(&self) -> proto::NodeInfoResponse {
        let policies = self.state.policies.load();
        let status = self.state.reload.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let jurisdictions = policies
            .policies
            .values()
            .map(|p| proto::JurisdictionInfo {
                jurisdiction: p.jurisdiction.clone(),
                policy_id: p.id.clone(),
                policy_version: p.version.clone(),
                policy_sha256: p.digest.to_vec(),
                rule_count: p.rules.len() as u32,
                name: p.name.clone(),
                loaded_at: status.loaded_at.get(&p.jurisdiction).map(|t| t.to_timestamp()),
                last_error: status.jurisdiction_errors.get(&p.jurisdiction).cloned().unwrap_or_default(),
                release_version: status.releases.get(&p.jurisdiction).map(|r| r.version.clone()).unwrap_or_default(),
                release_signer_key_ids: status
                    .releases
                    .get(&p.jurisdiction)
                    .map(|r| r.signers.clone())
                    .unwrap_or_default(),
                activation_index: policies.activations.get(&p.jurisdiction).copied(),
            })
            .collect();
        let (loaded, in_force, _) = crate::waivers::counts(&policies, UnixTime::now());
        let key = self.state.signer.verifying_key();
        let roster = self.state.network.info();
        let mut purposes = vec!["decisions".to_string()];
        if self.state.log.is_some() {
            purposes.push("checkpoints".into());
        }
        proto::NodeInfoResponse {
            node_id: self.state.node_id.clone(),
            jurisdictions,
            keys: vec![proto::PublicKey {
                public_key: key.as_bytes().to_vec(),
                key_id: self.state.signer.key_id().to_string(),
                algorithm: "ed25519".into(),
                valid_from: Some(self.state.key_valid_from.to_timestamp()),
                valid_until: None,
                purposes,
            }],
            build_version: crate::BUILD_VERSION.to_string(),
            policy_reloads: status.reloads,
            policy_reload_errors: status.errors,
            last_reload_error: status.last_error,
            last_reload_attempt: status.last_attempt.map(|t| t.to_timestamp()),
            log_origin: self.state.log.as_ref().map(|l| l.origin().to_string()).unwrap_or_default(),
            log_size: self.state.log.as_ref().map_or(0, |l| l.size()),
            log_verifier_key: self
                .state
                .log
                .as_ref()
                .map(|l| silkgate_core::checkpoint::vkey(l.origin(), &key))
                .unwrap_or_default(),
            roster_network_id: roster.network_id,
            roster_version: roster.version,
            roster_sha256: roster.sha256,
            roster_error: roster.error,
            witness_name: self.state.witness.get().map(|w| w.name().to_owned()).unwrap_or_default(),
            witness_verifier_key: self.state.witness.get().map(|w| w.vkey()).unwrap_or_default(),
            witness_split_views: self.state.witness.get().map_or(0, |w| w.split_views()),
            witness_last_split_view: self
                .state
                .witness
                .get()
                .and_then(|w| w.last_alarm())
                .map(|a| format!("{}: {} (evidence {})", a.origin, a.reason, a.evidence.display()))
                .unwrap_or_default(),
            policy_authorities_configured: self.state.authorities.is_some(),
            waivers_loaded: loaded as u32,
            waivers_in_force: in_force as u32,
        }
    }

    fn rejected(&self, f: &Failure) {
        let reason = match f.code {
            Code::InvalidArgument => "invalid_argument",
            Code::NotFound => "unknown_jurisdiction",
            _ => "other",
        };
        self.state.metrics.reject(reason);
    }
}

#[tonic::async_trait]
impl Compliance for ComplianceService {
    async fn evaluate(
        &self,
        request: Request<wire::EvaluateRequest>,
    ) -> Result<Response<wire::EvaluateResponse>, Status> {
        self.authz.check(request.peer_certs(), Group::Evaluation)?;
        let _serving = self.state.log.as_ref().map(|l| l.serving());
        let client = request.remote_addr().map(|a| a.ip());
        let started = std::time::Instant::now();
        let response = self
            .limited(client, async {
                let decided = self.decide(request.into_inner(), UnixTime::now()).map_err(|f| {
                    self.rejected(&f);
                    f.status()
                })?;
                let mut one = [decided];
                self.commit(&mut one).await?;
                let [d] = one;
                Ok(d.response)
            })
            .await?;
        self.state.metrics.latency.observe(started.elapsed().as_secs_f64());
        Ok(response)
    }

    async fn evaluate_batch(
        &self,
        request: Request<wire::EvaluateBatchRequest>,
    ) -> Result<Response<wire::EvaluateBatchResponse>, Status> {
        self.authz.check(request.peer_certs(), Group::Evaluation)?;
        let _serving = self.state.log.as_ref().map(|l| l.serving());
        let client = request.remote_addr().map(|a| a.ip());
        self.limited(client, self.batch(request.into_inner())).await
    }

    async fn node_info(&self, _: Request<proto::NodeInfoRequest>) -> Result<Response<proto::NodeInfoResponse>, Status> {
        Ok(Response::new(self.describe()))
    }
}

/// Batches with more items than this are decided on tokio's blocking pool: deciding
/// costs tens of microseconds an item (mostly the signature), and 1000 items on an async
/// worker would hold up every other connection served by it for tens of milliseconds.
pub const BLOCKING_BATCH: usize = 16;

/// The items of a batch, decided: the decisions, and per item `None` (its decision is
/// the next one) or its error.
type DecidedBatch = (Vec<Decided>, Vec<Option<proto::ItemError>>);

impl ComplianceService {
    async fn batch(&self, request: wire::EvaluateBatchRequest) -> Result<wire::EvaluateBatchResponse, Status> {
        let wire::EvaluateBatchRequest { items, malformed, extra: _ } = request;
        if let Some(m) = malformed {
            let f = Failure::new(Code::InvalidArgument, &m.field, m.reason);
            self.rejected(&f);
            return Err(f.status());
        }
        if items.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!("items: at most {MAX_BATCH} per batch, got {}", items.len())));
        }
        let started = std::time::Instant::now();
        let now = UnixTime::now();
        let (mut decided, slots) = if items.len() > BLOCKING_BATCH {
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.decide_all(items, now)).await.map_err(|e| {
                tracing::error!(error = %e, "batch evaluation failed");
                Status::internal("batch evaluation failed")
            })?
        } else {
            self.decide_all(items, now)
        };
        // All decided items share one log group, so a batch costs one sync.
        self.commit(&mut decided).await?;
        let mut decided = decided.into_iter();
        let results = slots
            .into_iter()
            .map(|slot| {
                let result = match slot {
                    Some(e) => wire::batch_result::Result::Error(e),
                    None => wire::batch_result::Result::Ok(decided.next().map(|d| d.response).unwrap_or_default()),
                };
                wire::BatchResult { result: Some(result) }
            })
            .collect();
        self.state.metrics.latency.observe(started.elapsed().as_secs_f64());
        Ok(wire::EvaluateBatchResponse { results })
    }

    /// Decides every item in order (CPU only: no I/O, no awaiting).
    fn decide_all(&self, items: Vec<wire::EvaluateRequest>, now: UnixTime) -> DecidedBatch {
        let mut decided = Vec::with_capacity(items.len());
        let mut slots = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            match self.decide(item, now) {
                Ok(d) => {
                    slots.push(None);
                    decided.push(d);
                }
                Err(f) => slots.push(Some({
                    self.rejected(&f);
                    proto::ItemError {
                        code: f.code as i32,
                        message: capped(if f.field.is_empty() {
                            format!("items[{i}]: {}", f.message)
                        } else {
                            format!("items[{i}].{}: {}", f.field, f.message)
                        }),
                        field: f.field,
                    }
                })),
            }
        }
        (decided, slots)
    }
}
