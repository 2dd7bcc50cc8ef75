/**
 * The SVG chart of `npm run bench:upgrade`: one panel per approach, latency over time on a log scale
 * (p50 and p99 per 100 ms bucket, and the slowest request of each bucket), failed requests as red crosses
 * at their time to failure, non-2xx answers as orange diamonds, restart windows shaded with a line where
 * each restart began. Plain SVG text: no charting dependency.
 */
import { PAD_MS, type Bucket, type Window } from './stats.js';

export interface Panel {
  title: string;
  subtitle: string;
  /** Buckets, times in ms from the measurement start. */
  buckets: Bucket[];
  bucketMs: number;
  /** Restart windows, ms from the measurement start (end without the padding). */
  windows: Window[];
}

const W = 980;
const LEFT = 70;
const RIGHT = 20;
const TOP = 80;
const PANEL_H = 200;
const PLOT_TOP = 34;
const PLOT_H = 136;
const BOTTOM = 40;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const f = (n: number) => (Math.round(n * 10) / 10).toString();

function msLabel(v: number): string {
  if (v >= 1000) return `${v / 1000} s`;
  return `${v} ms`;
}

/** The legend's and axes' words, for a chart of something else than requests (bench:migrate's echoes). */
export interface ChartLabels {
  slowest: string;
  window: string;
  yAxis: string;
  footer: string;
}

const REQUEST_LABELS: ChartLabels = {
  slowest: 'slowest request of each 100 ms bucket',
  window: `restart begins (line); shaded until it is done + ${PAD_MS} ms`,
  yAxis: 'latency (log)',
  footer: 'time since the measurement started (s); each panel is one run of the same load',
};

export function renderChart(panels: Panel[], heading: string, labels: ChartLabels = REQUEST_LABELS): string {
  const spanMs = Math.max(
    1000,
    ...panels.map((p) => (p.buckets.length ? p.buckets[p.buckets.length - 1]!.t + p.bucketMs : 0)),
  );
  let lo = Infinity;
  let hi = 0;
  for (const p of panels) {
    for (const b of p.buckets) {
      if (b.n) lo = Math.min(lo, b.p50);
      if (b.n) hi = Math.max(hi, b.max);
      if (b.errors) hi = Math.max(hi, b.errorMs);
    }
  }
  if (!Number.isFinite(lo)) lo = 1;
  const decLo = Math.floor(Math.log10(Math.max(lo, 0.01)));
  const decHi = Math.max(decLo + 2, Math.ceil(Math.log10(Math.max(hi, 1))));
  const plotW = W - LEFT - RIGHT;
  const H = TOP + panels.length * PANEL_H + BOTTOM;
  const x = (ms: number) => LEFT + (ms / spanMs) * plotW;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" ` +
      `font-family="Helvetica, Arial, sans-serif" font-size="11">`,
  );
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${LEFT}" y="20" font-size="15" font-weight="bold">${esc(heading)}</text>`);

  // Legend, two rows.
  const item = (lx: number, ly: number, draw: string, label: string) => {
    out.push(draw);
    out.push(`<text x="${lx + 26}" y="${ly + 4}">${esc(label)}</text>`);
  };
  const cols = [LEFT, LEFT + 300, LEFT + 520];
  let ly = 42;
  item(
    cols[0]!,
    ly,
    `<line x1="${cols[0]}" y1="${ly}" x2="${cols[0]! + 20}" y2="${ly}" stroke="#1f4e9c" stroke-width="1.8"/>`,
    'p99 per 100 ms bucket',
  );
  item(
    cols[1]!,
    ly,
    `<line x1="${cols[1]}" y1="${ly}" x2="${cols[1]! + 20}" y2="${ly}" stroke="#8c8c8c" stroke-width="1.2"/>`,
    'p50 per 100 ms bucket',
  );
  item(cols[2]!, ly, `<circle cx="${cols[2]! + 10}" cy="${ly}" r="2" fill="#6baed6"/>`, labels.slowest);
  ly = 60;
  item(
    cols[0]!,
    ly,
    `<path d="M${cols[0]! + 6},${ly - 4}l8,8m0,-8l-8,8" stroke="#d62728" stroke-width="2"/>`,
    'failed requests (red number: per restart)',
  );
  item(cols[1]!, ly, `<path d="M${cols[1]! + 10},${ly - 5}l5,5l-5,5l-5,-5z" fill="#ff7f0e"/>`, 'non-2xx answers');
  item(
    cols[2]!,
    ly,
    `<rect x="${cols[2]}" y="${ly - 7}" width="20" height="14" fill="#fdd9b5" opacity="0.7"/><line ` +
      `x1="${cols[2]! + 1}" y1="${ly - 7}" x2="${cols[2]! + 1}" y2="${ly + 7}" stroke="#e6550d" stroke-width="1.2"/>`,
    labels.window,
  );

  panels.forEach((p, i) => {
    const top = TOP + i * PANEL_H;
    const pTop = top + PLOT_TOP;
    const y = (ms: number) => {
      const v = Math.log10(Math.min(Math.max(ms, 10 ** decLo), 10 ** decHi));
      return pTop + PLOT_H - ((v - decLo) / (decHi - decLo)) * PLOT_H;
    };
    out.push(`<text x="${LEFT}" y="${top + 14}" font-size="13" font-weight="bold">${esc(p.title)}</text>`);
    out.push(`<text x="${LEFT}" y="${top + 28}" fill="#444">${esc(p.subtitle)}</text>`);
    out.push(`<rect x="${LEFT}" y="${pTop}" width="${plotW}" height="${PLOT_H}" fill="#fafafa" stroke="#bbbbbb"/>`);
    // Restart windows.
    for (const w of p.windows) {
      const x0 = x(w.start);
      const x1 = x(Math.min(spanMs, w.end + PAD_MS));
      out.push(
        `<rect x="${f(x0)}" y="${pTop}" width="${f(Math.max(1, x1 - x0))}" height="${PLOT_H}" fill="#fdd9b5" ` +
          `opacity="0.7"/>`,
      );
      out.push(
        `<line x1="${f(x0)}" y1="${pTop}" x2="${f(x0)}" y2="${pTop + PLOT_H}" stroke="#e6550d" stroke-width="1"/>`,
      );
    }
    // Grid and y labels (decades).
    for (let d = decLo; d <= decHi; d++) {
      const yy = y(10 ** d);
      out.push(`<line x1="${LEFT}" y1="${f(yy)}" x2="${LEFT + plotW}" y2="${f(yy)}" stroke="#dddddd"/>`);
      out.push(
        `<text x="${LEFT - 6}" y="${f(yy + 4)}" text-anchor="end">${msLabel(Number((10 ** d).toPrecision(1)))}</text>`,
      );
    }
    // x ticks.
    const stepS = spanMs > 30_000 ? 5 : spanMs > 12_000 ? 2 : 1;
    for (let s = 0; s * 1000 <= spanMs; s += stepS) {
      const xx = x(s * 1000);
      out.push(`<line x1="${f(xx)}" y1="${pTop + PLOT_H}" x2="${f(xx)}" y2="${pTop + PLOT_H + 4}" stroke="#666"/>`);
      out.push(`<text x="${f(xx)}" y="${pTop + PLOT_H + 15}" text-anchor="middle">${s}</text>`);
    }
    out.push(
      `<text transform="translate(${LEFT - 48},${pTop + PLOT_H / 2}) rotate(-90)" text-anchor="middle" ` +
        `fill="#444">${esc(labels.yAxis)}</text>`,
    );
    // Slowest per bucket.
    const dots: string[] = [];
    for (const b of p.buckets)
      if (b.n)
        dots.push(`M${f(x(b.t + p.bucketMs / 2))},${f(y(b.max))}m-1.6,0a1.6,1.6 0 1,0 3.2,0a1.6,1.6 0 1,0 -3.2,0`);
    if (dots.length) out.push(`<path d="${dots.join('')}" fill="#6baed6"/>`);
    // p50 and p99 lines, broken where a bucket had no answer.
    for (const [key, color, width] of [
      ['p50', '#8c8c8c', 1.2],
      ['p99', '#1f4e9c', 1.8],
    ] as const) {
      let d = '';
      let pen = false;
      for (const b of p.buckets) {
        if (!b.n) {
          pen = false;
          continue;
        }
        d += `${pen ? 'L' : 'M'}${f(x(b.t + p.bucketMs / 2))},${f(y(b[key]))}`;
        pen = true;
      }
      if (d) out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="${width}" stroke-linejoin="round"/>`);
    }
    // Non-2xx and errors.
    for (const b of p.buckets) {
      const cx = x(b.t + p.bucketMs / 2);
      if (b.non2xx) {
        const cy = y(b.p99);
        out.push(
          `<path d="M${f(cx)},${f(cy - 5)}l5,5l-5,5l-5,-5z" fill="#ff7f0e"><title>${b.non2xx} non-2xx</title></path>`,
        );
      }
      if (b.errors) {
        const cy = y(b.errorMs);
        out.push(
          `<path d="M${f(cx - 4)},${f(cy - 4)}l8,8m0,-8l-8,8" stroke="#d62728" stroke-width="2"><title>${b.errors} ` +
            `failed</title></path>`,
        );
      }
    }
    // Failed requests counted per restart (from its start to the next one's), at the top of the panel.
    const starts = p.windows.map((w) => w.start);
    const groups = new Map<number, number>();
    for (const b of p.buckets) {
      if (!b.errors) continue;
      let k = -1;
      for (let j = 0; j < starts.length; j++) if (starts[j]! <= b.t + p.bucketMs) k = j;
      groups.set(k, (groups.get(k) ?? 0) + b.errors);
    }
    for (const [k, n] of groups) {
      const gx = k >= 0 ? x(starts[k]!) + 2 : LEFT + 2;
      out.push(
        `<text x="${f(gx)}" y="${pTop + 10 + (k % 2 === 0 ? 0 : 10)}" fill="#d62728" font-size="9" ` +
          `font-weight="bold">${n}</text>`,
      );
    }
  });
  out.push(`<text x="${LEFT + plotW / 2}" y="${H - 10}" text-anchor="middle" fill="#444">${esc(labels.footer)}</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
