//! Benchmarks of the pure core: compiling each shipped policy, evaluating it against a
//! typical and a worst-case request, converting a request, and building plus signing a
//! decision (the cost evaluation should be a rounding error next to).
//!
//! Run with `cargo bench -p silkgate --bench policy`. Before measuring, it prints, for
//! every policy and request, how many rules matched and how many heap allocations one
//! evaluation made (counted by the global allocator below), since the design promises an
//! evaluation without allocation on the hot path.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ed25519_dalek::SigningKey;
use prost::Message;
use silkgate::proto::{self, DeploymentRequest};
use silkgate_core::decision::{self, Signer};
use silkgate_core::policy::{Outcome, Policy};
use silkgate_core::request::Request;
use silkgate_core::time::{Day, UnixTime};

/// Counts heap allocations; one relaxed atomic add per allocation, too cheap to skew the
/// allocation-heavy benches (compile, sign) noticeably and absent from a clean evaluation.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn policy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy")
}

/// The day every evaluation is done as of.
fn day() -> Day {
    Day::from_ymd(2026, 11, 28)
}

fn enums<E: Copy + Into<i32>>(items: &[E]) -> Vec<i32> {
    items.iter().map(|&e| e.into()).collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A common deployment: a permissioned Fabric supply-chain app with some personal data,
/// a Chinese operator with its filing, national cryptography, no token.
fn typical() -> DeploymentRequest {
    use proto::*;
    DeploymentRequest {
        request_id: "bench-typical-0001".into(),
        deployment_kind: DeploymentKind::PermissionedApp.into(),
        protocol: Some(Protocol {
            name: "hyperledger-fabric".into(),
            variant: ProtocolVariant::Permissioned.into(),
            version: "2.5.10".into(),
        }),
        permission_model: PermissionModel::Permissioned.into(),
        consensus: "raft".into(),
        node_count: 4,
        node_regions: strings(&["CN", "SG"]),
        consensus_node_regions: strings(&["CN"]),
        served_jurisdictions: strings(&["CN", "SG", "DE"]),
        gas_payment: GasPayment::None.into(),
        crypto: Some(CryptoSuite {
            signature: enums(&[SignatureAlgorithm::Sm2]),
            hash: enums(&[HashAlgorithm::Sm3]),
            cipher: enums(&[CipherAlgorithm::Sm4]),
        }),
        key_custody: KeyCustody::Hosted.into(),
        contract_languages: strings(&["go"]),
        vm: "chaincode".into(),
        data: Some(DataHandling {
            subject_jurisdictions: strings(&["CN", "SG"]),
            annual_subjects: 50_000,
            storage_regions: strings(&["CN", "SG"]),
            erasure_mechanism: ErasureMechanism::OffchainPointer.into(),
            dpia_done: true,
            transfer_mechanisms: enums(&[TransferMechanism::CacStandardContract]),
            ..Default::default()
        }),
        moderation: Some(Moderation { takedown_capable: true, log_retention_days: 365 }),
        end_user_identity: EndUserIdentity::RealName.into(),
        operator: Some(Operator {
            entity_country: "CN".into(),
            cac_filing_id: "Beijing-11010000000001".into(),
            ..Default::default()
        }),
        labels: [("app".to_string(), "supply-chain".to_string())].into(),
        ..Default::default()
    }
}

/// A deployment built to trip as many rules as possible everywhere, with long lists so
/// that quantifiers and data-set lookups scan far.
fn worst_case() -> DeploymentRequest {
    use proto::*;
    let regions = strings(&[
        "RU", "IR", "KP", "CU", "SY", "BH", "ID", "IN", "KZ", "AE", "US", "CN", "SG", "BR", "NG", "VN", "TR", "PK",
        "DE", "FR",
    ]);
    let mut addresses: Vec<String> = (0..30).map(|i| format!("0x{:040x}", 0xdead_beef_u64 * (i + 1))).collect();
    addresses.push("0x098B716B8Aaf21512996dC57EB0615e2383E2f96".into());
    addresses.push("0x8589427373D6D84E98730D7795D8f6f8731FDA16".into());
    let services = enums(&[
        Service::Exchange,
        Service::Custody,
        Service::Transfer,
        Service::Payment,
        Service::Issuance,
        Service::Staking,
        Service::Lending,
        Service::RwaTokenization,
        Service::Nft,
        Service::Mixing,
        Service::PublicOffering,
        Service::Dealing,
        Service::StablecoinIssuance,
        Service::HostedWallet,
    ]);
    DeploymentRequest {
        request_id: "bench-worst-0001".into(),
        deployment_kind: DeploymentKind::Mining.into(),
        protocol: Some(Protocol {
            name: "ethereum".into(),
            variant: ProtocolVariant::Upstream.into(),
            version: "1.14.0".into(),
        }),
        permission_model: PermissionModel::Permissionless.into(),
        consensus: "pow".into(),
        node_count: 500,
        node_regions: regions.clone(),
        consensus_node_regions: regions.clone(),
        served_jurisdictions: regions.clone(),
        serves_retail: true,
        token: Some(Token {
            kind: TokenKind::Stablecoin.into(),
            transferable: true,
            tradable: true,
            peg_currency: "CNY".into(),
            validator_reward: true,
            backing: StablecoinBacking::Algorithmic.into(),
        }),
        gas_payment: GasPayment::NativeToken.into(),
        crypto: Some(CryptoSuite {
            signature: enums(&[SignatureAlgorithm::Secp256k1]),
            hash: enums(&[HashAlgorithm::Keccak256]),
            cipher: vec![],
        }),
        key_custody: KeyCustody::SelfUpload.into(),
        contract_languages: strings(&["solidity", "vyper", "yul"]),
        vm: "evm".into(),
        services,
        privacy_features: enums(&[PrivacyFeature::Mixer, PrivacyFeature::ShieldedTx, PrivacyFeature::StealthAddress]),
        addresses,
        data: Some(DataHandling {
            pd_on_chain: true,
            sensitive_pd: true,
            subject_jurisdictions: regions.clone(),
            annual_subjects: 5_000_000,
            storage_regions: regions,
            erasure_mechanism: ErasureMechanism::None.into(),
            dpia_done: false,
            transfer_mechanisms: enums(&[TransferMechanism::CacStandardContract]),
            ..Default::default()
        }),
        moderation: Some(Moderation { takedown_capable: false, log_retention_days: 7 }),
        end_user_identity: EndUserIdentity::Anonymous.into(),
        operator: Some(Operator { entity_country: "RU".into(), is_ciio: true, ..Default::default() }),
        assets: strings(&["BTC", "ETH", "USDT", "XMR", "ZEC", "DASH", "SOL", "XRP"]),
        ..Default::default()
    }
}

fn requests() -> [(&'static str, DeploymentRequest); 2] {
    [("typical", typical()), ("worst", worst_case())]
}

fn convert(p: DeploymentRequest) -> Request {
    match Request::try_from(p) {
        Ok(r) => r,
        Err(e) => panic!("bench request is invalid: {e}"),
    }
}

fn policies() -> Vec<std::sync::Arc<Policy>> {
    match silkgate::loader::load_dir(&policy_dir(), None) {
        Ok(set) => set.policies.into_values().collect(),
        Err(e) => panic!("shipped policies do not load:\n{e}"),
    }
}

/// Prints matched rules and allocations per evaluation, once, before the timings.
fn report_allocations(policies: &[std::sync::Arc<Policy>]) {
    for (name, p) in requests() {
        let req = convert(p);
        for policy in policies {
            let before = ALLOCATIONS.load(Ordering::Relaxed);
            let outcome = black_box(policy.evaluate(black_box(&req), day()));
            let allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;
            eprintln!(
                "evaluate {}/{name}: {} of {} rules matched, verdict {}, {allocs} allocations",
                policy.jurisdiction,
                outcome.matched.len(),
                policy.rules.len(),
                outcome.verdict.as_str()
            );
        }
    }
}

fn compile(c: &mut Criterion) {
    let files = match silkgate::loader::policy_files(&policy_dir()) {
        Ok(f) => f,
        Err(e) => panic!("policy directory: {e}"),
    };
    let mut group = c.benchmark_group("compile");
    for path in &files {
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        group.bench_with_input(BenchmarkId::from_parameter(&name), path, |b, path| {
            b.iter(|| silkgate::loader::load_file(black_box(path)).expect("shipped policy compiles"))
        });
    }
    group.finish();
}

fn evaluate(c: &mut Criterion) {
    let policies = policies();
    report_allocations(&policies);
    let mut group = c.benchmark_group("evaluate");
    for (name, p) in requests() {
        let req = convert(p);
        for policy in &policies {
            group.bench_with_input(BenchmarkId::new(name, &policy.jurisdiction), &req, |b, req| {
                b.iter(|| policy.evaluate(black_box(req), day()))
            });
        }
    }
    group.finish();
}

/// The per-request work around evaluation: decoding and converting the request, and
/// building and signing the decision.
fn request_and_decision(c: &mut Criterion) {
    let policies = policies();
    let Some(cn) = policies.iter().find(|p| p.jurisdiction == "CN") else {
        panic!("no CN policy among the shipped policies");
    };
    let signer = Signer::new(SigningKey::from_bytes(&[9; 32]));
    let mut group = c.benchmark_group("request");
    for (name, p) in requests() {
        let bytes = p.encode_to_vec();
        group.bench_with_input(BenchmarkId::new("decode_convert", name), &bytes, |b, bytes| {
            b.iter(|| convert(DeploymentRequest::decode(black_box(bytes.as_slice())).expect("valid encoding")))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("decision");
    for (name, p) in requests() {
        let req = convert(p);
        let outcome: Outcome = cn.evaluate(&req, day());
        let ctx = decision::Context {
            decision_id: "019abcde-f012-7345-8678-9abcdef01234".into(),
            node_id: "node-bench",
            request_sha256: [7; 32],
            request_id: &req.request_id,
            issued_at: UnixTime::from_secs(1_795_867_200),
            validity_secs: 86_400,
        };
        let payload = decision::build(cn, &outcome, &ctx, signer.key_id()).encode_to_vec().len();
        eprintln!("decision CN/{name}: {} rules matched, payload {payload} bytes", outcome.matched.len());
        group.bench_function(BenchmarkId::new("build", format!("CN/{name}")), |b| {
            b.iter(|| decision::build(cn, black_box(&outcome), &ctx, signer.key_id()))
        });
        group.bench_function(BenchmarkId::new("build_sign", format!("CN/{name}")), |b| {
            b.iter(|| decision::sign(&decision::build(cn, black_box(&outcome), &ctx, signer.key_id()), &signer))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(30);
    targets = compile, evaluate, request_and_decision
}
criterion_main!(benches);
