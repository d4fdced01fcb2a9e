// The Verify page: reads evidence the user pastes, drops or links (in the URL fragment,
// which browsers never send), and checks it step by step in the browser (checks.js).
// The only request it makes is GET /console/api/node, for the node's own keys.
import { api, el, frame, setNodeId, ready, showError } from './common.js';
import { classify, check, parseKey, base64 } from './checks.js';
import { VERDICTS, EFFECTS } from './protobuf.js';

const PINNED = 'silkgate.console.pinned-keys';
let nodeKeys = [];
let requestBytes = null;

function pinned() {
  try {
    const list = JSON.parse(localStorage.getItem(PINNED) || '[]');
    return Array.isArray(list) ? list.filter((s) => typeof s === 'string') : [];
  } catch {
    return [];
  }
}

function savePinned(list) {
  localStorage.setItem(PINNED, JSON.stringify([...new Set(list)]));
}

/** The keys the checks trust: pinned (and linked) keys, and unless refused, the node's. */
async function trustedKeys(extra) {
  const keys = [];
  for (const [text, source] of [...pinned().map((t) => [t, 'pinned']), ...extra.map((t) => [t, 'from the link'])]) {
    try {
      keys.push(Object.assign(await parseKey(text), { source, text }));
    } catch (e) {
      showError(`key \`${text.slice(0, 40)}\`: ${e.message}`);
    }
  }
  if (!document.getElementById('pinned-only').checked) keys.push(...nodeKeys);
  return keys;
}

async function renderKeys(extra) {
  const tb = document.querySelector('#trusted tbody');
  const keys = await trustedKeys(extra);
  const rows = keys.map((k) => {
    let action = '';
    if (k.source === 'pinned') {
      action = el('button', { type: 'button' }, 'Unpin');
      action.addEventListener('click', () => {
        savePinned(pinned().filter((t) => t !== k.text));
        renderKeys(extra).catch((e) => showError(e.message));
      });
    } else if (!pinned().includes(k.text)) {
      action = el('button', { type: 'button' }, 'Pin');
      action.addEventListener('click', () => {
        savePinned([...pinned(), k.text]);
        renderKeys(extra).catch((e) => showError(e.message));
      });
    }
    return el('tr', { 'data-key-id': k.keyId }, el('td', {}, k.source), el('td', { class: 'mono' }, k.keyId), el('td', { class: 'mono' }, k.origin || 'any'), el('td', {}, action));
  });
  tb.replaceChildren(...rows);
  if (!rows.length) tb.append(el('tr', {}, el('td', { colspan: '4', class: 'warn' }, 'no trusted key: pin one to verify anything')));
}

function fromBase64Url(s) {
  const b = s.replace(/-/g, '+').replace(/_/g, '/');
  return Uint8Array.from(atob(b + '='.repeat((4 - (b.length % 4)) % 4)), (c) => c.charCodeAt(0));
}

function showDecision(d) {
  const box = document.getElementById('decision');
  if (!d) {
    box.replaceChildren();
    return;
  }
  const verdict = VERDICTS[d.verdict] || String(d.verdict);
  box.replaceChildren(
    el('h2', {}, 'The decision'),
    el('dl', {},
      el('dt', {}, 'verdict'), el('dd', { class: 'verdict-' + verdict.toLowerCase() }, verdict),
      el('dt', {}, 'decision id'), el('dd', { class: 'mono' }, d.decision_id),
      el('dt', {}, 'jurisdiction'), el('dd', {}, d.jurisdiction),
      el('dt', {}, 'policy'), el('dd', {}, d.policy ? `${d.policy.id} v${d.policy.version}` : ''),
      el('dt', {}, 'request id'), el('dd', { class: 'mono' }, d.request_id),
      el('dt', {}, 'node'), el('dd', {}, d.node_id)),
    el('ul', {}, d.matched_rules.map((r) => el('li', {}, el('strong', {}, `${r.id} [${EFFECTS[r.effect] || r.effect}]`), ` ${r.message} (${r.citation})`))),
  );
}

async function run(bytes, extraKeys) {
  const steps = document.getElementById('steps');
  const result = document.getElementById('result');
  steps.replaceChildren();
  showDecision(null);
  result.dataset.result = 'running';
  result.textContent = 'Checking…';
  const report = (step, o) => {
    steps.append(el('li', { 'data-step': step.id, 'data-result': o.result },
      el('span', { class: 'mark' }, o.result.toUpperCase()), step.title, el('span', { class: 'detail' }, o.detail)));
  };
  if (!crypto.subtle) {
    report({ id: 'read', title: 'WebCrypto' }, { result: 'fail', detail: 'this page needs a secure context (HTTPS or localhost) for WebCrypto' });
    result.dataset.result = 'invalid';
    result.textContent = 'Not verified';
    return;
  }
  let input;
  try {
    input = classify(bytes);
    report({ id: 'read', title: 'Read the evidence' }, { result: 'pass', detail: `${input.form}, ${bytes.length} bytes` });
  } catch (e) {
    report({ id: 'read', title: 'Read the evidence' }, { result: 'fail', detail: e.message });
    result.dataset.result = 'invalid';
    result.textContent = 'Not verified: the evidence could not be read';
    return;
  }
  const keys = await trustedKeys(extraKeys);
  const { ok, decision } = await check(input, keys, requestBytes, report);
  result.dataset.result = ok ? 'valid' : 'invalid';
  const failed = steps.querySelector('[data-result=fail]');
  result.textContent = ok ? `Verified ${input.form}` : `Not verified: ${failed ? failed.dataset.step : 'a step'} failed`;
  showDecision(ok ? decision : null);
}

async function main() {
  frame('verify');
  try {
    const n = await api('node');
    setNodeId(n.node_id);
    for (const k of n.keys) {
      // With a log, the verifier key string also names the origin its checkpoints use.
      let key = await parseKey(k.public_key);
      let text = k.public_key;
      if (n.log) {
        const v = await parseKey(n.log.verifier_key);
        if (v.keyId === key.keyId) [key, text] = [v, n.log.verifier_key];
      }
      nodeKeys.push(Object.assign(key, { source: 'this node', text }));
    }
  } catch (e) {
    showError(`the node's keys are unavailable (${e.message}); pin a key to verify`);
  }
  // A link may carry evidence, request bytes and keys in its fragment (never sent to
  // any server): #evidence=<base64url>&request=<base64url>&key=<key text>&pinned-only
  const frag = new URLSearchParams(location.hash.slice(1));
  const extra = frag.getAll('key');
  if (frag.has('pinned-only')) document.getElementById('pinned-only').checked = true;
  await renderKeys(extra);
  document.getElementById('pinned-only').addEventListener('change', () => renderKeys(extra).catch((e) => showError(e.message)));

  const area = document.getElementById('evidence');
  let dropped = null;
  const go = () => run(dropped || new TextEncoder().encode(area.value), extra).catch((e) => showError(e.message));
  area.addEventListener('input', () => { dropped = null; });
  document.getElementById('verify').addEventListener('click', go);
  const takeFile = async (f) => {
    dropped = new Uint8Array(await f.arrayBuffer());
    const text = new TextDecoder().decode(dropped);
    area.value = text.trim().startsWith('{') ? text : `(binary, ${dropped.length} bytes: ${base64(dropped.subarray(0, 48))}…)`;
    await go();
  };
  document.getElementById('file').addEventListener('change', (e) => e.target.files[0] && takeFile(e.target.files[0]).catch((x) => showError(x.message)));
  document.getElementById('request-file').addEventListener('change', async (e) => {
    requestBytes = e.target.files[0] ? new Uint8Array(await e.target.files[0].arrayBuffer()) : null;
  });
  const drop = document.getElementById('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    if (e.dataTransfer.files[0]) takeFile(e.dataTransfer.files[0]).catch((x) => showError(x.message));
  });
  document.getElementById('pin').addEventListener('click', async () => {
    const input = document.getElementById('key-input');
    try {
      await parseKey(input.value);
      savePinned([...pinned(), input.value.trim()]);
      input.value = '';
      await renderKeys(extra);
    } catch (e) {
      showError(`key: ${e.message}`);
    }
  });

  if (frag.has('request')) requestBytes = fromBase64Url(frag.get('request'));
  if (frag.has('evidence')) {
    dropped = fromBase64Url(frag.get('evidence'));
    const text = new TextDecoder().decode(dropped);
    area.value = text.trim().startsWith('{') ? text : `(binary, ${dropped.length} bytes)`;
    await go();
  }
  ready();
}

main().catch((e) => showError(e.message));
