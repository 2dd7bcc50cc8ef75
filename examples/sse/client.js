// EventSource clients that count events and check that none is missing across reloads.
//   node examples/sse/client.js [port] [clients] [seconds]
import { EventSource } from 'eventsource';

const [port = '8082', n = '10', seconds = '20'] = process.argv.slice(2);
let events = 0;
let missing = 0;
let reconnects = 0;
const generations = new Set();
const sources = Array.from({ length: Number(n) }, () => {
  const es = new EventSource(`http://127.0.0.1:${port}/events`);
  let last = null;
  es.onmessage = (e) => {
    const id = Number(e.lastEventId);
    if (last !== null && id > last + 1) missing += id - last - 1;
    last = id;
    events++;
    generations.add(e.data.split(' ')[1]);
  };
  es.onerror = () => reconnects++;
  return es;
});
setTimeout(() => {
  for (const es of sources) es.close();
  console.log(
    `events ${events}, missing ${missing}, reconnects ${reconnects}, generations ${[...generations].join(' -> ')}`,
  );
}, Number(seconds) * 1000);
