/**
 * A benchmark runner's command-line flags (bench/<name>/run.ts), parsed by node's util.parseArgs in strict mode.
 * An unknown flag, a flag without its value, a value given to a flag that takes none, or any other argument prints
 * `<name>: <what is wrong>` and the runner's usage on stderr and exits with code 2 before anything starts (a
 * mistyped `--quikc` must not start a full run that rewrites docs/performance.md). `--help` prints the usage on
 * stdout and exits with code 0.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';

type Flags = NonNullable<ParseArgsConfig['options']>;
/** What parseArgs gives for `flags` (none of them `multiple`): set flags only. */
type Values<F extends Flags> = { [K in keyof F]?: F[K]['type'] extends 'boolean' ? boolean : string };

/** `name: message` and the usage on stderr, exit code 2. */
function usageError(name: string, usage: string, message: string): never {
  process.stderr.write(`${name}: ${message}\n${usage}`);
  process.exit(2);
}

/**
 * This process's flags as `flags` declares them (`{ quick: { type: 'boolean' } }` is `--quick`; a 'string' flag
 * takes `--flag value` or `--flag=value`). `usage` (ending in a newline) is what `--help` and every error print.
 * `int(flag, def, min, max)`: a string flag's value as an integer in [min, max] (`def` when absent), or the usage
 * error; `fail(message)`: the usage error, for checks of the runner's own.
 */
export function benchFlags<const F extends Flags>(name: string, usage: string, flags: F) {
  const fail = (message: string): never => usageError(name, usage, message);
  let values: Values<F> & { help?: boolean };
  try {
    values = parseArgs({
      args: process.argv.slice(2),
      options: { ...flags, help: { type: 'boolean' } },
      strict: true,
      allowPositionals: false,
    }).values as Values<F> & { help?: boolean };
  } catch (err) {
    return fail((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(usage);
    process.exit(0);
  }
  const int = (flag: keyof F & string, def: number, min: number, max: number): number => {
    const raw = values[flag];
    if (raw === undefined) return def;
    const n = Number(raw);
    if (typeof raw !== 'string' || !Number.isInteger(n) || n < min || n > max) {
      fail(`--${flag} needs an integer from ${min} to ${max}, got ${String(raw)}`);
    }
    return n;
  };
  return { values: values as Values<F>, int, fail };
}
