/**
 * `spindle inspect`: what a running supervisor is doing, read from its debug socket: the actors,
 * the jobs in flight with their progress, and the pool. Once, or redrawn every second like `top`.
 */
import { readFile } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { TCP_HOST, TOKEN_FILE } from '../ops/debug-protocol.ts';
import { lastClaimText, type LimitedScopeView } from '../actors/limited-claims.ts';
import type { ActorSnapshot } from '../actors/snapshot.ts';
import { SpindleError } from '../errors.ts';
import type { RuntimeSnapshot } from '../start.ts';
import { intFlag, parse, PORT_MAX } from './args.ts';
import { bar, clip, duration, table } from './format.ts';

/** How long a connection or a request may take. */
const REQUEST_TIMEOUT_MS = 5_000;
/** How often `--watch` redraws. */
const WATCH_INTERVAL_MS = 1_000;
const HINT = "start one with 'spindle start', or point at it with --socket PATH or --state-dir DIR";

/** Where the debug protocol is served. */
type Target = { kind: 'unix'; path: string } | { kind: 'tcp'; port: number; tokenFile: string };

/** `spindle inspect [--json] [--watch] [--socket PATH | --port N]`; exit 1 when no supervisor answers. */
export async function inspectCommand(args: string[]): Promise<number> {
  const { values } = parse('inspect', args);
  const stateDir = resolve(values['state-dir'] ?? process.env.SPINDLE_STATE_DIR ?? '.spindle');
  const port = intFlag('port', values.port, 1, PORT_MAX);
  if (port !== undefined && values.socket !== undefined) {
    throw new SpindleError('give --socket PATH or --port N, not both');
  }
  const target: Target =
    port === undefined
      ? { kind: 'unix', path: resolve(values.socket ?? join(stateDir, 'run', 'supervisor.sock')) }
      : { kind: 'tcp', port, tokenFile: join(stateDir, 'run', TOKEN_FILE) };
  if (values.watch) return watchLoop(target, values.json === true);
  const connection = await DebugConnection.open(target);
  try {
    const snapshot = await connection.request<RuntimeSnapshot>('snapshot');
    process.stdout.write(`${values.json ? JSON.stringify(snapshot, null, 2) : renderSnapshot(snapshot)}\n`);
  } finally {
    connection.close();
  }
  return 0;
}

/** Redraws until SIGINT/SIGTERM; a supervisor that goes away is retried every second. */
async function watchLoop(target: Target, json: boolean): Promise<number> {
  // A first connection that fails is an error (exit 1): there is nothing to watch.
  let connection: DebugConnection | null = await DebugConnection.open(target);
  const out = process.stdout;
  const screen = out.isTTY === true && !json;
  let stopped = false;
  let wake: (() => void) | null = null;
  const onSignal = () => {
    stopped = true;
    wake?.();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // The alternate screen, like top: the terminal is as it was after Ctrl-C.
  if (screen) out.write('\x1b[?1049h\x1b[?25l');
  try {
    while (!stopped) {
      let frame: string;
      try {
        connection ??= await DebugConnection.open(target);
        const snapshot = await connection.request<RuntimeSnapshot>('snapshot');
        frame = json ? JSON.stringify(snapshot) : `${renderSnapshot(snapshot)}\n\nevery ${WATCH_INTERVAL_MS / 1_000}s; Ctrl-C to quit`;
      } catch (error) {
        connection?.close();
        connection = null;
        const message = error instanceof Error ? error.message : String(error);
        frame = json ? JSON.stringify({ error: message }) : `${message}\n\nretrying every second; Ctrl-C to quit`;
      }
      out.write(screen ? `\x1b[H\x1b[2J${frame}\n` : `${frame}\n${json ? '' : '\n'}`);
      await new Promise<void>((done) => {
        const timer = setTimeout(done, WATCH_INTERVAL_MS);
        wake = () => {
          clearTimeout(timer);
          done();
        };
      });
    }
  } finally {
    connection?.close();
    if (screen) out.write('\x1b[?25h\x1b[?1049l');
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return 0;
}

// ---- the client -------------------------------------------------------------------

interface Waiter {
  resolve(value: unknown): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/** One connection to a debug socket: requests answered in order, by id. */
class DebugConnection {
  readonly #socket: Socket;
  readonly #where: string;
  readonly #token: string | undefined;
  readonly #waiters = new Map<number, Waiter>();
  #buffer = '';
  #nextId = 1;
  #closed: Error | null = null;

  private constructor(socket: Socket, where: string, token: string | undefined) {
    this.#socket = socket;
    this.#where = where;
    this.#token = token;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.#onData(chunk));
    socket.on('error', (error) => this.#fail(new SpindleError(`the connection to ${where} failed: ${error.message}`)));
    socket.on('close', () => this.#fail(new SpindleError(`the supervisor at ${where} closed the connection`)));
  }

  /** Connects, with a clear error when no supervisor listens there. */
  static async open(target: Target): Promise<DebugConnection> {
    const where = target.kind === 'unix' ? target.path : `${TCP_HOST}:${target.port}`;
    let token: string | undefined;
    if (target.kind === 'tcp') {
      try {
        token = (await readFile(target.tokenFile, 'utf8')).trim();
      } catch (error) {
        throw new SpindleError(`cannot read the debug token ${target.tokenFile}: ${(error as Error).message}; ${HINT}`);
      }
    }
    const socket = await new Promise<Socket>((done, fail) => {
      const s =
        target.kind === 'unix' ? createConnection({ path: target.path }) : createConnection({ host: TCP_HOST, port: target.port });
      const timer = setTimeout(() => {
        s.destroy();
        fail(new SpindleError(`the supervisor at ${where} did not accept a connection within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        done(s);
      });
      s.once('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        fail(connectError(where, error));
      });
    });
    return new DebugConnection(socket, where, token);
  }

  /** Sends one op and resolves with its result; rejects with the server's error. */
  request<T = unknown>(op: string): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closed);
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(id);
        reject(new SpindleError(`the supervisor at ${this.#where} did not answer "${op}" within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      this.#waiters.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
      this.#socket.write(`${JSON.stringify({ id, op, token: this.#token })}\n`);
    });
  }

  close(): void {
    this.#fail(new SpindleError('connection closed'));
    this.#socket.destroy();
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    for (let newline = this.#buffer.indexOf('\n'); newline >= 0; newline = this.#buffer.indexOf('\n')) {
      const line = this.#buffer.slice(0, newline);
      this.#buffer = this.#buffer.slice(newline + 1);
      let reply: { id?: unknown; ok?: boolean; result?: unknown; error?: string };
      try {
        reply = JSON.parse(line) as typeof reply;
      } catch {
        continue;
      }
      const waiter = typeof reply.id === 'number' ? this.#waiters.get(reply.id) : undefined;
      if (!waiter) {
        // An error for no request in particular (too many clients, idle) ends every request.
        if (reply.ok === false) this.#fail(new SpindleError(`the supervisor at ${this.#where} said: ${reply.error}`));
        continue;
      }
      this.#waiters.delete(reply.id as number);
      clearTimeout(waiter.timer);
      if (reply.ok) waiter.resolve(reply.result);
      else waiter.reject(new SpindleError(`the supervisor at ${this.#where} said: ${reply.error}`));
    }
  }

  #fail(error: Error): void {
    this.#closed ??= error;
    for (const waiter of this.#waiters.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    this.#waiters.clear();
  }
}

function connectError(where: string, error: NodeJS.ErrnoException): SpindleError {
  switch (error.code) {
    case 'ENOENT':
      return new SpindleError(`no supervisor is running at ${where}: there is no socket there; ${HINT}`);
    case 'ECONNREFUSED':
      return new SpindleError(`no supervisor is running at ${where}: nothing listens there (ECONNREFUSED); ${HINT}`);
    case 'EACCES':
    case 'EPERM':
      return new SpindleError(`permission denied on ${where}: run this as the user that runs the supervisor`);
    default:
      return new SpindleError(`cannot connect to ${where}: ${error.message}`);
  }
}

// ---- rendering --------------------------------------------------------------------

/** The snapshot as text: a header, the actors, the jobs in flight, the pool, and flow control when any scope is limited or paused. */
export function renderSnapshot(s: RuntimeSnapshot, now = Date.now()): string {
  const header =
    `supervisor ${s.supervisorId}  pid ${s.pid} on ${s.host}  up ${duration(s.uptimeMs)}  ` +
    `spindle ${s.versions.spindle}  node ${s.versions.node}`;
  const actors = flatten(s.actors);
  const actorTable = table(
    ['ACTOR', 'STATUS', 'MAILBOX', 'PROCESSED', 'RESTARTS', 'LAST ERROR'],
    actors.map((a) => [
      a.path,
      a.status,
      a.mailbox,
      a.processed,
      a.restarts,
      a.lastError ? `${clip(a.lastError.message, 60)} (${duration(now - Date.parse(a.lastError.at))} ago)` : null,
    ]),
  );
  const jobs = s.jobs;
  const jobTable = jobs.length
    ? table(
        // Node's thread id, which counts every thread the process started: an id, not a slot of the pool.
        ['ID', 'TYPE', 'ATTEMPT', 'THREAD', 'ELAPSED', 'DEADLINE', 'PROGRESS', 'MESSAGE'],
        jobs.map((j) => [
          j.id,
          j.type,
          `${j.attempt}/${j.maxAttempts}`,
          j.thread ?? 'waiting',
          duration(j.elapsedMs),
          j.deadline ? `in ${duration(Math.max(0, Date.parse(j.deadline) - now))}` : null,
          bar(j.progress, 20),
          j.aborting ? `[${j.aborting}] ${j.message ?? ''}`.trim() : clip(j.message ?? '', 40),
        ]),
      )
    : 'no jobs in flight';
  const p = s.pool;
  const poolTable = table(
    ['THREADS', 'BUSY', 'IDLE', 'QUEUED', 'UTILISATION', 'COMPLETED', 'RUN P50', 'RUN P99', 'RUN MAX'],
    [
      [
        `${p.threads}/${p.maxThreads}`,
        p.busy,
        p.idle,
        p.queued,
        `${(p.utilisation * 100).toFixed(0)}%`,
        p.completed,
        p.runTimeMs.count ? duration(p.runTimeMs.p50) : null,
        p.runTimeMs.count ? duration(p.runTimeMs.p99) : null,
        p.runTimeMs.count ? duration(p.runTimeMs.max) : null,
      ],
    ],
  );
  const sections = [header, '', `ACTORS (${actors.length})`, actorTable, '', `IN FLIGHT (${jobs.length})`, jobTable, '', 'POOL', poolTable];
  // A supervisor of an older spindle has no limitedScopes in its state.
  const scopes = s.actors.state?.limitedScopes ?? [];
  if (scopes.length > 0) sections.push('', `FLOW CONTROL (${scopes.length})`, flowTable(scopes, now));
  return sections.join('\n');
}

/** The scopes this supervisor claims only through limited claims, and what its last claim in each found. */
function flowTable(scopes: LimitedScopeView[], now: number): string {
  return table(
    ['SCOPE', 'STATE', 'LAST CLAIM', 'FOUND'],
    scopes.map((v) => [
      v.scope,
      v.paused ? 'paused' : 'limited',
      v.lastClaim ? `${duration(Math.max(0, now - Date.parse(v.lastClaim.at)))} ago` : null,
      lastClaimText(v, now, duration),
    ]),
  );
}

function flatten(actor: ActorSnapshot): ActorSnapshot[] {
  return [actor, ...actor.children.flatMap(flatten)];
}
