/**
 * `baton run --workers N|max` and `--balance reuseport|shared` (docs/workers.md): the text of the flags (or of
 * the config file's keys) to a worker count and a balance, each refused at once with a message naming the flag.
 */
import os from 'node:os';
import { BALANCES, type Balance } from './slots.js';

/** What `--workers` takes, for messages and --help. */
export const WORKERS_SYNTAX = "a whole number >= 1 or 'max'";

export class WorkersFlagError extends Error {}

/** `--workers` text -> the count: a whole number >= 1, or 'max' = os.availableParallelism() (the CPUs this
 * process may run on, which honours its affinity mask, unlike os.cpus().length). Absent: 1. */
export function parseWorkers(text: string | undefined): number {
  if (text === undefined) return 1;
  if (text === 'max') return os.availableParallelism();
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new WorkersFlagError(`--workers takes ${WORKERS_SYNTAX}, got '${text}'`);
  return n;
}

/** A worker count as the control protocol carries it (`baton reload --workers M`): 'max' resolved here, in the
 * supervisor, whose CPU affinity is the one its workers inherit. */
export function workerCount(value: number | 'max'): number {
  return value === 'max' ? os.availableParallelism() : value;
}

/** `--balance` text -> the balance; absent: reuseport. */
export function parseBalance(text: string | undefined): Balance {
  if (text === undefined) return 'reuseport';
  if (!(BALANCES as readonly string[]).includes(text)) {
    throw new WorkersFlagError(`--balance is ${BALANCES.join(' or ')}, got '${text}'`);
  }
  return text as Balance;
}
