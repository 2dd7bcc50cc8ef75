/**
 * PM2's column of `npm run bench:workers`, driven through PM2's own programmatic API (what the `pm2` command
 * calls, without a CLI process start per reload) in a process of its own, so that PM2's library never loads
 * into the driver. PM2 is not a dependency of baton: the driver installs it into bench/workers/.pm2 (git-ignored)
 * and passes its directory. PM2_HOME must be set (a temp dir): the God daemon, its socket, logs and pid file
 * live there, never in ~/.pm2.
 *
 *   argv: <the pm2 package dir> <app script> <instances> <port>
 *
 * Starts the app in cluster mode (`-i <instances>`, kill_timeout 1600 ms, PM2's default, and no autorestart),
 * then prints `pm2-ctl started <daemon pid> <worker pids, comma-separated>`. Then one command per stdin line:
 * `reload` → `pm2-ctl reloaded <ms> <new worker pids>` (what `pm2 reload <name>` does); `kill` → the daemon
 * and its workers are stopped (`pm2 kill`) → `pm2-ctl killed`, and this process exits. Any failure:
 * `pm2-ctl error <message>`. (PM2 prints its own lines too; only `pm2-ctl …` lines are this protocol.)
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import readline from 'node:readline';

type Cb<T = unknown> = (err: Error | null, result?: T) => void;
interface Pm2Process {
  pid: number;
  name: string;
}
interface Pm2Api {
  connect(cb: Cb): void;
  start(opts: Record<string, unknown>, cb: Cb): void;
  reload(name: string, cb: Cb): void;
  list(cb: Cb<Pm2Process[]>): void;
  killDaemon(cb: Cb): void;
  disconnect(): void;
}

const NAME = 'bench-workers';
const [dir, script, instances, port] = process.argv.slice(2) as [string, string, string, string];
if (!process.env.PM2_HOME) throw new Error('pm2-ctl: set PM2_HOME (a temp dir)');
process.env.PM2_SILENT = 'true';
const pm2 = createRequire(import.meta.url)(dir) as Pm2Api;

const call = <T>(f: (cb: Cb<T>) => void) =>
  new Promise<T>((resolve, reject) => f((err, r) => (err ? reject(err) : resolve(r as T))));
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const say = (line: string) => process.stdout.write(`pm2-ctl ${line}\n`);
const pids = async () =>
  (await call<Pm2Process[]>((cb) => pm2.list(cb)))
    .filter((p) => p.name === NAME)
    .map((p) => p.pid)
    .join(',');

async function main(): Promise<void> {
  await call((cb) => pm2.connect(cb));
  await call((cb) =>
    pm2.start(
      {
        script,
        name: NAME,
        exec_mode: 'cluster',
        instances: Number(instances),
        kill_timeout: 1600,
        autorestart: false,
        env: { PORT: port },
      },
      cb,
    ),
  );
  const daemon = Number(fs.readFileSync(`${process.env.PM2_HOME}/pm2.pid`, 'utf8').trim());
  say(`started ${daemon} ${await pids()}`);
  for await (const line of readline.createInterface({ input: process.stdin })) {
    const cmd = line.trim();
    try {
      if (cmd === 'reload') {
        const t0 = performance.now();
        await call((cb) => pm2.reload(NAME, cb));
        say(`reloaded ${(performance.now() - t0).toFixed(1)} ${await pids()}`);
      } else if (cmd === 'kill') {
        await call((cb) => pm2.killDaemon(cb));
        pm2.disconnect();
        // The daemon is this process's child (spawned detached): wait until it is gone and reaped here, rather
        // than leave it to init. The driver SIGKILLs its process group if it is still there after this.
        for (let i = 0; i < 100 && alive(daemon); i++) await new Promise((r) => setTimeout(r, 50));
        say('killed');
        process.exit(0);
      } else say(`error unknown command ${cmd}`);
    } catch (err) {
      say(`error ${(err as Error).message}`);
    }
  }
}

main().catch((err: Error) => {
  say(`error ${err.message}`);
  process.exit(1);
});
