/**
 * `baton status --watch`: the status as a live view, redrawn in place every interval (like `pm2 monit`):
 * the supervisor, each generation's pid, state, connections, CPU, memory and event loop, and the last
 * reloads. On a terminal it uses the alternate screen and quits on q or Ctrl-C, leaving the screen as it
 * was; piped, it prints one frame per interval. If the supervisor goes away meanwhile, the view says so
 * and keeps trying.
 */
import { sendCommand } from '../handoff/control.js';
import {
  connectionsCell,
  cpu,
  formatDuration,
  multiWorker,
  rss,
  supervisorLine,
  table,
  talliesLine,
  upgradesTable,
  workerCells,
  type StatusData,
} from './status-format.js';

export interface WatchOptions {
  socket: string;
  intervalMs: number;
  /** The first report: `baton status` fetched it (and stopped there, had it failed). */
  first: StatusData;
  out?: NodeJS.WriteStream;
  input?: NodeJS.ReadStream;
}

const ESC = '\x1b[';

/** One frame, as lines (not yet cut to the terminal's width). */
export function frame(d: StatusData | null, intervalMs: number, error: string | null, now = new Date()): string[] {
  const lines = [
    `baton status --watch   ${now.toISOString().slice(11, 19)} UTC   every ${intervalMs / 1000} s, q to quit`,
  ];
  if (error) lines.push(`${error} (retrying)`);
  if (!d) return lines;
  lines.push(supervisorLine(d).trimEnd(), talliesLine(d).trimEnd(), '');
  // N workers: a row per worker process, with its slot, what it accepted and its slot's restarts.
  const multi = multiWorker(d);
  const head = ['GEN', 'PID', 'STATE', 'UPTIME', 'CONNS', 'CPU', 'RSS', 'LOOP P99', 'LOOP BUSY'];
  const rows = [multi ? ['W', ...head.slice(0, 5), 'ACCEPTED', 'RESTARTS', ...head.slice(5)] : head];
  for (const g of d.generations) {
    const cells = [
      String(g.generation),
      String(g.pid),
      g.state,
      // A standalone generation's report has no start time.
      g.startedAt ? formatDuration(now.getTime() - Date.parse(g.startedAt)) : '-',
      connectionsCell(g),
    ];
    const rest = [
      cpu(g.usage),
      rss(g.usage),
      g.loop ? `${g.loop.delayP99Ms.toFixed(1)} ms` : '-',
      g.loop ? `${(g.loop.utilization * 100).toFixed(1)}%` : '-',
    ];
    const w = workerCells(g);
    rows.push(multi ? [w.worker, ...cells, w.accepted, w.restarts, ...rest] : [...cells, ...rest]);
  }
  lines.push(...table(rows).trimEnd().split('\n'));
  if (!d.generations.length) lines.push('(no generation running)');
  if (d.listeners?.length)
    lines.push('', `listeners: ${d.listeners.map((l) => `${l.name} ${l.address} (${l.kind})`).join(', ')}`);
  const upgrades = upgradesTable(d, 5);
  if (upgrades) lines.push('', 'last reloads:', ...upgrades.trimEnd().split('\n'));
  return lines.filter((l, i) => l !== '' || lines[i - 1] !== '');
}

/** Runs until q / Ctrl-C (terminal) or SIGINT/SIGTERM; returns the exit code. */
export function watch(opts: WatchOptions): Promise<number> {
  const out = opts.out ?? process.stdout;
  const input = opts.input ?? process.stdin;
  const tty = out.isTTY === true;
  let last: StatusData | null = opts.first;
  let error: string | null = null;
  let timer: NodeJS.Timeout | null = null;
  let busy = false;

  const draw = () => {
    const lines = frame(last, opts.intervalMs, error);
    if (!tty) {
      out.write(`${lines.join('\n')}\n\n`);
      return;
    }
    const width = out.columns || 120;
    const height = out.rows || 40;
    // Home, each line cut to the width and cleared to its end, then clear below: no flicker, no leftovers.
    const body = lines
      .slice(0, height - 1)
      .map((l) => `${l.slice(0, width)}${ESC}K`)
      .join('\r\n');
    out.write(`${ESC}H${body}\r\n${ESC}J`);
  };

  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      const r = await sendCommand(opts.socket, 'status', Math.max(2000, opts.intervalMs * 2));
      if (r.ok) {
        last = r.data as StatusData;
        error = null;
      } else error = `status failed: ${r.reason ?? r.code}`;
    } catch (err) {
      error = `cannot reach ${opts.socket}: ${(err as Error).message}`;
    } finally {
      busy = false;
    }
    draw();
  };

  return new Promise((resolve) => {
    const rawInput = tty && input.isTTY === true;
    const onKey = (key: Buffer) => {
      // q, Q, Ctrl-C (raw mode delivers it as a byte, not a signal), Ctrl-D
      if (key.includes(0x71) || key.includes(0x51) || key.includes(0x03) || key.includes(0x04)) finish(0);
    };
    const onSignal = () => finish(0);
    const onResize = () => draw();
    const finish = (code: number) => {
      if (timer) clearInterval(timer);
      timer = null;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      out.off('resize', onResize);
      if (rawInput) {
        input.off('data', onKey);
        input.setRawMode(false);
        input.pause();
      }
      // Leave the alternate screen and show the cursor again: the terminal is as it was before.
      if (tty) out.write(`${ESC}?25h${ESC}?1049l`);
      resolve(code);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    // Piped into `head` or a closed terminal: stop quietly.
    out.once('error', () => finish(0));
    if (tty) {
      out.write(`${ESC}?1049h${ESC}?25l${ESC}2J`);
      out.on('resize', onResize);
    }
    if (rawInput) {
      input.setRawMode(true);
      input.resume();
      input.on('data', onKey);
    }
    draw();
    timer = setInterval(() => void tick(), opts.intervalMs);
  });
}
