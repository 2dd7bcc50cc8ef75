/**
 * `baton run --config FILE [--env NAME]`: what the file says reaches the supervisor and its generations, a
 * flag wins over the file, an environment's overrides apply over the top level, and a bad file is a clear error
 * naming the key (or the line and column) with exit code 2. Also: every `baton run` flag has a config key, and
 * baton.config.schema.json (editors' completion) and the validator (src/cli/config.ts) agree key by key.
 * Real processes: `node bin/baton.js`, an app on 127.0.0.1 in a private tmp dir, killed by pid afterwards.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { CONFIG_FLAGS, RUN_OPTIONS, loadConfig, type OptionKind } from '../src/cli/config.js';
import { ROOT, killPid, spawnNode, tmpDir, within } from './helpers.js';
import { BATON, baton, get } from './upgrade-helpers.js';

type Cleanup = Parameters<typeof tmpDir>[0];

/** Write `name` in `dir` with `content` (an object is written as JSON); returns its path. */
function write(dir: string, name: string, content: unknown): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return file;
}

/** loadConfig's rejection for `file`: asserts the code and that the message matches every pattern. */
async function rejects(file: string, patterns: RegExp[], envName?: string): Promise<void> {
  await assert.rejects(loadConfig(file, envName), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, 'ERR_BATON_BAD_CONFIG', err.message);
    for (const re of patterns) assert.match(err.message, re);
    return true;
  });
}

test('malformed config files: each error names the file and the key, the line and column, or the env', async (t) => {
  const dir = tmpDir(t);
  await rejects(write(dir, 'unknown.json', { command: ['node'], readyTimeot: 5 }), [
    /^unknown\.json: readyTimeot: unknown key/,
    /readyTimeout/,
  ]);
  await rejects(write(dir, 'unknown-env.json', { environments: { production: { $schema: 'x' } } }), [
    /environments\.production\.\$schema: unknown key/,
  ]);
  await rejects(write(dir, 'type.json', { readyTimeout: '30' }), [
    /readyTimeout: must be a number of seconds >= 0, got "30"/,
  ]);
  await rejects(write(dir, 'zero.json', { helloTimeout: 0 }), [
    /helloTimeout: must be a number of seconds > 0, got number 0/,
  ]);
  await rejects(write(dir, 'negative.json', { drainTimeout: -1 }), [
    /drainTimeout: must be a number of seconds >= 0, got number -1/,
  ]);
  await rejects(write(dir, 'count.json', { maxStarts: 1.5 }), [/maxStarts: must be a whole number >= 0/]);
  await rejects(write(dir, 'enum.json', { logFormat: 'xml' }), [/logFormat: must be one of "text", "json", got "xml"/]);
  await rejects(write(dir, 'bool.json', { fdstore: 'yes' }), [/fdstore: must be true or false/]);
  await rejects(write(dir, 'command.json', { command: 'node server.js' }), [
    /command: must be a non-empty array of non-empty strings/,
  ]);
  await rejects(write(dir, 'env.json', { env: { PORT: { n: 1 } } }), [
    /env\.PORT: must be a string, number or boolean, got an object/,
  ]);
  await rejects(write(dir, 'nested.json', { environments: { production: { readyTimeout: null } } }), [
    /environments\.production\.readyTimeout: must be a number/,
  ]);
  await rejects(write(dir, 'array.json', [1, 2]), [/array\.json: must hold an object, got an array/]);
  // JSON syntax errors: line and column of the offending character, the same on every Node version.
  await rejects(write(dir, 'syntax.json', '{\n  "command": ["node"],\n  "readyTimeout": 30,\n}\n'), [
    /^syntax\.json: line 4 column 1: not valid JSON/,
  ]);
  await rejects(write(dir, 'truncated.json', '{\n  "command": ["node",'), [
    /^truncated\.json: line 2 column 22: not valid JSON/,
  ]);
  // --env NAME that the file does not have: says which it has.
  const envs = write(dir, 'envs.json', { environments: { production: {}, staging: {} } });
  await rejects(envs, [/environments: no environment "prod" \(it has: production, staging\)/], 'prod');
  await rejects(
    write(dir, 'noenvs.json', {}),
    [/no environment "production" \(it has no "environments" section\)/],
    'production',
  );
  // Modules: one that throws while loading, one that exports nothing, an unsupported extension, a missing file.
  await rejects(write(dir, 'throws.mjs', "throw new Error('no database URL');\n"), [
    /^throws\.mjs: loading it threw: Error: no database URL/,
  ]);
  await rejects(write(dir, 'fn-throws.mjs', "export default () => { throw new Error('boom'); };\n"), [
    /loading it threw: Error: boom/,
  ]);
  await rejects(write(dir, 'empty.mjs', 'export const x = 1;\n'), [/empty\.mjs: exports nothing/]);
  await rejects(write(dir, 'conf.yaml', 'command: node\n'), [
    /a config file is \.json, \.js, \.mjs or \.cjs, got '\.yaml'/,
  ]);
  await rejects(path.join(dir, 'missing.json'), [/missing\.json: cannot read it: ENOENT/]);
  // A module's object is checked like JSON.
  await rejects(write(dir, 'bad.cjs', 'module.exports = { drainTimeout: true };\n'), [
    /bad\.cjs: drainTimeout: must be a number of seconds/,
  ]);
});

test('config files: JSON, an .mjs function given the env name, a .cjs object; environments override', async (t) => {
  const dir = tmpDir(t);
  const json = write(dir, 'baton.config.json', {
    $schema: './node_modules/baton-reload/baton.config.schema.json',
    command: ['node', 'server.js'],
    env: { PORT: 3000, DEBUG: false, NAME: 'base' },
    readyTimeout: 10,
    fdstore: true,
    environments: {
      production: { env: { NAME: 'prod' }, readyTimeout: 2.5, fdstore: false, command: ['node', 'dist/server.js'] },
    },
  });
  const base = await loadConfig(json);
  assert.deepEqual(base.command, ['node', 'server.js']);
  assert.deepEqual(base.env, { PORT: '3000', DEBUG: 'false', NAME: 'base' });
  assert.deepEqual(
    [...base.flags],
    [
      ['--ready-timeout', '10'],
      ['--fdstore', true],
    ],
  );
  const prod = await loadConfig(json, 'production');
  assert.deepEqual(prod.command, ['node', 'dist/server.js']);
  const merged = { PORT: '3000', DEBUG: 'false', NAME: 'prod' };
  assert.deepEqual(prod.env, merged, 'env variables merge, the environment wins');
  assert.deepEqual([...prod.flags], [['--ready-timeout', '2.5']], 'fdstore: false in the environment turns it off');

  const fn = "export default ({ env }) => ({ command: ['node', `${env ?? 'dev'}.js`], logFormat: 'json' });\n";
  const mjs = write(dir, 'baton.config.mjs', fn);
  assert.deepEqual((await loadConfig(mjs)).command, ['node', 'dev.js']);
  // A function may pick by name itself; `environments` still has to list the name for --env.
  await rejects(mjs, [/no environment "staging"/], 'staging');
  const cjsText = "module.exports = { command: ['node', 'a.js'], maxStarts: 0, socket: '/run/app.sock' };\n";
  const cjs = write(dir, 'baton.config.cjs', cjsText);
  const c = await loadConfig(cjs);
  assert.deepEqual(
    [...c.flags],
    [
      ['--max-starts', '0'],
      ['--socket', '/run/app.sock'],
    ],
  );
});

/** A small app under baton: prints its pid, its environment variables NAME and ONLY_BASE, and serves once ready. */
function writeApp(dir: string): string {
  const index = path.join(ROOT, 'dist/src/index.js');
  return write(
    dir,
    'app.mjs',
    `import http from 'node:http';
import { Upgrader } from ${JSON.stringify(index)};
const upgrader = await Upgrader.start();
const server = http.createServer((req, res) => res.end(String(process.env.NAME)));
await upgrader.listen(server, 'web', { port: 0, host: '127.0.0.1' });
await upgrader.ready();
const { NAME, ONLY_BASE } = process.env;
console.log(\`pid \${process.pid} NAME=\${NAME} ONLY_BASE=\${ONLY_BASE} port \${server.address().port}\`);
`,
  );
}

function killLater(t: Cleanup, pid: number): void {
  t.after(() => {
    killPid(-pid); // the generation runs in its own process group
    killPid(pid);
  });
}

test('baton run --config --env: the environment overrides the file, a flag overrides both', async (t) => {
  const dir = tmpDir(t);
  const app = writeApp(dir);
  const fileSocket = path.join(dir, 'file.sock');
  const flagSocket = path.join(dir, 'flag.sock');
  const config = write(dir, 'baton.config.json', {
    command: [process.execPath, app],
    env: { NAME: 'base', ONLY_BASE: 'kept' },
    socket: fileSocket,
    logFormat: 'text',
    environments: { production: { env: { NAME: 'prod' }, logFormat: 'json' } },
  });
  const sup = spawnNode(t, BATON, ['run', '--config', config, '--env', 'production', '--socket', flagSocket]);
  const m = await sup.line(/pid (\d+) NAME=(\S+) ONLY_BASE=(\S+) port (\d+)/, 20_000);
  killLater(t, Number(m[1]));
  assert.equal(m[2], 'prod', 'the environment section overrides env.NAME');
  assert.equal(m[3], 'kept', 'variables the environment does not name are kept');
  assert.equal((await get(Number(m[4]))).body, 'prod');
  const st = await baton(['status', '--json', '--socket', flagSocket]);
  assert.equal(st.code, 0, `--socket on the command line wins over the file's socket: ${st.stderr}`);
  assert.ok(!fs.existsSync(fileSocket), 'the file socket is not used');
  const lines = sup
    .stderr()
    .split('\n')
    .filter((l) => l.trim());
  const json = lines.length > 0 && lines.every((l) => l.startsWith('{'));
  assert.ok(json, `logFormat json from the environment: ${lines.join('\n')}`);
  process.kill(sup.pid, 'SIGTERM');
  assert.equal(await within(sup.exited, 20_000, 'the supervisor exits after SIGTERM'), 0);
});

test('baton run --config: a flag wins over the file (--log-format), the file gives the rest', async (t) => {
  const dir = tmpDir(t);
  const config = write(dir, 'baton.config.json', {
    command: [process.execPath, '-e', 'process.exit(3)'],
    socket: path.join(dir, 's.sock'),
    logFormat: 'json',
    maxStarts: 1,
  });
  const r = await baton(['run', '--config', config, '--log-format', 'text'], { timeoutMs: 30_000 });
  assert.equal(r.code, 1, `maxStarts 1 from the file: gives up after the first failed start\n${r.stderr}`);
  assert.match(r.stderr, /baton: giving up/);
  const json = r.stderr.split('\n').some((l) => l.startsWith('{'));
  assert.ok(!json, `--log-format text wins over the file's json:\n${r.stderr}`);
});

test('baton run --config with a bad file exits 2 naming the key; --env without --config: usage error', async (t) => {
  const dir = tmpDir(t);
  const badConfig = { command: ['node'], environments: { production: { readyTimeout: 'soon' } } };
  const bad = write(dir, 'baton.config.json', badConfig);
  const r = await baton(['run', '--config', bad, '--env', 'production']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^baton: baton\.config\.json: environments\.production\.readyTimeout: must be a number/);
  const js = write(dir, 'baton.config.js', "throw new Error('missing SECRET');\n");
  const r2 = await baton(['run', '--config', js]);
  assert.equal(r2.code, 2);
  assert.match(r2.stderr, /baton\.config\.js: loading it threw: Error: missing SECRET/);
  const r3 = await baton(['run', '--env', 'production', '--', 'node', 'x.js']);
  assert.equal(r3.code, 2);
  assert.match(r3.stderr, /--env selects an environment of the --config file/);
  const noCommand = write(dir, 'nocommand.json', { readyTimeout: 1 });
  const r4 = await baton(['run', '--config', noCommand]);
  assert.equal(r4.code, 2);
  assert.match(r4.stderr, /run needs a command/);
});

test('every `baton run` flag has a config key, and every key is a `baton run` flag', async () => {
  const help = await baton(['run', '--help']);
  assert.equal(help.code, 0);
  const helpFlags = new Set<string>();
  for (const m of help.stdout.matchAll(/^ {2}(?:-\w, )?(--[a-z][a-z0-9-]*)/gm)) helpFlags.add(m[1]!);
  helpFlags.delete('--help');
  for (const f of CONFIG_FLAGS) assert.ok(helpFlags.delete(f), `baton run --help documents ${f}`);
  const keyed = new Map(Object.entries(RUN_OPTIONS).map(([key, o]) => [o.flag, key]));
  for (const flag of helpFlags) {
    assert.ok(keyed.has(flag), `baton run ${flag} has no key in RUN_OPTIONS (src/cli/config.ts) and the schema`);
  }
  for (const flag of keyed.keys()) {
    assert.ok(helpFlags.has(flag), `key ${keyed.get(flag)} is for ${flag}, which baton run --help does not list`);
  }
  // And baton run accepts each key's flag (an unknown option would exit 2 before --help is looked at).
  const args = Object.values(RUN_OPTIONS).flatMap((o) =>
    o.kind.type === 'boolean' ? [o.flag] : [o.flag, sample(o.kind)],
  );
  const r = await baton(['run', ...args, '--config', 'x.json', '--env', 'x', '--help']);
  assert.equal(r.code, 0, `baton run ${args.join(' ')}: ${r.stderr}`);
});

function sample(kind: OptionKind): string {
  return kind.type === 'enum' ? kind.values[0]! : kind.type === 'string' ? 'x' : '1';
}

interface SchemaNode {
  $ref?: string;
  type?: string | string[];
  enum?: string[];
  oneOf?: SchemaNode[];
  const?: string;
  minimum?: number;
  exclusiveMinimum?: number;
  minLength?: number;
  description?: string;
  properties?: Record<string, SchemaNode>;
  additionalProperties?: SchemaNode | boolean;
  definitions?: Record<string, SchemaNode>;
}

test('baton.config.schema.json and the validator agree: the same keys, each of the same type', () => {
  const schema = JSON.parse(fs.readFileSync(path.join(ROOT, 'baton.config.schema.json'), 'utf8')) as SchemaNode;
  const resolve = (node: SchemaNode): SchemaNode =>
    node.$ref ? schema.definitions![node.$ref.replace('#/definitions/', '')]! : node;
  const sectionKeys = ['command', 'env', ...Object.keys(RUN_OPTIONS)].sort();
  const top = schema.properties!;
  assert.equal(schema.additionalProperties, false, 'unknown keys are errors in the schema too');
  assert.deepEqual(Object.keys(top).sort(), [...sectionKeys, '$schema', 'environments'].sort(), 'top-level keys');
  const environment = resolve(top.environments!.additionalProperties as SchemaNode);
  assert.equal(environment.additionalProperties, false);
  assert.deepEqual(Object.keys(environment.properties!).sort(), sectionKeys, 'keys of an environment');
  for (const [key, { flag, kind }] of Object.entries(RUN_OPTIONS)) {
    for (const node of [resolve(top[key]!), resolve(environment.properties![key]!)]) {
      const expected: Record<OptionKind['type'], Partial<SchemaNode>> = {
        seconds: { type: 'number', minimum: 0 },
        positiveSeconds: { type: 'number', exclusiveMinimum: 0 },
        count: { type: 'integer', minimum: 0 },
        workers: { oneOf: [{ type: 'integer', minimum: 1 }, { const: 'max' }] },
        string: { type: 'string', minLength: 1 },
        boolean: { type: 'boolean' },
        enum: { enum: kind.type === 'enum' ? [...kind.values] : [] },
      };
      const { description, ...shape } = node;
      assert.deepEqual(shape, expected[kind.type], `schema type of ${key}`);
      assert.ok(description?.startsWith(`${flag}:`), `the schema's description of ${key} names ${flag}`);
    }
  }
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { files: string[] };
  assert.ok(pkg.files.includes('baton.config.schema.json'), 'the schema is in the package');
});
