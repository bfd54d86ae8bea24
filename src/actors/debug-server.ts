/**
 * The debug socket: a Unix socket (and, if asked, a token-guarded TCP port on 127.0.0.1) that shows
 * the runtime from the inside, for `spindle inspect` and any other client.
 *
 * Newline-delimited JSON, one request per line, answered in order:
 *   {"id":1,"op":"ping"}  ->  {"id":1,"ok":true,"result":{...}}  or  {"id":1,"ok":false,"error":"..."}
 * Ops: `ping`, `snapshot`, `jobs`, `pool`, and `subscribe`, after which the connection also carries
 * `{"event":"job:finished","data":{...}}` lines until the client leaves.
 *
 * Nothing a client sends reaches the mailbox or can throw out of the actor: requests are answered
 * from the socket callbacks, and every limit ends in an error line, a closed connection or dropped
 * events, never in unbounded memory:
 * - a line over `maxLineBytes` gets an error and the connection is closed;
 * - a client that sends no request for `idleTimeoutMs` is closed (subscribers are exempt);
 * - past `maxClients` connections, a new one gets an error line and is closed;
 * - a client that does not read: once `maxBufferedBytes` wait in its socket, its requests are no
 *   longer read, and events for it are dropped and counted, then announced with one
 *   `{"event":"dropped","data":{"count":N}}` line when it has caught up.
 *
 * The actor's own mailbox carries only its health: the socket file is watched, and if it is removed
 * or replaced (a tmp cleaner, an `rm -rf .spindle/run`), the actor crashes on purpose so that its
 * parent restarts it and it binds the path again.
 *
 * The data comes through a `DebugSource`: the server never reaches into the supervisor.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { chmod, lstat, stat, unlink } from 'node:fs/promises';
import { createConnection, createServer, type ListenOptions, type Server, type Socket } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import type { EventEmitter } from 'eventemitter3';
import { SpindleError, ValidationError } from '../errors.ts';
import { Actor, assertNever, type AnyActor } from './kernel.ts';
import type { ActorEventBase, ActorEvents } from './snapshot.ts';
import type { RuntimeEvents } from '../runtime-events.ts';
import { mkdirp, writeSecret } from './ops-files.ts';

/** Default of `DebugLimits.maxLineBytes`: 64 KiB. */
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024;
/** Default of `DebugLimits.maxClients`. */
export const DEFAULT_MAX_CLIENTS = 256;
/** Default of `DebugLimits.idleTimeoutMs`. */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
/** Default of `DebugLimits.maxBufferedBytes`: 1 MiB. */
export const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024;
/** The file, under `<stateDir>/run/`, that holds the TCP listener's token. */
export const TOKEN_FILE = 'debug.token';
/** The only address the TCP listener binds. */
export const TCP_HOST = '127.0.0.1';

/** How often the socket file is checked when no file-system event said it changed. */
const SOCKET_CHECK_MS = 5_000;
/** How long a closed connection may take to flush its last line before it is destroyed. */
const CLOSE_GRACE_MS = 1_000;
/** How long a check of an existing socket file waits for an answer to `ping`. */
const PROBE_TIMEOUT_MS = 1_000;
/** The longest Unix socket path the OS takes (sun_path minus its NUL). */
const MAX_SOCKET_PATH_BYTES = process.platform === 'linux' ? 107 : 103;

/** The ops a client may send. */
export const DEBUG_OPS = ['ping', 'snapshot', 'jobs', 'pool', 'subscribe'] as const;
/** One op of the protocol. */
export type DebugOp = (typeof DEBUG_OPS)[number];

/** Receives every event of a `DebugSource`. */
export type DebugListener = (event: string, data: unknown) => void;

/** Everything the debug server shows: it knows nothing else about the runtime. */
export interface DebugSource {
  /** The supervisor's id, in the answer to `ping`. */
  readonly id: string;
  /** The `snapshot` op: actors, in-flight jobs, pool, identity. */
  snapshot(): unknown;
  /** The `jobs` op: the jobs in flight. */
  jobs(): unknown;
  /** The `pool` op: threads, utilisation, queue, run times. */
  pool(): unknown;
  /** Calls `listener` for every event until the returned function is called. */
  subscribe(listener: DebugListener): () => void;
}

/** Bounds that keep a misbehaving client from costing the runtime more than a little memory. */
export interface DebugLimits {
  /** Longest request line, in bytes; a longer one gets an error and the connection is closed. */
  maxLineBytes: number;
  /** Connections at once, Unix and TCP together; the next ones get an error line and are closed. */
  maxClients: number;
  /** A connection that sends no request for this long is closed; subscribers are exempt. */
  idleTimeoutMs: number;
  /** Bytes waiting in one connection beyond which its requests wait and its events are dropped. */
  maxBufferedBytes: number;
}

/** Options of a DebugServer. */
export interface DebugServerOptions {
  /** Where its data comes from. */
  source: DebugSource;
  /** The Unix socket path, or null for none. Its directory is created mode 0700, the socket is 0600. */
  socketPath: string | null;
  /** A TCP port on 127.0.0.1 (0: any free port), or null for none. Every request must carry the token. */
  tcpPort: number | null;
  /** The state directory: created 0755 if missing; the token lives in `<stateDir>/run/`. */
  stateDir: string;
  /** Defaults: 64 KiB lines, 256 clients, 30 s idle, 1 MiB buffered. */
  limits?: Partial<DebugLimits>;
}

/** The debug server's part of a snapshot. */
export interface DebugServerState {
  socket: string | null;
  tcp: { host: string; port: number; tokenFile: string } | null;
  clients: number;
  subscribers: number;
  requests: number;
  errors: number;
  /** Connections refused because `maxClients` were open. */
  rejected: number;
  /** Events not sent to subscribers that did not read. */
  droppedEvents: number;
  /** The most bytes seen waiting in one connection. */
  maxBufferedBytes: number;
  limits: DebugLimits;
}

/** The debug socket cannot be used: its path is taken, unusable or too long. */
export class DebugSocketError extends SpindleError {
  override name = 'DebugSocketError';
}

type DebugMsg = { type: 'check' } | { type: 'failed'; error: Error };

interface Client {
  readonly socket: Socket;
  readonly transport: 'unix' | 'tcp';
  /** The bytes of a line not yet ended by '\n'. */
  buffer: Buffer;
  subscribed: boolean;
  /** Reading stopped until what was written drains. */
  paused: boolean;
  closing: boolean;
  /** Events dropped since the last `dropped` notice. */
  dropped: number;
}

/** A reply or event that cannot be serialised. */
const UNSERIALISABLE = Symbol('unserialisable');

/** An actor serving the debug protocol; a child of the supervisor, restarted if it crashes. */
export class DebugServer extends Actor<DebugMsg, DebugServerState> {
  readonly #source: DebugSource;
  readonly #socketPath: string | null;
  readonly #tcpPort: number | null;
  readonly #stateDir: string;
  readonly #limits: DebugLimits;
  /** One token for the actor's life, so a restart does not lock out clients that read it. */
  readonly #token = randomBytes(24).toString('hex');
  readonly #clients = new Set<Client>();
  #unix: Server | null = null;
  #tcp: Server | null = null;
  #tcpBound: number | null = null;
  #socketIno: number | null = null;
  #watcher: FSWatcher | null = null;
  #unsubscribe: (() => void) | null = null;
  #subscribers = 0;
  #stats = { requests: 0, errors: 0, rejected: 0, droppedEvents: 0, maxBufferedBytes: 0 };

  constructor(options: DebugServerOptions) {
    super({ name: 'debug-server' });
    if (typeof options.source?.subscribe !== 'function') {
      throw new ValidationError('options.source', 'must be a DebugSource (see createDebugSource)');
    }
    if (options.socketPath === null && options.tcpPort === null) {
      throw new ValidationError('options', 'need a socketPath, a tcpPort or both');
    }
    if (options.socketPath !== null) checkSocketPath(options.socketPath);
    if (options.tcpPort !== null && (!Number.isInteger(options.tcpPort) || options.tcpPort < 0 || options.tcpPort > 65_535)) {
      throw new ValidationError('options.tcpPort', `must be an integer from 0 to 65535, got ${String(options.tcpPort)}`);
    }
    this.#source = options.source;
    this.#socketPath = options.socketPath === null ? null : resolve(options.socketPath);
    this.#tcpPort = options.tcpPort;
    this.#stateDir = resolve(options.stateDir);
    this.#limits = resolveLimits(options.limits ?? {});
  }

  /** The file holding the TCP token: `<stateDir>/run/debug.token`. */
  get tokenFile(): string {
    return join(this.#stateDir, 'run', TOKEN_FILE);
  }

  /** The TCP port bound in this run, or null. */
  get tcpPort(): number | null {
    return this.#tcpBound;
  }

  protected override async onStart(): Promise<void> {
    try {
      await this.#open();
    } catch (error) {
      // onStop runs only after an onStart that completed: release what was opened here.
      await this.#close();
      throw error;
    }
  }

  protected override async onStop(): Promise<void> {
    await this.#close();
  }

  protected async handle(msg: DebugMsg): Promise<void> {
    switch (msg.type) {
      case 'check':
        return this.#checkSocketFile();
      case 'failed':
        throw msg.error;
      default:
        return assertNever(msg);
    }
  }

  protected override inspect(): DebugServerState {
    return {
      socket: this.#socketPath,
      tcp: this.#tcpBound === null ? null : { host: TCP_HOST, port: this.#tcpBound, tokenFile: this.tokenFile },
      clients: this.#clients.size,
      subscribers: this.#subscribers,
      ...this.#stats,
      limits: { ...this.#limits },
    };
  }

  // ---- listening ------------------------------------------------------------------

  async #open(): Promise<void> {
    await mkdirp(this.#stateDir, 0o755);
    if (this.#socketPath !== null) {
      await prepareSocketDir(this.#socketPath, this.#stateDir);
      await ensureSocketFree(this.#socketPath);
      const server = this.#createServer('unix');
      this.#unix = server;
      await listen(server, { path: this.#socketPath });
      await chmod(this.#socketPath, 0o600);
      this.#socketIno = (await stat(this.#socketPath)).ino;
      this.#watchSocketFile(this.#socketPath);
      this.every(SOCKET_CHECK_MS, () => ({ type: 'check' }));
    }
    if (this.#tcpPort !== null) {
      await mkdirp(join(this.#stateDir, 'run'), 0o700, { chmodExisting: true });
      await writeSecret(this.tokenFile, `${this.#token}\n`);
      const server = this.#createServer('tcp');
      this.#tcp = server;
      await listen(server, { host: TCP_HOST, port: this.#tcpPort });
      const address = server.address();
      this.#tcpBound = typeof address === 'object' && address !== null ? address.port : this.#tcpPort;
    }
    this.#unsubscribe = this.#source.subscribe((event, data) => this.#broadcast(event, data));
    this.logger.info(
      { socket: this.#socketPath, tcp: this.#tcpBound === null ? null : `${TCP_HOST}:${this.#tcpBound}` },
      'debug socket listening',
    );
  }

  async #close(): Promise<void> {
    this.#unsubscribe?.();
    this.#unsubscribe = null;
    this.#watcher?.close();
    this.#watcher = null;
    const servers = [this.#unix, this.#tcp].filter((s): s is Server => s !== null);
    this.#unix = null;
    this.#tcp = null;
    this.#tcpBound = null;
    this.#socketIno = null;
    const closed = servers.map((server) => new Promise<void>((done) => server.close(() => done())));
    // Ending (not destroying) lets a client receive what was written last, such as a crash event.
    for (const client of this.#clients) this.#end(client, null);
    await Promise.race([Promise.all(closed), delay(CLOSE_GRACE_MS + 100)]);
  }

  #createServer(transport: Client['transport']): Server {
    const server = createServer((socket) => {
      try {
        this.#accept(socket, transport);
      } catch (err) {
        this.logger.error({ err }, 'debug socket: could not accept a connection');
        socket.destroy();
      }
    });
    server.on('error', (error) => {
      // Before 'listening', listen() rejects; afterwards the server is broken: crash, and be restarted.
      if (server.listening) this.send({ type: 'failed', error });
    });
    return server;
  }

  #watchSocketFile(path: string): void {
    try {
      const name = basename(path);
      this.#watcher = watch(dirname(path), { persistent: false }, (_event, file) => {
        if (file === null || String(file) === name) this.send({ type: 'check' });
      });
      this.#watcher.on('error', (err) => {
        this.logger.warn({ err }, 'debug socket: cannot watch its directory; checking it periodically');
        this.#watcher?.close();
        this.#watcher = null;
      });
    } catch (err) {
      this.logger.warn({ err }, 'debug socket: cannot watch its directory; checking it periodically');
    }
  }

  async #checkSocketFile(): Promise<void> {
    const path = this.#socketPath;
    if (path === null || this.#socketIno === null) return;
    let ino: number | null;
    try {
      ino = (await stat(path)).ino;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      ino = null;
    }
    if (ino === null) throw new DebugSocketError(`the debug socket ${path} was removed; restarting to bind it again`);
    if (ino !== this.#socketIno) {
      throw new DebugSocketError(`the debug socket ${path} was replaced by another file; restarting to bind it again`);
    }
  }

  // ---- connections ----------------------------------------------------------------

  #accept(socket: Socket, transport: Client['transport']): void {
    socket.on('error', () => socket.destroy());
    if (this.#clients.size >= this.#limits.maxClients) {
      this.#stats.rejected++;
      const line = errorLine(null, `too many clients (${this.#limits.maxClients} connected); try again later`);
      socket.setTimeout(CLOSE_GRACE_MS, () => socket.destroy());
      socket.on('data', () => {});
      socket.end(`${line}\n`);
      return;
    }
    const client: Client = { socket, transport, buffer: Buffer.alloc(0), subscribed: false, paused: false, closing: false, dropped: 0 };
    this.#clients.add(client);
    socket.setTimeout(this.#limits.idleTimeoutMs);
    socket.on('timeout', () => this.#guard(client, () => this.#onTimeout(client)));
    socket.on('data', (chunk: Buffer) => this.#guard(client, () => this.#onData(client, chunk)));
    socket.on('drain', () => this.#guard(client, () => this.#onDrain(client)));
    socket.on('close', () => {
      if (this.#clients.delete(client) && client.subscribed) this.#subscribers--;
    });
  }

  /** Runs a connection callback; whatever it throws ends that connection only. */
  #guard(client: Client, run: () => void): void {
    try {
      run();
    } catch (err) {
      this.logger.error({ err }, 'debug socket: a connection handler threw; closing the connection');
      client.socket.destroy();
    }
  }

  #onTimeout(client: Client): void {
    if (client.closing) {
      client.socket.destroy();
      return;
    }
    if (client.subscribed) return;
    this.#stats.errors++;
    this.#end(client, errorLine(null, `no request for ${this.#limits.idleTimeoutMs} ms; closing`));
  }

  #onData(client: Client, chunk: Buffer): void {
    if (client.closing) return;
    client.buffer = client.buffer.length === 0 ? chunk : Buffer.concat([client.buffer, chunk]);
    this.#pump(client);
  }

  #onDrain(client: Client): void {
    if (client.dropped > 0 && client.subscribed) {
      const count = client.dropped;
      client.dropped = 0;
      this.#write(client, JSON.stringify({ event: 'dropped', data: { count } }));
    }
    if (client.paused && !client.closing) {
      client.paused = false;
      client.socket.resume();
      this.#pump(client);
    }
  }

  /** Answers the complete lines buffered, until the client must catch up with what was written. */
  #pump(client: Client): void {
    const max = this.#limits.maxLineBytes;
    while (!client.paused && !client.closing) {
      const newline = client.buffer.indexOf(0x0a);
      if (newline < 0) break;
      const line = client.buffer.subarray(0, newline);
      client.buffer = client.buffer.subarray(newline + 1);
      if (line.length > max) return this.#tooLong(client);
      this.#request(client, line);
    }
    if (client.buffer.length > max && !client.closing) this.#tooLong(client);
  }

  #tooLong(client: Client): void {
    this.#stats.errors++;
    client.buffer = Buffer.alloc(0);
    this.#end(client, errorLine(null, `request line longer than ${this.#limits.maxLineBytes} bytes; closing`));
  }

  /** Writes a last line (if any), ends the connection, and destroys it if it does not close soon. */
  #end(client: Client, line: string | null): void {
    if (client.closing) return;
    client.closing = true;
    client.buffer = Buffer.alloc(0);
    const { socket } = client;
    // Keep reading (and ignoring) so a peer still sending does not stall the close.
    if (client.paused) socket.resume();
    socket.setTimeout(CLOSE_GRACE_MS);
    if (line === null) socket.end();
    else socket.end(`${line}\n`);
  }

  #write(client: Client, line: string): void {
    const { socket } = client;
    if (socket.destroyed || !socket.writable) return;
    socket.write(`${line}\n`);
    const buffered = socket.writableLength;
    if (buffered > this.#stats.maxBufferedBytes) this.#stats.maxBufferedBytes = buffered;
    if (buffered > this.#limits.maxBufferedBytes && !client.paused) {
      client.paused = true;
      socket.pause();
    }
  }

  // ---- requests -------------------------------------------------------------------

  #request(client: Client, line: Buffer): void {
    const text = line.toString('utf8').trim();
    if (text === '') return;
    this.#stats.requests++;
    let request: unknown;
    try {
      request = JSON.parse(text);
    } catch (err) {
      return this.#fail(client, null, `bad JSON: ${(err as Error).message}`);
    }
    if (typeof request !== 'object' || request === null || Array.isArray(request)) {
      return this.#fail(client, null, 'a request is a JSON object such as {"id":1,"op":"ping"}');
    }
    const fields = request as { id?: unknown; op?: unknown; token?: unknown };
    const id = typeof fields.id === 'number' || typeof fields.id === 'string' ? fields.id : null;
    if (client.transport === 'tcp' && !this.#tokenMatches(fields.token)) {
      this.#stats.errors++;
      this.#end(client, errorLine(id, `missing or wrong "token": every request over TCP carries the one in ${this.tokenFile}`));
      return;
    }
    const op = fields.op;
    if (typeof op !== 'string' || !(DEBUG_OPS as readonly string[]).includes(op)) {
      const shown = typeof op === 'string' ? `unknown op ${JSON.stringify(op.slice(0, 64))}` : 'missing "op"';
      return this.#fail(client, id, `${shown}; the ops are ${DEBUG_OPS.join(', ')}`);
    }
    let result: unknown;
    try {
      result = this.#run(client, op as DebugOp);
    } catch (err) {
      return this.#fail(client, id, `${op} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    const reply = serialise({ id, ok: true, result });
    if (reply === UNSERIALISABLE) return this.#fail(client, id, `${op} failed: its result cannot be serialised`);
    this.#write(client, reply);
  }

  #run(client: Client, op: DebugOp): unknown {
    switch (op) {
      case 'ping':
        return { pong: true, supervisorId: this.#source.id, pid: process.pid };
      case 'snapshot':
        return this.#source.snapshot();
      case 'jobs':
        return this.#source.jobs();
      case 'pool':
        return this.#source.pool();
      case 'subscribe':
        if (!client.subscribed) {
          client.subscribed = true;
          this.#subscribers++;
          client.socket.setTimeout(0);
        }
        return { subscribed: true };
      default:
        return assertNever(op);
    }
  }

  #fail(client: Client, id: string | number | null, message: string): void {
    this.#stats.errors++;
    this.#write(client, errorLine(id, message));
  }

  #tokenMatches(token: unknown): boolean {
    if (typeof token !== 'string') return false;
    const given = Buffer.from(token);
    const expected = Buffer.from(this.#token);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  // ---- events ---------------------------------------------------------------------

  /** Sends one event to every subscriber; called from the runtime's code paths, so it never throws. */
  #broadcast(event: string, data: unknown): void {
    if (this.#subscribers === 0) return;
    try {
      const line = serialise({ event, data });
      if (line === UNSERIALISABLE) return;
      for (const client of this.#clients) {
        if (!client.subscribed || client.closing) continue;
        if (client.socket.writableLength > this.#limits.maxBufferedBytes) {
          client.dropped++;
          this.#stats.droppedEvents++;
          continue;
        }
        this.#write(client, line);
      }
    } catch (err) {
      this.logger.error({ err, event }, 'debug socket: could not send an event');
    }
  }
}

// ---- the source -------------------------------------------------------------------

/** The pieces a DebugSource is made of. */
export interface DebugSourcePieces {
  /** The supervisor's id. */
  id: string;
  /** What the `snapshot` op returns: the in-process `handle.snapshot()`. */
  snapshot(): unknown;
  /** What the `jobs` op returns. */
  jobs(): unknown;
  /** What the `pool` op returns. */
  pool(): unknown;
  /** The root actor: it re-emits the `actor:*` events of the whole tree. */
  root: AnyActor;
  /** The runtime's events (claims, outcomes, progress, lost claims, leadership). */
  events?: EventEmitter<RuntimeEvents>;
}

/** Every actor event, streamed to subscribers. */
const ACTOR_EVENT_NAMES = ['actor:start', 'actor:crash', 'actor:restart', 'actor:fail', 'actor:stop'] as const satisfies readonly (keyof ActorEvents)[];
/** Every runtime event, streamed to subscribers. */
const RUNTIME_EVENT_NAMES = [
  'job:claimed',
  'job:started',
  'job:finished',
  'job:progress',
  'claim:lost',
  'job:reaped',
  'leader:changed',
] as const satisfies readonly (keyof RuntimeEvents)[];
// Compile errors when an event is added to ActorEvents or RuntimeEvents but not to the lists above.
const everyActorEvent: Exclude<keyof ActorEvents, (typeof ACTOR_EVENT_NAMES)[number]> extends never ? true : never = true;
const everyRuntimeEvent: Exclude<keyof RuntimeEvents, (typeof RUNTIME_EVENT_NAMES)[number]> extends never ? true : never = true;
void everyActorEvent;
void everyRuntimeEvent;

/** Builds the DebugSource of a runtime from its parts. */
export function createDebugSource(pieces: DebugSourcePieces): DebugSource {
  const { root, events } = pieces;
  return {
    id: pieces.id,
    snapshot: () => pieces.snapshot(),
    jobs: () => pieces.jobs(),
    pool: () => pieces.pool(),
    subscribe(listener) {
      const offs: (() => void)[] = [];
      for (const name of ACTOR_EVENT_NAMES) {
        const fn = (data: ActorEventBase) => listener(name, data);
        root.on(name, fn);
        offs.push(() => root.off(name, fn));
      }
      if (events) {
        for (const name of RUNTIME_EVENT_NAMES) {
          const fn = (data: object) => listener(name, data);
          events.on(name, fn);
          offs.push(() => events.off(name, fn));
        }
      }
      return () => {
        for (const off of offs.splice(0)) off();
      };
    },
  };
}

// ---- the socket file --------------------------------------------------------------

/**
 * Makes sure a debug socket can be bound at `path`: a socket file left by a dead process is
 * removed; a live process answering there, or a file that is not a socket, is an error.
 */
export async function ensureSocketFree(path: string): Promise<void> {
  checkSocketPath(path);
  let info;
  try {
    info = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!info.isSocket()) {
    throw new DebugSocketError(`${path} exists and is not a socket; remove it, or choose another --socket`);
  }
  const probe = await probeSocket(path);
  switch (probe.state) {
    case 'dead':
      await unlink(path).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
      return;
    case 'live': {
      const who = probe.supervisorId ? `supervisor ${probe.supervisorId}${probe.pid ? ` (pid ${probe.pid})` : ''}` : 'another process';
      throw new DebugSocketError(
        `${who} is already serving the debug socket ${path}; give this supervisor another --socket, or --no-socket`,
      );
    }
    case 'silent':
      throw new DebugSocketError(
        `a process is listening on ${path} but does not answer ping; stop it, or choose another --socket`,
      );
    default:
      return assertNever(probe);
  }
}

type Probe = { state: 'dead' } | { state: 'silent' } | { state: 'live'; supervisorId?: string; pid?: number };

/** Connects to an existing socket file and asks `ping`. */
function probeSocket(path: string): Promise<Probe> {
  return new Promise((done, fail) => {
    const socket = createConnection({ path });
    let buffer = '';
    const finish = (probe: Probe | Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (probe instanceof Error) fail(probe);
      else done(probe);
    };
    const timer = setTimeout(() => finish({ state: 'silent' }), PROBE_TIMEOUT_MS);
    socket.on('connect', () => socket.write(`${JSON.stringify({ id: 'probe', op: 'ping' })}\n`));
    socket.on('data', (chunk) => {
      buffer += chunk.toString('utf8');
      const newline = buffer.indexOf('\n');
      if (newline < 0) return;
      try {
        const reply = JSON.parse(buffer.slice(0, newline)) as { result?: { supervisorId?: string; pid?: number } };
        finish({ state: 'live', supervisorId: reply.result?.supervisorId, pid: reply.result?.pid });
      } catch {
        finish({ state: 'live' });
      }
    });
    socket.on('end', () => finish({ state: 'silent' }));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') finish({ state: 'dead' });
      else finish(new DebugSocketError(`cannot check the existing debug socket ${path}: ${err.message}`));
    });
  });
}

function checkSocketPath(path: string): void {
  if (typeof path !== 'string' || path === '') {
    throw new ValidationError('socket', `must be a path, got ${JSON.stringify(path)}`);
  }
  const bytes = Buffer.byteLength(resolve(path));
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw new DebugSocketError(
      `the debug socket path ${resolve(path)} is ${bytes} bytes; the OS allows ${MAX_SOCKET_PATH_BYTES}: choose a shorter --socket`,
    );
  }
}

/**
 * Creates the socket's directory mode 0700. `<stateDir>/run` is ours and is made 0700 even if it
 * exists; a directory elsewhere that exists is left as it is (the socket itself is 0600).
 */
async function prepareSocketDir(socketPath: string, stateDir: string): Promise<void> {
  const dir = dirname(socketPath);
  await mkdirp(dir, 0o700, { chmodExisting: dir === join(stateDir, 'run') });
}

function listen(server: Server, options: ListenOptions): Promise<void> {
  return new Promise((done, fail) => {
    const onError = (error: Error) => {
      server.off('listening', onListening);
      fail(error);
    };
    const onListening = () => {
      server.off('error', onError);
      done();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(options);
  });
}

function resolveLimits(given: Partial<DebugLimits>): DebugLimits {
  const pick = (field: keyof DebugLimits, fallback: number, min: number): number => {
    const value = given[field] ?? fallback;
    if (!Number.isInteger(value) || value < min) {
      throw new ValidationError(`options.limits.${field}`, `must be an integer >= ${min}, got ${String(value)}`);
    }
    return value;
  };
  return {
    maxLineBytes: pick('maxLineBytes', DEFAULT_MAX_LINE_BYTES, 64),
    maxClients: pick('maxClients', DEFAULT_MAX_CLIENTS, 1),
    idleTimeoutMs: pick('idleTimeoutMs', DEFAULT_IDLE_TIMEOUT_MS, 1),
    // At least a socket's high-water mark, so a dropping subscriber always gets a 'drain' to resume on.
    maxBufferedBytes: pick('maxBufferedBytes', DEFAULT_MAX_BUFFERED_BYTES, 16 * 1024),
  };
}

/** JSON for the wire: errors become { name, message }, bigints strings; UNSERIALISABLE if it cannot be done. */
function serialise(value: unknown): string | typeof UNSERIALISABLE {
  try {
    return JSON.stringify(value, (_key, v: unknown) => {
      if (v instanceof Error) return { name: v.name, message: v.message };
      if (typeof v === 'bigint') return v.toString();
      return v;
    });
  } catch {
    return UNSERIALISABLE;
  }
}

function errorLine(id: string | number | null, error: string): string {
  return JSON.stringify({ id, ok: false, error });
}

function delay(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms).unref());
}
