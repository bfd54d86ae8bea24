/**
 * Timestamps of what a process does while it starts, taken from outside the code being measured
 * (scenario 7, bench/scenarios/startup.ts). Plain JavaScript: it runs in processes that must not
 * load tsx, as a user's app would not.
 *
 * - pg: every connection (connect called, connected; end called, closed) and every query (sent,
 *   answered), with its text or statement name and the connection's application_name, by
 *   wrapping pg.Client's `connect`, `query` and `end` (pg.Pool's clients are pg.Clients, so pools
 *   are seen too).
 * - sockets: every net.Socket connect (PostgreSQL's TCP port, the debug socket), for a process
 *   where pg is not loaded yet when tracing starts (the CLI); every net.Server listen (the debug
 *   socket): called, listening.
 * - fs: every call of the node:fs/promises functions spindle uses at start (mkdir, chmod, lstat,
 *   ...): each is a round trip through libuv's thread pool. Wrapped on the fs.promises object, then
 *   made visible to modules that imported them by name with module.syncBuiltinESMExports().
 * - threads: every worker thread (process 'worker' event): created, online (its JavaScript
 *   started), the `type` of its first messages (a pool thread's 'spindle:port', the probe's
 *   'spindle:probing'), exit.
 *
 * Times are epoch milliseconds with sub-millisecond resolution (`performance.timeOrigin +
 * performance.now()`), comparable across the processes and threads of one machine.
 */
import fs, { readFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';

/** Epoch ms, sub-millisecond. */
export function now() {
  return performance.timeOrigin + performance.now();
}

/**
 * CPU so far: this process's (every thread, process.cpuUsage()) and the calling thread's own, with
 * the time it waited for a core while runnable (Linux /proc/thread-self/schedstat; absent elsewhere).
 */
export function cpuNow() {
  const { user, system } = process.cpuUsage();
  const sample = { processMs: (user + system) / 1000 };
  try {
    const [run, wait] = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ').map(Number);
    if (Number.isFinite(run) && Number.isFinite(wait)) Object.assign(sample, { threadMs: run / 1e6, threadWaitMs: wait / 1e6 });
  } catch {
    // Not Linux: the process figure only.
  }
  return sample;
}

/** What `cpuNow()` grew by from `before` to `after`. */
export function cpuSpent(before, after) {
  const spent = { processMs: after.processMs - before.processMs };
  if (before.threadMs !== undefined && after.threadMs !== undefined) {
    Object.assign(spent, { mainMs: after.threadMs - before.threadMs, mainWaitMs: after.threadWaitMs - before.threadWaitMs });
  }
  return spent;
}

/** Most messages kept per thread: the first ones are those of its start. */
const MESSAGES_KEPT = 6;
/** Characters of SQL kept per query: enough to tell the statements apart. */
const SQL_KEPT = 120;

/**
 * @typedef {{ start: number, end?: number, app?: string, fast?: boolean, error?: string }} ConnectEvent
 * @typedef {{ start: number, end?: number, app?: string, fast?: boolean, sql: string, name?: string }} QueryEvent
 * @typedef {{ start: number, connected?: number, target: string }} SocketEvent
 * @typedef {{ start: number, listening?: number, target: string }} ServerEvent
 * @typedef {{ start: number, end?: number, call: string, path: string }} FsEvent
 * @typedef {{ id: number, created: number, online?: number, exit?: number, messages: { at: number, type: string }[] }} ThreadEvent
 * @typedef {{ connects: ConnectEvent[], closes: ConnectEvent[], queries: QueryEvent[], sockets: SocketEvent[], servers: ServerEvent[], fs: FsEvent[], threads: ThreadEvent[] }} Trace
 */

/** @returns {Trace} an empty trace. */
export function createTrace() {
  return { connects: [], closes: [], queries: [], sockets: [], servers: [], fs: [], threads: [] };
}

/** The application_name and whether the connection sets `options` (spindle's claim pool does). */
function describeClient(client) {
  const params = client.connectionParameters ?? {};
  return { app: params.application_name || undefined, fast: Boolean(params.options) };
}

/**
 * Wraps `pg.Client.prototype.connect`, `.end` and `.query` of this copy of pg (pass the very
 * module the measured code imports: two installs of pg are two classes).
 */
export function tracePg(pg, trace) {
  const Client = pg.Client;
  const { connect, end, query } = Client.prototype;
  Client.prototype.connect = timed(connect, trace.connects);
  Client.prototype.end = timed(end, trace.closes);
  Client.prototype.query = function tracedQuery(config, values, callback) {
    if (config === null || config === undefined || typeof config.submit === 'function') {
      return query.apply(this, arguments);
    }
    const text = typeof config === 'string' ? config : String(config.text ?? '');
    /** @type {QueryEvent} */
    const event = { start: now(), ...describeClient(this), sql: text.replace(/\s+/g, ' ').trim().slice(0, SQL_KEPT) };
    if (typeof config === 'object' && typeof config.name === 'string') event.name = config.name;
    trace.queries.push(event);
    const answered = () => {
      event.end ??= now();
    };
    const wrap = (cb) =>
      function answeredCallback(...args) {
        answered();
        return cb.apply(this, args);
      };
    if (typeof values === 'function') values = wrap(values);
    else if (typeof callback === 'function') callback = wrap(callback);
    const result = query.call(this, config, values, callback);
    if (result && typeof result.then === 'function') result.then(answered, answered);
    return result;
  };
}

/** `method` (connect or end, with a callback or a promise), its calls recorded in `events`. */
function timed(method, events) {
  return function timedCall(callback) {
    /** @type {ConnectEvent} */
    const event = { start: now(), ...describeClient(this) };
    events.push(event);
    if (typeof callback === 'function') {
      return method.call(this, (err, ...rest) => {
        event.end = now();
        if (err) event.error = String(err.message ?? err);
        callback(err, ...rest);
      });
    }
    const result = method.call(this);
    result?.then?.(
      () => {
        event.end = now();
      },
      (err) => {
        event.end = now();
        event.error = String(err?.message ?? err);
      },
    );
    return result;
  };
}

/** The port or path a connect() or listen() call names. */
function targetOf(first) {
  return typeof first === 'object' && first !== null ? String(first.path ?? first.port ?? '?') : String(first ?? '?');
}

/**
 * Wraps net.Socket's connect and net.Server's listen: when each TCP or Unix socket connection was
 * asked for and made, when each server was asked to listen and listened.
 */
export function traceSockets(trace) {
  const { connect } = net.Socket.prototype;
  net.Socket.prototype.connect = function tracedSocketConnect(...args) {
    /** @type {SocketEvent} */
    const event = { start: now(), target: targetOf(args[0]) };
    trace.sockets.push(event);
    this.once('connect', () => {
      event.connected = now();
    });
    return connect.apply(this, args);
  };
  const { listen } = net.Server.prototype;
  net.Server.prototype.listen = function tracedListen(...args) {
    /** @type {ServerEvent} */
    const event = { start: now(), target: targetOf(args[0]) };
    trace.servers.push(event);
    this.once('listening', () => {
      event.listening = now();
    });
    return listen.apply(this, args);
  };
}

/** The node:fs/promises functions traced. */
const FS_CALLS = ['access', 'chmod', 'lstat', 'mkdir', 'open', 'readdir', 'readFile', 'rename', 'stat', 'unlink', 'writeFile'];

/** Records every call of FS_CALLS (see the file comment). */
export function traceFs(trace) {
  for (const call of FS_CALLS) {
    const original = fs.promises[call];
    fs.promises[call] = function tracedFs(...args) {
      /** @type {FsEvent} */
      const event = { start: now(), call, path: String(args[0]) };
      trace.fs.push(event);
      const result = original.apply(this, args);
      const done = () => {
        event.end = now();
      };
      result.then(done, done);
      return result;
    };
  }
  syncBuiltinESMExports();
}

/** Records every worker thread this process starts (see the file comment). */
export function traceThreads(trace) {
  process.on('worker', (worker) => {
    /** @type {ThreadEvent} */
    const thread = { id: worker.threadId, created: now(), messages: [] };
    trace.threads.push(thread);
    worker.once('online', () => {
      thread.online = now();
    });
    worker.on('message', (message) => {
      if (thread.messages.length >= MESSAGES_KEPT) return;
      const type = typeof message === 'object' && message !== null && typeof message.type === 'string' ? message.type : typeof message;
      thread.messages.push({ at: now(), type });
    });
    worker.once('exit', () => {
      thread.exit = now();
    });
  });
}
