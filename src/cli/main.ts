/**
 * `baton` command-line entry: parses arguments and dispatches to run / reload / status / stop.
 * Exit codes: 0 success, 1 the command failed (e.g. a rolled-back reload), 2 bad usage.
 */
import { sendCommand } from '../handoff/control.js';
import { trustedSocketPath } from '../handoff/socket-dir.js';
import type { ControlCommand, Result } from '../handoff/messages.js';
import { createLogger } from '../upgrader/logger.js';
import { formatKinds } from '../upgrader/census.js';
import { VERSION } from '../version.js';
import { listTakeoverSockets } from '../upgrader/orphan.js';
import { isAlive } from './takeover.js';
import { CHECK_COMMAND, releaseHeldSignals, runImageCheck } from './reexec.js';
import { CONFIG_FLAGS, loadConfig, mergeFlags, type LoadedConfig } from './config.js';
import { defaultSocketPath } from './socket-path.js';
import { MetricsAddressError, MetricsServer, parseMetricsAddress, isLoopback } from './metrics.js';
import { cpu, rss, talliesLine, type StatusData as WatchData } from './status-format.js';
import { Supervisor, type UpgradeRecord } from './supervisor.js';
import { watch } from './watch.js';

const SOCKET_HELP = `  --socket PATH          control socket (default: $BATON_SOCKET, else $XDG_RUNTIME_DIR/baton.sock,
                         else ./baton.sock). Its directory and every parent must be owned by root or
                         you and not writable by others; in a sticky shared directory such as /tmp it
                         moves to a private subdirectory: /tmp/app.sock -> /tmp/baton-<uid>/app.sock`;

const HELP: Record<string, string> = {
  main: `baton ${VERSION} — zero-downtime restarts for Node.js

Usage:
  baton run [options] -- COMMAND [ARGS...]   supervise an app; upgrade it in place on reload
  baton run --config baton.config.json        the same, with the command and options from a file
  baton reload [options]                      start the next generation; exit 0 once it serves
  baton reload --supervisor [options]         re-execute the supervisor from the baton installed now
  baton status [options]                      generations, listeners, connections, last upgrades
  baton stop [options]                        stop gracefully: every generation drains, then exits

Options:
  -h, --help             show help (also: baton help COMMAND)
  -v, --version          print the version

In the app: import { Upgrader } from 'baton-reload' — see README.md.
`,
  run: `Usage: baton run [options] -- COMMAND [ARGS...]
       baton run --config FILE [--env NAME] [options] [-- COMMAND [ARGS...]]

Start COMMAND as generation 1 and supervise it. The supervisor keeps its pid (PID 1 in a container,
MAINPID for systemd) and a copy of every listening socket, so the port stays open even when a
generation crashes. SIGHUP or \`baton reload\` starts the next generation; SIGUSR2 or
\`baton reload --supervisor\` re-executes the supervisor itself from the baton installed now (same pid,
the generations keep serving); SIGTERM/SIGINT stop gracefully (a second one forces). If a supervisor on
this socket crashed, the generation it left behind is taken over: its connections move to the first
generation started here (README: "After a supervisor crash").

Options:
${SOCKET_HELP}
  --ready-timeout S      seconds a new generation has to call ready() (default 30)
  --drain-timeout S      seconds a replaced generation has to drain (default 30)
  --max-starts N         give up (exit 1 with the last error and its output) after N starts in a row
                         fail while nothing serves: no ready(), or an exit within --min-uptime of it
                         (default 5; 0: retry forever). Crashes after that restart with backoff
                         (100 ms doubling to 10 s); \`baton status\` counts the restarts
  --min-uptime S         a generation that exits sooner than S seconds after ready() counts as a
                         failed start (default 1)
  --log-format F         text (default) or json: one line per event on stderr
  --config FILE          the command, env and these options from a file (.json, .js, .mjs, .cjs; see
                         docs/config.md); a flag given here wins over the file
  --env NAME             apply the file's environments.NAME overrides (e.g. --env production)
  --fdstore              also keep the listeners in systemd's file descriptor store, so that even a
                         restart of the service keeps the ports open (FileDescriptorStoreMax=)
  --metrics [HOST:]PORT  serve Prometheus metrics at http://HOST:PORT/metrics (HOST: an IP address or
                         localhost, default 127.0.0.1; 0.0.0.0:PORT for every interface): docs/operations.md
  -h, --help             show this help

Under systemd (Type=notify or notify-reload) it reports READY=1, RELOADING=1, STOPPING=1 and STATUS=,
pings the watchdog, and takes sockets from socket activation (LISTEN_FDS): see docs/systemd.md.
`,
  reload: `Usage: baton reload [options]

Ask the supervisor to start the next generation and wait for the outcome: exit 0 when it serves,
1 with the reason (exit code, timeout, its last output) when it was rolled back — the old generation
kept serving throughout.

With --supervisor: re-execute the supervisor itself (same pid) from the baton installed now — the way to
upgrade baton without a restart. The generations, listeners and connections are untouched. The new
version is checked in a child process first; exit 0 once the new supervisor runs, 1 with the reason
when the check or the exec failed (the old supervisor keeps running). SIGUSR2 does the same.

Options:
${SOCKET_HELP}
  --supervisor           re-execute the supervisor instead of starting a new generation
  --timeout S            seconds to wait for the outcome (default 120)
  --json                 print the upgrade record as JSON
  -h, --help             show this help
`,
  status: `Usage: baton status [options]

Show the supervisor, its generations (pid, state, start time, time to ready, open connections), the
listening sockets, and the last 10 upgrades.

Options:
${SOCKET_HELP}
  --json                 machine-readable output
  -w, --watch            a live view refreshed in place (event loop, CPU, memory, last reloads); q quits
  --interval S           seconds between refreshes with --watch (default 1)
  -h, --help             show this help
`,
  stop: `Usage: baton stop [options]

Stop gracefully: the generations stop accepting, drain, exit, and then the supervisor exits.

Options:
${SOCKET_HELP}
  -h, --help             show this help
`,
};

class UsageError extends Error {}

interface Parsed {
  flags: Map<string, string | true>;
  rest: string[];
}

/** Options until `--` or the first non-option word; value options take the next word (or =value). */
function parse(argv: string[], valueFlags: string[], boolFlags: string[]): Parsed {
  const flags = new Map<string, string | true>();
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    if (!arg.startsWith('-')) break;
    const [name, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    if (name === '-h' || name === '--help') flags.set('help', true);
    else if (boolFlags.includes(name)) flags.set(name, true);
    else if (valueFlags.includes(name)) {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new UsageError(`${name} needs a value`);
      flags.set(name, value);
    } else throw new UsageError(`unknown option ${name}`);
  }
  return { flags, rest: argv.slice(i) };
}

function seconds(flags: Map<string, string | true>, name: string, def: number): number {
  const v = flags.get(name);
  if (v === undefined) return def * 1000;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isFinite(n) || n < 0) throw new UsageError(`${name} takes a number of seconds, got ${String(v)}`);
  return Math.round(n * 1000);
}

function count(flags: Map<string, string | true>, name: string, def: number): number {
  const v = flags.get(name);
  if (v === undefined) return def;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isInteger(n) || n < 0) {
    throw new UsageError(`${name} takes a whole number, got ${String(v)}`);
  }
  return n;
}

function socketOf(flags: Map<string, string | true>): string {
  const v = flags.get('--socket');
  return typeof v === 'string' ? defaultSocketPath({ BATON_SOCKET: v }) : defaultSocketPath();
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  try {
    switch (command) {
      case undefined:
      case '-h':
      case '--help':
        process.stdout.write(HELP.main!);
        return 0;
      case 'help':
        if (args[0] && !HELP[args[0]]) throw new UsageError(`unknown command '${args[0]}'`);
        process.stdout.write(HELP[args[0] ?? 'main']!);
        return 0;
      case '-v':
      case '--version':
        process.stdout.write(`${VERSION}\n`);
        return 0;
      case 'run':
        return await run(args);
      case 'reload':
        return await reload(args);
      case 'status':
        return await status(args);
      case 'stop':
        return await stop(args);
      case CHECK_COMMAND: // not a user command: a re-exec's check of the new image (src/cli/reexec.ts)
        return await runImageCheck();
      default:
        throw new UsageError(`unknown command or option '${command}'`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`baton: ${err.message}\nRun 'baton ${command && HELP[command] ? `${command} ` : ''}--help' for usage.\n`);
      return 2;
    }
    throw err;
  }
}

async function run(argv: string[]): Promise<number> {
  const values = ['--socket', '--ready-timeout', '--drain-timeout', '--log-format', '--max-starts', '--min-uptime'];
  const { flags, rest } = parse(argv, [...values, '--metrics', ...CONFIG_FLAGS], ['--fdstore']);
  if (flags.has('help')) {
    process.stdout.write(HELP.run!);
    return 0;
  }
  const config = await configOf(flags);
  const command = rest.length ? rest : (config?.command ?? []);
  if (command.length === 0) {
    throw new UsageError('run needs a command, e.g. baton run -- node server.js (or "command" in --config)');
  }
  // The file's variables are the supervisor's too (BATON_SOCKET, say), and every generation inherits them.
  if (config) Object.assign(process.env, config.env);
  const format = flags.get('--log-format') ?? 'text';
  if (format !== 'text' && format !== 'json') throw new UsageError(`--log-format is text or json, got ${String(format)}`);
  let metricsAddress: ReturnType<typeof parseMetricsAddress> | null = null;
  const metricsFlag = flags.get('--metrics');
  try {
    if (metricsFlag !== undefined) metricsAddress = parseMetricsAddress(String(metricsFlag));
  } catch (err) {
    if (err instanceof MetricsAddressError) throw new UsageError(err.message);
    throw err;
  }
  const logger = createLogger(format);
  const supervisor = new Supervisor({
    command,
    socket: socketOf(flags),
    readyTimeoutMs: seconds(flags, '--ready-timeout', 30),
    drainTimeoutMs: seconds(flags, '--drain-timeout', 30),
    logger,
    logFormat: format,
    fdStore: flags.has('--fdstore'),
    maxStarts: count(flags, '--max-starts', 5),
    minUptimeMs: seconds(flags, '--min-uptime', 1),
  });
  // The metrics endpoint is bound before anything starts, so a port in use fails `baton run` at once.
  let metrics: MetricsServer | null = null;
  if (metricsAddress) {
    try {
      metrics = await MetricsServer.listen(metricsAddress, () => supervisor.status());
    } catch (err) {
      process.stderr.write(`baton: --metrics ${String(metricsFlag)}: cannot listen: ${(err as Error).message}\n`);
      return 1;
    }
    logger.log('info', 'metrics-listen', { url: metrics.url, loopback: isLoopback(metrics.address.host) });
    void supervisor.finished.then(() => metrics?.close());
  }
  try {
    await supervisor.start();
  } catch (err) {
    metrics?.close();
    const e = err as NodeJS.ErrnoException;
    process.stderr.write(`baton: cannot start the supervisor: ${e.message}${e.code === 'EADDRINUSE' ? ' (another baton supervisor is running on this socket? use --socket)' : ''}\n`);
    return 1;
  }
  process.on('SIGHUP', () => {
    supervisor.reload('signal').catch(() => {});
  });
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => supervisor.stop(sig));
  process.on('SIGUSR2', () => {
    supervisor.reexec().catch(() => {}); // logged by the supervisor
  });
  releaseHeldSignals(); // after a re-exec: a SIGHUP or SIGUSR2 sent during it is delivered now
  const code = await supervisor.finished;
  if (supervisor.failure) process.stderr.write(`baton: giving up: ${supervisor.failure}\n`);
  return code;
}

/** `--config FILE [--env NAME]`: the file's options fill in the flags not given; null without --config. */
async function configOf(flags: Map<string, string | true>): Promise<LoadedConfig | null> {
  const file = flags.get('--config');
  const envName = flags.get('--env');
  if (file === undefined) {
    if (envName !== undefined) {
      throw new UsageError('--env selects an environment of the --config file: give --config too');
    }
    return null;
  }
  let config: LoadedConfig;
  try {
    config = await loadConfig(String(file), envName === undefined ? undefined : String(envName));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BATON_BAD_CONFIG') throw new UsageError((err as Error).message);
    throw err;
  }
  mergeFlags(flags, config);
  return config;
}

type Flags = Map<string, string | true>;

/** `command`: what to send, from the flags (`reload --supervisor` sends 'reexec'); by default `name`. */
async function control(
  argv: string[],
  name: 'reload' | 'status' | 'stop',
  timeoutMs: (flags: Flags) => number,
  bools: string[] = [],
  command: (flags: Flags) => ControlCommand = () => name,
): Promise<{ result: Result; flags: Flags } | number> {
  const { flags, rest } = parse(argv, ['--socket', '--timeout', ...(name === 'status' ? ['--interval'] : [])], bools);
  if (flags.has('help')) {
    process.stdout.write(HELP[name]!);
    return 0;
  }
  if (rest.length) throw new UsageError(`unexpected argument '${rest[0]}'`);
  let socket = socketOf(flags);
  try {
    // The same place `baton run` put it (e.g. /tmp/app.sock -> /tmp/baton-<uid>/app.sock), in a trusted directory.
    socket = trustedSocketPath(socket);
    return { result: await sendCommand(socket, command(flags), timeoutMs(flags)), flags };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const hint = e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? unreachableHint(socket) : '';
    process.stderr.write(`baton ${name}: cannot reach ${socket}: ${e.message}${hint}\n`);
    return 1;
  }
}

/** Nobody answers on the control socket: no supervisor, or one that crashed and left generations behind. */
function unreachableHint(socket: string): string {
  const orphans = listTakeoverSockets(socket).map((s) => s.pid).filter(isAlive);
  if (orphans.length) {
    return ` — its supervisor is gone; pid ${orphans.join(', ')} serve${orphans.length === 1 ? 's' : ''} on without it. ` +
      'Start `baton run` again with this socket: it takes over';
  }
  return ' — is `baton run` running with this socket? (use --socket or BATON_SOCKET)';
}

async function reload(argv: string[]): Promise<number> {
  const command = (f: Flags) => (f.has('--supervisor') ? 'reexec' : 'reload');
  const r = await control(argv, 'reload', (f) => seconds(f, '--timeout', 120), ['--json', '--supervisor'], command);
  if (typeof r === 'number') return r;
  const { result, flags } = r;
  if (flags.has('--supervisor')) return reexecOutcome(result, flags.has('--json'));
  const record = result.data as UpgradeRecord | undefined;
  if (flags.has('--json')) process.stdout.write(`${JSON.stringify({ ok: result.ok, code: result.code, reason: result.reason, upgrade: record ?? null })}\n`);
  else if (result.ok && record) process.stdout.write(`generation ${record.generation} (pid ${record.pid}) is serving; ready in ${record.readyMs} ms\n`);
  else process.stderr.write(`baton reload: ${result.code === 'ERR_BATON_ROLLED_BACK' ? 'rolled back, the old generation keeps serving: ' : ''}${result.reason ?? result.code}\n`);
  return result.ok ? 0 : 1;
}

function reexecOutcome(result: Result, json: boolean): number {
  const sup = result.data as StatusData['supervisor'] | undefined;
  if (json) {
    const { ok, code, reason } = result;
    process.stdout.write(`${JSON.stringify({ ok, code, reason, supervisor: sup ?? null })}\n`);
  } else if (result.ok && sup) {
    const what = `baton ${sup.version}, exec ${sup.execCount}`;
    process.stdout.write(`supervisor pid ${sup.pid} re-executed: ${what}; the generations kept serving\n`);
  } else {
    const why = result.reason ?? result.code;
    process.stderr.write(`baton reload --supervisor: failed, the old supervisor keeps running: ${why}\n`);
  }
  return result.ok ? 0 : 1;
}

async function stop(argv: string[]): Promise<number> {
  const r = await control(argv, 'stop', () => 10_000);
  if (typeof r === 'number') return r;
  if (!r.result.ok) process.stderr.write(`baton stop: ${r.result.reason ?? r.result.code}\n`);
  else process.stdout.write('stopping: the generations drain, then the supervisor exits\n');
  return r.result.ok ? 0 : 1;
}

async function status(argv: string[]): Promise<number> {
  argv = argv.map((a) => (a === '-w' ? '--watch' : a));
  const bools = ['--json', '--watch'];
  // The options are checked before the supervisor is asked anything.
  const given = parse(argv, ['--socket', '--timeout', '--interval'], bools).flags;
  const intervalMs = seconds(given, '--interval', 1);
  if (given.has('--interval') && !given.has('--watch')) throw new UsageError('--interval goes with --watch');
  if (intervalMs < 100) throw new UsageError(`--interval takes at least 0.1 seconds, got ${given.get('--interval')}`);
  if (given.has('--watch') && given.has('--json')) throw new UsageError('--watch and --json do not go together');
  const r = await control(argv, 'status', () => 10_000, bools);
  if (typeof r === 'number') return r;
  const { result, flags } = r;
  if (!result.ok) {
    process.stderr.write(`baton status: ${result.reason ?? result.code}\n`);
    return 1;
  }
  if (flags.has('--json')) {
    process.stdout.write(`${JSON.stringify(result.data, null, 2)}\n`);
    return 0;
  }
  if (flags.has('--watch')) return watch({ socket: socketOf(flags), intervalMs, first: result.data as WatchData });
  process.stdout.write(formatStatus(result.data as StatusData));
  return 0;
}

interface StatusData {
  supervisor?: {
    pid: number; socket: string; uptimeMs: number; command: string[]; restarts?: number; failedStarts?: number;
    startedAt?: string; version?: string; execCount?: number; execAt?: string | null;
    usage?: WatchData['generations'][number]['usage'];
  };
  tallies?: WatchData['tallies'];
  generations: Array<{
    generation: number; pid: number; state: string; startedAt: string; readyMs: number | null; connections: number;
    kinds?: Record<string, number>; waitingFor?: string; usage?: WatchData['generations'][number]['usage'];
  }>;
  listeners?: Array<{ name: string; kind: string; address: string }>;
  upgrades?: UpgradeRecord[];
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n') + '\n';
}

/** A draining generation: "sse 20, http 1", or its predecessor still handing connections over. */
function waitingFor(g: StatusData['generations'][number]): string {
  if (g.state !== 'draining') return '';
  if (g.waitingFor === 'predecessor') return "its predecessor to finish handing over";
  return formatKinds(g.kinds);
}

function formatStatus(d: StatusData): string {
  let out = '';
  if (d.supervisor) {
    const sv = d.supervisor;
    const inARow = sv.failedStarts ? ` (${sv.failedStarts} failed in a row)` : '';
    const plural = sv.restarts === 1 ? '' : 's';
    const execs = sv.execCount ? `, re-executed ${sv.execCount}x (last ${sv.execAt})` : '';
    const image = sv.version ? `, baton ${sv.version}${execs}` : '';
    const restarts = sv.restarts === undefined ? '' : `, ${sv.restarts} restart${plural}${inARow}`;
    const usage = sv.usage === undefined ? '' : `, CPU ${cpu(sv.usage)}, RSS ${rss(sv.usage)}`;
    out += `supervisor pid ${sv.pid}, up ${Math.round(sv.uptimeMs / 1000)} s${restarts}, socket ${sv.socket}${image}`;
    out += `${usage}\n`;
    out += `command: ${sv.command.join(' ')}\n${talliesLine(d as WatchData)}\n`;
  }
  out += table([
    ['GENERATION', 'PID', 'STATE', 'STARTED', 'READY IN', 'CONNECTIONS', 'CPU', 'RSS', 'WAITING FOR'],
    ...d.generations.map((g) => [
      String(g.generation), String(g.pid), g.state, g.startedAt, g.readyMs === null ? '-' : `${g.readyMs} ms`,
      String(g.connections), cpu(g.usage), rss(g.usage), waitingFor(g),
    ]),
  ]);
  if (d.listeners) {
    out += '\n' + table([['LISTENER', 'KIND', 'ADDRESS'], ...d.listeners.map((l) => [l.name, l.kind, l.address])]);
  }
  if (d.upgrades?.length) {
    out += '\n' + table([
      ['UPGRADE', 'KIND', 'OUTCOME', 'READY IN', 'DRAIN', 'MOVED', 'AT', 'REASON'],
      ...d.upgrades.map((u) => [
        `gen ${u.generation} (pid ${u.pid})`, u.kind, u.outcome,
        u.readyMs === undefined ? '-' : `${u.readyMs} ms`,
        u.drainMs === undefined ? '-' : `${u.drainMs} ms`,
        u.moved === undefined ? '-' : `${u.moved} of ${u.moved + (u.notMoved ?? 0)}`,
        u.startedAt, (u.reason ?? '').split('\n')[0]!.slice(0, 80),
      ]),
    ]);
    // The table has room for one line of a reason; the last failure's whole reason, with its output, follows.
    const failed = d.upgrades.filter((u) => u.outcome === 'rolled-back' && u.reason).pop();
    if (failed) {
      const reason = failed.reason!.replace(/\n/g, '\n  ');
      out += `\nlast failure: generation ${failed.generation} (pid ${failed.pid}), ${failed.kind}, ${reason}\n`;
    }
  }
  return out;
}
