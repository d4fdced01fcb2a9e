// Two small canvas charts, no library: stacked columns over time and horizontal bars.

export const COLORS = { allow: '#2e7d32', deny: '#c62828', other: '#5b6570' };
const AXIS = '#5b6570';
const GRID = '#e3e7eb';
const FONT = '11px system-ui, sans-serif';

function setup(canvas) {
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.font = FONT;
  return ctx;
}

/** A "nice" axis maximum at or above `max`. */
function niceMax(max) {
  if (max <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(max)));
  for (const m of [1, 2, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

/**
 * Stacked columns: `stacks` is one array per column of {value, color}; `labels` are
 * the x labels to show (index to text), drawn where not null.
 */
export function columns(canvas, stacks, labels, empty) {
  const ctx = setup(canvas);
  const left = 40, right = 8, top = 10, bottom = 22;
  const w = canvas.width - left - right, h = canvas.height - top - bottom;
  const max = niceMax(Math.max(0, ...stacks.map((s) => s.reduce((a, p) => a + p.value, 0))));
  ctx.strokeStyle = GRID;
  ctx.fillStyle = AXIS;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let i = 0; i <= 4; i++) {
    const y = top + h - (h * i) / 4;
    ctx.beginPath();
    ctx.moveTo(left, y + 0.5);
    ctx.lineTo(left + w, y + 0.5);
    ctx.stroke();
    const t = (max * i) / 4;
    ctx.fillText(Number.isInteger(t) ? String(t) : t.toFixed(1), left - 4, y);
  }
  const cw = w / Math.max(1, stacks.length);
  stacks.forEach((stack, i) => {
    let y = top + h;
    for (const part of stack) {
      const bh = (part.value / max) * h;
      if (bh <= 0) continue;
      ctx.fillStyle = part.color;
      ctx.fillRect(left + i * cw + 1, y - bh, Math.max(1, cw - 2), bh);
      y -= bh;
    }
  });
  ctx.fillStyle = AXIS;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  labels.forEach((t, i) => {
    if (t !== null) ctx.fillText(t, left + i * cw + cw / 2, top + h + 6);
  });
  if (stacks.every((s) => s.every((p) => p.value === 0))) message(ctx, canvas, empty);
}

/** Horizontal bars: `bars` is [{label, parts: [{value, color}]}], largest first. */
export function bars(canvas, bars, empty) {
  const ctx = setup(canvas);
  const left = 150, right = 40, top = 8;
  const rowH = Math.min(24, Math.max(12, (canvas.height - top * 2) / Math.max(1, bars.length)));
  const shown = bars.slice(0, Math.floor((canvas.height - top * 2) / rowH));
  const max = Math.max(1, ...shown.map((b) => b.parts.reduce((a, p) => a + p.value, 0)));
  const w = canvas.width - left - right;
  ctx.textBaseline = 'middle';
  shown.forEach((b, i) => {
    const y = top + i * rowH;
    ctx.fillStyle = AXIS;
    ctx.textAlign = 'right';
    ctx.fillText(b.label.length > 24 ? b.label.slice(0, 23) + '…' : b.label, left - 6, y + rowH / 2);
    let x = left;
    let total = 0;
    for (const p of b.parts) {
      const bw = (p.value / max) * w;
      ctx.fillStyle = p.color;
      ctx.fillRect(x, y + 2, bw, rowH - 4);
      x += bw;
      total += p.value;
    }
    ctx.fillStyle = AXIS;
    ctx.textAlign = 'left';
    ctx.fillText(String(total), x + 4, y + rowH / 2);
  });
  if (shown.length === 0) message(ctx, canvas, empty);
}

function message(ctx, canvas, text) {
  ctx.fillStyle = AXIS;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'middle';
  ctx.fillText(text, canvas.width / 2, canvas.height / 2);
}
