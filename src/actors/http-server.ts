/**
 * The HTTP API and the web dashboard: a child actor of the supervisor, on `httpHost:httpPort`
 * (127.0.0.1 by default), plain node:http.
 *
 * Authentication: every `/api/` request carries `Authorization: Bearer <token>`, the token in
 * `<stateDir>/run/http.token` (file 0600, directory 0700), made at the first start and kept across
 * restarts so that scripts and open dashboards keep working. The dashboard's static files need no
 * token; the page asks for it once and keeps it in sessionStorage (or takes it from `#token=` in
 * the URL, a fragment, which browsers never send to a server or log). Because the token travels
 * only in a header that scripts set, never in a cookie, no other site can make a browser send it:
 * there is nothing for cross-site request forgery to ride on. Server-Sent Events are read with
 * fetch() for the same reason (EventSource cannot send a header).
 *
 * Routes (JSON in and out; errors are `{ "error": "..." }`):
 *   POST /api/jobs                      enqueue: { type, input?, options? }, or an array of them -> 201
 *   GET  /api/jobs?state&type&queue&limit&after     newest first
 *   GET  /api/jobs/:id                  { job, attempts, inFlight }
 *   POST /api/jobs/:id/cancel           { reason? } -> the cancel outcome
 *   POST /api/jobs/:id/retry            -> { job }
 *   POST /api/workflows                 start a run: { name, input?, options?: { id } } -> 201 (200: that id existed)
 *   GET  /api/workflows?state&name&limit            newest first
 *   GET  /api/workflows/:id             the run with its steps (an id with "/" is sent as %2F)
 *   POST /api/workflows/:id/cancel      { reason? }
 *   POST /api/workflows/:id/events      { name, payload? } -> 202, into the run's inbox
 *   GET  /api/queues                    jobs by queue and state (one grouped query)
 *   GET  /api/snapshot                  actors, in-flight jobs, pool (the debug snapshot)
 *   GET  /api/events[?job=ID]           Server-Sent Events: the runtime's and the actors' events
 * A job is shown as its current attempt stands (see asCurrentAttempt): what an earlier attempt left
 * on its row is in its attempts. `inFlight` is this supervisor's record of a job it holds (its
 * thread's number, and when its handler started: null while it waits for a thread), else null.
 * Status codes: 400 bad input or JSON, 401 no or wrong token, 404, 405 (with Allow), 409 a state
 * that forbids the action, 413 a body over `maxBodyBytes`, 415 a body that is not JSON, 503 too many
 * event streams.
 *
 * Bounds: request bodies (1 MiB), event-stream clients (64), bytes waiting per event stream (1 MiB:
 * beyond it events are dropped and a `dropped` event says how many), connections (256), the time
 * to send a request (30 s).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { lstat, readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join, resolve } from 'node:path';
import { Client } from '../client.ts';
import { countJobsByQueueAndState } from '../db/jobs.ts';
import { NotFoundError, StateError, ValidationError } from '../errors.ts';
import type { Job } from '../job.ts';
import { describe } from '../validate.ts';
import type { DebugSource } from './debug-server.ts';
import { mkdirp, writeSecret } from './ops-files.ts';
import { closeServer, formatHost, listen } from './http-listen.ts';
import { Actor, assertNever } from './kernel.ts';
import type { InFlightView } from '../runtime-events.ts';

/** The file, under `<stateDir>/run/`, that holds the API token. */
export const HTTP_TOKEN_FILE = 'http.token';
/** Default of `HttpLimits.maxBodyBytes`: 1 MiB. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** The dashboard's files, served without a token. */
const DASHBOARD_DIR = new URL('../http/dashboard/', import.meta.url);
const DASHBOARD_FILES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};
const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
};
const SSE_PING_MS = 15_000;
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{32,256}$/;

/** Bounds of the HTTP server. */
export interface HttpLimits {
  /** Largest request body, in bytes. */
  maxBodyBytes: number;
  /** Event streams open at once. */
  maxEventClients: number;
  /** Bytes waiting in one event stream beyond which its events are dropped. */
  maxBufferedBytes: number;
}

/** Options of the HttpServer actor. */
export interface HttpServerOptions {
  /** The database the API reads and writes (through a Client of its own, a few connections). */
  databaseUrl: string;
  /** The state directory: the token lives in `<stateDir>/run/`. */
  stateDir: string;
  /** 0: any free port. */
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** What GET /api/snapshot returns. */
  snapshot: () => unknown;
  /** The events streamed by GET /api/events. */
  source: Pick<DebugSource, 'subscribe'>;
  limits?: Partial<HttpLimits>;
}

/** The HTTP server's part of a snapshot. */
export interface HttpServerState {
  url: string | null;
  tokenFile: string;
  requests: number;
  errors: number;
  eventClients: number;
  droppedEvents: number;
}

type HttpMsg = { type: 'failed'; error: Error };

/** An error with the HTTP status it maps to. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

interface Route {
  /** Path segments; `:id` matches one segment. */
  path: string[];
  method: 'GET' | 'POST';
  run: (ctx: RequestContext) => Promise<void> | void;
}

interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  params: Record<string, string>;
}

/** Serves the API and the dashboard; restarted by its parent if its server breaks. */
export class HttpServer extends Actor<HttpMsg, HttpServerState> {
  readonly #o: HttpServerOptions;
  readonly #host: string;
  readonly #stateDir: string;
  readonly #limits: HttpLimits;
  readonly #routes: Route[];
  readonly #streams = new Set<ServerResponse>();
  #files = new Map<string, Buffer>();
  #client: Client | null = null;
  #server: Server | null = null;
  #port: number | null = null;
  #tokenDigest: Buffer | null = null;
  #stats = { requests: 0, errors: 0, droppedEvents: 0 };

  constructor(options: HttpServerOptions) {
    super({ name: 'http' });
    if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65_535) {
      throw new ValidationError('options.port', `must be an integer from 0 to 65535, got ${describe(options.port)}`);
    }
    this.#o = options;
    this.#host = options.host ?? '127.0.0.1';
    this.#stateDir = resolve(options.stateDir);
    this.#limits = {
      maxBodyBytes: options.limits?.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
      maxEventClients: options.limits?.maxEventClients ?? 64,
      maxBufferedBytes: options.limits?.maxBufferedBytes ?? 1024 * 1024,
    };
    this.#routes = [
      { method: 'POST', path: ['api', 'jobs'], run: (c) => this.#enqueue(c) },
      { method: 'GET', path: ['api', 'jobs'], run: (c) => this.#list(c) },
      { method: 'GET', path: ['api', 'jobs', ':id'], run: (c) => this.#get(c) },
      { method: 'POST', path: ['api', 'jobs', ':id', 'cancel'], run: (c) => this.#cancel(c) },
      { method: 'POST', path: ['api', 'jobs', ':id', 'retry'], run: (c) => this.#retry(c) },
      { method: 'POST', path: ['api', 'workflows'], run: (c) => this.#startWorkflow(c) },
      { method: 'GET', path: ['api', 'workflows'], run: (c) => this.#listWorkflows(c) },
      { method: 'GET', path: ['api', 'workflows', ':id'], run: (c) => this.#getWorkflow(c) },
      { method: 'POST', path: ['api', 'workflows', ':id', 'cancel'], run: (c) => this.#cancelWorkflow(c) },
      { method: 'POST', path: ['api', 'workflows', ':id', 'events'], run: (c) => this.#sendEvent(c) },
      { method: 'GET', path: ['api', 'queues'], run: (c) => this.#queues(c) },
      { method: 'GET', path: ['api', 'snapshot'], run: (c) => sendJson(c.res, 200, this.#o.snapshot()) },
      { method: 'GET', path: ['api', 'events'], run: (c) => this.#events(c) },
    ];
  }

  /** `<stateDir>/run/http.token`. */
  get tokenFile(): string {
    return join(this.#stateDir, 'run', HTTP_TOKEN_FILE);
  }

  /** The bound port, or null when not listening. */
  get port(): number | null {
    return this.#port;
  }

  /** `http://host:port/`, or null when not listening. */
  get url(): string | null {
    return this.#port === null ? null : `http://${formatHost(this.#host)}:${this.#port}/`;
  }

  /** The database pool of the API's Client (for the metrics), or null when not running. */
  get dbPool(): Client['pool'] | null {
    return this.#client?.pool ?? null;
  }

  protected override async onStart(): Promise<void> {
    try {
      await this.#open();
    } catch (error) {
      await this.#close();
      throw error;
    }
  }

  protected override async onStop(): Promise<void> {
    await this.#close();
  }

  protected handle(msg: HttpMsg): void {
    switch (msg.type) {
      case 'failed':
        throw msg.error;
      default:
        return assertNever(msg.type);
    }
  }

  protected override inspect(): HttpServerState {
    return { url: this.url, tokenFile: this.tokenFile, eventClients: this.#streams.size, ...this.#stats };
  }

  // ---- lifecycle ------------------------------------------------------------------

  async #open(): Promise<void> {
    const token = await readOrCreateToken(this.#stateDir, this.tokenFile);
    this.#tokenDigest = digest(token);
    const files = new Map<string, Buffer>();
    for (const { file } of Object.values(DASHBOARD_FILES)) {
      if (!files.has(file)) files.set(file, await readFile(new URL(file, DASHBOARD_DIR)));
    }
    this.#files = files;
    this.#client = new Client({ connectionString: this.#o.databaseUrl, maxConnections: 4 });
    const server = createServer((req, res) => void this.#serve(req, res));
    server.on('error', (error) => {
      if (server.listening) this.send({ type: 'failed', error });
    });
    server.maxConnections = 256;
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    this.#server = server;
    this.#port = await listen(server, this.#host, this.#o.port);
    this.logger.info({ url: this.url, tokenFile: this.tokenFile }, 'HTTP API and dashboard listening');
  }

  async #close(): Promise<void> {
    for (const res of this.#streams) res.end();
    this.#streams.clear();
    const server = this.#server;
    this.#server = null;
    this.#port = null;
    if (server) await closeServer(server);
    const client = this.#client;
    this.#client = null;
    await client?.close().catch(() => {});
  }

  // ---- requests -------------------------------------------------------------------

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.#stats.requests++;
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      if (!url.pathname.startsWith('/api/') && url.pathname !== '/api') return this.#static(req, res, url);
      this.#authenticate(req);
      const segments = url.pathname.split('/').filter(Boolean).map(decodeSegment);
      const matches = this.#routes
        .map((route) => ({ route, params: matchPath(route.path, segments) }))
        .filter((m): m is { route: Route; params: Record<string, string> } => m.params !== null);
      if (matches.length === 0) throw new HttpError(404, `no such route: ${url.pathname}`);
      const match = matches.find((m) => m.route.method === req.method);
      if (!match) {
        const allow = matches.map((m) => m.route.method).join(', ');
        throw new HttpError(405, `${req.method} is not allowed on ${url.pathname}; use ${allow}`, { allow });
      }
      await match.route.run({ req, res, url, params: match.params });
    } catch (error) {
      this.#fail(req, res, error);
    }
  }

  #fail(req: IncomingMessage, res: ServerResponse, error: unknown): void {
    this.#stats.errors++;
    const [status, message, headers] =
      error instanceof HttpError
        ? [error.status, error.message, error.headers]
        : error instanceof ValidationError
          ? [400, error.message, {}]
          : error instanceof NotFoundError
            ? [404, error.message, {}]
            : error instanceof StateError
              ? [409, error.message, {}]
              : [500, 'internal error; see the supervisor log', {}];
    if (status === 500) this.logger.error({ err: error, method: req.method, url: req.url }, 'HTTP API: request failed');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // After a 413 the rest of the body is read and discarded, and the connection is not reused.
    sendJson(res, status, { error: message }, status === 413 ? { ...headers, connection: 'close' } : headers);
    if (status === 413) req.resume();
  }

  #authenticate(req: IncomingMessage): void {
    const header = req.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    const expected = this.#tokenDigest;
    if (!match || !expected || !timingSafeEqual(digest(match[1]!), expected)) {
      throw new HttpError(
        401,
        // The path is not shown: callers without the token learn nothing about the machine.
        `${match ? 'wrong' : 'missing'} token: send "Authorization: Bearer <token>" with the token in <stateDir>/run/${HTTP_TOKEN_FILE}`,
        { 'www-authenticate': 'Bearer realm="spindle"' },
      );
    }
  }

  #static(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const entry = DASHBOARD_FILES[url.pathname];
    if (!entry) throw new HttpError(404, `no such page: ${url.pathname}`);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      throw new HttpError(405, `${req.method} is not allowed on ${url.pathname}; use GET`, { allow: 'GET, HEAD' });
    }
    const body = this.#files.get(entry.file)!;
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': entry.type,
      'content-length': body.length,
      'cache-control': 'no-cache',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  get #api(): Client {
    if (!this.#client) throw new HttpError(503, 'the HTTP API is stopping');
    return this.#client;
  }

  async #enqueue({ req, res }: RequestContext): Promise<void> {
    const body = await this.#readJson(req);
    if (Array.isArray(body)) {
      const jobs = await this.#api.enqueueMany(body.map((spec, i) => jobSpec(spec, `[${i}]`)));
      return sendJson(res, 201, { jobs: jobs.map(asCurrentAttempt) });
    }
    const spec = jobSpec(body, '');
    // A job with the same key may be an earlier one, already past its first attempt.
    const job = await this.#api.enqueue(spec.type, spec.input, spec.options);
    sendJson(res, 201, { job: asCurrentAttempt(job) });
  }

  async #list({ res, url }: RequestContext): Promise<void> {
    const q = url.searchParams;
    const known = new Set(['state', 'type', 'queue', 'limit', 'after']);
    for (const key of q.keys()) {
      if (!known.has(key)) throw new ValidationError(key, `is not a filter; use ${[...known].join(', ')}`);
    }
    const limit = q.get('limit');
    const jobs = await this.#api.list({
      state: (q.get('state') || undefined) as never,
      type: q.get('type') || undefined,
      queue: q.get('queue') || undefined,
      limit: limit === null || limit === '' ? undefined : Number(limit),
      after: q.get('after') || undefined,
    });
    sendJson(res, 200, { jobs: jobs.map(asCurrentAttempt) });
  }

  async #get({ res, params }: RequestContext): Promise<void> {
    const job = await this.#api.get(params.id!);
    if (!job) throw new NotFoundError(`no job ${params.id}`);
    const attempts = await this.#api.attempts(job.id);
    const inFlight = job.state === 'running' ? heldHere(this.#o.snapshot(), job) : null;
    sendJson(res, 200, { job: asCurrentAttempt(job), attempts, inFlight });
  }

  async #cancel({ req, res, params }: RequestContext): Promise<void> {
    const body = await this.#readJson(req, true);
    let reason: unknown;
    if (body !== undefined) {
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        throw new ValidationError('body', `must be an object like { "reason": "..." }, got ${describe(body)}`);
      }
      reason = (body as { reason?: unknown }).reason;
      if (reason === null) reason = undefined;
    }
    sendJson(res, 200, await this.#api.cancel(params.id!, reason as string | undefined));
  }

  async #retry({ req, res, params }: RequestContext): Promise<void> {
    await this.#readJson(req, true);
    sendJson(res, 200, { job: asCurrentAttempt(await this.#api.retry(params.id!)) });
  }

  async #startWorkflow({ req, res }: RequestContext): Promise<void> {
    const body = objectBody(await this.#readJson(req), ['name', 'input', 'options'], '{ "name": "...", "input": {...} }');
    const options = body.options ?? {};
    if (typeof options !== 'object' || options === null || Array.isArray(options)) {
      throw new ValidationError('body.options', `must be an object like { "id": "..." }, got ${describe(options)}`);
    }
    const extra = Object.keys(options).find((k) => k !== 'id');
    if (extra !== undefined) throw new ValidationError(`body.options.${extra}`, 'is not known; use id');
    const { run, created } = await this.#api.startWorkflow(body.name as string, body.input, options as { id?: string });
    sendJson(res, created ? 201 : 200, { run, created });
  }

  async #listWorkflows({ res, url }: RequestContext): Promise<void> {
    const q = url.searchParams;
    const known = new Set(['state', 'name', 'limit']);
    for (const key of q.keys()) {
      if (!known.has(key)) throw new ValidationError(key, `is not a filter; use ${[...known].join(', ')}`);
    }
    const limit = q.get('limit');
    const workflows = await this.#api.listWorkflows({
      state: (q.get('state') || undefined) as never,
      name: q.get('name') || undefined,
      limit: limit === null || limit === '' ? undefined : Number(limit),
    });
    sendJson(res, 200, { workflows });
  }

  async #getWorkflow({ res, params }: RequestContext): Promise<void> {
    const run = await this.#api.getWorkflow(params.id!);
    if (!run) throw new NotFoundError(`no workflow run ${params.id}`);
    sendJson(res, 200, { run });
  }

  async #cancelWorkflow({ req, res, params }: RequestContext): Promise<void> {
    const body = await this.#readJson(req, true);
    const reason = body === undefined ? undefined : objectBody(body, ['reason'], '{ "reason": "..." }').reason;
    sendJson(res, 200, await this.#api.cancelWorkflow(params.id!, (reason ?? undefined) as string | undefined));
  }

  async #sendEvent({ req, res, params }: RequestContext): Promise<void> {
    const body = objectBody(await this.#readJson(req), ['name', 'payload'], '{ "name": "...", "payload": {...} }');
    await this.#api.sendEvent(params.id!, body.name as string, body.payload);
    sendJson(res, 202, { ok: true });
  }

  async #queues({ res }: RequestContext): Promise<void> {
    sendJson(res, 200, { queues: await countJobsByQueueAndState(this.#api.pool) });
  }

  /** Server-Sent Events of the runtime, until the client leaves or the server stops. */
  #events({ req, res, url }: RequestContext): void {
    if (this.#streams.size >= this.#limits.maxEventClients) {
      throw new HttpError(503, `too many event streams open (${this.#limits.maxEventClients})`);
    }
    const jobFilter = url.searchParams.get('job');
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
    });
    res.write(': spindle events\n\n');
    res.socket?.setTimeout(0);
    this.#streams.add(res);
    let dropped = 0;
    const write = (event: string, data: unknown) => {
      if (res.writableLength > this.#limits.maxBufferedBytes) {
        dropped++;
        this.#stats.droppedEvents++;
        return;
      }
      if (dropped > 0) {
        res.write(`event: dropped\ndata: ${JSON.stringify({ count: dropped })}\n\n`);
        dropped = 0;
      }
      res.write(`event: ${event}\ndata: ${wireJson(data)}\n\n`);
    };
    const unsubscribe = this.#o.source.subscribe((event, data) => {
      if (jobFilter && event.startsWith('job:') && (data as { id?: unknown }).id !== jobFilter) return;
      try {
        write(event, data);
      } catch (err) {
        this.logger.warn({ err, event }, 'HTTP API: could not send an event');
      }
    });
    const ping = setInterval(() => res.write(': ping\n\n'), SSE_PING_MS);
    ping.unref();
    const done = () => {
      clearInterval(ping);
      unsubscribe();
      this.#streams.delete(res);
    };
    req.on('close', done);
    res.on('close', done);
  }

  /** Reads a bounded JSON body; `optional` allows an empty one (undefined). */
  async #readJson(req: IncomingMessage, optional = false): Promise<unknown> {
    const max = this.#limits.maxBodyBytes;
    const declared = Number(req.headers['content-length'] ?? NaN);
    if (Number.isFinite(declared) && declared > max) throw new HttpError(413, `request body over ${max} bytes`);
    // Events, not `for await`: leaving an async iterator early destroys the socket, and the 413 with it.
    const text = await new Promise<Buffer>((done, fail) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size <= max) {
          chunks.push(chunk);
          return;
        }
        req.off('data', onData);
        req.off('end', onEnd);
        fail(new HttpError(413, `request body over ${max} bytes`));
      };
      const onEnd = () => done(Buffer.concat(chunks));
      req.on('data', onData);
      req.on('end', onEnd);
      req.on('error', fail);
    });
    if (text.length === 0) {
      if (optional) return undefined;
      throw new ValidationError('body', 'is empty; send a JSON object');
    }
    const type = req.headers['content-type'] ?? '';
    if (!/^application\/json\b/i.test(type)) {
      throw new HttpError(415, `content-type must be application/json, got ${JSON.stringify(type)}`);
    }
    try {
      return JSON.parse(text.toString('utf8')) as unknown;
    } catch (error) {
      throw new HttpError(400, `body is not valid JSON: ${(error as Error).message}`);
    }
  }
}

/**
 * The job as its current attempt stands. The row of a queued or running job still holds what its
 * last attempt left: the error, and while it is queued again, that attempt's start, supervisor and
 * progress. Shown on the job they read as the current attempt's (a retry that seems to have failed
 * already, at 80%); the attempts list keeps them, each with its attempt.
 */
function asCurrentAttempt(job: Job): Job {
  switch (job.state) {
    case 'running':
      return job.error === null ? job : { ...job, error: null };
    case 'queued':
      return { ...job, error: null, startedAt: null, workerId: null, progress: null, progressMessage: null, progressData: null };
    default:
      return job;
  }
}

/** This supervisor's record of `job` (from its snapshot's in-flight jobs), if it holds this attempt of it. */
function heldHere(snapshot: unknown, job: Job): InFlightView | null {
  const jobs = (snapshot as { jobs?: unknown } | null)?.jobs;
  if (!Array.isArray(jobs)) return null;
  return (jobs as InFlightView[]).find((j) => j.id === job.id && j.attempt === job.attempt) ?? null;
}

/** `{ type, input?, options? }` from a request body, with `client` refused (it is a pg client in-process). */
function jobSpec(value: unknown, at: string): { type: string; input: unknown; options: Record<string, unknown> } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError(`body${at}`, `must be an object like { "type": "...", "input": {...} }, got ${describe(value)}`);
  }
  const { type, input, options, ...rest } = value as Record<string, unknown>;
  const extra = Object.keys(rest)[0];
  if (extra !== undefined) throw new ValidationError(`body${at}.${extra}`, 'is not known; use type, input, options');
  if (typeof type !== 'string') throw new ValidationError(`body${at}.type`, `must be a job type, got ${describe(type)}`);
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    throw new ValidationError(`body${at}.options`, `must be an object, got ${describe(options)}`);
  }
  if (options !== undefined && 'client' in options) {
    throw new ValidationError(`body${at}.options.client`, 'is not accepted over HTTP');
  }
  return { type, input, options: (options ?? {}) as Record<string, unknown> };
}

/** A JSON object body with only the `allowed` keys. */
function objectBody(value: unknown, allowed: string[], example: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError('body', `must be an object like ${example}, got ${describe(value)}`);
  }
  const extra = Object.keys(value).find((k) => !allowed.includes(k));
  if (extra !== undefined) throw new ValidationError(`body.${extra}`, `is not known; use ${allowed.join(', ')}`);
  return value as Record<string, unknown>;
}

function matchPath(pattern: string[], segments: string[]): Record<string, string> | null {
  if (pattern.length !== segments.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    if (p.startsWith(':')) params[p.slice(1)] = segments[i]!;
    else if (p !== segments[i]) return null;
  }
  return params;
}

function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, `bad path segment ${JSON.stringify(segment)}`);
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = wireJson(body);
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/** JSON for the wire: errors become { name, message }, bigints strings. */
function wireJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v instanceof Error) return { name: v.name, message: v.message };
    if (typeof v === 'bigint') return v.toString();
    return v;
  });
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/**
 * The API token: read from `path` if a sound one is there (a regular file of ours, 0600, a token
 * inside), otherwise a new one is written. `<stateDir>` is 0755 and `<stateDir>/run` 0700.
 */
export async function readOrCreateToken(stateDir: string, path: string): Promise<string> {
  await mkdirp(stateDir, 0o755);
  await mkdirp(join(stateDir, 'run'), 0o700, { chmodExisting: true });
  try {
    const info = await lstat(path);
    const ours = typeof process.getuid !== 'function' || info.uid === process.getuid();
    if (info.isFile() && ours && (info.mode & 0o077) === 0) {
      const token = (await readFile(path, 'utf8')).trim();
      if (TOKEN_PATTERN.test(token)) return token;
    }
    // Anything else (readable by others, not a file, garbage) may have leaked: replace it.
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const token = randomBytes(32).toString('base64url');
  await writeSecret(path, `${token}\n`);
  return token;
}
