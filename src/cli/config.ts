/**
 * `baton run --config FILE [--env NAME]`: the command, its environment and every `baton run` option in a file
 * (JSON, or a .js/.mjs/.cjs module exporting the object or a function returning it), with per-environment
 * overrides. The file is validated here, naming the key that is wrong; what it holds becomes the same flags
 * the command line gives, so `baton run` parses one thing and a flag on the command line wins over the file.
 *
 * RUN_OPTIONS is the one list of config keys and the flags they stand for. test/config.test.ts fails when a
 * `baton run` flag has no key here, and when baton.config.schema.json (the editors' completion) and this list
 * disagree, so a new flag cannot be forgotten in either.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { batonError, type BatonError } from '../fd/errors.js';
import { BALANCES } from './slots.js';

/** How a key's value is checked and turned into its flag's text. */
export type OptionKind =
  | { type: 'seconds' } // a number >= 0, as the flag takes it (seconds, fractions allowed)
  | { type: 'positiveSeconds' } // the same, > 0: where 0 cannot mean "no limit" (--hello-timeout)
  | { type: 'count' } // a whole number >= 0
  | { type: 'workers' } // a whole number >= 1, or "max"
  | { type: 'string' } // a non-empty string
  | { type: 'boolean' } // true sets the flag; false leaves it off
  | { type: 'enum'; values: readonly string[] };

export interface RunOption {
  flag: string;
  kind: OptionKind;
}

/** Config key -> the `baton run` flag it sets. Keys are the flags in camelCase. */
export const RUN_OPTIONS: Readonly<Record<string, RunOption>> = {
  socket: { flag: '--socket', kind: { type: 'string' } },
  readyTimeout: { flag: '--ready-timeout', kind: { type: 'seconds' } },
  drainTimeout: { flag: '--drain-timeout', kind: { type: 'seconds' } },
  helloTimeout: { flag: '--hello-timeout', kind: { type: 'positiveSeconds' } },
  maxStarts: { flag: '--max-starts', kind: { type: 'count' } },
  minUptime: { flag: '--min-uptime', kind: { type: 'seconds' } },
  logFormat: { flag: '--log-format', kind: { type: 'enum', values: ['text', 'json'] } },
  fdstore: { flag: '--fdstore', kind: { type: 'boolean' } },
  metrics: { flag: '--metrics', kind: { type: 'string' } },
  workers: { flag: '--workers', kind: { type: 'workers' } },
  balance: { flag: '--balance', kind: { type: 'enum', values: BALANCES } },
  rolling: { flag: '--rolling', kind: { type: 'boolean' } },
};

/** `baton run` flags about the config file itself, which therefore have no key in it. */
export const CONFIG_FLAGS = ['--config', '--env'] as const;

/** Keys the file may hold besides RUN_OPTIONS, at the top level and inside each environment. */
const COMMON_KEYS = ['command', 'env'] as const;
/** Keys only at the top level. */
const TOP_KEYS = ['$schema', 'environments'] as const;

/** The flags a run option sets, split as parse() takes them. */
export function runFlags(): { value: string[]; bool: string[] } {
  const opts = Object.values(RUN_OPTIONS);
  return {
    value: opts.filter((o) => o.kind.type !== 'boolean').map((o) => o.flag),
    bool: opts.filter((o) => o.kind.type === 'boolean').map((o) => o.flag),
  };
}

export interface LoadedConfig {
  /** The file, resolved. */
  file: string;
  command?: string[];
  env: Record<string, string>;
  /** Flag -> value, as the command line would give them ('--ready-timeout' -> '60', '--fdstore' -> true). */
  flags: Map<string, string | true>;
}

/** Flags the command line did not give are taken from the file: a flag always wins over the file. */
export function mergeFlags(flags: Map<string, string | true>, config: LoadedConfig): void {
  for (const [flag, value] of config.flags) if (!flags.has(flag)) flags.set(flag, value);
}

/** An error in the config file: `ERR_BATON_BAD_CONFIG`, the message names the file and the key. */
function configError(file: string, where: string, message: string): BatonError {
  const at = where ? `: ${where}` : '';
  return batonError('ERR_BATON_BAD_CONFIG', `${path.basename(file)}${at}: ${message}`, { path: file });
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${String(value)}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The 1-based line and column of a character offset in `text`. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const lines = before.split('\n');
  return { line: lines.length, column: lines.at(-1)!.length + 1 };
}

/**
 * JSON.parse with a position: V8's message has "at position N" (Node 20) or also "(line L column C)" (22+), and
 * none at all for an early end; we compute line and column from the offset ourselves so every Node says the same.
 */
function parseJson(file: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    const message = (err as Error).message;
    const m = /at position (\d+)/.exec(message);
    const offset = m ? Number(m[1]) : text.length;
    const { line, column } = lineColumn(text, offset);
    const reason = message.replace(/\s*\(line \d+ column \d+\)/, '').replace(/ in JSON at position \d+/, '');
    throw configError(file, `line ${line} column ${column}`, `not valid JSON: ${reason}`);
  }
}

/** Read the file: JSON by content for .json, a module (default export, or the function it is) otherwise. */
async function readConfig(file: string, envName: string | undefined): Promise<unknown> {
  const ext = path.extname(file);
  if (ext === '.json') {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw configError(file, '', `cannot read it: ${(err as Error).message}`);
    }
    return parseJson(file, text);
  }
  if (!['.js', '.mjs', '.cjs'].includes(ext)) {
    throw configError(file, '', `a config file is .json, .js, .mjs or .cjs, got '${ext || 'no extension'}'`);
  }
  if (!fs.existsSync(file)) throw configError(file, '', 'no such file');
  let exported: unknown;
  try {
    const mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
    exported = mod.default;
    if (typeof exported === 'function') {
      exported = await (exported as (ctx: { env?: string }) => unknown)({ env: envName });
    }
  } catch (err) {
    const e = err as Error;
    throw configError(file, '', `loading it threw: ${e?.stack ?? String(err)}`);
  }
  if (exported === undefined) {
    throw configError(file, '', 'exports nothing: export default { command: [...] } (or module.exports)');
  }
  return exported;
}

interface Section {
  command?: string[];
  env: Record<string, string>;
  /** false: a boolean option turned off (so an environment can turn off what the top level turns on). */
  flags: Map<string, string | boolean>;
}

/** Check one section (the top level or an environment); `prefix` is its path in messages ('environments.prod.'). */
function checkSection(file: string, raw: Record<string, unknown>, prefix: string, top: boolean): Section {
  const section: Section = { env: {}, flags: new Map() };
  for (const [key, value] of Object.entries(raw)) {
    const at = `${prefix}${key}`;
    if (key === 'command') {
      if (!Array.isArray(value) || value.length === 0 || !value.every((w) => typeof w === 'string' && w !== '')) {
        const want = 'must be a non-empty array of non-empty strings (["node", "server.js"])';
        throw configError(file, at, `${want}, got ${describe(value)}`);
      }
      section.command = value as string[];
    } else if (key === 'env') {
      if (!isPlainObject(value)) throw configError(file, at, `must be an object of variables, got ${describe(value)}`);
      for (const [name, v] of Object.entries(value)) {
        if (name === '' || name.includes('=') || name.includes('\0')) {
          throw configError(file, at, `bad variable name ${JSON.stringify(name)}`);
        }
        if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
          throw configError(file, `${at}.${name}`, `must be a string, number or boolean, got ${describe(v)}`);
        }
        section.env[name] = String(v);
      }
    } else if (top && key === '$schema') {
      if (typeof value !== 'string') throw configError(file, at, `must be a string, got ${describe(value)}`);
    } else if (top && key === 'environments') {
      // checked by the caller
    } else if (Object.hasOwn(RUN_OPTIONS, key)) {
      const { flag, kind } = RUN_OPTIONS[key]!;
      section.flags.set(flag, optionValue(file, at, kind, value));
    } else {
      const known = [...COMMON_KEYS, ...Object.keys(RUN_OPTIONS), ...(top ? TOP_KEYS : [])].join(', ');
      throw configError(file, at, `unknown key (known: ${known})`);
    }
  }
  return section;
}

/** A run option's value as its flag's text; a boolean as itself (true: the flag is given). */
function optionValue(file: string, at: string, kind: OptionKind, value: unknown): string | boolean {
  switch (kind.type) {
    case 'seconds':
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
        throw configError(file, at, `must be a number of seconds >= 0, got ${describe(value)}`);
      }
      return String(value);
    case 'positiveSeconds':
      if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
        throw configError(file, at, `must be a number of seconds > 0, got ${describe(value)}`);
      }
      return String(value);
    case 'count':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
        throw configError(file, at, `must be a whole number >= 0, got ${describe(value)}`);
      }
      return String(value);
    case 'workers':
      if (value !== 'max' && (typeof value !== 'number' || !Number.isInteger(value) || value < 1)) {
        throw configError(file, at, `must be a whole number >= 1 or "max", got ${describe(value)}`);
      }
      return String(value);
    case 'string':
      if (typeof value !== 'string' || value === '') {
        throw configError(file, at, `must be a non-empty string, got ${describe(value)}`);
      }
      return value;
    case 'boolean':
      if (typeof value !== 'boolean') throw configError(file, at, `must be true or false, got ${describe(value)}`);
      return value;
    case 'enum':
      if (typeof value !== 'string' || !kind.values.includes(value)) {
        const one = kind.values.map((v) => JSON.stringify(v)).join(', ');
        throw configError(file, at, `must be one of ${one}, got ${describe(value)}`);
      }
      return value;
  }
}

/**
 * Load and check `file`; with `envName`, apply `environments[envName]` over the top level (its `env` variables
 * are added to the top level's, every other key replaces). Throws ERR_BATON_BAD_CONFIG naming the key.
 */
export async function loadConfig(file: string, envName?: string): Promise<LoadedConfig> {
  const resolved = path.resolve(file);
  const raw = await readConfig(resolved, envName);
  if (!isPlainObject(raw)) throw configError(resolved, '', `must hold an object, got ${describe(raw)}`);
  const base = checkSection(resolved, raw, '', true);
  const envs = raw.environments;
  if (envs !== undefined && !isPlainObject(envs)) {
    throw configError(resolved, 'environments', `must be an object of environments by name, got ${describe(envs)}`);
  }
  const sections = new Map<string, Section>();
  for (const [name, section] of Object.entries(envs ?? {})) {
    if (!isPlainObject(section)) {
      throw configError(resolved, `environments.${name}`, `must be an object, got ${describe(section)}`);
    }
    sections.set(name, checkSection(resolved, section, `environments.${name}.`, false));
  }
  const flags = base.flags;
  let { command } = base;
  if (envName !== undefined) {
    const over = sections.get(envName);
    if (!over) {
      const names = [...sections.keys()];
      const known = names.length ? `it has: ${names.join(', ')}` : 'it has no "environments" section';
      throw configError(resolved, 'environments', `no environment ${JSON.stringify(envName)} (${known})`);
    }
    Object.assign(base.env, over.env);
    for (const [flag, value] of over.flags) flags.set(flag, value);
    if (over.command) command = over.command;
  }
  const config: LoadedConfig = { file: resolved, env: base.env, flags: new Map() };
  for (const [flag, value] of flags) if (value !== false) config.flags.set(flag, value);
  if (command) config.command = command;
  return config;
}
