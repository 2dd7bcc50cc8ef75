/**
 * `baton run --metrics [HOST:]PORT`: the supervisor serves GET /metrics in Prometheus' text exposition
 * format (version 0.0.4), rendered from the same report as `baton status` at each scrape. See
 * docs/operations.md for the metrics, their labels and sample queries.
 *
 * Written here rather than with prom-client: the figures are a snapshot the supervisor already keeps, so a
 * registry of mutable metric objects (and prom-client's default process metrics of the supervisor only)
 * would add state to keep in step and a dependency for ~40 lines of formatting (docs/dependencies.md).
 *
 * Labels: per-generation series carry `generation`; when a generation runs several workers (--workers N > 1),
 * a `worker` label (the slot) joins it on the same series names (sum by (generation) keeps queries working).
 */
import http from 'node:http';
import net from 'node:net';
import type { Supervisor } from './supervisor.js';

export type StatusReport = ReturnType<Supervisor['status']>;

export interface MetricsAddress {
  host: string;
  port: number;
}

/** Thrown for a bad --metrics value; main.ts reports it as a usage error. */
export class MetricsAddressError extends Error {}

const LOOPBACK = '127.0.0.1';

/**
 * Parse `--metrics`: `PORT` (on 127.0.0.1), `HOST:PORT` or `[IPV6]:PORT`. HOST is an IP address or
 * `localhost`: a host name could resolve to a public address, so a non-loopback address is served only when
 * spelt out (0.0.0.0:9464 for every interface). PORT 0 picks a free port (logged as metrics-listen).
 */
export function parseMetricsAddress(value: string): MetricsAddress {
  const bad = (why: string) =>
    new MetricsAddressError(
      `--metrics takes [HOST:]PORT (HOST an IP address or localhost; default ${LOOPBACK}), got '${value}': ${why}`,
    );
  let host = LOOPBACK;
  let portText = value;
  const v6 = /^\[([^\]]*)\]:(.*)$/.exec(value);
  if (v6) {
    host = v6[1]!;
    portText = v6[2]!;
    if (net.isIPv6(host) === false) throw bad(`${host} is not an IPv6 address`);
  } else if (value.includes(':')) {
    const i = value.lastIndexOf(':');
    host = value.slice(0, i);
    portText = value.slice(i + 1);
    if (host === '') throw bad('name the host (0.0.0.0 for every interface, 127.0.0.1 for this machine only)');
    if (host !== 'localhost' && net.isIPv4(host) === false) {
      throw bad(
        net.isIPv6(host)
          ? 'write an IPv6 address in brackets, e.g. [::1]:9464'
          : `${host} is not an IP address or localhost`,
      );
    }
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw bad(`the port must be a number from 0 to 65535`);
  return { host, port: Number(portText) };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** One metric family: its help, type and samples. */
interface Family {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  samples: Array<{ labels?: Record<string, string | number>; value: number }>;
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatValue(n: number): string {
  if (Number.isNaN(n)) return 'NaN';
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

export function exposition(families: Family[]): string {
  let out = '';
  for (const f of families) {
    out += `# HELP ${f.name} ${f.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n# TYPE ${f.name} ${f.type}\n`;
    for (const s of f.samples) {
      const labels = Object.entries(s.labels ?? {}).map(([k, v]) => `${k}="${escapeLabel(String(v))}"`);
      out += `${f.name}${labels.length ? `{${labels.join(',')}}` : ''} ${formatValue(s.value)}\n`;
    }
  }
  return out;
}

/** The metric families of one status report. */
export function metricsOf(r: StatusReport): Family[] {
  const gens = r.generations;
  const serving = gens.find((g) => g.state === 'serving');
  // With one worker the labels are as they always were; with N, each process's series also names its slot.
  const multi = r.supervisor.workers > 1;
  const of = (g: (typeof gens)[number]): Record<string, number> =>
    multi ? { generation: g.generation, worker: g.worker } : { generation: g.generation };
  const perGeneration = (
    name: string,
    help: string,
    type: Family['type'],
    value: (g: (typeof gens)[number]) => number | null,
  ) => ({
    name,
    help,
    type,
    samples: gens.flatMap((g) => {
      const v = value(g);
      return v === null ? [] : [{ labels: of(g), value: v }];
    }),
  });
  const t = r.tallies;
  return [
    {
      name: 'baton_up',
      help: 'Whether a generation is serving (1) or not (0).',
      type: 'gauge',
      samples: [{ value: serving ? 1 : 0 }],
    },
    {
      name: 'baton_workers',
      help: 'Worker processes per generation (baton run --workers N; baton reload --workers M changes it).',
      type: 'gauge',
      samples: [{ value: r.supervisor.workers }],
    },
    {
      name: 'baton_serving_generation',
      help: 'The number of the generation that serves (0: none).',
      type: 'gauge',
      samples: [{ value: serving?.generation ?? 0 }],
    },
    {
      name: 'baton_generation_info',
      help: 'One series per live generation: its pid and state (starting, serving, draining).',
      type: 'gauge',
      samples: gens.map((g) => ({ labels: { ...of(g), pid: g.pid, state: g.state }, value: 1 })),
    },
    {
      name: 'baton_reloads_total',
      help: 'Reloads asked for, by result: ok, rolled_back (the previous generation kept serving), failed (none did).',
      type: 'counter',
      samples: [
        { labels: { result: 'ok' }, value: t.reloads.ok },
        { labels: { result: 'rolled_back' }, value: t.reloads.rolledBack },
        { labels: { result: 'failed' }, value: t.reloads.failed },
      ],
    },
    {
      name: 'baton_last_reload_duration_seconds',
      help: 'From the request to the outcome (ready or rolled back) of the last reload.',
      type: 'gauge',
      samples: t.lastReloadMs === null ? [] : [{ value: t.lastReloadMs / 1000 }],
    },
    {
      name: 'baton_restarts_total',
      help: 'Generations started because none was serving (the serving one exited, or the first failed).',
      type: 'counter',
      // N workers: by slot (a worker that crashed is respawned in its slot).
      samples: multi
        ? r.workers.map((w) => ({ labels: { worker: w.worker }, value: w.restarts }))
        : [{ value: r.supervisor.restarts }],
    },
    {
      name: 'baton_failed_starts',
      help: 'Generations in a row that failed to start (reset once one serves): a crash loop when it grows.',
      type: 'gauge',
      samples: [{ value: r.supervisor.failedStarts }],
    },
    {
      name: 'baton_listeners',
      help: 'Listening sockets the supervisor keeps open.',
      type: 'gauge',
      samples: [{ value: r.listeners.length }],
    },
    perGeneration(
      'baton_connections_open',
      'Open connections, as the generation last reported.',
      'gauge',
      (g) => g.connections,
    ),
    perGeneration(
      'baton_connections_arriving',
      'Of baton_connections_open, connections moved to the generation and not continued yet, as it last reported.',
      'gauge',
      (g) => g.arriving,
    ),
    perGeneration(
      'baton_connections_accepted_total',
      'Connections the generation accepted since it started (not those that moved to it), as it last reported.',
      'counter',
      (g) => g.accepted,
    ),
    {
      name: 'baton_connections_migrated_total',
      help: 'Connections moved to the next generation on upgrades.',
      type: 'counter',
      samples: [{ value: t.migrated }],
    },
    {
      name: 'baton_connections_not_moved_total',
      help: 'Connections closed on upgrades instead of moved, by reason (an ERR_BATON_* code).',
      type: 'counter',
      samples: Object.entries(t.notMoved).map(([reason, value]) => ({ labels: { reason }, value })),
    },
    perGeneration(
      'baton_generation_cpu_seconds_total',
      'CPU time (user + system) of the generation.',
      'counter',
      (g) => g.usage?.cpuSeconds ?? null,
    ),
    perGeneration(
      'baton_generation_resident_memory_bytes',
      'Resident memory of the generation.',
      'gauge',
      (g) => g.usage?.rssBytes ?? null,
    ),
    perGeneration(
      'baton_generation_event_loop_delay_p99_seconds',
      "p99 of the generation's event loop delay over its last report (about a second).",
      'gauge',
      (g) => (g.loop ? g.loop.delayP99Ms / 1000 : null),
    ),
    perGeneration(
      'baton_generation_event_loop_utilization',
      "Fraction of the time the generation's event loop was busy, over its last report (0..1).",
      'gauge',
      (g) => g.loop?.utilization ?? null,
    ),
    {
      name: 'baton_supervisor_cpu_seconds_total',
      help: 'CPU time (user + system) of the supervisor.',
      type: 'counter',
      samples: r.supervisor.usage ? [{ value: r.supervisor.usage.cpuSeconds }] : [],
    },
    {
      name: 'baton_supervisor_resident_memory_bytes',
      help: 'Resident memory of the supervisor.',
      type: 'gauge',
      samples: r.supervisor.usage ? [{ value: r.supervisor.usage.rssBytes }] : [],
    },
  ];
}

/** The /metrics endpoint. `report` is called at each scrape. */
export class MetricsServer {
  readonly #server: http.Server;
  readonly address: MetricsAddress;

  private constructor(server: http.Server, address: MetricsAddress) {
    this.#server = server;
    this.address = address;
  }

  static listen(address: MetricsAddress, report: () => StatusReport): Promise<MetricsServer> {
    const server = http.createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (path !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('baton: the metrics are at /metrics\n');
      } else if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('GET /metrics\n');
      } else {
        let body: string;
        try {
          body = exposition(metricsOf(report()));
        } catch (err) {
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`baton: ${(err as Error).message}\n`);
          return;
        }
        res
          .writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' })
          .end(req.method === 'HEAD' ? undefined : body);
      }
    });
    // A scraper needs one connection; a stuck or hostile client must not tie up the supervisor.
    server.maxConnections = 32;
    server.requestTimeout = 10_000;
    server.headersTimeout = 10_000;
    server.keepAliveTimeout = 30_000;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(address.port, address.host, () => {
        server.off('error', reject);
        const a = server.address() as net.AddressInfo;
        resolve(new MetricsServer(server, { host: address.host, port: a.port }));
      });
    });
  }

  /** host:port as it was bound (the port resolved when 0 was asked for). */
  get url(): string {
    const host = this.address.host.includes(':') ? `[${this.address.host}]` : this.address.host;
    return `http://${host}:${this.address.port}/metrics`;
  }

  close(): void {
    this.#server.close();
    this.#server.closeAllConnections();
  }
}
