//! The browser console in real Chromium (Debian's `chromium`, headless): a node runs in
//! this process, the console's router is served on 127.0.0.1, a few decisions are made,
//! and each page must load with no console message, the charts must draw (pixels of a
//! screenshot), and the Verify page must accept a valid decision and bundle and reject
//! one-byte-tampered copies at the right step.
//!
//! Chromium is required: the test fails when it is missing (CI installs it, `.ci/run`).
//! `SILKGATE_BLESS=1` also writes the screenshots to `docs/console/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use prost::Message;
use silkgate::proto::{self, compliance_client::ComplianceClient, decision_log_client::DecisionLogClient};

/// The test policy with a rule that allows, so the rule chart has two colours.
const POLICY: &str = r#"[policy]
id = "xx"
jurisdiction = "XX"
name = "Test land"
version = "3"
default = "allow"

[[rule]]
id = "xx.mining"
effect = "deny"
when = 'deployment_kind == "mining"'
message = "no mining"
citation = "XX Act s. 1"

[[rule]]
id = "xx.fabric"
effect = "warn"
when = 'protocol.name == "hyperledger-fabric"'
message = "fabric noted"
citation = "XX Act s. 2"
"#;

/// Debian's `chromium`, installed with apt when it is missing (as the README's test
/// command promises on a fresh machine); the test fails, never skips, without it.
fn chromium() -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let find = || {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|d| d.join("chromium"))
            .find(|p| p.is_file())
    };
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = find() {
        return found;
    }
    let apt = |args: &[&str]| {
        std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt(&["install", "-y", "-q", "chromium"]) {
        assert!(apt(&["update", "-q"]), "apt-get update failed");
        apt(&["install", "-y", "-q", "chromium"]);
    }
    find().expect(
        "chromium is not installed and `apt-get install -y chromium` failed (the console tests need a real browser)",
    )
}

struct Browser {
    bin: PathBuf,
    profile: tempfile::TempDir,
}

/// What Chromium printed for one page: the DOM after scripts ran, and its log.
struct Page {
    dom: String,
    log: String,
}

impl Browser {
    fn new() -> Browser {
        Browser { bin: chromium(), profile: tempfile::tempdir().unwrap() }
    }

    fn run(&self, url: &str, extra: &[&str]) -> Page {
        let mut child = Command::new(&self.bin)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"])
            .args(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--window-size=1280,1000"])
            .arg(format!("--user-data-dir={}", self.profile.path().display()))
            .args(extra)
            .arg(url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read both pipes on threads so a full pipe cannot stall the browser.
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || std::io::read_to_string(&mut out).unwrap_or_default());
        let err = std::thread::spawn(move || std::io::read_to_string(&mut err).unwrap_or_default());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("chromium did not finish {url} within 120 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Page { dom: out.join().unwrap(), log: err.join().unwrap() }
    }

    /// Loads `url` and checks it finished its scripts with no error and no console message.
    fn page(&self, url: &str) -> String {
        let p = self.run(url, &["--dump-dom"]);
        let console: Vec<&str> = p.log.lines().filter(|l| l.contains(":CONSOLE")).collect();
        assert!(console.is_empty(), "{url}: console messages:\n{}", console.join("\n"));
        assert!(p.dom.contains("data-state=\"ready\""), "{url}: the page did not finish loading:\n{}", p.dom);
        assert!(!p.dom.contains("data-errors="), "{url}: the page reported errors:\n{}", p.dom);
        p.dom
    }

    fn screenshot(&self, url: &str, out: &Path) -> Png {
        let p = self.run(url, &[&format!("--screenshot={}", out.display())]);
        assert!(out.is_file(), "{url}: no screenshot; chromium said:\n{}", p.log);
        Png::decode(&std::fs::read(out).unwrap())
    }
}

/// The outcome of each Verify step, in order, and the overall result.
fn steps(dom: &str) -> (String, Vec<(String, String)>) {
    let result = attr(tag(dom, "id=\"result\""), "data-result");
    let mut out = Vec::new();
    for part in dom.split("<li data-step=\"").skip(1) {
        let id = part.split('"').next().unwrap().to_string();
        let head = &part[..part.find('>').unwrap()];
        out.push((id, attr(head, "data-result")));
    }
    (result, out)
}

fn tag<'a>(dom: &'a str, marker: &str) -> &'a str {
    let at = dom.find(marker).unwrap_or_else(|| panic!("no element with {marker} in:\n{dom}"));
    let start = dom[..at].rfind('<').unwrap();
    &dom[start..at + dom[at..].find('>').unwrap()]
}

fn attr(tag: &str, name: &str) -> String {
    let key = format!("{name}=\"");
    tag.split(&key).nth(1).and_then(|r| r.split('"').next()).unwrap_or("").to_string()
}

/// The Verify page's verdict on `evidence`, with `request` bytes if given.
fn verify(b: &Browser, base: &str, evidence: &[u8], request: Option<&[u8]>) -> (String, Vec<(String, String)>) {
    let mut url = format!("{base}/console/verify#evidence={}", URL_SAFE_NO_PAD.encode(evidence));
    if let Some(r) = request {
        url += &format!("&request={}", URL_SAFE_NO_PAD.encode(r));
    }
    steps(&b.page(&url))
}

fn failed_at(outcome: &(String, Vec<(String, String)>)) -> Option<&str> {
    outcome.1.iter().find(|(_, r)| r == "fail").map(|(s, _)| s.as_str())
}

fn dsse_json(signed: &[u8]) -> String {
    let env = proto::SignedDecision::decode(signed).unwrap();
    serde_json::json!({
        "payloadType": env.payload_type,
        "payload": STANDARD.encode(&env.payload),
        "signatures": env.signatures.iter().map(|s| serde_json::json!({"keyid": s.keyid, "sig": STANDARD.encode(&s.sig)})).collect::<Vec<_>>(),
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_pages_charts_and_verification_in_chromium() {
    let browser = Browser::new();
    let dir = tempfile::tempdir().unwrap();
    let (grpc, state) = common::start_in_process(dir.path(), POLICY, "console-test", Default::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let options = silkgate::console::Options { try_enabled: true };
    tokio::spawn(silkgate::console::serve(listener, silkgate::console::router_with(state.clone(), options)));

    // Decisions: three allowed (one with a warning rule), two denied.
    let mut client = common::connect(&format!("http://{grpc}")).await;
    let mut answers = Vec::new();
    for (i, kind) in ["permissioned_app", "permissioned_app", "mining", "mining", "full_node"].iter().enumerate() {
        let mut req = common::request("XX", &format!("console-{i}"));
        let r = req.request.as_mut().unwrap();
        r.deployment_kind = match *kind {
            "mining" => proto::DeploymentKind::Mining,
            "full_node" => proto::DeploymentKind::FullNode,
            _ => proto::DeploymentKind::PermissionedApp,
        } as i32;
        if *kind == "full_node" {
            r.protocol = Some(proto::Protocol { name: "ethereum".into(), ..Default::default() });
        }
        let request_bytes = r.encode_to_vec();
        let a = ComplianceClient::evaluate(&mut client, req).await.unwrap().into_inner();
        answers.push((a, request_bytes));
    }
    let (first, request_bytes) = &answers[0];
    let signed = first.decision.clone().unwrap().encode_to_vec();

    // The evidence bundle, as `silkgate log prove` writes it, checked by the Rust verifier.
    let mut log = DecisionLogClient::connect(format!("http://{grpc}")).await.unwrap();
    let p = log
        .get_inclusion_proof(proto::GetInclusionProofRequest {
            target: Some(proto::get_inclusion_proof_request::Target::DecisionId(first.decision_id.clone())),
            tree_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let bundle = silkgate_verify::bundle::Bundle {
        entry: p.entry,
        log_index: p.index,
        tree_size: p.tree_size,
        inclusion_proof: p.hashes.iter().map(|h| h.as_slice().try_into().unwrap()).collect(),
        checkpoint: p.checkpoint.unwrap().note,
    };
    assert!(bundle.tree_size >= 2, "a proof with at least one hash");
    bundle.verify(&state.signer.verifying_key(), None).unwrap();
    let bundle_json = bundle.to_json();

    // A rejected reload, as the watcher records it: the Node page shows where.
    {
        let mut status = state.reload.lock().unwrap();
        status.errors = 1;
        status.last_error = "xx.toml:9:8: error: unknown attribute `deployment_knd`".into();
    }

    // Every page loads with no console message and no error.
    let node = browser.page(&format!("{base}/console/"));
    assert!(node.contains("id=\"last-reload-error\">xx.toml:9:8: error: unknown attribute `deployment_knd`"), "{node}");
    assert!(
        node.contains("console-test")
            && node.contains("Test land")
            && node.contains(&state.signer.key_id().to_string())
    );
    let decisions = browser.page(&format!("{base}/console/decisions"));
    for (a, _) in &answers {
        assert!(decisions.contains(&a.decision_id), "the latest decisions list {}", a.decision_id);
    }
    assert!(decisions.contains("5 decisions: 3 allow, 2 deny"), "totals:\n{decisions}");
    browser.page(&format!("{base}/console/decisions?window=day"));
    let try_page = browser.page(&format!("{base}/console/try"));
    assert!(try_page.contains("value=\"XX\""), "the Try page offers the node's jurisdictions");

    // The charts draw: the verdict colours appear in the screenshot, in each chart area.
    let shots = tempfile::tempdir().unwrap();
    let png = browser.screenshot(&format!("{base}/console/decisions"), &shots.path().join("decisions.png"));
    // Solid 5x5 blocks only: bars, not the coloured verdict text in the table.
    let allow = png.blocks(|p| near(p, [0x2e, 0x7d, 0x32]));
    let deny = png.blocks(|p| near(p, [0xc6, 0x28, 0x28]));
    assert!(allow > 500 && deny > 500, "chart pixels: {allow} allow, {deny} deny");

    // Verify: valid evidence passes every step.
    let json = dsse_json(&signed);
    let ok = verify(&browser, &base, json.as_bytes(), Some(request_bytes));
    assert_eq!(ok.0, "valid", "{ok:?}");
    let ids: Vec<&str> = ok.1.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(ids, ["read", "payload-type", "signature", "key-id", "decode", "request-digest", "validity", "verdict"]);
    assert!(ok.1.iter().all(|(_, r)| r == "pass"), "{ok:?}");
    let binary = verify(&browser, &base, &signed, None);
    assert_eq!(binary.0, "valid", "{binary:?}");
    assert!(binary.1.contains(&("request-digest".into(), "skip".into())));
    let b = verify(&browser, &base, bundle_json.as_bytes(), None);
    assert_eq!(b.0, "valid", "{b:?}");
    assert!(b.1.contains(&("inclusion".into(), "pass".into())) && b.1.contains(&("checkpoint".into(), "pass".into())));

    // One byte changed: each copy fails at the step that covers that byte.
    let mut env = proto::SignedDecision::decode(signed.as_slice()).unwrap();
    env.payload[10] ^= 1;
    assert_eq!(
        failed_at(&verify(&browser, &base, dsse_json(&env.encode_to_vec()).as_bytes(), None)),
        Some("signature")
    );
    let mut wrong_request = request_bytes.clone();
    wrong_request[3] ^= 1;
    assert_eq!(failed_at(&verify(&browser, &base, json.as_bytes(), Some(&wrong_request))), Some("request-digest"));
    let mut t = bundle.clone();
    t.inclusion_proof[0][0] ^= 1;
    assert_eq!(failed_at(&verify(&browser, &base, t.to_json().as_bytes(), None)), Some("inclusion"));
    let mut t = bundle.clone();
    t.entry[12] ^= 1;
    let entry_tampered = verify(&browser, &base, t.to_json().as_bytes(), None);
    assert_ne!(entry_tampered.0, "valid");
    let mut t = bundle.clone();
    t.checkpoint = tamper_note_signature(&t.checkpoint);
    assert_eq!(failed_at(&verify(&browser, &base, t.to_json().as_bytes(), None)), Some("checkpoint"));

    // Trusting only pinned keys, with none pinned, nothing verifies.
    let url = format!("{base}/console/verify#evidence={}&pinned-only", URL_SAFE_NO_PAD.encode(json.as_bytes()));
    assert_eq!(failed_at(&steps(&browser.page(&url))), Some("signature"));

    // Screenshots of each page, for the README.
    if std::env::var_os("SILKGATE_BLESS").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/console");
        std::fs::create_dir_all(&docs).unwrap();
        let verify_url = format!("{base}/console/verify#evidence={}", URL_SAFE_NO_PAD.encode(bundle_json.as_bytes()));
        for (name, url) in [
            ("node", format!("{base}/console/")),
            ("decisions", format!("{base}/console/decisions")),
            ("verify", verify_url),
            ("try", format!("{base}/console/try")),
        ] {
            browser.screenshot(&url, &docs.join(format!("{name}.png")));
        }
    }
}

/// The note with one byte of its signature changed.
fn tamper_note_signature(note: &str) -> String {
    let (body, sigs) = note.rsplit_once("\n\n").unwrap();
    let line = sigs.lines().next().unwrap();
    let (name, b64) = line.rsplit_once(' ').unwrap();
    let mut sig = STANDARD.decode(b64).unwrap();
    sig[20] ^= 1;
    format!("{body}\n\n{name} {}\n", STANDARD.encode(sig))
}

fn near(p: [u8; 3], c: [u8; 3]) -> bool {
    p.iter().zip(c).all(|(&a, b)| a.abs_diff(b) <= 12)
}

/// An 8-bit RGB or RGBA PNG, decoded (all Chromium writes for screenshots).
struct Png {
    width: usize,
    height: usize,
    rgb: Vec<[u8; 3]>,
}

impl Png {
    fn decode(bytes: &[u8]) -> Png {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
        let (mut i, mut idat, mut ihdr) = (8, Vec::new(), None);
        while i + 8 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap()) as usize;
            let kind = &bytes[i + 4..i + 8];
            let data = &bytes[i + 8..i + 8 + len];
            match kind {
                b"IHDR" => ihdr = Some(data.to_vec()),
                b"IDAT" => idat.extend_from_slice(data),
                _ => {}
            }
            i += 12 + len;
        }
        let h = ihdr.expect("no IHDR");
        let width = u32::from_be_bytes(h[0..4].try_into().unwrap()) as usize;
        let height = u32::from_be_bytes(h[4..8].try_into().unwrap()) as usize;
        assert_eq!(h[8], 8, "bit depth");
        let channels = match h[9] {
            2 => 3,
            6 => 4,
            other => panic!("PNG colour type {other}"),
        };
        assert_eq!(h[12], 0, "interlaced PNG");
        let raw = miniz_oxide::inflate::decompress_to_vec_zlib(&idat).expect("PNG data does not inflate");
        let stride = width * channels;
        let mut prev = vec![0u8; stride];
        let mut rgb = Vec::with_capacity(width * height);
        for y in 0..height {
            let line = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
            let mut cur = line[1..].to_vec();
            for x in 0..stride {
                let a = if x >= channels { cur[x - channels] } else { 0 };
                let b = prev[x];
                let c = if x >= channels { prev[x - channels] } else { 0 };
                let add = match line[0] {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => ((a as u16 + b as u16) / 2) as u8,
                    4 => paeth(a, b, c),
                    f => panic!("PNG filter {f}"),
                };
                cur[x] = cur[x].wrapping_add(add);
            }
            rgb.extend(cur.chunks(channels).map(|p| [p[0], p[1], p[2]]));
            prev = cur;
        }
        Png { width, height, rgb }
    }

    /// Pixels that start a 5x5 block of pixels all matching `f`.
    fn blocks(&self, f: impl Fn([u8; 3]) -> bool) -> usize {
        assert_eq!(self.rgb.len(), self.width * self.height);
        let hit: Vec<bool> = self.rgb.iter().map(|&p| f(p)).collect();
        let at = |x: usize, y: usize| hit[y * self.width + x];
        let mut n = 0;
        for y in 0..self.height.saturating_sub(4) {
            for x in 0..self.width.saturating_sub(4) {
                if (0..5).all(|dy| (0..5).all(|dx| at(x + dx, y + dy))) {
                    n += 1;
                }
            }
        }
        n
    }
}

fn paeth(a: u8, b: u8, c: u8) -> u8 {
    let p = a as i16 + b as i16 - c as i16;
    let (pa, pb, pc) = ((p - a as i16).abs(), (p - b as i16).abs(), (p - c as i16).abs());
    if pa <= pb && pa <= pc {
        a
    } else if pb <= pc {
        b
    } else {
        c
    }
}

/// One HTTP/1.1 exchange: the status line and headers (lower-case names), and the body.
async fn http(addr: &str, method: &str, path: &str, body: &[u8]) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn strict_headers_and_the_try_api() {
    let dir = tempfile::tempdir().unwrap();
    let (_, state) = common::start_in_process(dir.path(), POLICY, "console-api", Default::default()).await;
    let serve = |try_enabled| {
        let state = state.clone();
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let router = silkgate::console::router_with(state, silkgate::console::Options { try_enabled });
            tokio::spawn(silkgate::console::serve(listener, router));
            addr
        }
    };
    let on = serve(true).await;
    let off = serve(false).await;

    // Every answer, asset, API, error or redirect, carries the strict headers.
    for (method, path, status) in [
        ("GET", "/console/", "200"),
        ("GET", "/console/assets/checks.js", "200"),
        ("GET", "/console/api/node", "200"),
        ("GET", "/console/api/activity?window=week", "400"),
        ("GET", "/console/nothing", "404"),
        ("GET", "/console/api/try", "405"),
        ("GET", "/console", "301"),
    ] {
        let (head, _) = http(&on, method, path, b"").await;
        assert!(head.starts_with(&format!("http/1.1 {status}")), "{path}: {head}");
        assert!(head.contains(&format!("content-security-policy: {}", silkgate::console::CSP)), "{path}: {head}");
        assert!(head.contains("x-content-type-options: nosniff"), "{path}: {head}");
        assert!(head.contains("referrer-policy: no-referrer"), "{path}: {head}");
        assert!(head.contains("cache-control: no-"), "{path}: {head}");
    }
    let (head, _) = http(&on, "GET", "/console/assets/verify.js", b"").await;
    assert!(head.contains("content-type: text/javascript"), "{head}");

    // Try: off unless enabled; explains rule by rule; bad input named; bounded.
    let mining = serde_json::json!({"jurisdiction": "xx", "format": "toml", "text": "request_id = \"t1\"\ndeployment_kind = \"mining\"\npermission_model = \"permissioned\"\nnode_regions = [\"CN\"]\n[protocol]\nname = \"bitcoin\"\n"});
    let (head, body) = http(&off, "POST", "/console/api/try", mining.to_string().as_bytes()).await;
    assert!(head.starts_with("http/1.1 403"), "{head}");
    assert!(body.contains("--console-try"), "{body}");
    let (head, body) = http(&on, "POST", "/console/api/try", mining.to_string().as_bytes()).await;
    assert!(head.starts_with("http/1.1 200"), "{head} {body}");
    let a: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(a["verdict"], "deny");
    assert_eq!(a["matched"][0]["id"], "xx.mining");
    assert_eq!(a["explanation"].as_array().unwrap().len(), 2, "{a}");
    let bad = serde_json::json!({"jurisdiction": "XX", "format": "toml", "text": "request_id = \"t2\"\ndeployment_kind = \"minnig\"\n"});
    let (head, body) = http(&on, "POST", "/console/api/try", bad.to_string().as_bytes()).await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    assert!(body.contains("deployment_kind"), "the error names the field: {body}");
    let big = serde_json::json!({"jurisdiction": "XX", "format": "toml", "text": "#".repeat(silkgate::console::MAX_TRY_BODY)});
    let (head, _) = http(&on, "POST", "/console/api/try", big.to_string().as_bytes()).await;
    assert!(head.starts_with("http/1.1 413"), "{head}");
    // Try neither signs, logs nor counts.
    assert_eq!(state.log.as_ref().unwrap().size(), 0);
    assert!(state.activity.recent(10).is_empty());
}
