//! The decision log over HTTP as C2SP tlog-tiles: the node's HTTP listener in this
//! process, read by a small tile reader written here from the tlog-tiles text alone
//! (paths, widths, hashes), not with `silkgate_verify::tiles`; hostile paths; a
//! property test of the path parser; and `silkgate log mirror` against it.

mod common;

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use silkgate::http::Http;
use silkgate::log::Entry;
use silkgate::service::NodeState;
use silkgate_core::checkpoint::{Checkpoint, vkey};
use silkgate_core::decision::Signer;

/// A node with a log in `dir`, signing with `seed`, as node `id`.
fn node(dir: &Path, id: &str, seed: u8) -> Arc<NodeState> {
    let policies = silkgate::loader::load_dir(&common::shipped_policy(), Some(&["CN".to_string()])).unwrap();
    let signer = Arc::new(Signer::new(ed25519_dalek::SigningKey::from_bytes(&[seed; 32])));
    let log = silkgate::log::open(dir, id, signer.clone()).unwrap();
    Arc::new(NodeState::new(id.into(), policies, signer, silkgate_core::time::UnixTime::from_secs(0), 60, Some(log)))
}

/// Entry `i` of a test log of the node signing with `seed`: a signed decision (so
/// `log verify` audits a mirror of it), lengths varying, some over 255 bytes.
fn entry(seed: u8, tag: u8, i: u64) -> Vec<u8> {
    let signer = Signer::new(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]));
    let decision = silkgate_core::proto::Decision {
        decision_id: format!("0190a1b2-c3d4-7e5f-8a{tag:02x}-{i:012x}"),
        key_id: signer.key_id().to_string(),
        request_id: "r".repeat((i * 37 % 700) as usize),
        ..Default::default()
    };
    prost::Message::encode_to_vec(&silkgate_core::decision::sign(&decision, &signer))
}

async fn append(state: &NodeState, seed: u8, tag: u8, from: u64, to: u64) {
    let log = state.log.as_ref().unwrap();
    let entries = (from..to).map(|i| Entry { data: entry(seed, tag, i).into(), id: None }).collect();
    log.append(entries).await.unwrap();
    // Store a checkpoint over them (the tiles read path serves only what one covers).
    let l = log.clone();
    tokio::task::spawn_blocking(move || l.checkpoint().unwrap()).await.unwrap();
}

async fn serve(state: Arc<NodeState>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // With the console mounted, as `silkgate serve` does: tile paths must still route.
    let console = Some(silkgate::console::router(state.clone()));
    tokio::spawn(silkgate::http::serve(listener, Arc::new(Http { node: state, witness: None, console })));
    format!("http://{addr}")
}

struct Got {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

async fn get(url: &str) -> Got {
    let a = silkgate::http::client::request(hyper::Method::GET, url, None, 1 << 24).await.unwrap();
    Got { status: a.status, content_type: a.content_type, body: a.body.to_vec() }
}

/// Raw HTTP/1.1 GET, to see every header and send paths a URL parser would refuse.
async fn raw_get(base: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

// ---- a tile reader from the C2SP tlog-tiles text only ---------------------------------

/// "<N> ... MUST be a non-negative integer encoded into zero-padded 3-digit path
/// elements. All but the last path element MUST begin with an x."
fn spec_index(n: u64) -> String {
    let s = n.to_string();
    let padded = format!("{}{s}", "0".repeat((3 - s.len() % 3) % 3));
    let groups: Vec<&str> = padded.as_bytes().chunks(3).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let last = groups.len() - 1;
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| if i < last { format!("x{g}") } else { g.to_string() })
        .collect::<Vec<_>>()
        .join("/")
}

fn spec_path(level: &str, n: u64, width: u64) -> String {
    let w = if width == 256 { String::new() } else { format!(".p/{width}") };
    format!("tile/{level}/{}{w}", spec_index(n))
}

/// RFC 6962 MTH over leaf hashes.
fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = n.next_power_of_two() / 2;
            let mut h = Sha256::new();
            h.update([1]);
            h.update(mth(&leaves[..k]));
            h.update(mth(&leaves[k..]));
            h.finalize().into()
        }
    }
}

fn leaf(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0]);
    h.update(data);
    h.finalize().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_serve_the_log_as_the_spec_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = node(dir.path(), "tiles", 3);
    let size = 600u64;
    append(&state, 3, 1, 0, size).await;
    let base = serve(state.clone()).await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();

    // The checkpoint: a signed note of the log, short-lived.
    let (status, head) = raw_get(&base, "/checkpoint").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/plain; charset=utf-8"), "{head}");
    assert!(head.contains("cache-control: public, max-age=1"), "{head}");
    let cp = get(&format!("{base}/checkpoint")).await;
    let note = String::from_utf8(cp.body).unwrap();
    let origin = note.lines().next().unwrap().to_string();
    let cp = Checkpoint::open(&note, &origin, &key).unwrap();
    assert_eq!(cp.size, size);

    // Level 0: 2 full tiles and one of width 600 - 512 = 88; entry bundles the same.
    let mut leaves = Vec::new();
    for (n, width) in [(0u64, 256u64), (1, 256), (2, 88)] {
        let t = get(&format!("{base}/{}", spec_path("0", n, width))).await;
        assert_eq!((t.status, t.content_type.as_str()), (200, "application/octet-stream"));
        assert_eq!(t.body.len() as u64, width * 32);
        let b = get(&format!("{base}/{}", spec_path("entries", n, width))).await;
        assert_eq!(b.status, 200);
        // "sequences of big-endian uint16 length-prefixed log entries"
        let mut at = 0;
        for i in 0..width {
            let len = u16::from_be_bytes([b.body[at], b.body[at + 1]]) as usize;
            let data = &b.body[at + 2..at + 2 + len];
            assert_eq!(data, entry(3, 1, n * 256 + i).as_slice());
            // "Each entry in a bundle hashes to the corresponding entry in the
            // corresponding level 0 Merkle Tree tile."
            let h = leaf(data);
            assert_eq!(&t.body[i as usize * 32..][..32], &h);
            leaves.push(h);
            at += 2 + len;
        }
        assert_eq!(at, b.body.len());
    }
    assert_eq!(mth(&leaves), cp.root);
    // Level 1: a partial tile of width floor(600 / 256) mod 256 = 2, each hash the MTH
    // of a full level-0 tile.
    let t1 = get(&format!("{base}/{}", spec_path("1", 0, 2))).await;
    assert_eq!(t1.status, 200);
    assert_eq!(&t1.body[..32], &mth(&leaves[..256]));
    assert_eq!(&t1.body[32..], &mth(&leaves[256..512]));
    // Full and partial tiles are immutable.
    let (_, head) = raw_get(&base, &format!("/{}", spec_path("0", 2, 88))).await;
    assert!(head.contains("cache-control: public, max-age=31536000, immutable"), "{head}");
    // A narrower partial tile of a size the log had is a prefix; wider ones are not there.
    let narrow = get(&format!("{base}/{}", spec_path("0", 2, 5))).await;
    assert_eq!(narrow.body, leaves[512..517].concat());
    for missing in [
        spec_path("0", 2, 89),
        spec_path("0", 2, 256),
        spec_path("0", 3, 1),
        spec_path("1", 0, 3),
        spec_path("2", 0, 1),
        spec_path("entries", 3, 1),
    ] {
        assert_eq!(get(&format!("{base}/{missing}")).await.status, 404, "{missing}");
    }
    // Not covered by a stored checkpoint yet: not served.
    state.log.as_ref().unwrap().append(vec![Entry { data: entry(3, 1, 600).into(), id: None }]).await.unwrap();
    assert_eq!(get(&format!("{base}/{}", spec_path("0", 2, 89))).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = node(dir.path(), "hostile", 4);
    append(&state, 4, 2, 0, 3).await;
    let base = serve(state).await;
    for (path, want) in [
        ("/tile/0/000.p/0", 400),
        ("/tile/64/000", 400),
        ("/tile/00/000.p/3", 400),
        ("/tile/0/x000/000.p/3", 400),
        ("/tile/0/%30%30%30.p/3", 400),
        ("/tile/0/../0/000.p/3", 400),
        ("/tile/8/data/000", 400),
        ("/tile/0/x018/x446/x744/x073/x709/x551/616", 400),
        ("/tile/0/x018/x446/x744/x073/x709/x551/615", 404),
        ("/tile/7/x018/x446/x744/x073/x709/x551/615.p/255", 404),
        ("/tile/0/000.p/3", 200),
        ("/tile/entries/000.p/3", 200),
        ("/nothing", 404),
        ("/tile", 404),
    ] {
        let (status, _) = raw_get(&base, path).await;
        assert_eq!(status, want, "{path}");
    }
    let long = format!("/tile/0/{}000", "x001/".repeat(2000));
    assert_eq!(raw_get(&base, &long).await.0, 400);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Any path: the parser never panics, and what it accepts prints back to itself.
    #[test]
    fn parse_accepts_only_canonical_paths(path in "(tile/)?(entries|[0-9x./p]{0,4})?/?[0-9x./p]{0,40}") {
        if let Ok(t) = silkgate_verify::tiles::parse(&path) {
            prop_assert_eq!(t.path(), path);
        }
    }

    /// Every tile's path parses back to it, and is the spec's spelling.
    #[test]
    fn every_tile_path_round_trips(level in proptest::option::of(0u8..64), index in any::<u64>(), width in 1u16..=256) {
        let t = silkgate_verify::tiles::Tile { level, index, width };
        prop_assert_eq!(silkgate_verify::tiles::parse(&t.path()), Ok(t));
        let l = level.map_or("entries".to_string(), |l| l.to_string());
        prop_assert_eq!(t.path(), spec_path(&l, index, u64::from(width)));
    }

    /// Arbitrary bytes as a path.
    #[test]
    fn arbitrary_text_never_panics(path in "\\PC{0,80}") {
        let _ = silkgate_verify::tiles::parse(&path);
    }
}

fn run(args: &[&str]) -> (i32, String) {
    let out = common::bin().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_fetches_incrementally_and_refuses_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    let state = node(&dir.path().join("node"), "mirrored", 5);
    append(&state, 5, 3, 0, 300).await;
    let base = serve(state.clone()).await;
    let origin = state.log.as_ref().unwrap().origin().to_string();
    let vk = vkey(&origin, &ed25519_dalek::SigningKey::from_bytes(&[5; 32]).verifying_key());
    let mirror = dir.path().join("mirror");
    let m = mirror.to_str().unwrap().to_string();

    let (b, v, m2) = (base.clone(), vk.clone(), m.clone());
    let (code, out) =
        tokio::task::spawn_blocking(move || run(&["log", "mirror", &b, &m2, "--public-key", &v])).await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("300 entries (300 new)"), "{out}");
    let (v, m2) = (vk.clone(), m.clone());
    let (code, out) =
        tokio::task::spawn_blocking(move || run(&["log", "verify", &m2, "--public-key", &v])).await.unwrap();
    assert_eq!(code, 0, "{out}");

    append(&state, 5, 3, 300, 700).await;
    let (b, v, m2) = (base.clone(), vk.clone(), m.clone());
    let (code, out) =
        tokio::task::spawn_blocking(move || run(&["log", "mirror", &b, &m2, "--public-key", &v])).await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("700 entries (400 new)"), "{out}");

    // Another history under the same origin and key, longer: the mirror notices.
    let fork = node(&dir.path().join("fork"), "mirrored", 5);
    append(&fork, 5, 9, 0, 900).await;
    let fork_base = serve(fork).await;
    let before = std::fs::read(mirror.join("entries")).unwrap();
    let (v, m2) = (vk.clone(), m.clone());
    let (code, out) = tokio::task::spawn_blocking(move || run(&["log", "mirror", &fork_base, &m2, "--public-key", &v]))
        .await
        .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("do not have the checkpoint's root"), "{out}");
    assert_eq!(std::fs::read(mirror.join("entries")).unwrap(), before, "nothing written");
}

/// The console is served under /console/ on the same listener, with its strict headers,
/// and leaves the other routes alone.
#[tokio::test]
async fn the_console_shares_the_http_listener() {
    let dir = tempfile::tempdir().unwrap();
    let state = node(dir.path(), "console-node", 7);
    let base = serve(state).await;
    let page = get(&format!("{base}/console/")).await;
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"), "{}", page.content_type);
    let (status, head) = raw_get(&base, "/console/api/node").await;
    assert_eq!(status, 200, "{head}");
    assert!(head.to_ascii_lowercase().contains("content-security-policy: default-src 'none'"), "{head}");
    assert_eq!(get(&format!("{base}/healthz")).await.status, 200);
    assert_eq!(get(&format!("{base}/consolex")).await.status, 404);
}
