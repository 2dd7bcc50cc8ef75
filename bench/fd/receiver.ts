/**
 * bench:fd receiver: node receiver.js <socket-path> <max-ms>
 *
 * Listens with FdChannelServer, takes one channel, closes every fd it receives (closeFds, as any baton
 * receiver that does not keep them must), counts 'D' messages and answers each 'E' with the count. Prints
 * "ready" once listening; exits when the sender closes the channel (or after <max-ms>, as a safety net).
 */
import { FdChannelServer, closeFds } from '../../src/index.js';
import { TAG_END, TAG_REPLY, payload } from './protocol.js';

const [sockPath, maxMsArg] = process.argv.slice(2);
if (!sockPath) {
  console.error('usage: receiver.js <socket-path> [max-ms]');
  process.exit(2);
}
setTimeout(
  () => {
    console.error('receiver: time limit reached');
    process.exit(3);
  },
  Number(maxMsArg ?? 60_000),
).unref();

const server = await FdChannelServer.listen(sockPath);
server.on('error', (err) => {
  console.error('receiver: server error', err);
  process.exit(1);
});
server.on('channel', (ch) => {
  server.close(); // one sender per run
  let count = 0;
  ch.on('message', (data, fds) => {
    if (fds.length) closeFds(fds);
    if (data[0] === TAG_END) {
      ch.send(payload(TAG_REPLY, count)).catch((err) => {
        console.error('receiver: reply failed', err);
        process.exit(1);
      });
      count = 0;
    } else count++;
  });
  ch.on('error', (err) => {
    console.error('receiver: channel error', err);
    process.exit(1);
  });
  ch.on('close', () => process.exit(0));
});
console.log('ready');
