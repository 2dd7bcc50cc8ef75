/**
 * `baton run --metrics`: /metrics in Prometheus' text format, scraped before and after reloads (a strict
 * parser checks the format); bad --metrics values fail at once naming the flag; event-loop figures arrive
 * from a generation; connections moved on a reload are counted; the stats message's new fields are
 * validated.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { decode } from '../src/handoff/decode.js';
import { encode, PROTOCOL_VERSION, type Message } from '../src/handoff/messages.js';
import { FIXTURES, tmpDir } from './helpers.js';
import { parseExposition, sampleOf, type Family } from './prometheus-parser.js';
import { baton, BEHAVIOUR_APP, startSupervised, SERVING, type Supervised } from './upgrade-helpers.js';

const BUSY_APP = path.join(FIXTURES, 'busy-app.js');

/** Start with `--metrics 0` (a free port on 127.0.0.1); resolves with the URL the supervisor logged. */
async function withMetrics(t: Parameters<typeof startSupervised>[0], opts: Parameters<typeof startSupervised>[1] = {}) {
  const s = await startSupervised(t, { ...opts, runArgs: ['--metrics', '0', ...(opts.runArgs ?? [])] });
  const m = /metrics-listen url=(http:\/\/127\.0\.0\.1:\d+\/metrics) loopback=true/.exec(s.sup.stderr());
  assert.ok(m, `no metrics-listen line: ${s.sup.stderr()}`);
  return { s, url: m[1]! };
}

function httpGet(
  url: string,
  agent: http.Agent | false = false,
): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
  });
}

async function scrape(url: string): Promise<Map<string, Family>> {
  const r = await httpGet(url);
  assert.equal(r.status, 200);
  assert.equal(r.type, 'text/plain; version=0.0.4; charset=utf-8');
  return parseExposition(r.body);
}

/** Scrape until `cond` holds (the figures come from periodic reports); returns the last scrape. */
async function scrapeUntil(
  url: string,
  cond: (f: Map<string, Family>) => boolean,
  what: string,
): Promise<Map<string, Family>> {
  let last = await scrape(url);
  for (let i = 0; i < 100 && !cond(last); i++) {
    await new Promise((r) => setTimeout(r, 100));
    last = await scrape(url);
  }
  assert.ok(cond(last), `timed out waiting for ${what}`);
  return last;
}

async function reloadOk(s: Supervised, generation: number): Promise<void> {
  const r = await s.reload();
  assert.equal(r.code, 0, `reload: ${r.stdout} ${r.stderr}`);
  await s.sup.line(SERVING(generation), 10_000);
}

test('/metrics: the reload counter rises by one and the serving generation changes; rollbacks count apart', {
  timeout: 90_000,
}, async (t) => {
  const dir = tmpDir(t);
  const behaviour = path.join(dir, 'behaviour');
  fs.writeFileSync(behaviour, 'ok');
  const { s, url } = await withMetrics(t, { app: BEHAVIOUR_APP, dir, env: { BEHAVIOUR_FILE: behaviour } });

  const before = await scrape(url);
  for (const name of [
    'baton_up',
    'baton_serving_generation',
    'baton_reloads_total',
    'baton_restarts_total',
    'baton_listeners',
  ]) {
    assert.ok(before.has(name), `${name} is exposed`);
  }
  assert.equal(before.get('baton_reloads_total')!.type, 'counter');
  assert.equal(before.get('baton_connections_open')!.type, 'gauge');
  assert.equal(sampleOf(before, 'baton_up'), 1);
  assert.equal(sampleOf(before, 'baton_serving_generation'), 1);
  assert.equal(sampleOf(before, 'baton_listeners'), 1);
  const ok0 = sampleOf(before, 'baton_reloads_total', { result: 'ok' });
  assert.equal(ok0, 0);
  const pid1 = (await s.serving())[0]!.pid;
  assert.equal(sampleOf(before, 'baton_generation_info', { generation: '1', pid: String(pid1), state: 'serving' }), 1);
  assert.ok(
    sampleOf(before, 'baton_generation_resident_memory_bytes', { generation: '1' })! > 1024 * 1024,
    'the RSS of generation 1',
  );
  assert.ok(sampleOf(before, 'baton_supervisor_resident_memory_bytes')! > 1024 * 1024, "the supervisor's RSS");

  await reloadOk(s, 2);
  const after = await scrape(url);
  assert.equal(sampleOf(after, 'baton_reloads_total', { result: 'ok' }), 1, 'the reload counter rose by one');
  assert.equal(sampleOf(after, 'baton_serving_generation'), 2, 'the serving generation changed');
  assert.ok(sampleOf(after, 'baton_last_reload_duration_seconds')! > 0, 'the last reload took some time');
  assert.equal(sampleOf(after, 'baton_generation_info', { generation: '2', state: 'serving' }), 1);

  // A next generation that exits before ready(): rolled back, generation 2 keeps serving.
  fs.writeFileSync(behaviour, 'exit1');
  const bad = await s.reload();
  assert.equal(bad.code, 1, `the reload is rolled back: ${bad.stdout} ${bad.stderr}`);
  const rolled = await scrape(url);
  assert.equal(sampleOf(rolled, 'baton_reloads_total', { result: 'ok' }), 1);
  assert.equal(sampleOf(rolled, 'baton_reloads_total', { result: 'rolled_back' }), 1);
  assert.equal(sampleOf(rolled, 'baton_reloads_total', { result: 'failed' }), 0);
  assert.equal(sampleOf(rolled, 'baton_serving_generation'), 2);
  assert.equal(sampleOf(rolled, 'baton_up'), 1);

  // Only /metrics, only GET and HEAD.
  assert.equal((await httpGet(url.replace('/metrics', '/'))).status, 404);
  assert.equal(await s.shutdown(), 0, s.sup.stderr().slice(-2000));
});

test('/metrics: event-loop delay and utilisation arrive from each generation; moved connections are counted', {
  timeout: 90_000,
}, async (t) => {
  // Busy 60 ms in every 200: the loop's p99 delay is at least ~40 ms and it is busy at least 30% of the time.
  const { s, url } = await withMetrics(t, { app: BUSY_APP, env: { BUSY_MS: '60' } });
  const busy = await scrapeUntil(
    url,
    (f) => sampleOf(f, 'baton_generation_event_loop_utilization', { generation: '1' }) !== undefined,
    'loop figures',
  );
  const p99 = sampleOf(busy, 'baton_generation_event_loop_delay_p99_seconds', { generation: '1' })!;
  const elu = sampleOf(busy, 'baton_generation_event_loop_utilization', { generation: '1' })!;
  t.diagnostic(`generation 1: event loop p99 ${p99} s, utilisation ${elu}`);
  assert.ok(p99 >= 0.03, `p99 delay ${p99} s reflects the 60 ms stalls`);
  assert.ok(elu >= 0.15 && elu <= 1, `utilisation ${elu} reflects the busy loop`);
  // The same figures in `baton status --json`.
  const st = (await s.status()) as unknown as {
    generations: Array<{ loop: { delayP99Ms: number; utilization: number } | null }>;
  };
  assert.ok(st.generations[0]!.loop && st.generations[0]!.loop.delayP99Ms >= 30, JSON.stringify(st.generations[0]));

  // An idle keep-alive connection moves to generation 2 on the reload; the supervisor counts it.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const port = s.port;
  assert.match((await httpGet(`http://127.0.0.1:${port}/`, agent)).body, /generation 1/);
  await reloadOk(s, 2);
  const moved = await scrapeUntil(
    url,
    (f) => (sampleOf(f, 'baton_connections_migrated_total') ?? 0) >= 1,
    'the moved connection counted',
  );
  assert.equal(sampleOf(moved, 'baton_connections_migrated_total'), 1);
  assert.equal(moved.get('baton_connections_not_moved_total')!.samples.length, 0, 'nothing was closed instead');
  assert.match(
    (await httpGet(`http://127.0.0.1:${port}/`, agent)).body,
    /generation 2/,
    'the same connection, now served by generation 2',
  );
  await scrapeUntil(
    url,
    (f) => sampleOf(f, 'baton_generation_event_loop_utilization', { generation: '2' }) !== undefined,
    'figures of generation 2',
  );
  agent.destroy();
  assert.equal(await s.shutdown(), 0, s.sup.stderr().slice(-2000));
});

test('baton run --metrics: a bad value fails at once, naming the flag; nothing is started', {
  timeout: 60_000,
}, async (t) => {
  const dir = tmpDir(t);
  const socket = path.join(dir, 's.sock');
  const marker = path.join(dir, 'started');
  // Were a generation started, it would create the marker file.
  const app = ['--', process.execPath, '-e', `require('fs').writeFileSync(${JSON.stringify(marker)}, '')`];
  for (const value of [
    'nope',
    'example.com:9464',
    ':9464',
    '127.0.0.1:70000',
    '127.0.0.1:',
    '::1:9464',
    '[nope]:80',
    '12.5',
  ]) {
    const r = await baton(['run', '--socket', socket, '--metrics', value, ...app], { timeoutMs: 10_000 });
    assert.equal(r.code, 2, `--metrics ${value}: ${r.stderr}`);
    assert.match(r.stderr, /--metrics takes \[HOST:\]PORT/, `--metrics ${value}`);
    assert.ok(r.stderr.includes(`'${value}'`), `the error quotes the value: ${r.stderr}`);
  }
  // A port in use: the error names --metrics and the address, exit 1 before anything starts.
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => blocker.close());
  const taken = `127.0.0.1:${(blocker.address() as net.AddressInfo).port}`;
  const r = await baton(['run', '--socket', socket, '--metrics', taken, ...app], { timeoutMs: 10_000 });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`--metrics ${taken}: cannot listen: .*EADDRINUSE`));
  assert.equal(fs.existsSync(marker), false, 'no generation was started');
  assert.equal(fs.existsSync(socket), false, 'no control socket was made');

  const help = await baton(['run', '--help']);
  assert.match(help.stdout, /--metrics \[HOST:\]PORT/);
  const statusHelp = await baton(['status', '--help']);
  assert.match(statusHelp.stdout, /--watch/);
  assert.match(statusHelp.stdout, /--interval S/);
  // `--interval` alone is a usage error, found before any supervisor is asked.
  const lone = await baton(['status', '--socket', socket, '--interval', '1']);
  assert.equal(lone.code, 2);
  assert.match(lone.stderr, /--interval goes with --watch/);
});

test('stats message: the event-loop and migration fields are validated', () => {
  const v = PROTOCOL_VERSION;
  const ok: Message = {
    v,
    type: 'stats',
    connections: 3,
    arriving: 2,
    state: 'draining',
    loop: { delayP99Ms: 1.5, utilization: 0.25 },
    moved: 4,
    notMoved: 1,
    notMovedReasons: { ERR_BATON_NO_ROOM: 1 },
  };
  assert.deepEqual(decode(encode(ok)), ok);
  // Without them (a generation of an older baton): still a good message.
  assert.deepEqual(decode(encode({ v, type: 'stats', connections: 0, state: 'starting' })), {
    v,
    type: 'stats',
    connections: 0,
    state: 'starting',
  });
  const bad = (extra: Record<string, unknown>, re: RegExp) =>
    assert.throws(
      () => decode(Buffer.from(JSON.stringify({ v, type: 'stats', connections: 1, state: 'serving', ...extra }))),
      (err: NodeJS.ErrnoException) => {
        assert.equal(err.code, 'ERR_BATON_PROTOCOL');
        assert.match(err.message, re);
        return true;
      },
    );
  bad({ loop: { delayP99Ms: -1, utilization: 0 } }, /loop\.delayP99Ms/);
  bad({ loop: { delayP99Ms: 1, utilization: 1.5 } }, /loop\.utilization/);
  bad({ loop: 'busy' }, /loop\.delayP99Ms/);
  bad({ notMovedReasons: { 'not a code': 1 } }, /not an error code/);
  bad({ notMovedReasons: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`E${i}`, 1])) }, /up to 32/);
  bad({ notMovedReasons: { ERR_X: 1.5 } }, /ERR_X/);
  // Of `connections`: never more.
  bad({ arriving: 2 }, /"arriving" must be an integer from 0 to 1/);
});
