// EventSource clients that count events and check that none is missing across reloads.
//   node examples/sse/client.js [port] [clients] [seconds]
// Prints "all N clients on generation G" whenever every client's latest event comes from a generation none
// were all on before, and the summary after `seconds` or at Ctrl-C (SIGINT).
import { EventSource } from 'eventsource';

const [port = '8082', n = '10', seconds = '20'] = process.argv.slice(2);
let events = 0;
let missing = 0;
let reconnects = 0;
const generations = new Set();
/** The generation of each client's latest event. */
const latest = Array.from({ length: Number(n) }, () => null);
let allOn = null;
const sources = latest.map((_, i) => {
  const es = new EventSource(`http://127.0.0.1:${port}/events`);
  let last = null;
  es.onmessage = (e) => {
    const id = Number(e.lastEventId);
    if (last !== null && id > last + 1) missing += id - last - 1;
    last = id;
    events++;
    const gen = e.data.split(' ')[1];
    generations.add(gen);
    latest[i] = gen;
    if (gen !== allOn && latest.every((g) => g === gen)) {
      allOn = gen;
      console.log(`all ${n} clients on generation ${gen}`);
    }
  };
  es.onerror = () => reconnects++;
  return es;
});
const end = () => {
  clearTimeout(timer);
  for (const es of sources) es.close();
  console.log(
    `events ${events}, missing ${missing}, reconnects ${reconnects}, generations ${[...generations].join(' -> ')}`,
  );
};
const timer = setTimeout(end, Number(seconds) * 1000);
process.once('SIGINT', end);
