/**
 * The debug socket: a Unix socket (and, if asked, a token-guarded TCP port on 127.0.0.1) that shows
 * the runtime from the inside, for `spindle inspect` and any other client. The wire format is in
 * debug-protocol.ts, the data comes through a `DebugSource` (debug-source.ts): the server never
 * reaches into the supervisor.
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
 */
import { randomBytes } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { chmod, stat } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import { Actor, assertNever } from '../actors/kernel.ts';
import { ValidationError } from '../errors.ts';
import { errorLine, readRequest, serialise, TCP_HOST, TOKEN_FILE, UNSERIALISABLE, type DebugOp, type RequestId } from './debug-protocol.ts';
import { checkSocketPath, DebugSocketError, ensureSocketFree, prepareSocketDir } from './debug-socket-file.ts';
import type { DebugSource } from './debug-source.ts';
import { listen, mkdirp, openOrRelease, prepareRunDir, runDir, tokenChecker, writeSecret } from './serving.ts';

/** Default of `DebugLimits.maxLineBytes`: 64 KiB. */
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024;
/** Default of `DebugLimits.maxClients`. */
export const DEFAULT_MAX_CLIENTS = 256;
/** Default of `DebugLimits.idleTimeoutMs`. */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
/** Default of `DebugLimits.maxBufferedBytes`: 1 MiB. */
export const DEFAULT_MAX_BUFFERED_BYTES = 1024 * 1024;

/** How often the socket file is checked when no file-system event said it changed. */
const SOCKET_CHECK_MS = 5_000;
/** How long a closed connection may take to flush its last line before it is destroyed. */
const CLOSE_GRACE_MS = 1_000;

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

/** An actor serving the debug protocol; a child of the supervisor, restarted if it crashes. */
export class DebugServer extends Actor<DebugMsg, DebugServerState> {
  readonly #source: DebugSource;
  readonly #socketPath: string | null;
  readonly #tcpPort: number | null;
  readonly #stateDir: string;
  readonly #limits: DebugLimits;
  /** One token for the actor's life, so a restart does not lock out clients that read it. */
  readonly #token = randomBytes(24).toString('hex');
  readonly #tokenMatches = tokenChecker(this.#token);
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
    return join(runDir(this.#stateDir), TOKEN_FILE);
  }

  /** The TCP port bound in this run, or null. */
  get tcpPort(): number | null {
    return this.#tcpBound;
  }

  protected override onStart(): Promise<void> {
    return openOrRelease(() => this.#open(), () => this.#close());
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
      await prepareRunDir(this.#stateDir);
      await writeSecret(this.tokenFile, `${this.#token}\n`);
      const server = this.#createServer('tcp');
      this.#tcp = server;
      this.#tcpBound = await listen(server, { host: TCP_HOST, port: this.#tcpPort });
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
    const request = readRequest(text);
    if ('malformed' in request) return this.#fail(client, null, request.malformed);
    const { id, op } = request;
    if (client.transport === 'tcp' && !this.#tokenMatches(request.token)) {
      this.#stats.errors++;
      this.#end(client, errorLine(id, `missing or wrong "token": every request over TCP carries the one in ${this.tokenFile}`));
      return;
    }
    if (op === null) return this.#fail(client, id, request.error);
    let result: unknown;
    try {
      result = this.#run(client, op);
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

  #fail(client: Client, id: RequestId, message: string): void {
    this.#stats.errors++;
    this.#write(client, errorLine(id, message));
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

function delay(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms).unref());
}
