/**
 * Where the control socket lives when --socket is not given: $BATON_SOCKET, else
 * $XDG_RUNTIME_DIR/baton.sock (a private per-user directory on systemd machines), else ./baton.sock in the
 * working directory.
 */
import path from 'node:path';

export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string {
  if (env.BATON_SOCKET) return path.resolve(cwd, env.BATON_SOCKET);
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'baton.sock');
  return path.join(cwd, 'baton.sock');
}
