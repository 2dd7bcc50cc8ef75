/**
 * A generation's named sockets: listen() and bindDgram() take each from the predecessor (or the supervisor,
 * or the service manager) when it has one by that name at that address, else bind it; the drain stops them
 * accepting and drains their connections.
 */
import dgram from 'node:dgram';
import dns from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { argTypeError, batonError } from '../fd/errors.js';
import { fdOf } from '../fd/fd-of.js';
import { bindReusePort } from '../fd/reuseport.js';
import type { GenerationClient } from '../handoff/client.js';
import { formatAddress, type InventoryEntry, type SocketAddress, type SocketKind } from '../handoff/messages.js';
import { BorrowedSlots } from './borrowed.js';
import type { CensusServer } from './census.js';
import { integrations, type ListenerDrainer, type LogFn, type ServiceManager } from './integration.js';
import type { MigrationSender } from './migrate.js';
import type { Offered } from './modes/mode.js';
import { RESERVED } from './modes/standalone.js';
import type { DgramOptions, ListenOptions } from './options.js';
import { bindDgramFd, bindDgramFresh, bindUnix, listenOnFd, listenTcp } from './sockets.js';
import type { UpgraderState } from './state.js';

interface Managed {
  entry: InventoryEntry;
  object: net.Server | dgram.Socket;
  drainer: ListenerDrainer | null;
  /** The backlog listen() was called with (TCP, Unix). */
  backlog: number;
}

/** What the listeners need from their generation. */
export interface ListenerContext {
  /** The predecessor's (or supervisor's) offer; null without one. */
  client(): GenerationClient | null;
  readonly service: ServiceManager | null;
  readonly idleGrace: number;
  log: LogFn;
  /** An http or https server: its SSE streams (among `drainer`'s responses) and upgrades are watched. */
  watchHttp(server: http.Server, drainer: ListenerDrainer): void;
  /** A socket bound here (or taken by position) joins the inventory under its name. */
  register(client: GenerationClient, entry: InventoryEntry, fd: number): Promise<void>;
  state(): UpgraderState;
  /** This process's worker slot (`baton run --workers N`): with N > 1 fresh TCP/UDP sockets are reuseport. */
  readonly worker: { index: number; count: number };
}

export class Listeners {
  readonly #ctx: ListenerContext;
  readonly #byName = new Map<string, Managed>();
  /** Sockets this generation bound itself (not inherited, not passed in): they go to the fd store. */
  readonly #fresh = new Set<string>();
  /** Inherited listeners not accepting yet (see listen()). */
  #deferred: Array<{ server: net.Server; fd: number; backlog: number }> = [];
  /** Connections the servers accepted here (not those that moved here): `baton status` ACCEPTED. */
  #accepted = 0;
  /** HTTP connections that moved here: their 'connection' event is not an accept. */
  readonly #arrived = new WeakSet<net.Socket>();
  /** Other slots' sockets the supervisor lent this worker (`baton run --workers N`), served with these listeners. */
  readonly borrowed: BorrowedSlots;

  constructor(ctx: ListenerContext) {
    this.#ctx = ctx;
    this.borrowed = new BorrowedSlots({
      target: (name) => {
        const m = this.#byName.get(name);
        return m && { object: m.object, kind: m.entry.kind, backlog: m.backlog };
      },
      slot: ctx.worker.index,
      log: ctx.log,
    });
  }

  get size(): number {
    return this.#byName.size;
  }

  get fresh(): ReadonlySet<string> {
    return this.#fresh;
  }

  names(): string[] {
    return [...this.#byName.keys()];
  }

  entries(): InventoryEntry[] {
    return [...this.#byName.values()].map((m) => m.entry);
  }

  /** Each socket with its fd, as a successor is offered them. */
  offered(): Offered[] {
    return [...this.#byName.values()].map((m) => ({ entry: m.entry, fd: fdOf(m.object) }));
  }

  fdOf(name: string): number | undefined {
    const m = this.#byName.get(name);
    return m ? fdOf(m.object) : undefined;
  }

  /** The listener `server` listens on, or that tracks `socket` (a connection that moved here). */
  nameOf(server: unknown, socket?: net.Socket): string | undefined {
    const found = [...this.#byName.values()].find((m) => m.object === server || (socket && m.drainer?.has(socket)));
    return found?.entry.name;
  }

  /** The net.Server called `name`, if it is one. */
  server(name: string): net.Server | undefined {
    const object = this.#byName.get(name)?.object;
    return object instanceof net.Server ? object : undefined;
  }

  /** Count `socket` (a raw connection that moved here) as a connection of the listener `name`. */
  track(name: string, socket: net.Socket): void {
    this.#byName.get(name)?.drainer?.track(socket);
  }

  /** Connections accepted by this generation's servers since it started (moved ones not counted). */
  get accepted(): number {
    return this.#accepted;
  }

  /** `socket` moved here and is about to be emitted as a 'connection' of its server: not an accept. */
  arrived(socket: net.Socket): void {
    this.#arrived.add(socket);
  }

  get connections(): number {
    let n = 0;
    for (const m of this.#byName.values()) n += m.drainer?.connections ?? 0;
    return n;
  }

  /** The servers, for the census of connections by kind. */
  census(): CensusServer[] {
    return [...this.#byName.values()]
      .filter((m) => m.drainer)
      .map((m) => ({ object: m.object, sockets: m.drainer!.sockets, connections: m.drainer!.connections }));
  }

  /** Does one of them serve HTTP (http or https: the same node:http code)? */
  servesHttp(): boolean {
    return [...this.#byName.values()].some((m) => m.object instanceof http.Server || m.object instanceof https.Server);
  }

  /** The inherited listeners not accepting yet, handed to ready() (which starts them, or closes their fds). */
  takeDeferred(): Array<{ server: net.Server; fd: number; backlog: number }> {
    const deferred = this.#deferred;
    this.#deferred = [];
    return deferred;
  }

  async listen<S extends net.Server>(server: S, name: string, options: ListenOptions): Promise<S> {
    if (!(server instanceof net.Server)) {
      throw argTypeError('server', 'a net.Server (or http/https/http2 server)', server);
    }
    this.#checkName(name);
    if (typeof options !== 'object' || options === null) {
      throw argTypeError('options', 'an object with port/host or path', options);
    }
    const backlog = options.backlog ?? 511;
    let kind: SocketKind;
    let requested: SocketAddress;
    if (options.path !== undefined) {
      if (typeof options.path !== 'string' || !options.path) {
        throw argTypeError('options.path', 'a non-empty string', options.path);
      }
      kind = 'unix';
      requested = { path: path.resolve(options.path) };
    } else {
      kind = 'tcp';
      requested = { host: options.host ?? '', port: checkPort(options.port) };
    }
    const client = this.#ctx.client();
    const inherited = client?.take(name, kind, requested) ?? null;
    const taken = inherited ?? this.#ctx.service?.take(name, kind, requested) ?? null;
    const drainer = integrations().drainer(server, this.#ctx.idleGrace);
    if (server instanceof http.Server || server instanceof https.Server) this.#ctx.watchHttp(server, drainer);
    let address: SocketAddress;
    if (taken) {
      // An inherited listener starts accepting at ready(): until then the old generation takes every
      // connection, so a new generation that fails before ready() loses none. One the service manager
      // passed has no old generation to wait for.
      if (inherited) this.#deferred.push({ server, fd: taken.fd, backlog });
      else await listenOnFd(server, taken.fd, backlog);
      address = taken.entry.address;
    } else {
      this.#warnIfMoved(name, requested);
      if (kind === 'unix') {
        const p = (requested as { path: string }).path;
        const fd = bindUnix(p, backlog, options.mode ?? 0o600);
        await listenOnFd(server, fd, backlog);
        address = requested;
      } else {
        const r = requested as { host: string; port: number };
        const ipv6Only = options.ipv6Only ?? false;
        if (this.#reusePort(name)) {
          const s = bindReusePort({
            type: 'tcp',
            host: await ipOf(r.host),
            port: r.port,
            backlog,
            ipv6Only,
            exclusive: true,
          });
          await listenOnFd(server, s.fd, backlog);
        } else await listenTcp(server, r.host, r.port, backlog, ipv6Only);
        address = { host: r.host, port: (server.address() as net.AddressInfo).port };
      }
    }
    const entry: InventoryEntry = { name, kind: taken?.entry.kind ?? kind, address, ...originOf(taken) };
    this.#byName.set(name, { entry, object: server, drainer, backlog });
    server.on('connection', (socket: net.Socket) => {
      if (!this.#arrived.has(socket)) this.#accepted++;
    });
    if (!taken) this.#fresh.add(name);
    // A socket taken by position (an unnamed activated one) is registered under its new name.
    // (An inherited listener has no fd in `server` until ready(): the one taken is registered.)
    await this.#registerIfFresh(entry, server, !taken || taken.entry.name !== name, taken?.fd);
    const origin = taken?.entry.origin;
    this.#ctx.log('info', 'listen', { name, address: formatAddress(address), inherited: !!taken, origin });
    return server;
  }

  async bindDgram(name: string, options: DgramOptions): Promise<dgram.Socket> {
    this.#checkName(name);
    if (typeof options !== 'object' || options === null || (options.type !== 'udp4' && options.type !== 'udp6')) {
      throw argTypeError('options.type', "'udp4' or 'udp6'", options?.type);
    }
    const requested = { host: options.address ?? '', port: checkPort(options.port) };
    const socket = dgram.createSocket({
      type: options.type,
      ...(options.recvBufferSize ? { recvBufferSize: options.recvBufferSize } : {}),
      ...(options.sendBufferSize ? { sendBufferSize: options.sendBufferSize } : {}),
    });
    const taken =
      this.#ctx.client()?.take(name, options.type, requested) ??
      this.#ctx.service?.take(name, options.type, requested) ??
      null;
    let address: SocketAddress;
    if (taken) {
      await bindDgramFd(socket, taken.fd);
      address = taken.entry.address;
    } else {
      this.#warnIfMoved(name, requested);
      let reuse: boolean;
      try {
        reuse = this.#reusePort(name);
      } catch (err) {
        socket.close(); // made above, never bound
        throw err;
      }
      if (reuse) {
        // dgram's type fixes the family: '' is every address of that family, as Node binds it.
        const host = requested.host || (options.type === 'udp4' ? '0.0.0.0' : '::');
        const s = bindReusePort({ type: 'udp', host: await ipOf(host), port: requested.port, exclusive: true });
        await bindDgramFd(socket, s.fd);
      } else await bindDgramFresh(socket, requested.host, requested.port);
      address = { host: requested.host, port: socket.address().port };
    }
    const entry: InventoryEntry = { name, kind: options.type, address, ...originOf(taken) };
    this.#byName.set(name, { entry, object: socket, drainer: null, backlog: 0 });
    if (!taken) this.#fresh.add(name);
    await this.#registerIfFresh(entry, socket, !taken || taken.entry.name !== name);
    const fields = { name, kind: options.type, address: formatAddress(address), inherited: !!taken };
    this.#ctx.log('info', 'bind', { ...fields, origin: taken?.entry.origin });
    return socket;
  }

  /** The drain's first step: stop accepting everywhere (UDP sockets close, borrowed sockets too), so the
   * successor takes every new connection at once. */
  stopAccepting(): void {
    this.borrowed.close();
    for (const m of this.#byName.values()) {
      if (m.drainer) m.drainer.stopAccepting();
      else (m.object as dgram.Socket).close();
    }
  }

  /** Drain every listener, moving its idle HTTP connections to the successor over `sender` if there is one. */
  drain(timeoutMs: number, sender: MigrationSender | null): Promise<Array<{ forced: number }>> {
    this.borrowed.close();
    const moving = sender && !sender.closed ? sender : null;
    return Promise.all(
      [...this.#byName.values()].map((m) => {
        const move = moving ? (socket: net.Socket) => moving.move(socket, 'http', m.entry.name) : null;
        return m.drainer?.drain(timeoutMs, move, moving) ?? { forced: 0 };
      }),
    );
  }

  async #registerIfFresh(
    entry: InventoryEntry,
    object: net.Server | dgram.Socket,
    fresh: boolean,
    fd?: number,
  ): Promise<void> {
    const client = this.#ctx.client();
    if (!fresh || !client) return;
    await this.#ctx.register(client, entry, fd ?? fdOf(object));
  }

  /**
   * Bind a fresh TCP/UDP socket with SO_REUSEPORT? Yes in worker 0 of N > 1: the supervisor makes it slot 0 of a
   * group and binds the other slots into it when it is registered (docs/workers.md; a socket bound without the
   * option would block the group). A later worker is offered every name worker 0 listens on, so a name it was not
   * offered is one only some workers would serve: refused.
   */
  #reusePort(name: string): boolean {
    const { index, count } = this.#ctx.worker;
    if (count === 1) return false;
    if (index === 0) return true;
    throw batonError(
      'ERR_BATON_WORKER_LISTENER',
      `worker ${index} of ${count} listens on ${JSON.stringify(name)}, which worker 0 did not: ` +
        'every worker must listen on the same names',
    );
  }

  #warnIfMoved(name: string, requested: SocketAddress): void {
    const old = this.#ctx.client()?.offered(name);
    if (old) {
      const fields = { name, was: formatAddress(old.address), now: formatAddress(requested) };
      this.#ctx.log('warn', 'address-changed', fields);
    }
  }

  #checkName(name: string): void {
    if (typeof name !== 'string' || name.length === 0 || name.length > 200) {
      throw argTypeError('name', 'a non-empty string of at most 200 characters', name);
    }
    if (name === RESERVED) throw argTypeError('name', `not the reserved name ${RESERVED}`, name);
    if (this.#byName.has(name)) {
      const message = `a socket named ${JSON.stringify(name)} is already in use by this generation`;
      const err = new Error(message) as NodeJS.ErrnoException;
      err.code = 'ERR_BATON_DUPLICATE_NAME';
      throw err;
    }
    const state = this.#ctx.state();
    if (state !== 'starting') {
      throw batonError('ERR_BATON_STATE', `listen()/bindDgram() after ready() (state ${state})`);
    }
  }
}

/** bindReusePort takes an IP address; a host name is resolved first, as Node's listen() resolves it. */
async function ipOf(host: string): Promise<string> {
  if (host === '' || net.isIP(host.replace(/%.*$/, '')) !== 0) return host;
  return (await dns.lookup(host)).address;
}

function checkPort(value: number | undefined): number {
  const port = value ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw argTypeError('options.port', 'an integer from 0 to 65535', port);
  }
  return port;
}

/** Where a socket taken from the service manager came from (`origin`), for its inventory entry. */
function originOf(taken: { entry: InventoryEntry } | null): Pick<InventoryEntry, 'origin'> {
  return taken?.entry.origin ? { origin: taken.entry.origin } : {};
}
