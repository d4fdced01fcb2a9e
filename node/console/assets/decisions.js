// The Decisions page: counts over the last hour or day, and the latest decisions.
import { api, el, utc, frame, setNodeId, ready, showError } from './common.js';
import { columns, bars, COLORS } from './chart.js';

const color = (verdict) => COLORS[verdict] || COLORS.other;

function hhmm(secs) {
  return new Date(secs * 1000).toISOString().slice(11, 16);
}

function render(a) {
  const decisions = a.series.filter((s) => s.rule === '');
  const rules = a.series.filter((s) => s.rule !== '');
  const n = decisions.length ? decisions[0].counts.length : (a.window === 'hour' ? 60 : 96);
  const verdicts = [...new Set(decisions.map((s) => s.verdict))].sort();

  // Over time: one column per bucket, stacked by verdict.
  const stacks = [];
  for (let i = 0; i < n; i++) {
    stacks.push(verdicts.map((v) => ({
      value: decisions.filter((s) => s.verdict === v).reduce((t, s) => t + s.counts[i], 0),
      color: color(v),
    })));
  }
  const every = a.window === 'hour' ? 10 : 16;
  const labels = stacks.map((_, i) => (i % every === 0 || i === n - 1 ? hhmm(a.start + i * a.bucket_secs) : null));
  columns(document.getElementById('chart-time'), stacks, labels, 'no decisions in this window');

  // By jurisdiction, split by verdict.
  const byJ = new Map();
  for (const s of decisions) {
    const m = byJ.get(s.jurisdiction) || new Map();
    m.set(s.verdict, (m.get(s.verdict) || 0) + s.counts.reduce((x, y) => x + y, 0));
    byJ.set(s.jurisdiction, m);
  }
  const jBars = [...byJ].map(([j, m]) => ({ label: j, parts: verdicts.map((v) => ({ value: m.get(v) || 0, color: color(v) })) }));
  jBars.sort((x, y) => total(y) - total(x));
  bars(document.getElementById('chart-jurisdiction'), jBars, 'no decisions in this window');

  // By rule: how many decisions matched each rule (and with which verdict).
  const byR = new Map();
  for (const s of rules) {
    const k = `${s.jurisdiction} ${s.rule}`;
    const m = byR.get(k) || new Map();
    m.set(s.verdict, (m.get(s.verdict) || 0) + s.counts.reduce((x, y) => x + y, 0));
    byR.set(k, m);
  }
  const rBars = [...byR].map(([k, m]) => ({ label: k, parts: verdicts.map((v) => ({ value: m.get(v) || 0, color: color(v) })) }));
  rBars.sort((x, y) => total(y) - total(x));
  bars(document.getElementById('chart-rule'), rBars, 'no rule matched in this window');

  const sum = decisions.reduce((t, s) => t + s.counts.reduce((x, y) => x + y, 0), 0);
  const parts = verdicts.map((v) => `${decisions.filter((s) => s.verdict === v).reduce((t, s) => t + s.counts.reduce((x, y) => x + y, 0), 0)} ${v}`);
  document.getElementById('totals').textContent = `${sum} decisions${parts.length ? ': ' + parts.join(', ') : ''}`;
  const o = document.getElementById('overflow');
  o.hidden = a.overflow === 0;
  o.textContent = `${a.overflow} decisions fell outside the node's fixed series table and are not charted by key.`;
}

function total(b) {
  return b.parts.reduce((t, p) => t + p.value, 0);
}

async function load(window) {
  for (const b of document.querySelectorAll('[data-window]')) b.classList.toggle('selected', b.dataset.window === window);
  const [a, recent] = await Promise.all([api('activity?window=' + window), api('recent')]);
  render(a);
  const tb = document.querySelector('#recent tbody');
  tb.replaceChildren(...recent.map((d) => el('tr', {},
    el('td', {}, utc(d.time)),
    el('td', { class: 'mono' }, d.decision_id),
    el('td', {}, d.jurisdiction),
    el('td', { class: 'verdict-' + d.verdict }, d.verdict),
    el('td', { class: 'mono' }, d.rules.join(', ') || el('span', { class: 'muted' }, 'none (policy default)')))));
}

async function main() {
  frame('decisions');
  api('node').then((n) => setNodeId(n.node_id)).catch((e) => showError(e.message));
  for (const b of document.querySelectorAll('[data-window]')) {
    b.addEventListener('click', () => load(b.dataset.window).catch((e) => showError(e.message)));
  }
  const w = new URLSearchParams(location.search).get('window') === 'day' ? 'day' : 'hour';
  await load(w);
  ready();
}

main().catch((e) => showError(e.message));
