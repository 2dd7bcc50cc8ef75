// B: waits on a Unix socket path for one message carrying a file descriptor, then reads the file through it.
//
//   node examples/seed-file/receiver.js /tmp/seed.sock
import { FdChannelServer, adopt, closeFds } from 'baton-reload';

const socketPath = process.argv[2];
if (!socketPath) {
  console.error('usage: node receiver.js <socket-path>');
  process.exit(2);
}

const server = await FdChannelServer.listen(socketPath);
console.log(`receiver: listening on ${socketPath}`);

server.on('channel', (channel) => {
  console.log(`receiver: sender connected, pid ${channel.peer.pid}`);
  channel.on('message', async (data, fds) => {
    // We own every fd we receive: adopt it (or close it).
    console.log(`receiver: got message ${JSON.stringify(data.toString())} with ${fds.length} fd(s)`);
    if (fds.length !== 1) {
      closeFds(fds);
      console.log('receiver: expected exactly one fd; waiting for another message');
      return;
    }
    const file = await adopt(fds[0]); // a file -> fs FileHandle, which owns the fd now
    const { nlink } = await file.stat();
    const text = await file.readFile('utf8');
    console.log(`receiver: read through the fd: ${JSON.stringify(text)} (the file has ${nlink} name(s) on disk)`);
    await file.close();
    channel.close();
    server.close();
    console.log('receiver: done');
  });
});
