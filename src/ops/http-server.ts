/**
 * The HTTP API and the web dashboard: a child actor of the supervisor, on `httpHost:httpPort`
 * (127.0.0.1 by default), plain node:http: the token, the dashboard's files, and the dispatch of
 * `/api/` requests to the routes of http-routes.ts (the event streams: http-events.ts).
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
 * Bounds: request bodies (1 MiB), event-stream clients (64), bytes waiting per event stream (1 MiB:
 * beyond it events are dropped and a `dropped` event says how many), connections (256), the time
 * to send a request (30 s).
 */
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join, resolve } from 'node:path';
import { Actor, assertNever } from '../actors/kernel.ts';
import { NotFoundError, StateError, ValidationError } from '../errors.ts';
import { describe } from '../validate.ts';
import type { ChartsView } from './chart-sampler.ts';
import type { DebugSource } from './debug-source.ts';
import { EventStreams } from './http-events.ts';
import { ApiRoutes, type HttpApi } from './http-routes.ts';
import { HttpError, SECURITY_HEADERS, sendJson, type Route } from './http-wire.ts';
import { closeServer, formatHost, listen, openOrRelease, readOrCreateToken, runDir, tokenChecker } from './serving.ts';

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
  /** Opens the API's own access to the database (a few connections) at each start; closed at each stop. */
  openApi: () => HttpApi;
  /** The state directory: the token lives in `<stateDir>/run/`. */
  stateDir: string;
  /** 0: any free port. */
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** What GET /api/snapshot returns. */
  snapshot: () => unknown;
  /** What GET /api/charts returns, over the last `windowMs`. */
  charts: (windowMs: number) => ChartsView;
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

/** Serves the API and the dashboard; restarted by its parent if its server breaks. */
export class HttpServer extends Actor<HttpMsg, HttpServerState> {
  readonly #o: HttpServerOptions;
  readonly #host: string;
  readonly #stateDir: string;
  readonly #limits: HttpLimits;
  readonly #routes: readonly Route[];
  readonly #events: EventStreams;
  #files = new Map<string, Buffer>();
  #api: HttpApi | null = null;
  #server: Server | null = null;
  #port: number | null = null;
  #tokenMatches: ((given: unknown) => boolean) | null = null;
  #stats = { requests: 0, errors: 0 };

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
    this.#events = new EventStreams({
      source: options.source,
      maxClients: this.#limits.maxEventClients,
      maxBufferedBytes: this.#limits.maxBufferedBytes,
      onError: (err, event) => this.logger.warn({ err, event }, 'HTTP API: could not send an event'),
    });
    this.#routes = new ApiRoutes({
      api: () => this.#api,
      snapshot: options.snapshot,
      charts: options.charts,
      events: this.#events,
      maxBodyBytes: this.#limits.maxBodyBytes,
    }).routes;
  }

  /** `<stateDir>/run/http.token`. */
  get tokenFile(): string {
    return join(runDir(this.#stateDir), HTTP_TOKEN_FILE);
  }

  /** The bound port, or null when not listening. */
  get port(): number | null {
    return this.#port;
  }

  /** `http://host:port/`, or null when not listening. */
  get url(): string | null {
    return this.#port === null ? null : `http://${formatHost(this.#host)}:${this.#port}/`;
  }

  /** The database pool of the API (for the metrics), or null when not running. */
  get dbPool(): HttpApi['pool'] | null {
    return this.#api?.pool ?? null;
  }

  protected override onStart(): Promise<void> {
    return openOrRelease(() => this.#open(), () => this.#close());
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
    return { url: this.url, tokenFile: this.tokenFile, eventClients: this.#events.open, ...this.#stats, droppedEvents: this.#events.dropped };
  }

  // ---- lifecycle ------------------------------------------------------------------

  async #open(): Promise<void> {
    this.#tokenMatches = tokenChecker(await readOrCreateToken(this.#stateDir, this.tokenFile));
    const files = new Map<string, Buffer>();
    for (const { file } of Object.values(DASHBOARD_FILES)) {
      if (!files.has(file)) files.set(file, await readFile(new URL(file, DASHBOARD_DIR)));
    }
    this.#files = files;
    this.#api = this.#o.openApi();
    const server = createServer((req, res) => void this.#serve(req, res));
    server.on('error', (error) => {
      if (server.listening) this.send({ type: 'failed', error });
    });
    server.maxConnections = 256;
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    this.#server = server;
    this.#port = await listen(server, { host: this.#host, port: this.#o.port });
    this.logger.info({ url: this.url, tokenFile: this.tokenFile }, 'HTTP API and dashboard listening');
  }

  async #close(): Promise<void> {
    this.#events.endAll();
    const server = this.#server;
    this.#server = null;
    this.#port = null;
    if (server) await closeServer(server);
    const api = this.#api;
    this.#api = null;
    await api?.close().catch(() => {});
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
    if (!match || !this.#tokenMatches?.(match[1])) {
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
}

/** The params of `segments` if they match `pattern`, else null. */
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

/** A path segment, %-decoded; a bad escape is the client's error, not ours. */
function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, `bad path segment ${JSON.stringify(segment)}`);
  }
}
