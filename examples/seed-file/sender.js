// A: opens a file holding "hello world", connects to the receiver and sends it the fd with the bytes "boy".
//
//   node examples/seed-file/sender.js /tmp/seed.sock            # a fresh file, unlinked once open
//   node examples/seed-file/sender.js /tmp/seed.sock hello.txt  # an existing file
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FdChannel, fdOf } from 'baton-reload';

const [socketPath, filePath] = process.argv.slice(2);
if (!socketPath) {
  console.error('usage: node sender.js <socket-path> [file]');
  process.exit(2);
}

let file;
if (filePath) {
  file = await fs.promises.open(filePath, 'r');
  console.log(`sender: opened ${filePath}`);
} else {
  // A file with no name at all: the receiver can only reach it through the fd we send.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'seed-file-'));
  const tmp = path.join(dir, 'hello.txt');
  fs.writeFileSync(tmp, 'hello world');
  file = await fs.promises.open(tmp, 'r');
  fs.rmSync(dir, { recursive: true });
  console.log('sender: opened a fresh file holding "hello world" and unlinked it');
}

const channel = await FdChannel.connect(socketPath);
await channel.send(Buffer.from('boy'), [fdOf(file)]); // the kernel copies the fd into the receiver
console.log(`sender: sent "boy" and fd ${fdOf(file)} to ${socketPath}`);
await file.close(); // our copy; the receiver's stays open
channel.close();
