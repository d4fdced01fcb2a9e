//! The request pool: a few hundred varied, valid deployment requests across jurisdictions.
//!
//! Each request is drawn from an archetype of what a hosting portal submits (permissioned
//! Fabric and FISCO BCOS apps, OPB chains, upstream Ethereum with a tradable token,
//! exchanges, personal-data apps storing in various regions, mixers with sanctioned-looking
//! addresses, stablecoins, mining, bridges, tokenized real-world assets, retail staking),
//! with details varied by a seeded generator so a run is reproducible. Jurisdictions are
//! assigned round-robin so every policy sees the whole mix. Every request is checked with
//! silkgate's own conversion before it is sent, so the load carries no invalid requests.

use anyhow::bail;
use silkgate::proto::{
    self, CipherAlgorithm, DataHandling, DeploymentKind, DeploymentRequest, EndUserIdentity, ErasureMechanism,
    EvaluateRequest, GasPayment, HashAlgorithm, KeyCustody, Licence, Moderation, Operator, PermissionModel,
    PrivacyFeature, Protocol, ProtocolVariant, Service, SignatureAlgorithm, StablecoinBacking, Token, TokenKind,
    TransferMechanism,
};

/// Builds `size` requests, assigned round-robin to `jurisdictions`.
pub fn build(size: usize, seed: u64, jurisdictions: &[String]) -> anyhow::Result<Vec<EvaluateRequest>> {
    let mut rng = Rng(seed);
    let mut pool = Vec::with_capacity(size);
    for i in 0..size {
        let id = format!("loadgen-{seed}-{i:05}");
        let archetype = ARCHETYPES[rng.below(ARCHETYPES.len())];
        let request = archetype(&mut rng, id);
        if let Err(e) = silkgate_core::request::Request::try_from(request.clone()) {
            bail!("pool request {i} is invalid (a loadgen bug): {e}");
        }
        let jurisdiction = jurisdictions[i % jurisdictions.len()].clone();
        pool.push(EvaluateRequest { jurisdiction, request: Some(request), explain: false });
    }
    Ok(pool)
}

/// SplitMix64: tiny, seeded, good enough to vary requests (not for anything secret).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// One to `max` distinct items.
    fn some<T: Copy + PartialEq>(&mut self, items: &[T], max: usize) -> Vec<T> {
        let n = 1 + self.below(max.min(items.len()));
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let x = self.pick(items);
            if !out.contains(&x) {
                out.push(x);
            }
        }
        out
    }

    fn regions(&mut self, from: &[&str], max: usize) -> Vec<String> {
        self.some(from, max).into_iter().map(String::from).collect()
    }

    fn hex_address(&mut self) -> String {
        format!("0x{:016x}{:016x}{:08x}", self.next(), self.next(), self.next() as u32)
    }
}

type Archetype = fn(&mut Rng, String) -> DeploymentRequest;

/// Weighted by repetition: permissioned apps and personal-data cases are the common traffic.
const ARCHETYPES: &[Archetype] = &[
    fabric_app,
    fabric_app,
    fabric_app,
    fisco_app,
    fisco_app,
    opb_chain,
    opb_chain,
    ethereum_upstream,
    ethereum_upstream,
    exchange,
    exchange,
    personal_data_app,
    personal_data_app,
    personal_data_app,
    mixer,
    stablecoin,
    mining,
    bridge,
    rwa,
    retail_staking,
];

const ALL_REGIONS: &[&str] = &[
    "CN", "HK", "SG", "DE", "FR", "NL", "IE", "US", "GB", "JP", "KR", "IN", "AE", "BH", "BR", "RU", "ID", "KZ", "CH",
    "AU",
];
const EEA: &[&str] = &["DE", "FR", "NL", "IE", "IT", "ES", "PL", "SE", "AT", "NO"];
const ASIA: &[&str] = &["CN", "HK", "SG", "JP", "KR", "IN", "ID"];
const ASSETS: &[&str] = &["BTC", "ETH", "USDT", "USDC", "SOL", "XRP", "BNB", "ADA", "XMR", "ZEC"];
/// Public addresses that OFAC's SDN list names or named (Tornado Cash contracts, delisted
/// in 2025; Lazarus Group addresses), in mixed checksum casing as clients send them.
const LISTED_ADDRESSES: &[&str] = &[
    "0x8589427373D6D84E98730D7795D8f6f8731FDA16",
    "0xd90e2f925DA726b50C4Ed8D0Fb90Ad053324F31b",
    "0x098B716B8Aaf21512996dC57EB0615e2383E2f96",
    "0xa0e1c89Ef1a489c9C7dE96311eD5Ce5D32c20E4B",
    "149w62rY42aZBox8fGcmqNsXUzSStKeq8C",
];
/// Licences operators hold across the jurisdictions the node serves: (regulator, kind).
const LICENCES: &[(&str, &str)] = &[
    ("MAS", "dpt_major_payment_institution"),
    ("MAS", "dpt_standard_payment_institution"),
    ("BaFin", "mica_casp"),
    ("AMF", "mica_casp"),
    ("CBB", "crypto_asset_service"),
    ("AFSA", "digital_asset_trading_facility"),
    ("OJK", "digital_financial_asset_trader"),
    ("VARA", "vasp"),
    ("SFC", "vatp"),
];
const REGISTRATIONS: &[&str] =
    &["fincen_msb", "fiu_ind", "eu_national_vasp", "cbr_experimental_legal_regime", "bank_of_russia_is_operator"];

fn id_and_kind(id: String, kind: DeploymentKind, permission: PermissionModel, protocol: Protocol) -> DeploymentRequest {
    DeploymentRequest {
        request_id: id,
        deployment_kind: kind as i32,
        permission_model: permission as i32,
        protocol: Some(protocol),
        ..Default::default()
    }
}

fn protocol(name: &str, variant: ProtocolVariant, version: &str) -> Protocol {
    Protocol { name: name.into(), variant: variant as i32, version: version.into() }
}

fn crypto(r: &mut Rng, national: bool) -> proto::CryptoSuite {
    if national && r.chance(85) {
        proto::CryptoSuite {
            signature: vec![SignatureAlgorithm::Sm2 as i32],
            hash: vec![HashAlgorithm::Sm3 as i32],
            cipher: vec![CipherAlgorithm::Sm4 as i32],
        }
    } else {
        let sig = r.pick(&[SignatureAlgorithm::Secp256k1, SignatureAlgorithm::Secp256r1, SignatureAlgorithm::Ed25519]);
        proto::CryptoSuite {
            signature: vec![sig as i32],
            hash: vec![r.pick(&[HashAlgorithm::Sha256, HashAlgorithm::Keccak256]) as i32],
            cipher: vec![r.pick(&[CipherAlgorithm::AesGcm, CipherAlgorithm::Chacha20Poly1305]) as i32],
        }
    }
}

fn china_operator(r: &mut Rng) -> Operator {
    Operator {
        entity_country: "CN".into(),
        is_ciio: r.chance(15),
        cac_filing_id: if r.chance(85) {
            format!("京网信备{:011}号", r.next() % 100_000_000_000)
        } else {
            String::new()
        },
        ..Default::default()
    }
}

fn moderation(r: &mut Rng) -> Moderation {
    Moderation { takedown_capable: r.chance(90), log_retention_days: r.pick(&[90, 180, 180, 365, 730]) }
}

fn licence(regulator: &str, kind: &str, r: &mut Rng) -> Licence {
    Licence {
        regulator: regulator.into(),
        kind: kind.into(),
        id: format!("{regulator}-{:06}", r.next() % 1_000_000),
        ..Default::default()
    }
}

fn personal_data(r: &mut Rng, regions: &[&str]) -> DataHandling {
    DataHandling {
        pd_on_chain: r.chance(40),
        sensitive_pd: r.chance(15),
        subject_jurisdictions: r.regions(regions, 3),
        annual_subjects: r.pick(&[2_000, 50_000, 250_000, 2_000_000]),
        storage_regions: r.regions(regions, 2),
        erasure_mechanism: r.pick(&[
            ErasureMechanism::None,
            ErasureMechanism::OffchainPointer,
            ErasureMechanism::OffchainPointer,
            ErasureMechanism::CryptoShred,
        ]) as i32,
        dpia_done: r.chance(70),
        transfer_mechanisms: r
            .some(
                &[
                    TransferMechanism::Adequacy,
                    TransferMechanism::Scc,
                    TransferMechanism::Bcr,
                    TransferMechanism::Consent,
                    TransferMechanism::CacAssessment,
                    TransferMechanism::CacStandardContract,
                ],
                2,
            )
            .into_iter()
            .map(|t| t as i32)
            .collect(),
        ..Default::default()
    }
}

fn fabric_app(r: &mut Rng, id: String) -> DeploymentRequest {
    let version = r.pick(&["2.5.9", "2.5.10", "3.0.0"]);
    let mut d = id_and_kind(
        id,
        DeploymentKind::PermissionedApp,
        PermissionModel::Permissioned,
        protocol("hyperledger-fabric", ProtocolVariant::Permissioned, version),
    );
    d.consensus = "raft".into();
    d.node_count = r.pick(&[3, 4, 5, 7]);
    d.node_regions = r.regions(&["CN", "CN", "HK", "SG"], 2);
    d.consensus_node_regions = d.node_regions.clone();
    d.served_jurisdictions = r.regions(&["CN", "HK", "SG"], 2);
    d.gas_payment = GasPayment::None as i32;
    d.crypto = Some(crypto(r, true));
    d.key_custody = r.pick(&[KeyCustody::Hosted, KeyCustody::SelfUpload]) as i32;
    d.contract_languages = vec!["go".into()];
    d.vm = "chaincode".into();
    d.end_user_identity = r.pick(&[EndUserIdentity::RealName, EndUserIdentity::RealName, EndUserIdentity::Kyc]) as i32;
    d.moderation = Some(moderation(r));
    d.operator = Some(china_operator(r));
    if r.chance(40) {
        d.data = Some(personal_data(r, &["CN", "CN", "HK", "SG"]));
    }
    d.labels.insert("app".into(), r.pick(&["supply-chain", "e-invoice", "judicial-evidence", "traceability"]).into());
    d
}

fn fisco_app(r: &mut Rng, id: String) -> DeploymentRequest {
    let name = r.pick(&["fisco-bcos", "chainmaker", "xuperchain"]);
    let mut d = id_and_kind(
        id,
        DeploymentKind::PermissionedApp,
        PermissionModel::Permissioned,
        protocol(name, ProtocolVariant::Permissioned, "3.6.0"),
    );
    d.consensus = r.pick(&["pbft", "raft", "tbft"]).into();
    d.node_count = r.pick(&[4, 7, 10]);
    d.node_regions = vec!["CN".into()];
    d.consensus_node_regions = vec!["CN".into()];
    d.served_jurisdictions = vec!["CN".into()];
    d.gas_payment = GasPayment::None as i32;
    d.crypto = Some(crypto(r, true));
    d.key_custody = KeyCustody::Hosted as i32;
    d.contract_languages = vec![r.pick(&["solidity", "go", "rust"]).into()];
    d.vm = r.pick(&["evm", "wasm"]).into();
    d.end_user_identity = EndUserIdentity::RealName as i32;
    d.moderation = Some(moderation(r));
    d.operator = Some(china_operator(r));
    if r.chance(60) {
        d.data = Some(personal_data(r, &["CN"]));
    }
    d
}

fn opb_chain(r: &mut Rng, id: String) -> DeploymentRequest {
    let name = r.pick(&["ethereum", "polygon", "cosmos", "polkadot", "nervos"]);
    let mut d = id_and_kind(
        id,
        DeploymentKind::OpbChain,
        PermissionModel::OpenPermissioned,
        protocol(name, ProtocolVariant::Opb, "1.0.0"),
    );
    d.consensus = r.pick(&["pbft", "tendermint", "raft"]).into();
    d.node_count = r.pick(&[4, 8, 16]);
    d.node_regions = r.regions(ALL_REGIONS, 3);
    d.consensus_node_regions = d.node_regions.clone();
    d.served_jurisdictions = r.regions(ALL_REGIONS, 4);
    d.token = Some(Token { kind: TokenKind::GasCredit as i32, ..Default::default() });
    d.gas_payment = GasPayment::FiatPrepaidCredit as i32;
    let national = r.chance(50);
    d.crypto = Some(crypto(r, national));
    d.key_custody = KeyCustody::Hosted as i32;
    d.contract_languages = vec!["solidity".into()];
    d.vm = "evm".into();
    d.end_user_identity = r.pick(&[EndUserIdentity::RealName, EndUserIdentity::Kyc]) as i32;
    d.moderation = Some(moderation(r));
    d.operator = Some(if r.chance(50) {
        china_operator(r)
    } else {
        Operator { entity_country: r.pick(&["SG", "HK", "DE"]).into(), ..Default::default() }
    });
    d
}

fn ethereum_upstream(r: &mut Rng, id: String) -> DeploymentRequest {
    let kind = r.pick(&[DeploymentKind::FullNode, DeploymentKind::Validator, DeploymentKind::FullNode]);
    let mut d = id_and_kind(
        id,
        kind,
        PermissionModel::Permissionless,
        protocol(r.pick(&["ethereum", "ethereum", "solana", "avalanche"]), ProtocolVariant::Upstream, "1.14.0"),
    );
    d.consensus = "pos".into();
    d.node_count = 1;
    d.node_regions = r.regions(ALL_REGIONS, 1);
    d.token = Some(Token {
        kind: TokenKind::Payment as i32,
        transferable: true,
        tradable: true,
        validator_reward: kind == DeploymentKind::Validator,
        ..Default::default()
    });
    d.gas_payment = GasPayment::NativeToken as i32;
    d.crypto = Some(crypto(r, false));
    d.key_custody = r.pick(&[KeyCustody::SelfUpload, KeyCustody::Hosted]) as i32;
    d.contract_languages = vec!["solidity".into(), "vyper".into()];
    d.vm = "evm".into();
    d.end_user_identity = EndUserIdentity::Anonymous as i32;
    d.assets = vec!["ETH".into()];
    if kind == DeploymentKind::Validator {
        d.services = vec![Service::Staking as i32];
    }
    d.operator = Some(Operator { entity_country: r.pick(ALL_REGIONS).into(), ..Default::default() });
    d
}

fn exchange(r: &mut Rng, id: String) -> DeploymentRequest {
    let mut d = id_and_kind(
        id,
        DeploymentKind::PermissionedApp,
        PermissionModel::Permissioned,
        protocol(r.pick(&["ethereum", "hyperledger-besu", "quorum"]), ProtocolVariant::Permissioned, "24.1.0"),
    );
    d.consensus = r.pick(&["qbft", "raft", "ibft"]).into();
    d.node_count = r.pick(&[3, 4, 6]);
    d.node_regions = r.regions(&["SG", "HK", "DE", "IE", "US", "JP", "AE"], 3);
    d.served_jurisdictions = r.regions(ALL_REGIONS, 5);
    d.serves_retail = r.chance(60);
    d.services = r
        .some(&[Service::Exchange, Service::Custody, Service::HostedWallet, Service::Transfer, Service::Dealing], 4)
        .into_iter()
        .map(|s| s as i32)
        .collect();
    d.assets = r.some(ASSETS, 5).into_iter().map(String::from).collect();
    d.gas_payment = GasPayment::None as i32;
    d.crypto = Some(crypto(r, false));
    d.key_custody = KeyCustody::Hosted as i32;
    d.vm = "evm".into();
    d.end_user_identity = EndUserIdentity::Kyc as i32;
    d.addresses = (0..1 + r.below(4)).map(|_| r.hex_address()).collect();
    let country = r.pick(&["SG", "SG", "DE", "IE", "HK", "US", "AE", "BH", "IN", "ID", "KZ"]);
    let licences = if r.chance(70) {
        r.some(LICENCES, 3).into_iter().map(|(reg, kind)| licence(reg, kind, r)).collect()
    } else {
        Vec::new()
    };
    let registrations =
        if r.chance(60) { r.some(REGISTRATIONS, 2).into_iter().map(String::from).collect() } else { Vec::new() };
    d.operator = Some(Operator { entity_country: country.into(), licences, registrations, ..Default::default() });
    if r.chance(50) {
        d.labels.insert("custody_segregation".into(), r.pick(&["statutory_trust", "omnibus"]).into());
    }
    if r.chance(30) {
        // Serves everyone: no served_jurisdictions, geoblocking attested (or not) by label.
        d.served_jurisdictions.clear();
        d.labels.insert("geoblocking".into(), r.pick(&["ofac_embargoed", "none"]).into());
    }
    if r.chance(50) {
        d.data = Some(personal_data(r, ALL_REGIONS));
    }
    d
}

fn personal_data_app(r: &mut Rng, id: String) -> DeploymentRequest {
    let regions: &[&str] = match r.below(3) {
        0 => EEA,
        1 => ASIA,
        _ => ALL_REGIONS,
    };
    let mut d = id_and_kind(
        id,
        DeploymentKind::PermissionedApp,
        PermissionModel::Permissioned,
        protocol(r.pick(&["hyperledger-fabric", "corda", "quorum"]), ProtocolVariant::Permissioned, "2.5.0"),
    );
    d.consensus = "raft".into();
    d.node_count = r.pick(&[3, 5]);
    d.node_regions = r.regions(regions, 3);
    d.consensus_node_regions = d.node_regions.clone();
    d.served_jurisdictions = r.regions(regions, 3);
    d.serves_retail = r.chance(50);
    d.gas_payment = GasPayment::None as i32;
    d.crypto = Some(crypto(r, regions == ASIA));
    d.key_custody = KeyCustody::Hosted as i32;
    d.contract_languages = vec!["go".into()];
    d.vm = "chaincode".into();
    d.end_user_identity = r.pick(&[EndUserIdentity::Kyc, EndUserIdentity::RealName]) as i32;
    d.data = Some(personal_data(r, regions));
    d.moderation = Some(moderation(r));
    d.operator = Some(Operator {
        entity_country: r.pick(regions).into(),
        is_ciio: r.chance(10),
        cac_filing_id: if r.chance(50) { "沪网信备31010000000001号".into() } else { String::new() },
        ..Default::default()
    });
    d.labels.insert("sector".into(), r.pick(&["health", "education", "logistics", "hr"]).into());
    d
}

fn mixer(r: &mut Rng, id: String) -> DeploymentRequest {
    let mut d = id_and_kind(
        id,
        DeploymentKind::PermissionedApp,
        PermissionModel::Permissionless,
        protocol("ethereum", ProtocolVariant::Upstream, "1.14.0"),
    );
    d.consensus = "pos".into();
    d.node_regions = r.regions(ALL_REGIONS, 2);
    d.served_jurisdictions = r.regions(&["RU", "AE", "US", "DE", "CN", "IR", "KP", "KZ"], 3);
    d.services = vec![Service::Mixing as i32, Service::Transfer as i32];
    d.privacy_features = vec![PrivacyFeature::Mixer as i32, PrivacyFeature::StealthAddress as i32];
    d.token = Some(Token { kind: TokenKind::Privacy as i32, transferable: true, tradable: true, ..Default::default() });
    d.gas_payment = GasPayment::NativeToken as i32;
    d.vm = "evm".into();
    d.end_user_identity = EndUserIdentity::Anonymous as i32;
    d.addresses = vec![r.pick(LISTED_ADDRESSES).into(), r.hex_address()];
    d.assets = vec!["ETH".into(), r.pick(&["XMR", "ZEC", "DASH"]).into()];
    d.operator = Some(Operator { entity_country: r.pick(&["RU", "AE", "SC"]).into(), ..Default::default() });
    d
}

fn stablecoin(r: &mut Rng, id: String) -> DeploymentRequest {
    let mut d = id_and_kind(
        id,
        DeploymentKind::PermissionedApp,
        PermissionModel::Permissioned,
        protocol(r.pick(&["ethereum", "hyperledger-besu"]), ProtocolVariant::Permissioned, "24.1.0"),
    );
    d.node_regions = r.regions(&["SG", "HK", "CN", "DE", "US"], 2);
    d.served_jurisdictions = r.regions(ALL_REGIONS, 4);
    d.serves_retail = r.chance(70);
    d.token = Some(Token {
        kind: TokenKind::Stablecoin as i32,
        transferable: true,
        tradable: r.chance(80),
        peg_currency: r.pick(&["USD", "EUR", "SGD", "CNY", "HKD"]).into(),
        backing: r.pick(&[StablecoinBacking::SingleFiat, StablecoinBacking::FiatBasket, StablecoinBacking::Algorithmic])
            as i32,
        ..Default::default()
    });
    d.services = vec![Service::StablecoinIssuance as i32, Service::Transfer as i32, Service::Payment as i32];
    d.gas_payment = GasPayment::FiatPrepaidCredit as i32;
    d.end_user_identity = EndUserIdentity::Kyc as i32;
    let mut licences = Vec::new();
    if r.chance(40) {
        licences.push(licence("MAS", "single_currency_stablecoin_issuer", r));
    }
    d.operator = Some(Operator { entity_country: r.pick(&["SG", "HK", "DE"]).into(), licences, ..Default::default() });
    d
}

fn mining(r: &mut Rng, id: String) -> DeploymentRequest {
    let mut d = id_and_kind(
        id,
        DeploymentKind::Mining,
        PermissionModel::Permissionless,
        protocol(r.pick(&["bitcoin", "litecoin", "kaspa"]), ProtocolVariant::Upstream, "27.0"),
    );
    d.consensus = "pow".into();
    d.node_count = r.pick(&[1, 10, 100]);
    d.node_regions = r.regions(&["CN", "US", "KZ", "RU", "CA"], 2);
    let country = r.pick(&["KZ", "RU", "US", "CN"]);
    let mut operator = Operator { entity_country: country.into(), ..Default::default() };
    if r.chance(50) {
        operator.licences.push(licence("AIFC", "digital_mining", r));
    }
    if country == "RU" && r.chance(50) {
        operator.registrations.push("ru_mining_register".into());
    }
    d.operator = Some(operator);
    d.token = Some(Token {
        kind: TokenKind::Payment as i32,
        transferable: true,
        tradable: true,
        validator_reward: true,
        ..Default::default()
    });
    d.gas_payment = GasPayment::NativeToken as i32;
    d.end_user_identity = EndUserIdentity::Anonymous as i32;
    d.assets = vec!["BTC".into()];
    d
}

fn bridge(r: &mut Rng, id: String) -> DeploymentRequest {
    let mut d = id_and_kind(
        id,
        DeploymentKind::Bridge,
        r.pick(&[PermissionModel::Permissioned, PermissionModel::Permissionless]),
        protocol(r.pick(&["wormhole", "axelar", "layerzero"]), ProtocolVariant::Upstream, "2.0.0"),
    );
    d.node_regions = r.regions(ALL_REGIONS, 3);
    d.services = vec![Service::Transfer as i32, Service::Custody as i32];
    d.addresses = (0..2).map(|_| r.hex_address()).collect();
    if r.chance(20) {
        d.addresses.push(r.pick(LISTED_ADDRESSES).into());
    }
    d.assets = r.some(ASSETS, 3).into_iter().map(String::from).collect();
    d.gas_payment = GasPayment::NativeToken as i32;
    d.key_custody = KeyCustody::SelfUpload as i32;
    d.end_user_identity = EndUserIdentity::Anonymous as i32;
    d.operator = Some(Operator { entity_country: r.pick(ALL_REGIONS).into(), ..Default::default() });
    d
}

fn rwa(r: &mut Rng, id: String) -> DeploymentRequest {
    let mut d = id_and_kind(
        id,
        DeploymentKind::PermissionedApp,
        PermissionModel::Permissioned,
        protocol(r.pick(&["hyperledger-fabric", "ethereum", "chainmaker"]), ProtocolVariant::Permissioned, "2.5.0"),
    );
    d.node_regions = r.regions(&["CN", "HK", "SG"], 2);
    d.served_jurisdictions = r.regions(&["CN", "HK", "SG"], 2);
    d.services = vec![Service::RwaTokenization as i32, Service::Issuance as i32];
    d.token = Some(Token { kind: TokenKind::Security as i32, transferable: true, ..Default::default() });
    d.gas_payment = GasPayment::FiatPrepaidCredit as i32;
    d.crypto = Some(crypto(r, true));
    d.end_user_identity = EndUserIdentity::RealName as i32;
    d.moderation = Some(moderation(r));
    let mut operator = china_operator(r);
    if r.chance(50) {
        operator.licences.push(licence(r.pick(&["CSRC", "PBOC", "SFC"]), "rwa_tokenization", r));
    }
    d.operator = Some(operator);
    d
}

fn retail_staking(r: &mut Rng, id: String) -> DeploymentRequest {
    let mut d = id_and_kind(
        id,
        DeploymentKind::Validator,
        PermissionModel::Permissionless,
        protocol(r.pick(&["ethereum", "cosmos", "polkadot"]), ProtocolVariant::Upstream, "1.0.0"),
    );
    d.consensus = "pos".into();
    d.node_regions = r.regions(&["SG", "JP", "DE", "US"], 2);
    d.served_jurisdictions = r.regions(&["SG", "JP", "DE", "US"], 2);
    d.serves_retail = true;
    d.services = vec![Service::Staking as i32, Service::Lending as i32, Service::Custody as i32];
    d.token = Some(Token {
        kind: TokenKind::Utility as i32,
        transferable: true,
        tradable: true,
        validator_reward: true,
        ..Default::default()
    });
    d.gas_payment = GasPayment::NativeToken as i32;
    d.end_user_identity = EndUserIdentity::Kyc as i32;
    d.assets = vec![r.pick(&["ETH", "ATOM", "DOT"]).into()];
    d.operator = Some(Operator {
        entity_country: "SG".into(),
        licences: if r.chance(50) { vec![licence("MAS", "dpt_standard_payment_institution", r)] } else { Vec::new() },
        ..Default::default()
    });
    d
}
