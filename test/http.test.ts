/**
 * The HTTP API against a real supervisor: every route, the token and its file, and each kind of bad
 * request with its status code.
 */
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpServerState } from '../src/ops/http-server.ts';
import { readOrCreateToken } from '../src/ops/serving.ts';
import type { Client } from '../src/client.ts';
import type { SupervisorHandle } from '../src/start.ts';
import type { TestDatabase } from './helpers/database.ts';
import { startedJobs } from './helpers/job-events.ts';
import { actorState, nextEvent, startOpsSupervisor, stopOpsSupervisor } from './helpers/ops.ts';

let db: TestDatabase;
let client: Client;
let tmp: string;
let stateDir: string;
let handle: SupervisorHandle;
let base: string;
let token: string;

beforeAll(async () => {
  ({ db, client, handle, tmp, stateDir } = await startOpsSupervisor('http', { httpPort: 0 }));
  const state = actorState<HttpServerState>(handle, 'http');
  base = state.url!.replace(/\/$/, '');
  token = (await readFile(state.tokenFile, 'utf8')).trim();
});

afterAll(() => stopOpsSupervisor({ db, client, handle, tmp }));

interface Reply {
  status: number;
  headers: Headers;
  body: any;
}

async function call(method: string, path: string, options: { body?: unknown; raw?: string; type?: string; auth?: string | null } = {}): Promise<Reply> {
  const headers: Record<string, string> = {};
  const auth = options.auth === undefined ? `Bearer ${token}` : options.auth;
  if (auth !== null) headers.authorization = auth;
  let body: string | undefined;
  if (options.raw !== undefined) body = options.raw;
  else if (options.body !== undefined) body = JSON.stringify(options.body);
  if (body !== undefined) headers['content-type'] = options.type ?? 'application/json';
  const res = await fetch(`${base}${path}`, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, body: parsed };
}

describe('the token', () => {
  it('is in <stateDir>/run/http.token, 0600, in a 0700 directory under a 0755 state dir', async () => {
    const state = actorState<HttpServerState>(handle, 'http');
    expect(state.tokenFile).toBe(join(stateDir, 'run', 'http.token'));
    expect((await stat(state.tokenFile)).mode & 0o777).toBe(0o600);
    expect((await stat(join(stateDir, 'run'))).mode & 0o777).toBe(0o700);
    expect((await stat(stateDir)).mode & 0o777).toBe(0o755);
    expect(token).toMatch(/^[A-Za-z0-9_-]{32,}$/);
  });

  it('is kept across starts, and replaced when others could read it', async () => {
    const dir = join(tmp, 'tokens');
    const file = join(dir, 'run', 'http.token');
    const first = await readOrCreateToken(dir, file);
    expect(await readOrCreateToken(dir, file)).toBe(first);
    await chmod(file, 0o644);
    const second = await readOrCreateToken(dir, file);
    expect(second).not.toBe(first);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    await writeFile(file, 'short\n', { mode: 0o600 });
    expect(await readOrCreateToken(dir, file)).toMatch(/^[A-Za-z0-9_-]{32,}$/);
  });

  it('is required on every /api route: none or a wrong one is 401', async () => {
    for (const [method, path] of [
      ['GET', '/api/snapshot'],
      ['GET', '/api/jobs'],
      ['POST', '/api/jobs'],
      ['GET', '/api/jobs/1'],
      ['POST', '/api/jobs/1/cancel'],
      ['POST', '/api/jobs/1/retry'],
      ['GET', '/api/queues'],
      ['GET', '/api/supervisors'],
      ['GET', '/api/charts'],
      ['GET', '/api/workflows'],
      ['GET', '/api/events'],
      ['GET', '/api/nothing-here'],
    ] as const) {
      const none = await call(method, path, { auth: null });
      expect(none.status, `${method} ${path}`).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(none.body.error).toMatch(/missing token/);
      const wrong = await call(method, path, { auth: `Bearer ${'x'.repeat(43)}` });
      expect(wrong.status, `${method} ${path}`).toBe(401);
      expect(wrong.body.error).toMatch(/wrong token/);
    }
    expect((await call('GET', '/api/snapshot', { auth: `Basic ${token}` })).status).toBe(401);
  });

  it('is not needed for the dashboard files', async () => {
    for (const path of ['/', '/app.js', '/style.css']) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-security-policy')).toContain("default-src 'self'");
      await res.arrayBuffer();
    }
    expect((await call('GET', '/secret.txt', { auth: null })).status).toBe(404);
    expect((await call('POST', '/', { auth: null, body: {} })).status).toBe(405);
  });
});

describe('jobs', () => {
  it('POST /api/jobs enqueues (201) and GET /api/jobs/:id shows the job with its attempts', async () => {
    const created = await call('POST', '/api/jobs', { body: { type: 'quick', input: { n: 1 }, options: { priority: 3 } } });
    expect(created.status).toBe(201);
    expect(created.body.job).toMatchObject({ type: 'quick', queue: 'default', priority: 3, input: { n: 1 } });
    const id = created.body.job.id as string;
    await client.waitFor(id, { timeoutMs: 15_000 });
    const got = await call('GET', `/api/jobs/${id}`);
    expect(got.status).toBe(200);
    expect(got.body.job).toMatchObject({ id, state: 'succeeded', output: { echo: { n: 1 } } });
    expect(got.body.attempts).toHaveLength(1);
    expect(got.body.attempts[0]).toMatchObject({ jobId: id, attempt: 1, outcome: 'succeeded' });
  });

  it('POST /api/jobs with an array enqueues them all', async () => {
    const created = await call('POST', '/api/jobs', {
      body: [
        { type: 'quick', input: 1, options: { queue: 'batch' } },
        { type: 'quick', input: 2, options: { queue: 'batch' } },
      ],
    });
    expect(created.status).toBe(201);
    expect(created.body.jobs.map((j: { input: number }) => j.input)).toEqual([1, 2]);
    await Promise.all(created.body.jobs.map((j: { id: string }) => client.waitFor(j.id, { timeoutMs: 15_000 })));
  });

  it('GET /api/jobs filters by state, type, queue, limit and after', async () => {
    const all = await call('GET', '/api/jobs?queue=batch');
    expect(all.status).toBe(200);
    expect(all.body.jobs).toHaveLength(2);
    const one = await call('GET', '/api/jobs?queue=batch&state=succeeded&type=quick&limit=1');
    expect(one.body.jobs).toHaveLength(1);
    const next = await call('GET', `/api/jobs?queue=batch&limit=1&after=${one.body.jobs[0].id}`);
    expect(next.body.jobs).toHaveLength(1);
    expect(next.body.jobs[0].id).not.toBe(one.body.jobs[0].id);
    expect((await call('GET', '/api/jobs?state=running&queue=batch')).body.jobs).toEqual([]);
  });

  it('GET /api/queues counts jobs by queue and state', async () => {
    const res = await call('GET', '/api/queues');
    expect(res.status).toBe(200);
    expect(res.body.queues).toContainEqual({ queue: 'batch', state: 'succeeded', count: 2 });
  });

  it('POST /api/jobs/:id/cancel stops a running job; again it changes nothing', async () => {
    const created = await call('POST', '/api/jobs', { body: { type: 'stepper', input: { steps: 1000, stepMs: 50 } } });
    const id = created.body.job.id as string;
    await nextEvent(handle, 'job:progress', (e) => e.id === id);
    const cancel = await call('POST', `/api/jobs/${id}/cancel`, { body: { reason: 'from the test' } });
    expect(cancel.status).toBe(200);
    expect(cancel.body).toMatchObject({ id, state: 'running', changed: true });
    const done = await client.waitFor(id, { timeoutMs: 15_000 });
    expect(done).toMatchObject({ state: 'cancelled', cancelReason: 'from the test' });
    const again = await call('POST', `/api/jobs/${id}/cancel`);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ state: 'cancelled', changed: false });
  });

  it('POST /api/jobs/:id/retry puts a failed job back; a queued or running one is 409', async () => {
    const created = await call('POST', '/api/jobs', { body: { type: 'failing' } });
    const id = created.body.job.id as string;
    expect((await client.waitFor(id, { timeoutMs: 15_000 })).state).toBe('failed');
    const retried = await call('POST', `/api/jobs/${id}/retry`);
    expect(retried.status).toBe(200);
    expect(retried.body.job).toMatchObject({ id, state: 'queued' });
    await client.waitFor(id, { timeoutMs: 15_000 });
    const queued = await call('POST', '/api/jobs', { body: { type: 'quick', options: { delayMs: 3_600_000 } } });
    const conflict = await call('POST', `/api/jobs/${queued.body.job.id}/retry`);
    expect(conflict.status).toBe(409);
    expect(conflict.body.error).toMatch(/is queued/);
    await client.cancel(queued.body.job.id);
  });

  it('GET /api/snapshot shows the actors, the pool and the jobs in flight', async () => {
    const res = await call('GET', '/api/snapshot');
    expect(res.status).toBe(200);
    expect(res.body.supervisorId).toBe(handle.id);
    expect(res.body.pool.maxThreads).toBe(2);
    expect(res.body.actors.children.map((c: { name: string }) => c.name)).toContain('http');
  });
});

describe('what a job shows', () => {
  it('shows a job queued or running again as its current attempt; what the one before left is in its attempts', async () => {
    const second = startedJobs(handle, 1, (e) => e.type === 'flaky' && e.attempt === 2);
    const created = await call('POST', '/api/jobs', { body: { type: 'flaky' } });
    const id = created.body.job.id as string;
    try {
      expect((await second)[0]).toMatchObject({ id, attempt: 2 });
      const running = await call('GET', `/api/jobs/${id}`);
      expect(running.body.job).toMatchObject({ id, state: 'running', attempt: 2, error: null, progress: null, progressMessage: null });
      expect(running.body.attempts).toMatchObject([{ attempt: 1, outcome: 'failed', error: { message: 'attempt 1 failed' } }]);
      expect(running.body.inFlight).toMatchObject({ id, attempt: 2, startedAt: expect.any(String), thread: expect.any(Number) });
      await client.cancel(id);
      expect((await client.waitFor(id, { timeoutMs: 15_000 })).state).toBe('cancelled');

      const retried = await call('POST', `/api/jobs/${id}/retry`);
      expect(retried.body.job).toMatchObject({ state: 'queued', attempt: 2, error: null, startedAt: null, supervisorId: null, progress: null });
    } finally {
      await client.cancel(id);
      await client.waitFor(id, { timeoutMs: 15_000 });
    }
  });

  it('numbers threads 1 to the pool size, though Piscina gives each new thread a new id', async () => {
    const exited = await call('POST', '/api/jobs', { body: { type: 'exits' } });
    expect((await client.waitFor(exited.body.job.id, { timeoutMs: 15_000 })).error).toMatchObject({ message: 'worker thread exited with code 3' });
    const both = startedJobs(handle, 2, (e) => e.type === 'stepper');
    const created = await call('POST', '/api/jobs', {
      body: [
        { type: 'stepper', input: { steps: 1000, stepMs: 50 } },
        { type: 'stepper', input: { steps: 1000, stepMs: 50 } },
      ],
    });
    const ids = created.body.jobs.map((j: { id: string }) => j.id) as string[];
    try {
      await both;
      const snapshot = await call('GET', '/api/snapshot');
      const ours = (snapshot.body.jobs as { id: string; thread: number; threadId: number }[]).filter((j) => ids.includes(j.id));
      // A replacement thread's id is past the pool size: the number shown is not.
      expect(Math.max(...ours.map((j) => j.threadId))).toBeGreaterThan(2);
      expect(ours.map((j) => j.thread).sort()).toEqual([1, 2]);
    } finally {
      for (const id of ids) await client.cancel(id);
      await Promise.all(ids.map((id) => client.waitFor(id, { timeoutMs: 15_000 })));
    }
  });
});

describe('bad requests', () => {
  it('unknown ids and routes are 404, bad ids 400, wrong methods 405 with Allow', async () => {
    const missing = await call('GET', '/api/jobs/999999999');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatch(/no job 999999999/);
    expect((await call('POST', '/api/jobs/999999999/cancel')).status).toBe(404);
    expect((await call('POST', '/api/jobs/999999999/retry')).status).toBe(404);
    expect((await call('GET', '/api/jobs/abc')).status).toBe(400);
    expect((await call('GET', '/api/jobs/1/nothing')).status).toBe(404);
    const wrong = await call('DELETE', '/api/jobs');
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('POST, GET');
    expect((await call('GET', '/api/jobs/1/cancel')).status).toBe(405);
  });

  it('bad input is 400 with a message that says what is wrong', async () => {
    const cases: [string, string, Parameters<typeof call>[2], RegExp][] = [
      ['POST', '/api/jobs', { raw: '{"type": ' }, /not valid JSON/],
      ['POST', '/api/jobs', { raw: '' }, /body is empty/],
      ['POST', '/api/jobs', { body: 'quick' }, /must be an object/],
      ['POST', '/api/jobs', { body: { input: 1 } }, /body.type must be a job type/],
      ['POST', '/api/jobs', { body: { type: 'no spaces allowed' } }, /type must be 1 to 128/],
      ['POST', '/api/jobs', { body: { type: 'quick', extra: 1 } }, /body.extra is not known/],
      ['POST', '/api/jobs', { body: { type: 'quick', options: { priority: 'high' } } }, /options.priority must be an integer/],
      ['POST', '/api/jobs', { body: { type: 'quick', options: { client: {} } } }, /not accepted over HTTP/],
      ['POST', '/api/jobs', { body: [{ type: 'quick' }, { type: 'quick', options: { nope: 1 } }] }, /specs\[1\].options.nope/],
      ['GET', '/api/jobs?state=sleeping', {}, /state must be one of/],
      ['GET', '/api/jobs?limit=lots', {}, /limit must be an integer/],
      ['GET', '/api/jobs?limit=0', {}, /limit must be an integer/],
      ['GET', '/api/jobs?colour=red', {}, /colour is not a filter/],
      ['POST', '/api/jobs/1/cancel', { body: { reason: 7 } }, /reason must be a string/],
      ['POST', '/api/jobs/1/cancel', { body: [1] }, /must be an object/],
    ];
    for (const [method, path, options, message] of cases) {
      const res = await call(method, path, options);
      expect(res.status, `${method} ${path} ${JSON.stringify(options)}`).toBe(400);
      expect(res.body.error).toMatch(message);
    }
  });

  it('a body that is not JSON is 415', async () => {
    const res = await call('POST', '/api/jobs', { raw: 'type=quick', type: 'application/x-www-form-urlencoded' });
    expect(res.status).toBe(415);
  });

  it('a body over 1 MiB is 413, declared or streamed, and the server carries on', async () => {
    const big = JSON.stringify({ type: 'quick', input: 'x'.repeat(1024 * 1024) });
    const declared = await call('POST', '/api/jobs', { raw: big });
    expect(declared.status).toBe(413);
    expect(declared.body.error).toMatch(/over 1048576 bytes/);
    // Without a length up front: chunked, cut off while it streams.
    const chunks = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 20; i++) controller.enqueue(new TextEncoder().encode('x'.repeat(128 * 1024)));
        controller.close();
      },
    });
    const res = await fetch(`${base}/api/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: chunks,
      duplex: 'half',
    } as RequestInit);
    expect(res.status).toBe(413);
    await res.arrayBuffer();
    expect((await call('GET', '/api/snapshot')).status).toBe(200);
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM spindle.jobs WHERE length(input::text) > 1000000`);
    expect(rows[0].n).toBe(0);
  });
});

describe('workflows', () => {
  it('POST /api/workflows starts a run (201, then 200 for the same id); GET lists and shows it', async () => {
    const id = `http/test-${Date.now()}`;
    const started = await call('POST', '/api/workflows', { body: { name: 'not-served', input: { a: 1 }, options: { id } } });
    expect(started.status).toBe(201);
    expect(started.body).toMatchObject({ created: true, run: { id, name: 'not-served', input: { a: 1 } } });
    const again = await call('POST', '/api/workflows', { body: { name: 'not-served', options: { id } } });
    expect(again.status).toBe(200);
    expect(again.body.created).toBe(false);
    const got = await call('GET', `/api/workflows/${encodeURIComponent(id)}`);
    expect(got.status).toBe(200);
    expect(got.body.run).toMatchObject({ id, name: 'not-served' });
    expect(Array.isArray(got.body.run.steps)).toBe(true);
    const list = await call('GET', '/api/workflows?name=not-served&limit=10');
    expect(list.status).toBe(200);
    expect(list.body.workflows.map((r: { id: string }) => r.id)).toContain(id);
    const event = await call('POST', `/api/workflows/${encodeURIComponent(id)}/events`, { body: { name: 'poke', payload: 1 } });
    expect([202, 409]).toContain(event.status);
    const cancel = await call('POST', `/api/workflows/${encodeURIComponent(id)}/cancel`, { body: { reason: 'test' } });
    expect(cancel.status).toBe(200);
    expect(cancel.body.id).toBe(id);
  });

  it('GET /api/workflows pages on with after; a run shows the events sent to it, newest first', async () => {
    const ids = [0, 1, 2, 3, 4].map((i) => `http/page-${Date.now()}-${i}`);
    for (const id of ids) await call('POST', '/api/workflows', { body: { name: 'paged', options: { id } } });
    const seen: string[] = [];
    let after = '';
    for (let page = 0; page < 3; page++) {
      const reply = await call('GET', `/api/workflows?name=paged&limit=2${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      expect(reply.status).toBe(200);
      const got = reply.body.workflows.map((r: { id: string }) => r.id);
      seen.push(...got);
      after = got.at(-1);
    }
    // Newest first, each run once, across the pages.
    expect(seen).toEqual([...ids].reverse());
    expect((await call('GET', '/api/workflows?after=bad%20id')).status).toBe(400);

    await call('POST', `/api/workflows/${encodeURIComponent(ids[0]!)}/events`, { body: { name: 'first', payload: { n: 1 } } });
    await call('POST', `/api/workflows/${encodeURIComponent(ids[0]!)}/events`, { body: { name: 'second' } });
    const shown = await call('GET', `/api/workflows/${encodeURIComponent(ids[0]!)}`);
    expect(shown.body.events.map((e: { name: string }) => e.name)).toEqual(['second', 'first']);
    expect(shown.body.events[1]).toMatchObject({ payload: { n: 1 }, consumedAt: null });
    expect(shown.body.jobs).toEqual([]);
    expect(shown.body.run.compensationPlan).toBeNull();
  });

  it('bad workflow requests are 400 and unknown runs 404', async () => {
    expect((await call('GET', '/api/workflows/no-such-run')).status).toBe(404);
    expect((await call('POST', '/api/workflows/no-such-run/cancel')).status).toBe(404);
    expect((await call('POST', '/api/workflows', { body: { name: 'bad name' } })).status).toBe(400);
    expect((await call('POST', '/api/workflows', { body: { name: 'x', options: { when: 1 } } })).body.error).toMatch(/options.when is not known/);
    expect((await call('POST', '/api/workflows', { body: { workflow: 'x' } })).body.error).toMatch(/body.workflow is not known/);
    expect((await call('GET', '/api/workflows?state=dreaming')).status).toBe(400);
    expect((await call('DELETE', '/api/workflows')).status).toBe(405);
  });
});

describe('supervisors and charts', () => {
  it('GET /api/supervisors lists this supervisor, live, as the leader, with its threads', async () => {
    await expect
      .poll(async () => (await call('GET', '/api/supervisors')).body.supervisors.find((s: { id: string }) => s.id === handle.id)?.leader, { timeout: 10_000 })
      .toBe(true);
    const { body } = await call('GET', '/api/supervisors');
    expect(body.supervisors).toHaveLength(1);
    expect(body.supervisors[0]).toMatchObject({ id: handle.id, live: true, leader: true, concurrency: 2, pid: process.pid });
  });

  it('GET /api/charts counts finished attempts by outcome and run times by type, in the bucket still filling', async () => {
    const before = await call('GET', '/api/charts');
    expect(before.status).toBe(200);
    expect(before.body).toMatchObject({ bucketMs: 10_000, windowMs: 15 * 60_000 });
    expect(before.body.points).toHaveLength(90);
    const total = (points: { finished: Record<string, number> }[]) => points.reduce((n, p) => n + (p.finished.succeeded ?? 0), 0);
    const job = await client.enqueue('quick', 'charted');
    await client.waitFor(job.id, { timeoutMs: 15_000 });
    await expect.poll(async () => total((await call('GET', '/api/charts')).body.points)).toBe(total(before.body.points) + 1);
    const after = await call('GET', '/api/charts?window=1h');
    expect(after.body.points).toHaveLength(360);
    expect(after.body.points.some((p: { runTimeMs: Record<string, unknown> }) => p.runTimeMs.quick)).toBe(true);
    // The queue depth is sampled at start, so the first page opened has it.
    expect(after.body.points.some((p: { depth: unknown }) => p.depth !== null)).toBe(true);
    expect((await call('GET', '/api/charts?window=2d')).status).toBe(400);
    expect((await call('GET', '/api/charts?window=constructor')).status).toBe(400);
    expect((await call('GET', '/api/charts?span=1h')).status).toBe(400);
  });
});

describe('GET /api/events', () => {
  it('streams the runtime events as Server-Sent Events, filtered by job', async () => {
    // Runnable in 500 ms: time to open the stream before it is claimed.
    const created = await call('POST', '/api/jobs', { body: { type: 'stepper', input: { steps: 3, stepMs: 20 }, options: { delayMs: 500 } } });
    const id = created.body.job.id as string;
    const other = await call('POST', '/api/jobs', { body: { type: 'quick', options: { delayMs: 500 } } });
    const controller = new AbortController();
    const res = await fetch(`${base}/api/events?job=${id}`, { headers: { authorization: `Bearer ${token}` }, signal: controller.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    const seen: string[] = [];
    let buffer = '';
    while (!seen.includes('job:finished')) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the stream ended');
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (!event?.startsWith('job:') || !data) continue;
        expect(JSON.parse(data).id).toBe(id);
        seen.push(event);
      }
    }
    controller.abort();
    await client.waitFor(other.body.job.id, { timeoutMs: 15_000 });
    expect(seen).toEqual(expect.arrayContaining(['job:claimed', 'job:started', 'job:progress', 'job:finished']));
    expect(seen.indexOf('job:claimed')).toBeLessThan(seen.indexOf('job:finished'));
    await expect.poll(() => actorState<HttpServerState>(handle, 'http').eventClients).toBe(0);
  });
});

describe('flow control', () => {
  /** The scope's row as the database has it, or undefined. */
  async function limitsRow(kind: string, name: string): Promise<{ operator: unknown; paused: boolean } | undefined> {
    const { rows } = await db.pool.query('SELECT operator, paused FROM spindle.limits WHERE kind = $1 AND name = $2', [kind, name]);
    return rows[0];
  }

  it('PUT sets limits over what is set (null lifts one), GET lists them, DELETE clears them', async () => {
    try {
      expect((await call('GET', '/api/limits')).body).toEqual({ limits: [] });
      const put = await call('PUT', '/api/limits/type/stepper', { body: { globalConcurrency: 1, rateLimit: { limit: 50, intervalMs: 1000 } } });
      expect(put.status).toBe(200);
      expect(put.body.limit).toMatchObject({
        kind: 'type',
        name: 'stepper',
        paused: false,
        limits: { globalConcurrency: 1, rateLimit: { limit: 50, intervalMs: 1000 } },
        running: 0,
        waiting: 0,
      });
      const lifted = await call('PUT', '/api/limits/type/stepper', { body: { rateLimit: null } });
      expect(lifted.body.limit.limits).toEqual({ globalConcurrency: 1 });
      const queue = await call('PUT', '/api/limits/queue/emails', { body: { rateLimit: { limit: 5, intervalMs: 60_000 } } });
      expect(queue.body.limit).toMatchObject({ kind: 'queue', name: 'emails', limits: { rateLimit: { limit: 5, intervalMs: 60_000 } }, recentStarts: 0 });

      const list = await call('GET', '/api/limits');
      expect(list.status).toBe(200);
      expect(list.body.limits.map((r: { kind: string; name: string }) => `${r.kind}:${r.name}`)).toEqual(['type:stepper', 'queue:emails']);

      const cleared = await call('DELETE', '/api/limits/type/stepper');
      expect(cleared.status).toBe(200);
      expect(cleared.body).toEqual({ scope: { kind: 'type', name: 'stepper' }, cleared: true });
      expect((await call('DELETE', '/api/limits/type/stepper')).body.cleared).toBe(false);
      expect((await call('DELETE', '/api/limits/queue/emails')).body.cleared).toBe(true);
      expect((await call('GET', '/api/limits')).body).toEqual({ limits: [] });
    } finally {
      await client.clearLimits('stepper');
      await client.clearLimits('queue:emails');
    }
  });

  it('pause holds a type back on every supervisor, and a queued job says why, in the job and the list; resume lets it run', async () => {
    try {
      const paused = await call('POST', '/api/limits/type/quick/pause');
      expect(paused.status).toBe(200);
      expect(paused.body).toEqual({ scope: { kind: 'type', name: 'quick' }, paused: true, changed: true });
      expect((await call('POST', '/api/limits/type/quick/pause', { body: {} })).body.changed).toBe(false);
      expect(await limitsRow('type', 'quick')).toMatchObject({ paused: true });

      const created = await call('POST', '/api/jobs', { body: { type: 'quick', input: 'held', options: { queue: 'held' } } });
      const id = created.body.job.id as string;
      const got = await call('GET', `/api/jobs/${id}`);
      expect(got.body.job).toMatchObject({ id, state: 'queued', waitingFor: 'paused: type quick' });
      const list = await call('GET', '/api/jobs?queue=held');
      expect(list.body.jobs).toEqual([expect.objectContaining({ id, waitingFor: 'paused: type quick' })]);
      // Jobs that are not queued say nothing.
      const done = await call('GET', '/api/jobs?state=succeeded&limit=1');
      expect(done.body.jobs[0].waitingFor).toBeNull();
      expect((await call('GET', '/api/limits')).body.limits).toEqual([
        expect.objectContaining({ kind: 'type', name: 'quick', paused: true, running: 0, waiting: 1 }),
      ]);

      const resumed = await call('POST', '/api/limits/type/quick/resume');
      expect(resumed.body).toEqual({ scope: { kind: 'type', name: 'quick' }, paused: false, changed: true });
      expect((await client.waitFor(id, { timeoutMs: 15_000 })).state).toBe('succeeded');
      expect((await call('GET', `/api/jobs/${id}`)).body.job.waitingFor).toBeNull();
      expect(await limitsRow('type', 'quick')).toMatchObject({ paused: false });
    } finally {
      await client.resume('quick');
    }
  });

  it('bad limits are 400 naming the field, and nothing is written', async () => {
    const cases: [string, string, Parameters<typeof call>[2], RegExp][] = [
      ['PUT', '/api/limits/type/quick', { body: { globalConcurrency: 0 } }, /^body.globalConcurrency must be an integer from 1/],
      ['PUT', '/api/limits/type/quick', { body: { globalConcurrency: 2.5 } }, /^body.globalConcurrency must be an integer/],
      ['PUT', '/api/limits/type/quick', { body: { globalConcurrency: -1, keyConcurrency: 1 } }, /^body.globalConcurrency must be/],
      ['PUT', '/api/limits/type/quick', { body: { rateLimit: { limit: 5 } } }, /^body.rateLimit.intervalMs must be an integer/],
      ['PUT', '/api/limits/type/quick', { body: { rateLimit: { limit: 5, intervalMs: 1000, burst: 2 } } }, /^body.rateLimit.burst is not a known field/],
      ['PUT', '/api/limits/type/quick', { body: { concurrency: 3 } }, /^body.concurrency is not a known limit/],
      ['PUT', '/api/limits/type/quick', { body: {} }, /^body sets nothing/],
      ['PUT', '/api/limits/type/quick', { body: [1] }, /^body must be an object/],
      ['PUT', '/api/limits/type/quick', { raw: '' }, /^body is empty/],
      ['PUT', '/api/limits/queue/emails', { body: { keyConcurrency: 1 } }, /^body.keyConcurrency applies to job types only/],
      ['PUT', '/api/limits/tipe/quick', { body: { globalConcurrency: 1 } }, /^kind must be type or queue, got "tipe"/],
      ['PUT', `/api/limits/type/${'x'.repeat(129)}`, { body: { globalConcurrency: 1 } }, /^name must name a type or queue of 1 to 128/],
      ['PUT', '/api/limits/type/a%00b', { body: { globalConcurrency: 1 } }, /^name must name a type or queue/],
      ['POST', '/api/limits/tipe/quick/pause', {}, /^kind must be type or queue/],
      ['POST', '/api/limits/queue/no%20spaces/pause', {}, /^name must name a type or queue/],
      ['DELETE', '/api/limits/jobs/quick', {}, /^kind must be type or queue/],
    ];
    for (const [method, path, options, message] of cases) {
      const res = await call(method, path, options);
      expect(res.status, `${method} ${path} ${JSON.stringify(options)}`).toBe(400);
      expect(res.body.error).toMatch(message);
    }
    const { rows } = await db.pool.query(`SELECT kind, name FROM spindle.limits WHERE operator <> '{}' OR paused`);
    expect(rows).toEqual([]);
    expect(await limitsRow('queue', 'no spaces')).toBeUndefined();
  });

  it('the limit routes need the token, and answer a wrong method with 405 and Allow', async () => {
    for (const [method, path] of [
      ['GET', '/api/limits'],
      ['PUT', '/api/limits/type/quick'],
      ['DELETE', '/api/limits/type/quick'],
      ['POST', '/api/limits/type/quick/pause'],
      ['POST', '/api/limits/type/quick/resume'],
    ] as const) {
      const res = await call(method, path, { auth: null, body: method === 'GET' ? undefined : { globalConcurrency: 1 } });
      expect(res.status, `${method} ${path}`).toBe(401);
    }
    expect(await limitsRow('type', 'quick')).toMatchObject({ paused: false, operator: {} });
    const wrong = await call('GET', '/api/limits/type/quick');
    expect(wrong.status).toBe(405);
    expect(wrong.headers.get('allow')).toBe('PUT, DELETE');
    expect((await call('GET', '/api/limits/type/quick/pause')).headers.get('allow')).toBe('POST');
  });
});
