/**
 * Turning the load client's per-request samples into the figures of `npm run bench:upgrade`.
 *
 * Times are ms from the load client's start. A sample is [tEnd, latency, status] (status 0: an error), so
 * the request ran over [tEnd - latency, tEnd]. A restart window is [restart start, restart end + PAD_MS];
 * a request is "during restarts" when its interval overlaps a window, "steady" otherwise. Requests that
 * started before `fromMs` (the warm-up) are left out of the latency figures; every request counts in the
 * request and error totals.
 */
export const PAD_MS = 100;

export type Sample = [number, number, number];

export interface Window {
  start: number;
  end: number;
}

export interface Split {
  steady: number[];
  during: number[];
}

export function overlaps(s: number, e: number, windows: Window[], pad = PAD_MS): boolean {
  for (const w of windows) if (s <= w.end + pad && e >= w.start) return true;
  return false;
}

/** Latencies of answered requests (any status), steady vs during restarts. */
export function split(samples: Sample[], windows: Window[], fromMs: number): Split {
  const out: Split = { steady: [], during: [] };
  for (const [t, ms, status] of samples) {
    if (status === 0 || t - ms < fromMs) continue;
    (overlaps(t - ms, t, windows) ? out.during : out.steady).push(ms);
  }
  return out;
}

export function quantile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export function median(values: number[]): number {
  return quantile(values, 0.5);
}

export interface Bucket {
  t: number;
  n: number;
  p50: number;
  p99: number;
  max: number;
  errors: number;
  /** Latency (time to failure) of the slowest error in the bucket. */
  errorMs: number;
  non2xx: number;
}

/** Per-`widthMs` buckets by completion time, from `fromMs` to `toMs`. */
export function buckets(samples: Sample[], fromMs: number, toMs: number, widthMs: number): Bucket[] {
  const n = Math.max(1, Math.ceil((toMs - fromMs) / widthMs));
  const lat: number[][] = Array.from({ length: n }, () => []);
  const out: Bucket[] = Array.from({ length: n }, (_, i) => ({
    t: fromMs + i * widthMs,
    n: 0,
    p50: NaN,
    p99: NaN,
    max: NaN,
    errors: 0,
    errorMs: 0,
    non2xx: 0,
  }));
  for (const [t, ms, status] of samples) {
    const i = Math.floor((t - fromMs) / widthMs);
    if (i < 0 || i >= n) continue;
    const b = out[i]!;
    if (status === 0) {
      b.errors++;
      b.errorMs = Math.max(b.errorMs, ms);
      continue;
    }
    if (status < 200 || status >= 300) b.non2xx++;
    lat[i]!.push(ms);
  }
  for (let i = 0; i < n; i++) {
    const l = lat[i]!;
    const b = out[i]!;
    b.n = l.length;
    if (l.length) {
      b.p50 = quantile(l, 0.5);
      b.p99 = quantile(l, 0.99);
      b.max = l.reduce((a, v) => Math.max(v, a), 0);
    }
  }
  return out;
}
