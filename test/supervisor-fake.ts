/**
 * A SupervisorProcess (src/cli/process.ts) that spawns nothing and whose clock moves only when a test calls
 * advance(): the supervisor's state machine runs for real (its control socket too), and the test plays each
 * "generation" itself — it joins the control socket from this process (isDescendant says yes for it), and
 * decides when the generation exits and with what.
 */
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { PassThrough } from 'node:stream';
import type { SpawnedChild, SupervisorProcess, TimerHandle } from '../src/cli/process.js';

interface FakeTimer extends TimerHandle {
  at: number;
  fn: () => void;
  every: number | null;
  cleared: boolean;
}

/** A spawned generation that is no process: its stderr is a stream the test writes to. */
export class FakeChild extends EventEmitter implements SpawnedChild {
  readonly stderr: net.Socket;
  readonly signals: NodeJS.Signals[] = [];
  exited = false;

  constructor(
    readonly pid: number,
    readonly file: string,
    readonly args: string[],
    readonly env: NodeJS.ProcessEnv,
  ) {
    super();
    this.stderr = new PassThrough() as unknown as net.Socket; // the supervisor only reads it
  }
}

export class FakeProcess implements SupervisorProcess {
  /** Not 1: the fake reaps nothing. */
  readonly pid = process.pid;
  /** Output the generations wrote, as the supervisor copied it through. */
  output = '';
  readonly usage = { usage: () => null, retain: () => {} };
  #now = 1_000_000;
  #timers: FakeTimer[] = [];
  #nextPid = 4_000_001;
  readonly children: FakeChild[] = [];
  /** Set to make the next spawn throw (as child_process.spawn does for a bad argument). */
  spawnError: Error | null = null;

  spawn(file: string, args: string[], env: NodeJS.ProcessEnv): FakeChild {
    if (this.spawnError) throw this.spawnError;
    const child = new FakeChild(this.#nextPid++, file, args, env);
    this.children.push(child);
    return child;
  }

  /** Adopted generations (a re-exec) are not part of these tests. */
  watchExit(): void {}

  signal(pid: number, signal: NodeJS.Signals): void {
    this.children.find((c) => c.pid === pid)?.signals.push(signal);
  }

  /** The test process plays every live child. */
  isDescendant(pid: number, root: number): boolean {
    return pid === process.pid && this.children.some((c) => c.pid === root && !c.exited);
  }

  reapOrphans(): void {}

  writeStderr(chunk: Buffer): void {
    this.output += chunk.toString('utf8');
  }

  now(): number {
    return this.#now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.#add(fn, ms, null);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.#add(fn, ms, ms);
  }

  clearTimeout(timer: TimerHandle | null | undefined): void {
    if (timer) (timer as FakeTimer).cleared = true;
  }

  clearInterval(timer: TimerHandle | null | undefined): void {
    this.clearTimeout(timer);
  }

  /** Move the clock by `ms`, running every timer that falls due, in order. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const due = this.#timers.filter((t) => !t.cleared && t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.#now = Math.max(this.#now, due.at);
      if (due.every) due.at += due.every;
      else due.cleared = true;
      due.fn();
    }
    this.#now = end;
    this.#timers = this.#timers.filter((t) => !t.cleared);
  }

  /** The child `pid` exits, its stderr closed first (so the supervisor handles the exit at once). */
  exit(pid: number, code: number | null, signal: NodeJS.Signals | null = null): void {
    const child = this.child(pid);
    child.exited = true;
    child.stderr.destroy();
    child.emit('exit', code, signal);
  }

  /** The child `pid` writes `text` to its stderr; resolves once the supervisor has read it. */
  async stderr(pid: number, text: string): Promise<void> {
    this.child(pid).stderr.write(text);
    await new Promise((resolve) => setImmediate(resolve));
  }

  child(pid: number): FakeChild {
    const child = this.children.find((c) => c.pid === pid);
    if (!child) throw new Error(`no fake child ${pid}`);
    return child;
  }

  #add(fn: () => void, ms: number, every: number | null): FakeTimer {
    const timer: FakeTimer = { at: this.#now + ms, fn, every, cleared: false, unref: () => timer };
    this.#timers.push(timer);
    return timer;
  }
}
