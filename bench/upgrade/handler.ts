/**
 * The request handler every server in the upgrade benchmark serves, whatever the restart approach: a small
 * plain-text response, so that what the benchmark measures is the restart, not the application.
 */
import type http from 'node:http';

export function handler(_req: http.IncomingMessage, res: http.ServerResponse): void {
  res.setHeader('content-type', 'text/plain');
  res.end(`hello from ${process.pid}\n`);
}

/** Where the bench servers listen: PORT (required; 0 for any free port) on 127.0.0.1. */
export function portFromEnv(): number {
  const port = Number(process.env.PORT);
  if (process.env.PORT === undefined || process.env.PORT === '' || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`PORT must be a TCP port, got ${process.env.PORT}`);
  return port;
}
