/**
 * `baton` command-line entry: parses arguments and dispatches to run / reload / status / stop.
 * Exit codes: 0 success, 1 the command failed (e.g. a rolled-back reload), 2 bad usage.
 */
import cluster from 'node:cluster';
import { sendCommand } from '../handoff/control.js';
import { trustedSocketPath } from '../handoff/socket-dir.js';
import type { ControlCommand, ReloadOptions, Result } from '../handoff/messages.js';
import { DEFAULT_HELLO_TIMEOUT_MS } from '../handoff/session.js';
import { createLogger } from '../upgrader/logger.js';
import { VERSION } from '../version.js';
import { listTakeoverSockets } from '../upgrader/orphan.js';
import { isAlive } from './takeover.js';
import { CHECK_COMMAND, releaseHeldSignals, runImageCheck } from './reexec.js';
import { CONFIG_FLAGS, loadConfig, mergeFlags, type LoadedConfig } from './config.js';
import { defaultSocketPath } from './socket-path.js';
import { MetricsAddressError, MetricsServer, parseMetricsAddress, isLoopback } from './metrics.js';
import { formatStatus, type StatusData as WatchData, type StatusReply, upgradePids } from './status-format.js';
import { Supervisor, type UpgradeRecord } from './supervisor.js';
import { watch } from './watch.js';
import { HELP } from './help.js';
import type { Balance } from './slots.js';
import { parseBalance, parseWorkers, WorkersFlagError } from './workers.js';

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
    const [name, inline] = arg.includes('=')
      ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
      : [arg, undefined];
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
  if (typeof v !== 'string' || !Number.isFinite(n) || n < 0)
    throw new UsageError(`${name} takes a number of seconds, got ${String(v)}`);
  return Math.round(n * 1000);
}

/** --hello-timeout: seconds > 0 (0 would mean no limit: a silent peer holding a control connection forever). */
function helloTimeout(flags: Map<string, string | true>): number {
  const ms = seconds(flags, '--hello-timeout', DEFAULT_HELLO_TIMEOUT_MS / 1000);
  if (ms <= 0)
    throw new UsageError(`--hello-timeout takes a number of seconds > 0, got ${String(flags.get('--hello-timeout'))}`);
  return ms;
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
      process.stderr.write(
        `baton: ${err.message}\nRun 'baton ${command && HELP[command] ? `${command} ` : ''}--help' for usage.\n`,
      );
      return 2;
    }
    throw err;
  }
}

async function run(argv: string[]): Promise<number> {
  const values = [
    '--socket',
    '--ready-timeout',
    '--drain-timeout',
    '--hello-timeout',
    '--log-format',
    '--max-starts',
    '--min-uptime',
  ];
  const { flags, rest } = parse(
    argv,
    [...values, '--metrics', '--workers', '--balance', ...CONFIG_FLAGS],
    ['--fdstore', '--rolling'],
  );
  if (flags.has('help')) {
    process.stdout.write(HELP.run!);
    return 0;
  }
  refuseClusterWorker();
  const config = await configOf(flags);
  const { workers, balance } = workersOf(flags);
  if (flags.has('--rolling') && workers === 1) throw new UsageError('--rolling goes with --workers N (N > 1)');
  const command = rest.length ? rest : (config?.command ?? []);
  if (command.length === 0) {
    throw new UsageError('run needs a command, e.g. baton run -- node server.js (or "command" in --config)');
  }
  // The file's variables are the supervisor's too (BATON_SOCKET, say), and every generation inherits them.
  if (config) Object.assign(process.env, config.env);
  const format = flags.get('--log-format') ?? 'text';
  if (format !== 'text' && format !== 'json')
    throw new UsageError(`--log-format is text or json, got ${String(format)}`);
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
    helloTimeoutMs: helloTimeout(flags),
    logger,
    logFormat: format,
    fdStore: flags.has('--fdstore'),
    maxStarts: count(flags, '--max-starts', 5),
    minUptimeMs: seconds(flags, '--min-uptime', 1),
    workers,
    balance,
    rolling: flags.has('--rolling'),
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
    const hint = e.code === 'EADDRINUSE' ? ' (another baton supervisor is running on this socket? use --socket)' : '';
    process.stderr.write(`baton: cannot start the supervisor: ${e.message}${hint}\n`);
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

/**
 * Started with NODE_UNIQUE_ID in its environment, this process took itself for a node:cluster worker (Node
 * removed the variable before this code ran, so only cluster.isWorker tells): its `net` listens go to a primary
 * that does not exist and never complete (measured on Node 20.20: `baton run --metrics` exited 0, silently, as
 * nothing was left to run). Refused before anything starts; docs/workers.md.
 */
function refuseClusterWorker(): void {
  if (!cluster.isWorker) return;
  throw new UsageError(
    'baton run cannot run as a node:cluster worker (NODE_UNIQUE_ID is set in its environment: start it from a ' +
      'shell or service manager, not with cluster.fork(), or unset NODE_UNIQUE_ID)',
  );
}

/** `--workers` and `--balance`, checked before anything starts (docs/workers.md). */
function workersOf(flags: Flags): { workers: number; balance: Balance } {
  const text = (name: string) => (flags.has(name) ? String(flags.get(name)) : undefined);
  let workers: number;
  let balance: Balance;
  try {
    workers = parseWorkers(text('--workers'));
    balance = parseBalance(text('--balance'));
  } catch (err) {
    if (err instanceof WorkersFlagError) throw new UsageError(err.message);
    throw err;
  }
  if (flags.has('--balance') && workers === 1) throw new UsageError('--balance goes with --workers N (N > 1)');
  return { workers, balance };
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

/** What `baton reload|status|stop` sends: the command (`reload --supervisor` sends 'reexec'; by default the name)
 * and, for a reload, how it is to run. Throws UsageError for bad flags. */
interface Ask {
  command?: (flags: Flags) => ControlCommand;
  reload?: (flags: Flags) => ReloadOptions;
}

async function control(
  argv: string[],
  name: 'reload' | 'status' | 'stop',
  timeoutMs: (flags: Flags) => number,
  bools: string[] = [],
  ask: Ask = {},
): Promise<{ result: Result; flags: Flags } | number> {
  const values = [
    '--socket',
    '--timeout',
    ...(name === 'status' ? ['--interval'] : name === 'reload' ? ['--workers'] : []),
  ];
  const { flags, rest } = parse(argv, values, bools);
  if (flags.has('help')) {
    process.stdout.write(HELP[name]!);
    return 0;
  }
  if (rest.length) throw new UsageError(`unexpected argument '${rest[0]}'`);
  const command = ask.command?.(flags) ?? name;
  const options = ask.reload?.(flags) ?? {};
  let socket = socketOf(flags);
  try {
    // The same place `baton run` put it (e.g. /tmp/app.sock -> /tmp/baton-<uid>/app.sock), in a trusted directory.
    socket = trustedSocketPath(socket);
    return { result: await sendCommand(socket, command, timeoutMs(flags), options), flags };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const hint = e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? unreachableHint(socket) : '';
    process.stderr.write(`baton ${name}: cannot reach ${socket}: ${e.message}${hint}\n`);
    return 1;
  }
}

/** Nobody answers on the control socket: no supervisor, or one that crashed and left generations behind. */
function unreachableHint(socket: string): string {
  const orphans = listTakeoverSockets(socket)
    .map((s) => s.pid)
    .filter(isAlive);
  if (orphans.length) {
    return (
      ` — its supervisor is gone; pid ${orphans.join(', ')} serve${orphans.length === 1 ? 's' : ''} on without it. ` +
      'Start `baton run` again with this socket: it takes over'
    );
  }
  return ' — is `baton run` running with this socket? (use --socket or BATON_SOCKET)';
}

async function reload(argv: string[]): Promise<number> {
  const command = (f: Flags) => (f.has('--supervisor') ? 'reexec' : 'reload');
  const bools = ['--json', '--supervisor', '--rolling'];
  const r = await control(argv, 'reload', (f) => seconds(f, '--timeout', 120), bools, {
    command,
    reload: reloadOptions,
  });
  if (typeof r === 'number') return r;
  const { result, flags } = r;
  if (flags.has('--supervisor')) return reexecOutcome(result, flags.has('--json'));
  const record = result.data as UpgradeRecord | undefined;
  if (flags.has('--json'))
    process.stdout.write(
      `${JSON.stringify({ ok: result.ok, code: result.code, reason: result.reason, upgrade: record ?? null })}\n`,
    );
  else if (result.ok && record)
    process.stdout.write(
      `generation ${record.generation} (${upgradePids(record)}) is serving; ready in ${record.readyMs} ms\n`,
    );
  else {
    const rolledBack = result.code === 'ERR_BATON_ROLLED_BACK' ? 'rolled back, the old generation keeps serving: ' : '';
    process.stderr.write(`baton reload: ${rolledBack}${result.reason ?? result.code}\n`);
  }
  return result.ok ? 0 : 1;
}

/** `baton reload --rolling` / `--workers M|max`, checked before the supervisor is asked anything. */
function reloadOptions(flags: Flags): ReloadOptions {
  const options: ReloadOptions = {};
  const workers = flags.get('--workers');
  if (workers !== undefined) {
    try {
      const n = parseWorkers(String(workers));
      options.workers = workers === 'max' ? 'max' : n;
    } catch (err) {
      if (err instanceof WorkersFlagError) throw new UsageError(err.message);
      throw err;
    }
  }
  if (flags.has('--rolling')) options.rolling = true;
  if (flags.has('--supervisor') && (options.rolling || options.workers !== undefined)) {
    throw new UsageError('--supervisor re-executes the supervisor: --rolling and --workers go with a plain reload');
  }
  if (options.rolling && options.workers !== undefined) {
    throw new UsageError('--rolling and --workers do not go together: a scale is a two-phase reload');
  }
  return options;
}

function reexecOutcome(result: Result, json: boolean): number {
  const sup = result.data as StatusReply['supervisor'] | undefined;
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
  process.stdout.write(formatStatus(result.data as StatusReply));
  return 0;
}
