/**
 * Replacing the supervisor in place: SIGUSR2 or `baton reload --supervisor` re-executes `baton run` from the
 * baton installed now, in the same process. The pid stays (systemd's MAINPID, a container's PID 1), the
 * generations stay its children and keep serving untouched, and the fds that matter cross the exec:
 *
 *   carried (FD_CLOEXEC cleared just before execve): the control socket's listener, the supervisor's copy of
 *     every listener, each generation's control session and the read end of its stderr pipe, and the control
 *     session of the `baton reload --supervisor` that asked (it gets its answer from the new image); with
 *     `--workers N`, every lane's (worker slot's) generations and copies of its sockets, and every slot socket;
 *   plus one memfd holding the rest as JSON (SupervisorState), named by $BATON_REEXEC_STATE.
 *   re-established by the new image: everything in memory — ChildProcess objects become pidfds polled through
 *     libuv (watchChildExit, src/fd/process.ts), timers (drain deadlines, respawn, watchdog) are re-armed from
 *     timestamps.
 *   lost, by design: control commands in mid-conversation other than the requester's (their client sees the
 *     connection close; connections not accepted yet wait in the listener's queue and are answered).
 *
 * The models: nginx's binary upgrade (USR2) and HAProxy's master re-exec pass the listeners across exec the
 * same way; systemd's daemon-reexec serialises its state into a memfd. Unlike nginx, the pid cannot change
 * (the service manager and a container runtime know this one), so the old image cannot keep running next to
 * the new one to fall back on. Rollback is therefore done before the exec, where it is still possible:
 *
 *   1. a check: the new entry script runs in a forked child (`__reexec-check`), which loads the whole CLI, the
 *      supervisor and the native addon of the baton installed now, and parses this very state (a dry run: it
 *      touches no fd). A syntax error, a missing file, an addon built for another Node, a state format it
 *      does not know: the check fails, nothing was changed, the old image keeps running and says why.
 *   2. the exec itself: if execve fails (ENOENT, E2BIG...), the addon restores every FD_CLOEXEC and the signal
 *      mask before it throws, and the old image carries on.
 * What remains is a new image that passes the check and then dies while restoring: the generations keep
 * serving on their own (a generation that loses its supervisor logs `supervisor-gone` and carries on), and
 * the service manager's restart starts over.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { batonError } from '../fd/errors.js';
import { execve, memfd as createMemfd, releaseSignals } from '../fd/exec.js';
import { closeFds, isOpen } from '../fd/fds.js';
import type { Held } from '../handoff/inventory.js';
import { checkEntry, decode } from '../handoff/decode.js';
import { encode, PROTOCOL_VERSION, type Hello, type InventoryEntry } from '../handoff/messages.js';
import { VERSION } from '../version.js';
import { outputTail } from './output-tail.js';
import { BALANCES, type Balance, type SlotGroupState } from './slots.js';

/** The fd number of the state memfd, in the new image's environment (removed as soon as it is read). */
export const STATE_ENV = 'BATON_REEXEC_STATE';
/** The entry script the re-exec runs, if not the one this supervisor was started from (process.argv[1]). */
export const ENTRY_ENV = 'BATON_REEXEC_ENTRY';
/** The state formats this image reads. A new format gets a new number; an image that does not know the
 * number fails the check, so the old image keeps running. 1: one worker; 2: `--workers N` (its lanes and slot
 * sockets in `workers`). A supervisor with one worker still writes 1, so that an older baton can take it. */
export const STATE_FORMAT = 1;
export const STATE_FORMAT_WORKERS = 2;
const STATE_FORMATS = [STATE_FORMAT, STATE_FORMAT_WORKERS];
/** The hidden command the check runs. */
export const CHECK_COMMAND = '__reexec-check';
/** How long the check may take: loading the CLI takes ~150 ms on this machine, 20x that when it is loaded. */
const CHECK_TIMEOUT_MS = 15_000;
/** Signals that ask the supervisor something (reload, re-exec): held blocked across the exec so that one sent
 * while the new Node starts waits instead of killing it (their default action is to terminate). */
const HELD_SIGNALS: readonly NodeJS.Signals[] = ['SIGHUP', 'SIGUSR2'];

export interface CarriedGeneration {
  generation: number;
  pid: number;
  state: 'serving' | 'draining';
  startedAt: number;
  readyAt: number | null;
  drainStartedAt: number | null;
  connections: number;
  /** Its control session (null when it had none left: it is drained by signal). */
  session: { fd: number; hello: Hello } | null;
  /** The read end of its stderr pipe (null once it ended). */
  stderrFd: number | null;
  stderrTail: string;
  /** Sockets it registered that join the inventory when it is next promoted (their fds are carried). */
  registered: Held[];
  /** The generation whose upgrade replaced this one (its record in `history` gets the drain time). */
  replacedBy: number | null;
  /** Its worker slot (`--workers N`); absent: 0. */
  worker?: number;
}

/** One lane's state (a Generations and its crash loop): the supervisor's (lane 0) at the top level of the state,
 * each other worker slot's in `workers.lanes`. */
export interface CarriedLane<Record = unknown> {
  /** The lane's copy of every listener its generations are handed. */
  inventory: Held[];
  generations: CarriedGeneration[];
  next: number;
  current: number | null;
  history: Record[];
  backoffMs: number;
  /** Crash-loop accounting (crash-loop.ts). */
  failedStarts: number;
  restarts: number;
  exitCode: number;
  readySent: boolean;
  /** No generation served and a respawn was scheduled. */
  respawnDue: boolean;
}

/** `baton run --workers N` (format 2): the slot sockets and lanes 1..N-1. */
export interface CarriedWorkers<Record = unknown> {
  /** N, the slots now (a resize may have changed it since the command line). */
  slots: number;
  balance: Balance;
  /** Every slot socket, kept ones included (SlotSockets.carry). */
  groups: SlotGroupState[];
  lanes: CarriedLane<Record>[];
}

export interface SupervisorState<Record = unknown> extends CarriedLane<Record> {
  format: number;
  /** The baton version that wrote it. */
  version: string;
  pid: number;
  socket: string;
  /** The control socket's listener. */
  serverFd: number;
  startedAt: number;
  /** How many re-execs this supervisor went through, and when the last one was. */
  execCount: number;
  execAt: number | null;
  /** Listener names in the service manager's fd store. */
  stored: string[];
  /** The `baton reload --supervisor` waiting for the outcome. */
  requester: { fd: number; hello: Hello } | null;
  /** Format 2 only. */
  workers?: CarriedWorkers<Record>;
}

/** Every fd a lane carries. */
function laneFds(lane: CarriedLane): number[] {
  const fds = lane.inventory.map((i) => i.fd);
  for (const g of lane.generations) {
    if (g.session) fds.push(g.session.fd);
    if (g.stderrFd !== null) fds.push(g.stderrFd);
    fds.push(...g.registered.map((r) => r.fd));
  }
  return fds;
}

/** Every fd a state carries. */
export function carriedFds(state: SupervisorState): number[] {
  const fds = [state.serverFd, ...laneFds(state)];
  for (const group of state.workers?.groups ?? []) fds.push(...group.fds);
  for (const lane of state.workers?.lanes ?? []) fds.push(...laneFds(lane));
  if (state.requester) fds.push(state.requester.fd);
  return fds;
}

function invalid(what: string): Error {
  return batonError('ERR_BATON_REEXEC_STATE', `the supervisor's carried state is not valid: ${what}`);
}

const isInt = (v: unknown, min = 0): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min;
const isFd = (v: unknown): v is number => isInt(v, 0) && v < 1 << 20;

function checkHello(v: unknown): Hello {
  try {
    const msg = decode(encode({ ...(v as Hello), v: PROTOCOL_VERSION, type: 'hello' }));
    if (msg.type !== 'hello') throw new Error('not a hello');
    return msg;
  } catch (err) {
    throw invalid(`a session's hello: ${(err as Error).message}`);
  }
}

function checkInventoryEntry(v: unknown, what: string): InventoryEntry {
  try {
    return checkEntry(v);
  } catch (err) {
    throw invalid(`${what}: ${(err as Error).message}`);
  }
}

/** Validates one lane's part of a state; `lane`: its name in messages ('' for lane 0). */
function validateLane(s: CarriedLane, lane: string): void {
  for (const k of ['next', 'backoffMs', 'failedStarts', 'restarts', 'exitCode'] as const) {
    if (!isInt(s[k])) throw invalid(`${lane}${k}`);
  }
  for (const k of ['inventory', 'generations', 'history'] as const) {
    if (!Array.isArray(s[k])) throw invalid(`${lane}${k}`);
  }
  for (const i of s.inventory) {
    if (!isFd(i?.fd)) throw invalid(`${lane}an inventory fd`);
    i.entry = checkInventoryEntry(i.entry, `${lane}an inventory entry`);
  }
  for (const g of s.generations) {
    if (!isInt(g?.generation, 1) || !isInt(g.pid, 2) || (g.state !== 'serving' && g.state !== 'draining')) {
      throw invalid(`${lane}a generation`);
    }
    if (g.worker !== undefined && !isInt(g.worker)) throw invalid(`generation ${g.generation}'s worker`);
    if (g.session !== null && !isFd(g.session?.fd)) throw invalid(`generation ${g.generation}'s session`);
    if (g.session) g.session.hello = checkHello(g.session.hello);
    if (g.stderrFd !== null && !isFd(g.stderrFd)) throw invalid(`generation ${g.generation}'s stderr`);
    if (typeof g.stderrTail !== 'string' || !isInt(g.startedAt) || !isInt(g.connections)) {
      throw invalid(`generation ${g.generation}`);
    }
    if (!Array.isArray(g.registered)) throw invalid(`generation ${g.generation}'s registered sockets`);
    for (const r of g.registered) {
      if (!isFd(r?.fd)) throw invalid(`generation ${g.generation}'s registered fd`);
      r.entry = checkInventoryEntry(r.entry, `generation ${g.generation}'s registered socket`);
    }
  }
}

const SLOT_KINDS = ['tcp', 'udp', 'unix'];

/** Validates the `--workers N` part of a state: the slot sockets, and a lane for each slot but 0. */
function validateWorkers(w: CarriedWorkers | undefined): void {
  if (typeof w !== 'object' || w === null) throw invalid('format 2 without its workers');
  if (!isInt(w.slots, 2) || !BALANCES.includes(w.balance)) throw invalid('workers: slots / balance');
  if (!Array.isArray(w.groups) || !Array.isArray(w.lanes)) throw invalid('workers: groups / lanes');
  for (const g of w.groups) {
    const spec = g?.spec;
    if (
      typeof g?.name !== 'string' ||
      !g.name ||
      !SLOT_KINDS.includes(g.kind) ||
      typeof g.shared !== 'boolean' ||
      typeof g.address !== 'string' ||
      !Array.isArray(g.fds) ||
      g.fds.length < w.slots ||
      !g.fds.every(isFd) ||
      (spec !== null && (typeof spec !== 'object' || spec.kind !== g.kind))
    ) {
      throw invalid(`workers: slot sockets ${JSON.stringify(g?.name)}`);
    }
  }
  if (w.lanes.length !== w.slots - 1) throw invalid(`workers: ${w.lanes.length} lanes for ${w.slots} slots`);
  w.lanes.forEach((lane, i) => {
    if (typeof lane !== 'object' || lane === null) throw invalid(`worker ${i + 1}'s lane`);
    validateLane(lane, `worker ${i + 1}: `);
  });
}

/** Validates a parsed state (the new image trusts nothing it did not check, not even its predecessor). */
export function validateState(v: unknown): SupervisorState {
  if (typeof v !== 'object' || v === null) throw invalid('not an object');
  const s = v as SupervisorState;
  if (!STATE_FORMATS.includes(s.format)) {
    throw invalid(`format ${String(s.format)} (this baton ${VERSION} reads formats ${STATE_FORMATS.join(', ')})`);
  }
  if (s.pid !== process.pid && !checking) throw invalid(`written by pid ${String(s.pid)}, this is pid ${process.pid}`);
  if (typeof s.socket !== 'string' || !s.socket || !isFd(s.serverFd)) throw invalid('socket / serverFd');
  for (const k of ['startedAt', 'execCount'] as const) if (!isInt(s[k])) throw invalid(k);
  if (!Array.isArray(s.stored)) throw invalid('stored');
  validateLane(s, '');
  if (s.format === STATE_FORMAT_WORKERS) validateWorkers(s.workers);
  else if (s.workers !== undefined) throw invalid(`format ${s.format} with workers`);
  if (s.requester !== null) {
    if (!isFd(s.requester?.fd)) throw invalid('the requester');
    s.requester.hello = checkHello(s.requester.hello);
  }
  const fds = carriedFds(s);
  if (new Set(fds).size !== fds.length) throw invalid('an fd is carried twice');
  return s;
}

/** Set in the check child: the state it parses was written by another pid. */
let checking = false;
/** Set once a carried state was taken: the new image must release the signals the exec held. */
let held = false;

/**
 * The state the previous image left, or null if this process was not re-executed. Removes the variable
 * and closes the memfd; the fds the state names are the caller's from here on. Throws if it is not valid.
 */
export function takeCarriedState(): SupervisorState | null {
  const v = process.env[STATE_ENV];
  if (v === undefined) return null;
  delete process.env[STATE_ENV];
  held = true;
  const fd = Number(v);
  if (!isFd(fd)) throw invalid(`${STATE_ENV}=${v}`);
  let text: string;
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(size);
    let off = 0;
    while (off < size) {
      const n = fs.readSync(fd, buf, off, size - off, off);
      if (n === 0) break;
      off += n;
    }
    text = buf.subarray(0, off).toString('utf8');
  } finally {
    closeFds([fd]);
  }
  try {
    return validateState(JSON.parse(text));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BATON_REEXEC_STATE') throw err;
    throw invalid((err as Error).message);
  }
}

/** After the new image installed its signal handlers: deliver what arrived during the exec. */
export function releaseHeldSignals(): void {
  if (!held) return;
  held = false;
  releaseSignals(HELD_SIGNALS);
}

/** The entry script a re-exec runs: $BATON_REEXEC_ENTRY, else the one this process started from. */
export function reexecEntry(): string {
  const entry = process.env[ENTRY_ENV] || process.argv[1];
  if (!entry) {
    const why = 'cannot tell which script started this supervisor (process.argv[1] is empty)';
    throw batonError('ERR_BATON_REEXEC_FAILED', why);
  }
  return path.resolve(entry);
}

/** Environment for the check child: it must not talk to the service manager. */
function checkEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', STATE_ENV]) delete env[k];
  return env;
}

/**
 * Step 1 of the rollback design (see the top of this file): run the new image as a child with the state on
 * its stdin. Resolves with the new image's version; rejects (ERR_BATON_REEXEC_FAILED, with its output) if it
 * does not load, does not read the state, or takes longer than CHECK_TIMEOUT_MS.
 */
export function checkNewImage(entry: string, state: SupervisorState): Promise<{ version: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, entry, CHECK_COMMAND], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: checkEnv(),
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out = (out + d).slice(-65536)));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4096)));
    child.stdin.on('error', () => {}); // a child that dies before reading: its exit says why
    child.stdin.end(JSON.stringify(state));
    const fail = (why: string) => {
      // Node 24 prints more stack lines than 20 did: keep the error's own line (a SyntaxError, say) in front.
      const tail = outputTail(err, 8);
      const output = tail ? `; its output:\n${tail}` : '';
      const message = `the new supervisor image (${entry}) failed its check: ${why}${output}`;
      reject(batonError('ERR_BATON_REEXEC_FAILED', message));
    };
    const timer = setTimeout(() => {
      try {
        process.kill(child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }, CHECK_TIMEOUT_MS);
    child.on('error', (e) => {
      clearTimeout(timer);
      fail(e.message);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const timedOut = signal === 'SIGKILL' ? ` (no answer within ${CHECK_TIMEOUT_MS} ms?)` : '';
      if (code !== 0) return fail(signal ? `killed by ${signal}${timedOut}` : `exit code ${code}`);
      let answer: { ok?: unknown; version?: unknown } = {};
      try {
        answer = JSON.parse(out.trim().split('\n').pop() ?? '');
      } catch {
        // handled below
      }
      if (answer.ok !== true || typeof answer.version !== 'string') {
        return fail(`unexpected answer ${JSON.stringify(out.trim().slice(0, 200))}`);
      }
      resolve({ version: answer.version });
    });
  });
}

/** The check, in the new image (`baton __reexec-check`): read the state from stdin and validate it. */
export async function runImageCheck(): Promise<number> {
  checking = true;
  let text = '';
  for await (const chunk of process.stdin) text += String(chunk);
  try {
    validateState(JSON.parse(text));
  } catch (err) {
    process.stderr.write(`baton ${CHECK_COMMAND}: ${(err as Error).message}\n`);
    return 1;
  }
  process.stdout.write(`${JSON.stringify({ ok: true, version: VERSION, format: STATE_FORMAT })}\n`);
  return 0;
}

/**
 * Step 2: write the state into a memfd and execve `entry` with this process's node, node options and
 * arguments. Returns only by throwing (ERR_BATON_REEXEC_FAILED, with the errno of the failed call): then
 * nothing changed — the addon put every FD_CLOEXEC and the signal mask back.
 */
export function execImage(entry: string, state: SupervisorState): never {
  const memfd = createMemfd('baton-supervisor-state');
  try {
    const data = Buffer.from(JSON.stringify(state));
    for (let off = 0; off < data.length; ) off += fs.writeSync(memfd, data, off, data.length - off, off);
    const argv = [process.execPath, ...process.execArgv, entry, ...process.argv.slice(2)];
    // stdin, stdout and stderr too: Node marks them close-on-exec (measured: without this the new image
    // found 0-2 closed and Node opened /dev/null in their place, so its log went nowhere).
    const stdio = [0, 1, 2].filter((fd) => isOpen(fd));
    const env = { ...process.env, [STATE_ENV]: String(memfd) };
    execve(process.execPath, argv, env, [...stdio, ...carriedFds(state), memfd], HELD_SIGNALS);
  } catch (err) {
    closeFds([memfd]);
    const e = err as NodeJS.ErrnoException;
    const extra = { syscall: e.syscall, errno: e.errno };
    throw batonError('ERR_BATON_REEXEC_FAILED', `could not re-execute the supervisor: ${e.message}`, extra);
  }
}
