/**
 * OpenTelemetry as an application sets it up: its SDK in this process (the in-memory exporter), an
 * enqueue inside its own span, and a supervisor in another process with an SDK of its own (spans
 * to a file). One trace must run from the application's span to each attempt's span.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from '../src/client.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { SupervisorProcess } from './helpers/supervisor-process.ts';
import { spanLine, type SpanLine } from './fixtures/span-file.ts';
import { eventually } from './helpers/processes.ts';

const WORKERS = fileURLToPath(new URL('./fixtures/trace-workers', import.meta.url));
const WORKFLOWS = fileURLToPath(new URL('./fixtures/trace-workflows', import.meta.url));

let db: TestDatabase;
let client: Client;
let dir: string;
let spansFile: string;
let supervisor: SupervisorProcess;
const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

beforeAll(async () => {
  provider.register();
  db = await createTestDatabase();
  client = createClient({ connectionString: db.url });
  dir = mkdtempSync(join(tmpdir(), 'spindle-trace-'));
  spansFile = join(dir, 'spans.jsonl');
  supervisor = await new SupervisorProcess(
    { databaseUrl: db.url, workers: WORKERS, workflows: WORKFLOWS, concurrency: 2, logLevel: 'info', socket: false, heartbeatMs: 300 },
    { SPINDLE_TEST_SPANS: spansFile },
  ).ready(30_000);
}, 60_000);

afterAll(async () => {
  supervisor?.signal('SIGKILL');
  await supervisor?.exited;
  await client?.close();
  await db?.drop();
  trace.disable();
  await provider.shutdown();
  rmSync(dir, { recursive: true, force: true });
});

/** The supervisor's spans so far. */
function supervisorSpans(): SpanLine[] {
  try {
    return readFileSync(spansFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as SpanLine);
  } catch {
    return [];
  }
}

async function attemptSpans(jobId: string, n: number): Promise<SpanLine[]> {
  const of = () => supervisorSpans().filter((s) => s.attributes['spindle.job.id'] === jobId);
  await eventually(() => of().length >= n, 10_000);
  return of().sort((a, b) => Number(a.attributes['spindle.job.attempt']) - Number(b.attributes['spindle.job.attempt']));
}

/** Enqueues inside an application span of this process; returns the job id and the app span's ids. */
async function enqueueTraced(input: object, options: object = {}) {
  const tracer = trace.getTracer('test-app');
  return tracer.startActiveSpan('app.request', async (span) => {
    try {
      const job = await client.enqueue('traced', input, options);
      return { jobId: job.id, traceId: span.spanContext().traceId, appSpanId: span.spanContext().spanId };
    } finally {
      span.end();
    }
  });
}

describe('one trace from the enqueue to the attempt, across processes', () => {
  it("the attempt's span is a child of the enqueue's, which is a child of the caller's; ctx.traceparent names the attempt's span", async () => {
    const { jobId, traceId, appSpanId } = await enqueueTraced({});
    const done = await client.waitFor(jobId, { timeoutMs: 20_000 });
    expect(done.state).toBe('succeeded');

    const producer = exporter.getFinishedSpans().map(spanLine).find((s) => s.name === 'spindle.enqueue traced')!;
    expect(producer).toMatchObject({ traceId, parentSpanId: appSpanId, kind: SpanKind.PRODUCER });
    expect(producer.attributes).toMatchObject({ 'spindle.job.type': 'traced', 'spindle.job.queue': 'default', 'spindle.job.id': jobId });

    const [attempt] = await attemptSpans(jobId, 1);
    expect(attempt).toMatchObject({ name: 'spindle.run traced', kind: SpanKind.CONSUMER, traceId, parentSpanId: producer.spanId });
    expect(attempt!.attributes).toMatchObject({
      'spindle.job.id': jobId,
      'spindle.job.type': 'traced',
      'spindle.job.queue': 'default',
      'spindle.job.attempt': 1,
      'spindle.supervisor': supervisor.id,
      'spindle.outcome': 'succeeded',
    });
    expect(attempt!.attributes['spindle.queue_wait_ms']).toBeTypeOf('number');
    expect(attempt!.events).toContain('thread started');
    expect(attempt!.status.code).toBe(SpanStatusCode.UNSET);
    expect(done.output).toEqual({ traceparent: `00-${traceId}-${attempt!.spanId}-01` });
  });

  it('retries are sibling attempts under the one enqueue, the failed ones marked as errors', async () => {
    const { jobId, traceId } = await enqueueTraced({ failUntil: 3 });
    expect((await client.waitFor(jobId, { timeoutMs: 20_000 })).state).toBe('succeeded');
    const attempts = await attemptSpans(jobId, 3);
    expect(attempts.map((s) => s.attributes['spindle.job.attempt'])).toEqual([1, 2, 3]);
    expect(new Set(attempts.map((s) => s.parentSpanId)).size).toBe(1);
    expect(attempts.every((s) => s.traceId === traceId)).toBe(true);
    expect(attempts.map((s) => [s.attributes['spindle.outcome'], s.status.code])).toEqual([
      ['failed', SpanStatusCode.ERROR],
      ['failed', SpanStatusCode.ERROR],
      ['succeeded', SpanStatusCode.UNSET],
    ]);
    expect(attempts[0]!.status.message).toBe('attempt 1 fails on purpose');
  });

  it('a timed-out and a cancelled attempt end their spans with their outcome as an error', async () => {
    const timedOut = await enqueueTraced({ ms: 30_000 }, { timeoutMs: 200, maxAttempts: 1 });
    const cancelled = await enqueueTraced({ ms: 30_000 }, { maxAttempts: 1 });
    await eventually(async () => (await client.get(cancelled.jobId))!.state === 'running', 10_000);
    await client.cancel(cancelled.jobId, 'not needed');
    expect((await client.waitFor(timedOut.jobId, { timeoutMs: 20_000 })).state).toBe('timed_out');
    expect((await client.waitFor(cancelled.jobId, { timeoutMs: 20_000 })).state).toBe('cancelled');
    const [t] = await attemptSpans(timedOut.jobId, 1);
    const [c] = await attemptSpans(cancelled.jobId, 1);
    expect([t!.attributes['spindle.outcome'], t!.status.code]).toEqual(['timed_out', SpanStatusCode.ERROR]);
    expect([c!.attributes['spindle.outcome'], c!.status.code]).toEqual(['cancelled', SpanStatusCode.ERROR]);
    // Their log lines say so, as the job's.
    await eventually(() => supervisor.all((l) => l.job === cancelled.jobId && l.msg === 'job cancelled').length > 0, 10_000);
    expect(supervisor.all((l) => l.job === timedOut.jobId && l.msg === 'job timed out')).toEqual([
      expect.objectContaining({ level: 40, type: 'traced', attempt: 1, trace_id: timedOut.traceId, span_id: t!.spanId, next: 'timed_out' }),
    ]);
    expect(supervisor.all((l) => l.job === cancelled.jobId && l.msg === 'job cancelled')).toEqual([
      expect.objectContaining({ level: 30, type: 'traced', attempt: 1, trace_id: cancelled.traceId, span_id: c!.spanId }),
    ]);
  });

  it("log lines about a job carry its id, type and attempt, and the attempt's trace and span ids", async () => {
    const { jobId, traceId } = await enqueueTraced({ failUntil: 2, say: 'hello from the handler' });
    expect((await client.waitFor(jobId, { timeoutMs: 20_000 })).state).toBe('succeeded');
    const attempts = await attemptSpans(jobId, 2);
    await eventually(() => supervisor.all((l) => l.job === jobId && l.msg === 'hello from the handler').length === 2, 10_000);
    // ctx.log() lines, one per attempt, each under its attempt's span.
    const said = supervisor.all((l) => l.msg === 'hello from the handler' && l.job === jobId);
    expect(said.map((l) => [l.attempt, l.span_id])).toEqual([
      [1, attempts[0]!.spanId],
      [2, attempts[1]!.spanId],
    ]);
    expect(said.every((l) => l.type === 'traced' && l.trace_id === traceId && l.source === 'handler' && l.level === 30)).toBe(true);
    // The failed attempt's warning: what failed, and that it will be retried.
    const [failed, ...more] = supervisor.all((l) => l.job === jobId && l.msg === 'job failed; it will be retried');
    expect(more).toEqual([]);
    expect(failed).toMatchObject({ level: 40, type: 'traced', attempt: 1, trace_id: traceId, span_id: attempts[0]!.spanId, outcome: 'failed', next: 'queued' });
    expect((failed!.err as { message: string }).message).toBe('attempt 1 fails on purpose');
    expect(failed!.retryInMs).toBeTypeOf('number');
  });

  it('enqueueMany: one producer span, every job a child of it; a job enqueued with no span active still gets one', async () => {
    const jobs = await client.enqueueMany([{ type: 'traced' }, { type: 'traced' }]);
    const producer = exporter.getFinishedSpans().map(spanLine).find((s) => s.name === 'spindle.enqueue_many')!;
    expect(producer.attributes['spindle.jobs']).toBe(2);
    for (const job of jobs) {
      expect((await client.waitFor(job.id, { timeoutMs: 20_000 })).state).toBe('succeeded');
      const [attempt] = await attemptSpans(job.id, 1);
      expect(attempt).toMatchObject({ traceId: producer.traceId, parentSpanId: producer.spanId });
    }
  });

  it("a workflow run: each resume's span under startWorkflow's, its step under the resume, its child job's attempt in the same trace", async () => {
    const tracer = trace.getTracer('test-app');
    const { runId, traceId } = await tracer.startActiveSpan('app.request', async (span) => {
      try {
        const { run } = await client.startWorkflow('traced-flow', null);
        return { runId: run.id, traceId: span.spanContext().traceId };
      } finally {
        span.end();
      }
    });
    expect((await client.waitForWorkflow(runId, { timeoutMs: 30_000 })).state).toBe('succeeded');
    const start = exporter.getFinishedSpans().map(spanLine).find((s) => s.name === 'spindle.workflow.start traced-flow')!;
    expect(start.traceId).toBe(traceId);
    const ofRun = () => supervisorSpans().filter((s) => s.traceId === traceId);
    // Resumes: until the sleep, after the child job, after the sleep (the last one succeeded).
    await eventually(() => ofRun().some((s) => s.attributes['spindle.workflow.outcome'] === 'succeeded'), 10_000);
    const resumes = ofRun().filter((s) => s.name === 'spindle.workflow traced-flow');
    expect(resumes.length).toBeGreaterThanOrEqual(2);
    expect(resumes.every((s) => s.parentSpanId === start.spanId && s.attributes['spindle.workflow.run'] === runId)).toBe(true);
    const step = ofRun().find((s) => s.name === 'spindle.step prepare')!;
    expect(resumes.map((s) => s.spanId)).toContain(step.parentSpanId);
    const job = ofRun().find((s) => s.name === 'spindle.run traced')!;
    expect(resumes.map((s) => s.spanId)).toContain(job.parentSpanId);
    expect(resumes.flatMap((s) => s.events)).toEqual(expect.arrayContaining(['job enqueued', 'sleep']));
  });

  it('from SQL, a traceparent given as an option is kept; a malformed one is refused, naming it', async () => {
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const { rows } = await db.pool.query<{ id: string }>(`SELECT spindle.enqueue('traced', 'null', $1::jsonb)::text AS id`, [
      JSON.stringify({ traceparent }),
    ]);
    const [attempt] = await attemptSpans(rows[0]!.id, 1);
    expect(attempt).toMatchObject({ traceId: '0af7651916cd43dd8448eb211c80319c', parentSpanId: 'b7ad6b7169203331' });
    await expect(db.pool.query(`SELECT spindle.enqueue('traced', 'null', '{"traceparent": "00-xyz"}')`)).rejects.toThrow(
      'options.traceparent must be a W3C traceparent',
    );
  });
});
