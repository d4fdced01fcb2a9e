// The Node page: policies in force, reload status, keys, the decision log.
import { api, el, utc, frame, setNodeId, ready, showError } from './common.js';

function card(label, value, cls) {
  return el('div', { class: 'card' }, el('div', { class: 'value ' + (cls || '') }, value), el('div', { class: 'label' }, label));
}

function row(dl, term, ...value) {
  dl.append(el('dt', {}, term), el('dd', {}, ...value));
}

async function main() {
  frame('node');
  const n = await api('node');
  setNodeId(n.node_id);
  const reloadBad = n.last_reload_error !== '';
  document.getElementById('summary').append(
    card('node id', n.node_id),
    card('jurisdictions in force', String(n.jurisdictions.length)),
    card('last policy reload', reloadBad ? 'failed' : 'ok', reloadBad ? 'bad' : 'good'),
    card('decision log', n.log ? `${n.log.size} entries` : 'off', n.log && !n.log.healthy ? 'bad' : ''),
    card('build', n.build_version),
  );

  const jt = document.querySelector('#jurisdictions tbody');
  for (const j of n.jurisdictions) {
    jt.append(el('tr', { 'data-jurisdiction': j.jurisdiction },
      el('td', {}, el('strong', {}, j.jurisdiction), ' ', el('span', { class: 'muted' }, j.name)),
      el('td', {}, j.policy_id),
      el('td', {}, j.policy_version),
      el('td', {}, String(j.rule_count)),
      el('td', { class: 'mono' }, j.policy_sha256),
      el('td', {}, utc(j.loaded_at)),
      el('td', { class: j.last_error ? 'bad' : 'muted' }, j.last_error ? el('pre', {}, j.last_error) : 'none')));
  }

  const r = document.getElementById('reload');
  row(r, 'reloads that took effect', String(n.policy_reloads));
  row(r, 'reloads rejected', String(n.policy_reload_errors));
  row(r, 'last attempt', n.last_reload_attempt ? utc(n.last_reload_attempt) : 'none since start');
  row(r, 'last error', n.last_reload_error
    ? el('pre', { class: 'bad', id: 'last-reload-error' }, n.last_reload_error)
    : el('span', { class: 'good' }, 'none: every policy file loaded'));

  const kt = document.querySelector('#keys tbody');
  for (const k of n.keys) {
    kt.append(el('tr', {},
      el('td', { class: 'mono' }, k.key_id),
      el('td', {}, k.algorithm),
      el('td', { class: 'mono' }, k.public_key),
      el('td', {}, utc(k.valid_from)),
      el('td', {}, k.purposes.join(', '))));
  }

  const l = document.getElementById('log');
  const cp = document.getElementById('checkpoint');
  if (!n.log) {
    row(l, 'state', el('span', { class: 'warn' }, 'off: this node keeps no evidence'));
    cp.textContent = 'none';
  } else {
    row(l, 'origin', el('code', {}, n.log.origin));
    row(l, 'size', `${n.log.size} entries`);
    row(l, 'state', n.log.healthy ? el('span', { class: 'good' }, 'writable') : el('span', { class: 'bad' }, 'failed: the log takes no more decisions'));
    row(l, 'verifier key', el('code', { class: 'mono' }, n.log.verifier_key));
    cp.textContent = n.log.checkpoint || `unavailable: ${n.log.checkpoint_error}`;
  }
  ready();
}

main().catch((e) => showError(e.message));
