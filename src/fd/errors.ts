/**
 * Error constructors for the fd layer. System errors come from the addon already shaped like Node's
 * (`code`, negative `errno`, `syscall`); these are baton's own conditions and argument checks.
 */

/**
 * Every ERR_BATON_* code baton throws or reports, one per kind of failure; docs/api.md ("Error codes") says
 * when each occurs. test/error-codes.test.ts checks that the source uses no code missing here and that each
 * is documented.
 */
export const BATON_ERROR_CODES = [
  // fd layer
  'ERR_BATON_ADDON_MISSING',
  'ERR_BATON_NATIVE',
  'ERR_BATON_NOT_OPEN',
  'ERR_BATON_UNSUPPORTED_FD',
  'ERR_BATON_UNKNOWN_SOCKOPT',
  'ERR_BATON_READ_ONLY_SOCKOPT',
  'ERR_BATON_CHANNEL_CLOSED',
  'ERR_BATON_BAD_RECORD',
  'ERR_BATON_TRUNCATED',
  'ERR_BATON_MESSAGE_TOO_LARGE',
  'ERR_BATON_PEER_CLOSED_MID_MESSAGE',
  // handoff
  'ERR_BATON_PROTOCOL',
  'ERR_BATON_TIMEOUT',
  'ERR_BATON_UNSAFE_SOCKET_DIR',
  'ERR_BATON_PEER_NOT_ALLOWED',
  'ERR_BATON_TOO_MANY_CONNECTIONS',
  'ERR_BATON_REFUSED',
  'ERR_BATON_HANDOFF_FAILED',
  'ERR_BATON_STATE',
  'ERR_BATON_INHERITED_FD_MISMATCH',
  // upgrader
  'ERR_BATON_DUPLICATE_NAME',
  'ERR_BATON_UPGRADE_IN_PROGRESS',
  'ERR_BATON_ROLLED_BACK',
  'ERR_BATON_NO_SUPERVISOR',
  'ERR_BATON_NO_MIGRATION',
  'ERR_BATON_NO_ROOM',
  'ERR_BATON_SUCCESSOR_DRAINING',
  'ERR_BATON_STATE_NOT_SERIALIZABLE',
  'ERR_BATON_STATE_TOO_LARGE',
  'ERR_BATON_UNSUPPORTED_VERSION',
  'ERR_BATON_TLS',
  'ERR_BATON_CLUSTER_WORKER',
  'ERR_BATON_WORKER_LISTENER',
  'ERR_BATON_LEND_REFUSED',
  // supervisor
  'ERR_BATON_RELOAD_FAILED',
  'ERR_BATON_ROLLING_STOPPED',
  'ERR_BATON_REEXEC_FAILED',
  'ERR_BATON_REEXEC_STATE',
  'ERR_BATON_TAKEOVER_REFUSED',
  'ERR_BATON_BAD_CONFIG',
] as const;

export type BatonErrorCode = (typeof BATON_ERROR_CODES)[number];

export interface BatonError extends Error {
  /** One of baton's own codes, or the errno name of the syscall that failed ('EADDRINUSE', with `syscall`). */
  code: BatonErrorCode | string;
  syscall?: string;
  errno?: number;
}

/** An Error with a code, as Node's own errors carry. */
export function batonError(code: BatonErrorCode, message: string, extra?: Record<string, unknown>): BatonError {
  const err = new Error(message) as BatonError;
  err.code = code;
  if (extra) Object.assign(err, extra);
  return err;
}

export function argTypeError(name: string, expected: string, actual: unknown): TypeError {
  const err = new TypeError(`The "${name}" argument must be ${expected}. Received ${describe(actual)}`) as TypeError & {
    code: string;
  };
  err.code = 'ERR_INVALID_ARG_TYPE';
  return err;
}

export function argRangeError(name: string, expected: string, actual: unknown): RangeError {
  const err = new RangeError(
    `The value of "${name}" is out of range. It must be ${expected}. Received ${describe(actual)}`,
  ) as RangeError & {
    code: string;
  };
  err.code = 'ERR_OUT_OF_RANGE';
  return err;
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return `${typeof v} ${String(v)}`;
  if (typeof v === 'function') return `function ${v.name || '(anonymous)'}`;
  const name = (v as object).constructor?.name;
  return name ? `an instance of ${name}` : typeof v;
}

/** Validate a file descriptor argument: an integer >= 0. */
export function checkFd(fd: unknown, name = 'fd'): number {
  if (typeof fd !== 'number' || !Number.isInteger(fd)) throw argTypeError(name, 'an integer file descriptor', fd);
  if (fd < 0 || fd > 0x7fffffff) throw argRangeError(name, '>= 0 and <= 2147483647', fd);
  return fd;
}

/** Validate an array of fds (all integers >= 0). Returns a fresh plain array. */
export function checkFds(fds: unknown, name = 'fds'): number[] {
  if (!Array.isArray(fds)) throw argTypeError(name, 'an array of file descriptors', fds);
  const out = new Array<number>(fds.length);
  for (let i = 0; i < fds.length; i++) {
    const fd: unknown = fds[i];
    // The element's name is built only for the error: this runs for every fd of every send.
    out[i] =
      typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 && fd <= 0x7fffffff ? fd : checkFd(fd, `${name}[${i}]`);
  }
  return out;
}
