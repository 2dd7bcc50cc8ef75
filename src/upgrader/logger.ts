/**
 * One log line per event, on stderr: `baton gen=2 pid=1234 event=ready listeners=2` (text) or one JSON
 * object per line (BATON_LOG_FORMAT=json, set by `baton run --log-format json`). Applications pass their
 * own `logger` to route these elsewhere.
 */
export type LogLevel = 'info' | 'warn' | 'error';
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  log(level: LogLevel, event: string, fields?: LogFields): void;
}

export type LogFormat = 'text' | 'json';

export function createLogger(
  format: LogFormat = envFormat(),
  base: LogFields = {},
  write: (line: string) => void = (l) => process.stderr.write(l),
): Logger {
  return {
    log(level, event, fields = {}) {
      const all: LogFields = { ...base, ...fields };
      if (format === 'json') {
        write(`${JSON.stringify({ time: new Date().toISOString(), level, event, ...all })}\n`);
        return;
      }
      let line = `baton ${level === 'info' ? '' : `${level.toUpperCase()} `}${event}`;
      for (const [k, v] of Object.entries(all)) if (v !== undefined) line += ` ${k}=${formatValue(v)}`;
      write(`${line}\n`);
    },
  };
}

function formatValue(v: string | number | boolean | null): string {
  if (typeof v !== 'string') return String(v);
  return /^[\w./:@+-]*$/.test(v) && v !== '' ? v : JSON.stringify(v);
}

export function envFormat(): LogFormat {
  return process.env.BATON_LOG_FORMAT === 'json' ? 'json' : 'text';
}

/** A logger that drops everything (tests, or `logger: false`). */
export const silentLogger: Logger = { log() {} };
