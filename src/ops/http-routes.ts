/**
 * The routes of the HTTP API under /api/ (http-server.ts serves them, behind the token): each reads
 * its request, checks it, and answers with the API's calls.
 *
 * Routes (JSON in and out; errors are `{ "error": "..." }`):
 *   POST /api/jobs                      enqueue: { type, input?, options? }, or an array of them -> 201
 *   GET  /api/jobs?state&type&queue&limit&after     newest first
 *   GET  /api/jobs/:id                  { job, attempts, inFlight }
 *   (the jobs of both carry `waitingFor`: why flow control holds a queued job back, else null)
 *   POST /api/jobs/:id/cancel           { reason? } -> the cancel outcome
 *   POST /api/jobs/:id/retry            -> { job }
 *   POST /api/workflows                 start a run: { name, input?, options?: { id } } -> 201 (200: that id existed)
 *   GET  /api/workflows?state&name&limit&after      newest first; `after` a run id: the next page
 *   GET  /api/workflows/:id             { run, events, jobs }: the run with its steps, the newest 100
 *                                       events sent to it, the jobs its steps enqueued (an id with "/"
 *                                       is sent as %2F)
 *   POST /api/workflows/:id/cancel      { reason? }
 *   POST /api/workflows/:id/events      { name, payload? } -> 202, into the run's inbox
 *   GET  /api/queues                    jobs by queue and state (one grouped query)
 *   /api/limits...                      flow control: limits, pause, resume (http-limit-routes.ts)
 *   GET  /api/supervisors               every registered supervisor: live, leader, jobs held, last seen
 *   GET  /api/charts?window=15m|1h      this supervisor's samples for the dashboard's charts
 *   GET  /api/snapshot                  actors, in-flight jobs, pool (the debug snapshot)
 *   GET  /api/events[?job=ID]           Server-Sent Events: the runtime's and the actors' events
 * A job is shown as its current attempt stands (see asCurrentAttempt): what an earlier attempt left
 * on its row is in its attempts. `inFlight` is this supervisor's record of a job it holds (its
 * thread's number, and when its handler started: null while it waits for a thread), else null.
 * Status codes: 400 bad input or JSON, 401 no or wrong token, 404, 405 (with Allow), 409 a state
 * that forbids the action, 413 a body over `maxBodyBytes`, 415 a body that is not JSON, 503 too many
 * event streams.
 */
import type { Client } from '../client.ts';
import { countJobsByQueueAndState } from '../db/jobs.ts';
import { listWorkflowChildJobs, listWorkflowEvents } from '../db/workflows.ts';
import { NotFoundError, ValidationError } from '../errors.ts';
import type { Job } from '../job.ts';
import type { InFlightView } from '../runtime-events.ts';
import { describe } from '../validate.ts';
import type { ChartsView } from './chart-sampler.ts';
import type { EventStreams } from './http-events.ts';
import { limitRoutes } from './http-limit-routes.ts';
import { HttpError, readJson, sendJson, type RequestContext, type Route } from './http-wire.ts';

/**
 * What the routes ask of the database: the calls of a Client, its pool (for the queue counts) and
 * its close. The server is handed a way to open one, so it needs no more of the Client than this.
 */
export type HttpApi = Pick<
  Client,
  | 'enqueue'
  | 'enqueueMany'
  | 'get'
  | 'list'
  | 'attempts'
  | 'cancel'
  | 'retry'
  | 'startWorkflow'
  | 'listWorkflows'
  | 'getWorkflow'
  | 'cancelWorkflow'
  | 'sendEvent'
  | 'setLimits'
  | 'clearLimits'
  | 'pause'
  | 'resume'
  | 'limits'
  | 'waitingForMany'
  | 'supervisors'
  | 'pool'
  | 'close'
>;

/** What the routes are served from. */
export interface ApiRoutesDeps {
  /** The open API, or null while the server is not running. */
  api: () => HttpApi | null;
  /** What GET /api/snapshot returns; its `jobs` say which jobs this supervisor holds. */
  snapshot: () => unknown;
  /** What GET /api/charts returns, over the last `windowMs`. */
  charts: (windowMs: number) => ChartsView;
  /** GET /api/events. */
  events: EventStreams;
  /** Largest request body, in bytes. */
  maxBodyBytes: number;
}

/** The API's routes, over the deps given. */
export class ApiRoutes {
  readonly #d: ApiRoutesDeps;
  /** In match order. */
  readonly routes: readonly Route[];

  constructor(deps: ApiRoutesDeps) {
    this.#d = deps;
    this.routes = [
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
      { method: 'GET', path: ['api', 'supervisors'], run: async ({ res }) => sendJson(res, 200, { supervisors: await this.#api.supervisors() }) },
      { method: 'GET', path: ['api', 'charts'], run: (c) => this.#charts(c) },
      ...limitRoutes({ api: () => this.#api, maxBodyBytes: deps.maxBodyBytes }),
      { method: 'GET', path: ['api', 'snapshot'], run: (c) => sendJson(c.res, 200, this.#d.snapshot()) },
      { method: 'GET', path: ['api', 'events'], run: (c) => this.#d.events.serve(c) },
    ];
  }

  get #api(): HttpApi {
    const api = this.#d.api();
    if (!api) throw new HttpError(503, 'the HTTP API is stopping');
    return api;
  }

  async #enqueue({ req, res }: RequestContext): Promise<void> {
    const body = await readJson(req, this.#d.maxBodyBytes);
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
    sendJson(res, 200, { jobs: await this.#withWaitingFor(jobs.map(asCurrentAttempt)) });
  }

  async #get({ res, params }: RequestContext): Promise<void> {
    const job = await this.#api.get(params.id!);
    if (!job) throw new NotFoundError(`no job ${params.id}`);
    const attempts = await this.#api.attempts(job.id);
    const inFlight = job.state === 'running' ? heldHere(this.#d.snapshot(), job) : null;
    const [shown] = await this.#withWaitingFor([asCurrentAttempt(job)]);
    sendJson(res, 200, { job: shown, attempts, inFlight });
  }

  /** The jobs, each with why flow control holds it back if it is queued: one query for them all. */
  async #withWaitingFor(jobs: Job[]): Promise<(Job & { waitingFor: string | null })[]> {
    const queued = jobs.filter((j) => j.state === 'queued').map((j) => j.id);
    const why = queued.length === 0 ? new Map<string, string>() : await this.#api.waitingForMany(queued);
    return jobs.map((j) => ({ ...j, waitingFor: why.get(j.id) ?? null }));
  }

  async #cancel({ req, res, params }: RequestContext): Promise<void> {
    const body = await readJson(req, this.#d.maxBodyBytes, true);
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
    await readJson(req, this.#d.maxBodyBytes, true);
    sendJson(res, 200, { job: asCurrentAttempt(await this.#api.retry(params.id!)) });
  }

  async #startWorkflow({ req, res }: RequestContext): Promise<void> {
    const body = objectBody(await readJson(req, this.#d.maxBodyBytes), ['name', 'input', 'options'], '{ "name": "...", "input": {...} }');
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
    const known = new Set(['state', 'name', 'limit', 'after']);
    for (const key of q.keys()) {
      if (!known.has(key)) throw new ValidationError(key, `is not a filter; use ${[...known].join(', ')}`);
    }
    const limit = q.get('limit');
    const workflows = await this.#api.listWorkflows({
      state: (q.get('state') || undefined) as never,
      name: q.get('name') || undefined,
      limit: limit === null || limit === '' ? undefined : Number(limit),
      after: q.get('after') || undefined,
    });
    sendJson(res, 200, { workflows });
  }

  async #getWorkflow({ res, params }: RequestContext): Promise<void> {
    const run = await this.#api.getWorkflow(params.id!);
    if (!run) throw new NotFoundError(`no workflow run ${params.id}`);
    const [events, jobs] = await Promise.all([listWorkflowEvents(this.#api.pool, run.id, RUN_EVENTS_SHOWN), listWorkflowChildJobs(this.#api.pool, run.id)]);
    sendJson(res, 200, { run, events, jobs });
  }

  async #cancelWorkflow({ req, res, params }: RequestContext): Promise<void> {
    const body = await readJson(req, this.#d.maxBodyBytes, true);
    const reason = body === undefined ? undefined : objectBody(body, ['reason'], '{ "reason": "..." }').reason;
    sendJson(res, 200, await this.#api.cancelWorkflow(params.id!, (reason ?? undefined) as string | undefined));
  }

  async #sendEvent({ req, res, params }: RequestContext): Promise<void> {
    const body = objectBody(await readJson(req, this.#d.maxBodyBytes), ['name', 'payload'], '{ "name": "...", "payload": {...} }');
    await this.#api.sendEvent(params.id!, body.name as string, body.payload);
    sendJson(res, 202, { ok: true });
  }

  #charts({ res, url }: RequestContext): void {
    const q = url.searchParams;
    for (const key of q.keys()) if (key !== 'window') throw new ValidationError(key, 'is not a parameter; use window');
    const window = q.get('window') || '15m';
    const windowMs = Object.hasOwn(CHART_WINDOWS, window) ? CHART_WINDOWS[window] : undefined;
    if (windowMs === undefined) throw new ValidationError('window', `must be one of ${Object.keys(CHART_WINDOWS).join(', ')}, got ${describe(window)}`);
    sendJson(res, 200, this.#d.charts(windowMs));
  }

  async #queues({ res }: RequestContext): Promise<void> {
    sendJson(res, 200, { queues: await countJobsByQueueAndState(this.#api.pool) });
  }
}

/** Events of a run sent with it by GET /api/workflows/:id, newest first. */
const RUN_EVENTS_SHOWN = 100;
/** The windows GET /api/charts offers. */
const CHART_WINDOWS: Record<string, number> = { '15m': 15 * 60_000, '1h': 60 * 60_000 };

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
      return { ...job, error: null, startedAt: null, supervisorId: null, workerId: null, progress: null, progressMessage: null, progressData: null };
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
