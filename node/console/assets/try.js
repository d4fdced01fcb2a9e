// The Try page: evaluates a request file against the node's policies (POST
// /console/api/try), shows the verdict and the explanation rule by rule.
import { api, el, frame, setNodeId, ready, showError } from './common.js';

const EXAMPLE = `# A request file, as \`silkgate eval\` reads it.
request_id = "console-try-1"
deployment_kind = "permissioned_app"
permission_model = "permissioned"
node_regions = ["CN"]

[protocol]
name = "hyperledger-fabric"
`;

function outcome(a) {
  return [
    el('p', {}, 'Verdict: ', el('span', { class: 'verdict-' + a.verdict, id: 'verdict' }, a.verdict.toUpperCase()),
      el('span', { class: 'muted' }, ` under ${a.policy_id} v${a.policy_version} (${a.jurisdiction}), on ${a.evaluated_on}`)),
    el('p', { class: 'muted mono' }, `request SHA-256 (protobuf encoding): ${a.request_sha256}`),
    a.matched.length
      ? el('ul', {}, a.matched.map((m) => el('li', {}, el('strong', {}, `${m.id} [${m.effect}]`), ` ${m.message}`, el('span', { class: 'muted' }, ` (${m.citation})`))))
      : el('p', {}, 'No rule matched; the policy default applies.'),
    el('h3', {}, 'Rule by rule'),
    el('table', { id: 'explanation' },
      el('thead', {}, el('tr', {}, el('th', {}, 'Rule'), el('th', {}, 'Effect'), el('th', {}, 'Outcome'), el('th', {}, 'Failed condition'), el('th', {}, 'Actual value'))),
      el('tbody', {}, a.explanation.map((t) => el('tr', { 'data-rule': t.rule_id },
        el('td', { class: 'mono' }, t.rule_id),
        el('td', {}, t.effect),
        el('td', { class: t.matched ? 'bad' : '' }, !t.in_force ? 'not in force' : t.matched ? 'matched' : 'no match'),
        el('td', { class: 'mono' }, t.failed_condition),
        el('td', { class: 'mono' }, t.actual))))),
  ];
}

async function main() {
  frame('try');
  const n = await api('node');
  setNodeId(n.node_id);
  const form = document.getElementById('try-form');
  if (!n.try_enabled) {
    document.getElementById('off').hidden = false;
    form.hidden = true;
    ready();
    return;
  }
  const sel = document.getElementById('jurisdiction');
  sel.replaceChildren(...n.jurisdictions.map((j) => el('option', { value: j.jurisdiction }, `${j.jurisdiction} (${j.policy_id} v${j.policy_version})`)));
  const text = document.getElementById('request');
  if (!text.value) text.value = EXAMPLE;
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const box = document.getElementById('outcome');
    try {
      const a = await api('try', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jurisdiction: sel.value, format: document.getElementById('format').value, text: text.value }),
      });
      box.replaceChildren(...outcome(a));
    } catch (x) {
      box.replaceChildren(el('pre', { class: 'bad', id: 'try-error' }, x.message));
    }
  });
  ready();
}

main().catch((e) => showError(e.message));
