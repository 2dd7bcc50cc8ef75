/**
 * The service manager's fd-level protocols, as libsystemd's sd-daemon implements them, without libsystemd
 * (systemd documents them as stable interfaces any program may speak):
 *
 * - sdNotify(): the notification protocol. One AF_UNIX datagram to $NOTIFY_SOCKET (a path, or '@name' for
 *   an abstract socket) with newline-separated `KEY=value` fields: READY=1, RELOADING=1, STOPPING=1,
 *   STATUS=…, WATCHDOG=1, MAINPID=…, FDSTORE=1 with fds attached (SCM_RIGHTS), …
 * - sdListenFds(): fds the manager passed in — socket activation and the fd store handing its fds back:
 *   $LISTEN_FDS fds from fd 3 on, for the process $LISTEN_PID, named by $LISTEN_FDNAMES (':'-separated).
 * - sdWatchdog(): whether the manager expects WATCHDOG=1 pings ($WATCHDOG_USEC, for $WATCHDOG_PID).
 *
 * Policy (what to send when) is the upgrader's and the supervisor's business: see src/integrations/systemd.ts.
 */
import { argTypeError } from './errors.js';
import { native } from './native.js';

/** The first fd the manager passes (SD_LISTEN_FDS_START). */
export const SD_LISTEN_FDS_START = 3;

/** The variables of the socket-activation protocol, which must not leak into the environment of children. */
export const SD_LISTEN_ENV = ['LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES'] as const;
/** The variables that address the manager's notification socket and watchdog to one process. */
export const SD_NOTIFY_ENV = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID'] as const;

export type NotifyFields = Record<string, string | number | bigint | boolean>;

export interface NotifyOptions {
  /** Attached with SCM_RIGHTS (FDSTORE=1). The caller keeps its own fds; the manager receives copies. */
  fds?: readonly number[];
  /** The socket; default $NOTIFY_SOCKET. */
  socket?: string | null;
}

/**
 * Send one notification. `state` is the message text ("READY=1\nSTATUS=serving") or fields
 * ({ READY: 1, STATUS: 'serving' }; a value's newlines become spaces, so one field cannot inject another).
 * Returns false when there is no socket to send to (not started by a service manager); throws the
 * system error (`code`, `syscall: 'sendmsg'`) when the send fails.
 */
export function sdNotify(state: string | NotifyFields, options: NotifyOptions = {}): boolean {
  const socket = options.socket === undefined ? process.env.NOTIFY_SOCKET : options.socket;
  if (!socket) return false;
  const text = typeof state === 'string' ? state : formatNotify(state);
  if (typeof text !== 'string' || text.length === 0)
    throw argTypeError('state', 'a non-empty string or an object of fields', state);
  native.notify(socket, Buffer.from(text, 'utf8'), options.fds?.length ? options.fds : null);
  return true;
}

/** Fields as the protocol wants them: `KEY=value` lines. Booleans are 1/0. */
export function formatNotify(fields: NotifyFields): string {
  const lines: string[] = [];
  for (const [key, value] of Object.entries(fields)) {
    if (!/^[A-Z][A-Z0-9_]*$/.test(key))
      throw argTypeError(`state.${key}`, 'a field name in capitals (READY, STATUS, …)', key);
    const v = typeof value === 'boolean' ? (value ? '1' : '0') : String(value);
    lines.push(`${key}=${v.replace(/[\r\n]+/g, ' ')}`);
  }
  return lines.join('\n');
}

/** CLOCK_MONOTONIC in µs, as MONOTONIC_USEC= wants it (libuv's hrtime is CLOCK_MONOTONIC on Linux). */
export function monotonicUsec(): bigint {
  return process.hrtime.bigint() / 1000n;
}

export interface ListenFd {
  /** The fd, owned by the caller from now on; close-on-exec. */
  fd: number;
  /** Its name from LISTEN_FDNAMES (FileDescriptorName=, FDNAME=), or null when there is none. */
  name: string | null;
}

export interface ListenFdsOptions {
  /** Remove LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES from the environment (whatever the outcome), so that
   * children never mistake them for their own. Default true. */
  unsetEnv?: boolean;
  env?: NodeJS.ProcessEnv;
}

/**
 * The fds the service manager passed to this process (sd_listen_fds_with_names): none unless LISTEN_PID is
 * this process. Each is made close-on-exec (the manager passes them inheritable) — it is replaced by a
 * close-on-exec duplicate, so the numbers are not necessarily 3, 4, … any more. Names are null when
 * LISTEN_FDNAMES is absent or does not have one name per fd.
 */
export function sdListenFds(options: ListenFdsOptions = {}): ListenFd[] {
  const env = options.env ?? process.env;
  const pid = env.LISTEN_PID;
  const count = env.LISTEN_FDS;
  const names = env.LISTEN_FDNAMES;
  if (options.unsetEnv ?? true) for (const k of SD_LISTEN_ENV) delete env[k];
  if (pid === undefined || count === undefined || !/^\d+$/.test(pid) || Number(pid) !== process.pid) return [];
  if (!/^\d+$/.test(count)) return [];
  const n = Number(count);
  if (n === 0 || n > 65536) return [];
  const split = names === undefined ? null : names.split(':');
  // Which are open is decided first: a duplicate made below may land in a gap of the range.
  const open: Array<{ fd: number; name: string | null }> = [];
  for (let i = 0; i < n; i++) {
    const fd = SD_LISTEN_FDS_START + i;
    const name = split && split.length === n ? split[i]! : '';
    if (native.isOpen(fd)) open.push({ fd, name: name === '' ? null : name });
  }
  // Close-on-exec: a duplicate made with F_DUPFD_CLOEXEC replaces each inheritable original.
  const out = open.map(({ fd, name }) => ({ fd: native.dup(fd), name }));
  native.closeMany(open.map((o) => o.fd));
  return out;
}

export interface Watchdog {
  /** The interval the manager expects pings within, in µs. Ping at half of it. */
  usec: number;
  /** The process it addresses (WATCHDOG_PID), or null when any may ping. */
  pid: number | null;
}

/** The watchdog the manager asks for (sd_watchdog_enabled), or null. Whether it addresses this process
 * is the caller's decision: `pid` is WATCHDOG_PID as given. */
export function sdWatchdog(env: NodeJS.ProcessEnv = process.env): Watchdog | null {
  const usec = env.WATCHDOG_USEC;
  if (usec === undefined || !/^\d+$/.test(usec) || Number(usec) <= 0 || !Number.isSafeInteger(Number(usec)))
    return null;
  const pid = env.WATCHDOG_PID;
  if (pid !== undefined && pid !== '' && !/^\d+$/.test(pid)) return null;
  return { usec: Number(usec), pid: pid ? Number(pid) : null };
}
