/**
 * How much CPU other processes on the machine used while a benchmark phase ran: on a shared machine, the
 * figure that says whether a row was measured in peace. Every SAMPLE_MS it reads /proc/<pid>/stat of every
 * process and sums the CPU time gained by those that are not this process or its descendants.
 * (A foreign process that starts and ends between two samples is missed; kernel threads count.)
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

const SAMPLE_MS = 500;

function clockTicks(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}
const TICKS = clockTicks();

interface Stat {
  ppid: number;
  cpu: number;
}

function readAll(): Map<number, Stat> {
  const out = new Map<number, Stat>();
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    try {
      const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
      // after the command: state(0) ppid(1) ... utime(11) stime(12)
      out.set(pid, { ppid: Number(f[1]), cpu: Number(f[11]) + Number(f[12]) });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

export class ForeignCpu {
  #prev = new Map<number, number>();
  #timer: NodeJS.Timeout | null = null;
  #ticks = 0;
  /** The busiest foreign commands, by CPU ticks. */
  #by = new Map<string, number>();

  start(): void {
    this.#prev = new Map([...readAll()].map(([pid, s]) => [pid, s.cpu]));
    this.#timer = setInterval(() => this.#sample(), SAMPLE_MS);
    this.#timer.unref();
  }

  /** CPU seconds used by other processes since start(), and the top commands. */
  stop(): { seconds: number; top: string[] } {
    this.#sample();
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    const top = [...this.#by]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 3)
      .filter(([, t]) => t / TICKS >= 0.2)
      .map(([cmd, t]) => `${cmd} ${(t / TICKS).toFixed(1)} s`);
    return { seconds: this.#ticks / TICKS, top };
  }

  #sample(): void {
    const all = readAll();
    const mine = (pid: number): boolean => {
      for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
        if (p === process.pid) return true;
        p = all.get(p)?.ppid ?? 0;
      }
      return false;
    };
    const next = new Map<number, number>();
    for (const [pid, s] of all) {
      next.set(pid, s.cpu);
      const before = this.#prev.get(pid) ?? s.cpu; // a process new since the last sample: counted from now
      const d = s.cpu - before;
      if (d <= 0 || mine(pid)) continue;
      this.#ticks += d;
      let cmd = '';
      try {
        cmd = fs
          .readFileSync(`/proc/${pid}/cmdline`, 'utf8')
          .split('\0')
          .filter(Boolean)
          .slice(0, 2)
          .map((a) => a.split('/').pop())
          .join(' ')
          .slice(0, 60);
        // Kernel threads (and processes exiting) have no command line: their name, in brackets.
        if (!cmd) cmd = `[${fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim()}]`;
      } catch {
        cmd ||= '(exited)';
      }
      this.#by.set(cmd, (this.#by.get(cmd) ?? 0) + d);
    }
    this.#prev = next;
  }
}
