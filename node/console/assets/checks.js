// Offline checks of Silkgate evidence with WebCrypto (Ed25519, SHA-256), as README
// "Formats for verifiers" specifies them. No network: everything here works on bytes
// the user gave the page and keys the user trusts.
//
// A check is a list of steps; each step is {id, title, run(ctx)} and returns
// {result: 'pass' | 'fail' | 'warn' | 'skip', detail}, or throws (a fail). The first
// failing step ends the check. New evidence kinds (deployment certificates) and new
// steps (checkpoint cosignatures) are added by inserting steps into these lists: see
// `KINDS`, `DECISION_STEPS` and `BUNDLE_STEPS`.

import { decode, SignedDecision, Decision, VERDICTS, EFFECTS } from './protobuf.js';

export const DECISION_PAYLOAD_TYPE = 'application/vnd.silkgate.decision.v1+protobuf';
export const BUNDLE_FORMAT = 'silkgate-evidence-v1';
/** Largest evidence accepted, in bytes (a decision is a few KiB, a bundle a few more). */
export const MAX_EVIDENCE = 1 << 20;
/** Most inclusion proof hashes (a tree of 2^64 leaves needs 64). */
const MAX_PROOF = 64;

const enc = new TextEncoder();

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function unhex(s) {
  if (!/^([0-9a-fA-F]{2})*$/.test(s)) throw new Error('not hex');
  return Uint8Array.from(s.match(/../g) || [], (h) => parseInt(h, 16));
}

/** Strict standard base64 (padded), as the node writes it. */
export function unbase64(s, what) {
  if (typeof s !== 'string' || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) {
    throw new Error(`${what}: not padded standard base64`);
  }
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

export function base64(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) {
    out.set(p, i);
    i += p.length;
  }
  return out;
}

function equal(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

async function ed25519(raw, sig, msg) {
  const key = await crypto.subtle.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']);
  return crypto.subtle.verify({ name: 'Ed25519' }, key, sig, msg);
}

/** DSSE v1 pre-authentication encoding. */
export function pae(type, payload) {
  const t = enc.encode(type);
  return concat(enc.encode(`DSSEv1 ${t.length} `), t, enc.encode(` ${payload.length} `), payload);
}

/** The C2SP signed-note key hash: SHA-256(name "\n" 0x01 key)[0..4]. */
export async function noteKeyHash(name, raw) {
  return (await sha256(concat(enc.encode(name + '\n'), Uint8Array.of(1), raw))).subarray(0, 4);
}

/**
 * A trusted key from text: a verifier key string `origin+hash+base64(0x01 || key)` or
 * 64 hex digits of a raw Ed25519 public key. Returns {keyId, raw, origin}.
 */
export async function parseKey(text) {
  const s = text.trim();
  let raw;
  let origin = null;
  if (/^[0-9a-fA-F]{64}$/.test(s)) {
    raw = unhex(s);
  } else {
    // The base64 part may itself hold '+': split at the first two only.
    const a = s.indexOf('+');
    const b = a < 0 ? -1 : s.indexOf('+', a + 1);
    if (a <= 0 || b < 0) throw new Error('a key is a verifier key string (origin+hash+base64) or 64 hex digits');
    const [name, hash, b64] = [s.slice(0, a), s.slice(a + 1, b), s.slice(b + 1)];
    const k = unbase64(b64, 'verifier key');
    if (k.length !== 33 || k[0] !== 1) throw new Error('verifier key: not 0x01 followed by a 32-byte Ed25519 key');
    raw = k.subarray(1);
    if (!/^[0-9a-f]{8}$/.test(hash) || hash !== hex(await noteKeyHash(name, raw))) {
      throw new Error(`verifier key: key hash ${hash} does not match the name and key`);
    }
    origin = name;
  }
  return { keyId: hex(await sha256(raw)), raw, origin };
}

/** RFC 9162 section 2.1.3.2: the root an inclusion proof leads to, or null. */
export async function inclusionRoot(index, size, leafHash, proof) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (fn > sn) return null;
  let r = leafHash;
  for (const p of proof) {
    if (sn === 0n) return null;
    if ((fn & 1n) === 1n || fn === sn) {
      r = await sha256(concat(Uint8Array.of(1), p, r));
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await sha256(concat(Uint8Array.of(1), r, p));
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n ? r : null;
}

/** A C2SP signed note: its body bytes, the checkpoint fields and its signature lines. */
export function parseNote(text) {
  const at = text.lastIndexOf('\n\n');
  if (at < 0) throw new Error('not a signed note: no empty line before the signatures');
  const body = text.slice(0, at + 1);
  const lines = body.split('\n');
  if (lines.length < 4) throw new Error('checkpoint body: needs origin, size and root lines');
  const [origin, sizeText, rootText] = lines;
  if (!/^(0|[1-9][0-9]{0,19})$/.test(sizeText)) throw new Error(`checkpoint size: \`${sizeText}\` is not a decimal number`);
  const root = unbase64(rootText, 'checkpoint root');
  if (root.length !== 32) throw new Error('checkpoint root: not 32 bytes');
  const sigs = [];
  const rest = text.slice(at + 2);
  if (!rest.endsWith('\n')) throw new Error('signature lines: must end with a newline');
  for (const line of rest.slice(0, -1).split('\n')) {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    if (!m) throw new Error(`signature line \`${line.slice(0, 80)}\`: not "— name base64"`);
    const bytes = unbase64(m[2], 'note signature');
    if (bytes.length < 5) throw new Error('note signature: too short');
    sigs.push({ name: m[1], keyHash: bytes.subarray(0, 4), sig: bytes.subarray(4) });
  }
  return { body: enc.encode(body), origin, size: BigInt(sizeText), root, sigs };
}

// ---- Reading the input ---------------------------------------------------------

/** Works out what `bytes` are: {kind, ...} ready for the steps, or throws. */
export function classify(bytes) {
  if (bytes.length === 0) throw new Error('nothing to verify');
  if (bytes.length > MAX_EVIDENCE) throw new Error(`evidence: larger than ${MAX_EVIDENCE} bytes`);
  const text = new TextDecoder().decode(bytes).trim();
  if (text.startsWith('{')) {
    let j;
    try {
      j = JSON.parse(text);
    } catch (e) {
      throw new Error(`JSON: ${e.message}`);
    }
    for (const k of KINDS) {
      if (k.json && k.json(j)) return k.read(j);
    }
    throw new Error('JSON: neither a DSSE decision envelope (payloadType) nor an evidence bundle (format)');
  }
  return { kind: 'decision', envelope: decode(bytes, SignedDecision, 'SignedDecision'), form: 'protobuf SignedDecision' };
}

function fromDsseJson(j) {
  if (!Array.isArray(j.signatures)) throw new Error('signatures: missing');
  return {
    kind: 'decision',
    form: 'DSSE JSON',
    envelope: {
      payload_type: String(j.payloadType),
      payload: unbase64(j.payload, 'payload'),
      signatures: j.signatures.map((s, i) => ({ keyid: String(s.keyid), sig: unbase64(s.sig, `signatures[${i}].sig`) })),
    },
  };
}

function fromBundle(j) {
  if (j.format !== BUNDLE_FORMAT) throw new Error(`format: \`${j.format}\`, expected \`${BUNDLE_FORMAT}\``);
  for (const f of ['log_index', 'tree_size']) {
    if (!Number.isSafeInteger(j[f]) || j[f] < 0) throw new Error(`${f}: not a non-negative integer`);
  }
  if (!Array.isArray(j.inclusion_proof) || j.inclusion_proof.length > MAX_PROOF) throw new Error('inclusion_proof: not a list of at most 64 hashes');
  const proof = j.inclusion_proof.map((h, i) => {
    const b = unbase64(h, `inclusion_proof[${i}]`);
    if (b.length !== 32) throw new Error(`inclusion_proof[${i}]: not 32 bytes`);
    return b;
  });
  if (typeof j.checkpoint !== 'string') throw new Error('checkpoint: missing');
  const entry = unbase64(j.entry, 'entry');
  return {
    kind: 'bundle',
    form: 'evidence bundle',
    entry,
    envelope: decode(entry, SignedDecision, 'entry'),
    logIndex: j.log_index,
    treeSize: j.tree_size,
    proof,
    note: j.checkpoint,
  };
}

// ---- The steps -----------------------------------------------------------------

const pass = (detail) => ({ result: 'pass', detail });
const fail = (detail) => ({ result: 'fail', detail });

export const DECISION_STEPS = [
  {
    id: 'payload-type',
    title: 'Payload type',
    run: (ctx) => ctx.input.envelope.payload_type === DECISION_PAYLOAD_TYPE
      ? pass(DECISION_PAYLOAD_TYPE)
      : fail(`\`${ctx.input.envelope.payload_type}\`, expected \`${DECISION_PAYLOAD_TYPE}\``),
  },
  {
    id: 'signature',
    title: 'Signature (Ed25519 over the DSSE PAE) by a trusted key',
    run: async (ctx) => {
      const env = ctx.input.envelope;
      if (env.signatures.length === 0) return fail('the envelope has no signatures');
      const msg = pae(env.payload_type, env.payload);
      const ids = [];
      for (const s of env.signatures) {
        ids.push(s.keyid);
        for (const k of ctx.keys.filter((k) => k.keyId === s.keyid)) {
          if (s.sig.length === 64 && (await ed25519(k.raw, s.sig, msg))) {
            ctx.signer = k;
            return pass(`valid signature by key ${k.keyId} (${k.source})`);
          }
          return fail(`the signature by key ${k.keyId} (${k.source}) does not verify`);
        }
      }
      return fail(`signed by key id ${ids.join(', ')}, which is not a trusted key`);
    },
  },
  {
    id: 'key-id',
    title: 'Key id = SHA-256 of the public key',
    run: async (ctx) => {
      const id = hex(await sha256(ctx.signer.raw));
      return id === ctx.signer.keyId ? pass(id) : fail(`the key hashes to ${id}, not ${ctx.signer.keyId}`);
    },
  },
  {
    id: 'decode',
    title: 'Decode the Decision',
    run: (ctx) => {
      ctx.decision = decode(ctx.input.envelope.payload, Decision, 'Decision');
      const d = ctx.decision;
      if (d.key_id !== ctx.signer.keyId) return fail(`Decision.key_id ${d.key_id} is not the signature's key id ${ctx.signer.keyId}`);
      return pass(`decision ${d.decision_id} by node ${d.node_id}, key_id matches the signature`);
    },
  },
  {
    id: 'request-digest',
    title: 'Request digest',
    run: async (ctx) => {
      if (!ctx.requestBytes) return { result: 'skip', detail: 'no request bytes given' };
      const got = hex(await sha256(ctx.requestBytes));
      const want = hex(ctx.decision.request_sha256);
      return got === want ? pass(`SHA-256 of the request = ${want}`) : fail(`SHA-256 of the given request is ${got}, the decision says ${want}`);
    },
  },
  {
    id: 'validity',
    title: 'Validity period',
    run: (ctx) => {
      const d = ctx.decision;
      const issued = d.issued_at ? d.issued_at.seconds : 0;
      const until = d.not_after ? d.not_after.seconds : 0;
      const span = `issued ${iso(issued)}, valid until ${iso(until)}`;
      if (until < issued) return fail(`${span}: ends before it starts`);
      return Date.now() / 1000 > until ? { result: 'warn', detail: `${span}: expired as current evidence (still a record of what the node decided)` } : pass(span);
    },
  },
];

export const BUNDLE_STEPS = [
  ...DECISION_STEPS,
  {
    id: 'inclusion',
    title: 'Inclusion proof (RFC 9162) to the checkpoint root',
    run: async (ctx) => {
      const b = ctx.input;
      ctx.note = parseNote(b.note);
      if (ctx.note.size !== BigInt(b.treeSize)) return fail(`the checkpoint is of size ${ctx.note.size}, the bundle says ${b.treeSize}`);
      const leaf = await sha256(concat(Uint8Array.of(0), b.entry));
      const root = await inclusionRoot(b.logIndex, b.treeSize, leaf, b.proof);
      if (!root) return fail(`the proof has the wrong length for entry ${b.logIndex} of ${b.treeSize}`);
      return equal(root, ctx.note.root)
        ? pass(`entry ${b.logIndex} of ${b.treeSize}: leaf ${hex(leaf)} leads to root ${hex(root)}`)
        : fail(`the proof leads to ${hex(root)}, the checkpoint's root is ${hex(ctx.note.root)}`);
    },
  },
  {
    id: 'checkpoint',
    title: 'Checkpoint note signature (C2SP signed note)',
    run: async (ctx) => {
      const n = ctx.note;
      for (const s of n.sigs) {
        if (s.name !== n.origin) continue;
        for (const k of ctx.keys) {
          if (k.origin && k.origin !== n.origin) continue;
          if (!equal(s.keyHash, await noteKeyHash(s.name, k.raw))) continue;
          if (s.sig.length === 64 && (await ed25519(k.raw, s.sig, n.body))) {
            ctx.checkpointKey = k;
            return pass(`${n.origin} size ${n.size}, signed by key ${k.keyId} (${k.source}), key hash ${hex(s.keyHash)}`);
          }
          return fail(`the signature with key hash ${hex(s.keyHash)} (key ${k.keyId}) does not verify`);
        }
      }
      return fail(`no signature of origin \`${n.origin}\` by a trusted key`);
    },
  },
  // Cosignature checks (witnesses) go here, after the checkpoint's own signature.
];

/** The final step of every kind: what the evidence says, once everything else held. */
export const VERDICT_STEP = {
  id: 'verdict',
  title: 'Verdict',
  run: (ctx) => {
    const d = ctx.decision;
    const verdict = VERDICTS[d.verdict] || `unknown (${d.verdict})`;
    if (!VERDICTS[d.verdict]) return fail(`verdict ${verdict}`);
    const rules = d.matched_rules.map((r) => `${r.id} (${EFFECTS[r.effect] || r.effect})`).join(', ');
    const policy = d.policy ? `${d.policy.id} v${d.policy.version}` : 'no policy';
    return pass(`${verdict} for ${d.jurisdiction} under ${policy}; ${rules ? 'rules: ' + rules : 'no rule matched (policy default)'}`);
  },
};

/** Evidence kinds: how to recognise their JSON and which steps check them. */
export const KINDS = [
  { kind: 'bundle', json: (j) => 'format' in j, read: fromBundle, steps: () => [...BUNDLE_STEPS, VERDICT_STEP] },
  { kind: 'decision', json: (j) => 'payloadType' in j, read: fromDsseJson, steps: () => [...DECISION_STEPS, VERDICT_STEP] },
];

export function stepsFor(kind) {
  return KINDS.find((k) => k.kind === kind).steps();
}

function iso(secs) {
  return new Date(secs * 1000).toISOString().replace('.000', '');
}

/**
 * Runs the steps of `input` (from `classify`) with trusted `keys` ([{keyId, raw, origin,
 * source}]) and optional request bytes; calls `report(step, outcome)` as each ends.
 * Returns true when every step passed (warnings allowed).
 */
export async function check(input, keys, requestBytes, report) {
  const ctx = { input, keys, requestBytes };
  let ok = true;
  for (const step of stepsFor(input.kind)) {
    if (!ok) {
      report(step, { result: 'skip', detail: 'not reached' });
      continue;
    }
    let outcome;
    try {
      outcome = await step.run(ctx);
    } catch (e) {
      outcome = fail(e.message);
    }
    report(step, outcome);
    if (outcome.result === 'fail') ok = false;
  }
  return { ok, decision: ctx.decision };
}
