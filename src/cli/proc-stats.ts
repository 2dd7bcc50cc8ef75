/**
 * CPU and memory of a process from /proc, for `baton status` and /metrics: CPU time from /proc/<pid>/stat
 * (utime + stime), resident memory from /proc/<pid>/status (VmRSS), and CPU % over the window since the
 * previous look at that process (at least MIN_WINDOW_S; the first look gives the average over its life,
 * as ps(1) does). `baton status --watch` looks every second, so it shows the last second.
 */
import fs from 'node:fs';

export interface ProcUsage {
  /** CPU time used (user + system), seconds. */
  cpuSeconds: number;
  /** Percent of one core over the window (may exceed 100 with several threads busy). */
  cpuPercent: number;
  /** Resident set size, bytes. */
  rssBytes: number;
}

/** USER_HZ, the unit of /proc/<pid>/stat's times: 100 on every architecture Node supports on Linux (the
 * kernel fixes it for the user ABI; `getconf CLK_TCK` says 100 here). */
const TICKS_PER_SECOND = 100;
/** A shorter window gives a jumpy figure: /proc's times advance in 10 ms ticks. */
const MIN_WINDOW_S = 0.5;
const SAMPLE_EVERY_S = 0.25;
/** Samples older than this are dropped; a pid not looked at for this long starts over. */
const KEEP_S = 10;

interface Sample {
  /** Seconds since boot (/proc/uptime), when the sample was taken. */
  at: number;
  cpu: number;
}

interface Raw {
  cpu: number;
  /** Process start, seconds since boot. */
  start: number;
  rssBytes: number;
}

/** The fields of /proc/<pid>/stat from the third (state) on — after the command name, which may contain
 * spaces and parentheses — or null if the process is gone. f[0] is the state, f[1] the parent pid. */
export function statFields(pid: number): string[] | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** utime, stime and starttime from /proc/<pid>/stat, VmRSS from /proc/<pid>/status; null if the process
 * is gone. */
function readRaw(pid: number): Raw | null {
  try {
    // utime and stime are fields 14 and 15, starttime 22 (proc(5)); statFields starts at field 3.
    const f = statFields(pid);
    if (!f) return null;
    const cpu = (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND;
    const start = Number(f[19]) / TICKS_PER_SECOND;
    const rss = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (!Number.isFinite(cpu) || !Number.isFinite(start)) return null;
    // A zombie has no VmRSS line: it holds no memory.
    return { cpu, start, rssBytes: rss ? Number(rss[1]) * 1024 : 0 };
  } catch {
    return null;
  }
}

function uptime(): number {
  return Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
}

export class ProcSampler {
  #samples = new Map<number, Sample[]>();

  /** The usage of `pids` together (a generation and the app process a wrapper started), or null if none
   * of them exists any more. */
  usage(pids: readonly number[]): ProcUsage | null {
    let now: number;
    try {
      now = uptime();
    } catch {
      return null; // no /proc
    }
    let total: ProcUsage | null = null;
    for (const pid of new Set(pids)) {
      const raw = readRaw(pid);
      if (!raw) {
        this.#samples.delete(pid);
        continue;
      }
      const samples = (this.#samples.get(pid) ?? []).filter((s) => s.at >= now - KEEP_S && s.at >= raw.start);
      // The newest sample far enough back; none: the process's whole life (it used no CPU before it started).
      let base: Sample = { at: raw.start, cpu: 0 };
      for (const s of samples) if (s.at <= now - MIN_WINDOW_S) base = s;
      const window = now - base.at;
      const percent = window > 0 ? ((raw.cpu - base.cpu) / window) * 100 : 0;
      // At most one sample per SAMPLE_EVERY_S, so that many quick looks keep the list short (40 at most).
      if (!samples.length || now - samples[samples.length - 1]!.at >= SAMPLE_EVERY_S)
        samples.push({ at: now, cpu: raw.cpu });
      this.#samples.set(pid, samples);
      total ??= { cpuSeconds: 0, cpuPercent: 0, rssBytes: 0 };
      total.cpuSeconds += raw.cpu;
      total.cpuPercent += Math.max(0, percent);
      total.rssBytes += raw.rssBytes;
    }
    if (total) {
      total.cpuSeconds = Math.round(total.cpuSeconds * 100) / 100;
      total.cpuPercent = Math.round(total.cpuPercent * 10) / 10;
    }
    return total;
  }

  /** Forget pids not in `alive` (exited generations). */
  retain(alive: readonly number[]): void {
    const keep = new Set(alive);
    for (const pid of this.#samples.keys()) if (!keep.has(pid)) this.#samples.delete(pid);
  }
}
