/**
 * The control client: what `baton reload`, `baton status` and `baton stop` use to talk to a supervisor
 * (or, for status and stop, a standalone generation). One connection per command.
 */
import { batonError } from '../fd/errors.js';
import { answerDespiteEpipe, Link } from './link.js';
import { PROTOCOL_VERSION, type ControlCommand, type ReloadOptions, type Result } from './messages.js';
import { peerRefusal } from './peer.js';

/** `options`: how a 'reload' is to run (`baton reload --rolling`, `--workers M`). */
export async function sendCommand(
  path: string,
  command: ControlCommand,
  timeoutMs: number,
  options: ReloadOptions = {},
): Promise<Result> {
  const link = await Link.connect(path, Math.min(timeoutMs, 5000));
  try {
    const refusal = peerRefusal(link.peer);
    if (refusal) throw batonError('ERR_BATON_PEER_NOT_ALLOWED', `refusing the control socket at ${path}: ${refusal}`);
    const answer = link.expect(['result', 'refuse'], timeoutMs, `the result of '${command}'`);
    const { msg } = await answerDespiteEpipe(
      answer,
      link.send({
        v: PROTOCOL_VERSION,
        type: 'hello',
        role: 'control',
        pid: process.pid,
        command,
        timeoutMs,
        ...options,
      }),
    );
    if (msg.type === 'refuse')
      return { v: PROTOCOL_VERSION, type: 'result', ok: false, command, code: msg.code, reason: msg.reason };
    return msg;
  } finally {
    link.close();
  }
}
