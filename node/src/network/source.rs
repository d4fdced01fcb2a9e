//! The roster's TOML source form (README "The network roster"), read into the `Roster`
//! message that governance keys sign. The TOML text is never signed: the protobuf
//! encoding is, so every signer signs the same bytes whatever the file's layout.

use std::collections::BTreeMap;

use serde::Deserialize;
use silkgate_core::time::Day;
use silkgate_verify::decision::key_id;
use silkgate_verify::proto;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RosterToml {
    network_id: String,
    version: u64,
    /// `YYYY-MM-DD`: the roster's date (issued_at is its midnight UTC).
    date: String,
    threshold: u32,
    /// Hex of each raw 32-byte Ed25519 governance public key.
    governance_keys: Vec<String>,
    #[serde(default)]
    witness_quorum: u32,
    /// Region -> jurisdiction.
    regions: BTreeMap<String, String>,
    #[serde(rename = "node")]
    nodes: Vec<NodeToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeToml {
    id: String,
    jurisdictions: Vec<String>,
    #[serde(default)]
    regions: Vec<String>,
    grpc_endpoint: String,
    #[serde(default)]
    http_endpoint: String,
    keys: Vec<String>,
    log_verifier_key: String,
}

fn key(field: &str, hex_key: &str) -> Result<proto::RosterKey, String> {
    let bytes = hex::decode(hex_key.trim()).map_err(|_| format!("{field}: `{hex_key}` is not hex"))?;
    let raw: [u8; 32] = bytes.try_into().map_err(|_| format!("{field}: an Ed25519 key is 64 hex characters"))?;
    let v = ed25519_dalek::VerifyingKey::from_bytes(&raw).map_err(|_| format!("{field}: not an Ed25519 public key"))?;
    Ok(proto::RosterKey { public_key: raw.to_vec(), key_id: key_id(&v) })
}

/// Reads roster TOML into a validated `Roster`. Errors name `line:column` for TOML
/// errors and the field path otherwise.
pub fn parse(text: &str) -> Result<proto::Roster, String> {
    let t: RosterToml = toml::from_str(text).map_err(|e| {
        let at = e.span().map(|s| line_col(text, s.start)).unwrap_or_default();
        format!("{at}{}", e.message())
    })?;
    let day = Day::parse(&t.date).ok_or_else(|| format!("date: `{}` is not a YYYY-MM-DD date", t.date))?;
    let governance_keys = t
        .governance_keys
        .iter()
        .enumerate()
        .map(|(i, k)| key(&format!("governance_keys[{i}]"), k))
        .collect::<Result<_, _>>()?;
    let mut nodes = Vec::with_capacity(t.nodes.len());
    for (i, n) in t.nodes.into_iter().enumerate() {
        let keys = n
            .keys
            .iter()
            .enumerate()
            .map(|(k, h)| key(&format!("node[{i}].keys[{k}]"), h))
            .collect::<Result<_, _>>()?;
        let (origin, _) = silkgate_verify::checkpoint::parse_vkey(&n.log_verifier_key)
            .map_err(|e| format!("node[{i}].log_verifier_key: {e}"))?;
        nodes.push(proto::RosterNode {
            node_id: n.id,
            jurisdictions: n.jurisdictions,
            regions: n.regions,
            grpc_endpoint: n.grpc_endpoint,
            http_endpoint: n.http_endpoint,
            keys,
            log_origin: origin,
            log_verifier_key: n.log_verifier_key,
        });
    }
    let roster = proto::Roster {
        network_id: t.network_id,
        version: t.version,
        issued_at: Some(prost_types::Timestamp { seconds: i64::from(day.0) * 86_400, nanos: 0 }),
        threshold: t.threshold,
        governance_keys,
        regions: t
            .regions
            .into_iter()
            .map(|(region, jurisdiction)| proto::RegionJurisdiction { region, jurisdiction })
            .collect(),
        nodes,
        witness_quorum: t.witness_quorum,
    };
    silkgate_verify::roster::validate(&roster).map_err(|e| e.to_string().replacen("nodes[", "node[", 1))?;
    Ok(roster)
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(before.len(), |n| before.len() - n - 1) + 1;
    format!("{line}:{col}: ")
}
