// A small protobuf decoder for the messages the Verify page reads. Strict: a truncated
// field, a wrong wire type for a known field or an overlong varint is an error.

const utf8 = new TextDecoder('utf-8', { fatal: true });

class Reader {
  constructor(bytes) {
    this.b = bytes;
    this.i = 0;
  }
  varint() {
    let v = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.i >= this.b.length) throw new Error('truncated varint');
      const byte = this.b[this.i++];
      v |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) {
        if (v >= 1n << 64n) throw new Error('varint over 64 bits');
        return v;
      }
    }
    throw new Error('varint longer than 10 bytes');
  }
  bytes() {
    const n = this.varint();
    if (n > BigInt(this.b.length - this.i)) throw new Error('length-delimited field past the end');
    const out = this.b.subarray(this.i, this.i + Number(n));
    this.i += Number(n);
    return out;
  }
  skip(wire) {
    if (wire === 0) this.varint();
    else if (wire === 1) this.fixed(8);
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.fixed(4);
    else throw new Error(`unsupported wire type ${wire}`);
  }
  fixed(n) {
    if (this.i + n > this.b.length) throw new Error('truncated fixed-width field');
    this.i += n;
  }
}

/**
 * Decodes `bytes` with `schema`: {fieldNumber: [name, kind, repeated?]} where kind is
 * 'string', 'bytes', 'uint', 'int', 'bool', 'enum' or a nested schema object.
 * Unknown fields are skipped, as protobuf requires.
 */
export function decode(bytes, schema, path = '') {
  const r = new Reader(bytes);
  const out = {};
  for (const [, [name, kind, repeated]] of Object.entries(schema)) {
    out[name] = repeated ? [] : defaultOf(kind);
  }
  while (r.i < r.b.length) {
    const key = r.varint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (field === 0) throw new Error(`${path || 'message'}: field number 0`);
    const spec = schema[field];
    if (!spec) {
      r.skip(wire);
      continue;
    }
    const [name, kind, repeated] = spec;
    const at = path ? `${path}.${name}` : name;
    let value;
    const lenKind = typeof kind === 'object' || kind === 'string' || kind === 'bytes';
    if (lenKind !== (wire === 2) || (!lenKind && wire !== 0)) throw new Error(`${at}: wire type ${wire} is wrong for this field`);
    if (kind === 'string') {
      try {
        value = utf8.decode(r.bytes());
      } catch (e) {
        throw new Error(`${at}: ${e.message}`);
      }
    } else if (kind === 'bytes') value = r.bytes().slice();
    else if (typeof kind === 'object') value = decode(r.bytes(), kind, at);
    else {
      const v = r.varint();
      if (kind === 'bool') value = v !== 0n;
      else if (kind === 'int') value = Number(BigInt.asIntN(64, v));
      else value = Number(v);
    }
    if (repeated) out[name].push(value);
    else out[name] = value;
  }
  return out;
}

function defaultOf(kind) {
  if (kind === 'string') return '';
  if (kind === 'bytes') return new Uint8Array(0);
  if (kind === 'bool') return false;
  if (typeof kind === 'object') return null;
  return 0;
}

const Timestamp = { 1: ['seconds', 'int'], 2: ['nanos', 'int'] };

/** `silkgate.v1.SignedDecision` (DSSE v1 in protobuf). */
export const SignedDecision = {
  1: ['payload', 'bytes'],
  2: ['payload_type', 'string'],
  3: ['signatures', { 1: ['sig', 'bytes'], 2: ['keyid', 'string'] }, true],
};

/** `silkgate.v1.Decision`. */
export const Decision = {
  1: ['decision_id', 'string'],
  2: ['verdict', 'enum'],
  3: ['jurisdiction', 'string'],
  4: ['matched_rules', { 1: ['id', 'string'], 2: ['effect', 'enum'], 3: ['message', 'string'], 4: ['citation', 'string'], 5: ['url', 'string'] }, true],
  5: ['policy', { 1: ['id', 'string'], 2: ['version', 'string'], 3: ['sha256', 'bytes'] }],
  6: ['request_sha256', 'bytes'],
  7: ['request_id', 'string'],
  8: ['node_id', 'string'],
  9: ['key_id', 'string'],
  10: ['issued_at', Timestamp],
  11: ['not_after', Timestamp],
  12: ['default_applied', 'bool'],
};

export const VERDICTS = { 1: 'ALLOW', 2: 'DENY' };
export const EFFECTS = { 1: 'deny', 2: 'warn', 3: 'allow' };

