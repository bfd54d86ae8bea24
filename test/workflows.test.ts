/**
 * Durable workflows against a real PostgreSQL: replay, jobs, sleeps, events, versions, determinism,
 * bounds, cancel with compensation; and crash safety with supervisors in child processes
 * (test/fixtures/run-supervisor.ts) that are SIGKILLed in each phase of a run.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from '../src/client.ts';
import { NotFoundError, StateError } from '../src/errors.ts';
import { startSupervisor, type StartOptions, type SupervisorHandle } from '../src/start.ts';
import type { WorkflowRun } from '../src/workflows/client.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIXTURE = fileURLToPath(new URL('./fixtures/run-supervisor.ts', import.meta.url));
const WORKERS = fileURLToPath(new URL('./fixtures/workflow-workers', import.meta.url));
const flow = (file: string) => fileURLToPath(new URL(`./fixtures/workflows/${file}.ts`, import.meta.url));

/** Fast timings: a dead supervisor is noticed within a second. */
const FAST = {
  heartbeatMs: 250,
  leaseMs: 2_500,
  reaperIntervalMs: 200,
  pollMs: 100,
  concurrency: 2,
  socket: false as const,
  logLevel: 'silent' as const,
  shutdownTimeoutMs: 1_000,
};

let db: TestDatabase;
let client: Client;
let dir: string;
const handles: SupervisorHandle[] = [];
const children = new Set<ChildProcess>();

beforeAll(async () => {
  db = await createTestDatabase();
  client = createClient({ connectionString: db.url });
  dir = await mkdtemp(join(tmpdir(), 'spindle-wf-'));
});

afterEach(async () => {
  for (const h of handles.splice(0)) await h.stop();
  for (const child of children) child.kill('SIGKILL');
  children.clear();
});

afterAll(async () => {
  await client.close();
  await db.drop();
  await rm(dir, { recursive: true, force: true });
});

async function start(workflows: Record<string, string>, options: Partial<StartOptions> = {}): Promise<SupervisorHandle> {
  const handle = await startSupervisor({ ...FAST, databaseUrl: db.url, workers: WORKERS, workflows, ...options });
  handles.push(handle);
  return handle;
}

async function stop(handle: SupervisorHandle): Promise<void> {
  handles.splice(handles.indexOf(handle), 1);
  await handle.stop();
}

/** Resolves once `check` returns a value (re-checked as the database changes); rejects after `timeoutMs`. */
async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const runIn = (id: string, ...states: string[]) =>
  until(`run ${id} in ${states.join('|')}`, async () => {
    const run = await client.getWorkflow(id);
    return run && states.includes(run.state) ? run : undefined;
  });

const lines = (file: string) => (existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').filter(Boolean) : []);
const count = (all: string[], line: string) => all.filter((l) => l === line).length;

describe('workflows in one supervisor', () => {
  it('runs steps, a job, a sleep and an event to the end, each once', async () => {
    await start({ order: flow('order') });
    const log = join(dir, 'order.log');
    const { run, created } = await client.startWorkflow('order', { log, jobMs: 50, sleepMs: 300 }, { id: 'order-1' });
    expect(created).toBe(true);
    expect((await client.startWorkflow('order', {}, { id: 'order-1' })).created).toBe(false);
    await until('the wait for the event', async () => {
      const current = await client.getWorkflow(run.id);
      return current?.state === 'waiting' && 'event' in (current.waitingFor ?? {}) ? current : undefined;
    }).then((r) => expect(r.waitingFor).toEqual({ event: 'approved' }));
    await client.sendEvent(run.id, 'approved', { by: 'ann' });
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 15_000 });
    expect(done.state).toBe('succeeded');
    expect(done.output).toMatchObject({ reserved: { reserved: true }, charged: 'job:charge', approval: { timedOut: false, payload: { by: 'ann' } }, shipped: 'shipped' });
    expect(lines(log)).toEqual(['step:reserve', 'job:charge', 'step:ship']);
    const detail = (await client.getWorkflow(run.id))!;
    expect(detail.steps.map((s) => `${s.kind}:${s.name}:${s.state}`)).toEqual([
      'step:reserve:succeeded',
      'job:wf-append:succeeded',
      'sleep:cool-off:succeeded',
      'event:approved:succeeded',
      'now:now:succeeded',
      'random:random:succeeded',
      'step:ship:succeeded',
    ]);
    const slept = detail.steps[2]!;
    expect(slept.finishedAt!.getTime() - slept.startedAt.getTime()).toBeGreaterThanOrEqual(250);
    const { rows } = await db.pool.query(`SELECT key FROM spindle.jobs WHERE type = 'wf-append'`);
    expect(rows).toEqual([{ key: `wf:${run.id}:2` }]);
    const shown = execFileSync(process.execPath, ['bin/spindle.mjs', 'workflow', run.id, '--database-url', db.url], { cwd: ROOT, encoding: 'utf8' });
    expect(shown).toMatch(/workflow run order-1\s+order v1\s+\[succeeded\]/);
    expect(shown).toMatch(/2\s+job\s+wf-append\s+succeeded/);
    await expect(client.sendEvent(run.id, 'approved', {})).rejects.toThrow(StateError);
    await expect(client.sendEvent('nobody', 'approved', {})).rejects.toThrow(NotFoundError);
  });

  it('keeps events sent before the wait, oldest first, and times a wait out', async () => {
    await start({ inbox: flow('inbox') });
    const { run } = await client.startWorkflow('inbox', { timeoutMs: 300 }, { id: 'inbox-1' });
    // The run has not been resumed yet: both events wait in its inbox.
    await client.sendEvent(run.id, 'ping', 1);
    await client.sendEvent(run.id, 'ping', 2);
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 15_000 });
    expect(done.state).toBe('succeeded');
    expect(done.output).toEqual({
      first: { timedOut: false, payload: 1 },
      second: { timedOut: false, payload: 2 },
      late: { timedOut: true, payload: null },
    });
  });

  it('blocks runs of another version visibly, and wf.patched serves old and new runs', async () => {
    const v1 = await start({ greet: flow('greet-v1') });
    const { run: old } = await client.startWorkflow('greet', null, { id: 'greet-old' });
    await runIn(old.id, 'waiting');
    await stop(v1);

    const v2 = await start({ greet: flow('greet-v2') });
    await client.sendEvent(old.id, 'go');
    const blocked = await runIn(old.id, 'blocked');
    expect(blocked.version).toBe('1');
    expect(blocked.blockedReason).toMatch(/version "1".*version "2".*supports/);
    await stop(v2);

    await start({ greet: flow('greet-v2-patched') });
    const oldDone = await client.waitForWorkflow(old.id, { timeoutMs: 15_000 });
    expect(oldDone.state).toBe('succeeded');
    expect(oldDone.output).toEqual({ bye: 'bye', patched: false });
    const { run: fresh } = await client.startWorkflow('greet', null, { id: 'greet-new' });
    await runIn(fresh.id, 'waiting');
    await client.sendEvent(fresh.id, 'go');
    const freshDone = await client.waitForWorkflow(fresh.id, { timeoutMs: 15_000 });
    expect(freshDone.output).toEqual({ bye: 'bye', patched: true });
    expect(freshDone.version).toBe('2');
    const steps = (await client.getWorkflow(fresh.id))!.steps.map((s) => s.name);
    expect(steps).toEqual(['hello', 'extra-step', 'extra', 'go', 'bye']);
  });

  it('fails a run whose steps changed order with a typed error, once', async () => {
    const a = await start({ swap: flow('swap-a') });
    const { run } = await client.startWorkflow('swap', null, { id: 'swap-1' });
    await runIn(run.id, 'waiting');
    await stop(a);
    await start({ swap: flow('swap-b') });
    await client.sendEvent(run.id, 'go');
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 15_000 });
    expect(done.state).toBe('failed');
    expect(done.error).toMatchObject({ name: 'NonDeterminismError', seq: 1 });
    expect(done.error!.message).toMatch(/recorded as step "charge" but the code now reaches step "ship"/);
    const resumes = done.resumes;
    // Failed for good: not picked up again.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect((await client.getWorkflow(run.id))!.resumes).toBe(resumes);
  });

  it('replays concurrent branches, a race and two calls of one name as they first ran, each step once', async () => {
    await start({ branches: flow('branches') });
    const log = join(dir, 'branches.log');
    const { run } = await client.startWorkflow('branches', { log, slowMs: 300 });
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 20_000 });
    expect(done.error).toBeNull();
    expect(done.state).toBe('succeeded');
    expect(done.output).toEqual({ a: 'A1A2', b: 'B1B2', raced: 'fast', twins: ['first', 'second'] });
    // Every sleep suspended the run: each part after one ran behind a replay of what came before.
    expect(done.resumes).toBeGreaterThanOrEqual(4);
    expect(lines(log).sort()).toEqual(['A-1', 'A-2', 'B-1', 'B-2', 'fast', 'slow', 'twin:first', 'twin:second']);
  });

  it('ends a run whose body returned while the losing step of a race never settles, after maxIdleMs', async () => {
    await start({ 'race-stuck': flow('race-stuck') }, { workflowLimits: { maxIdleMs: 300 } });
    const { run } = await client.startWorkflow('race-stuck', null);
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 15_000 });
    expect(done.state).toBe('succeeded');
    expect(done.output).toBe('quick');
  });

  it("retries a step as its retry option says, fails one past its timeoutMs, and records each step's attempts", async () => {
    await start({ retrying: flow('retrying') });
    const log = join(dir, 'retrying.log');
    const { run } = await client.startWorkflow('retrying', { log });
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 15_000 });
    expect(done.output).toEqual({
      flaky: 3,
      broken: 'broken, always',
      slow: 'step "slow" took longer than its timeoutMs (50 ms)',
      bad: 'options.retry.maxAttempts must be an integer from 1 to 100, got 0',
    });
    const all = lines(log);
    expect([count(all, 'flaky'), count(all, 'broken'), count(all, 'slow')]).toEqual([3, 2, 1]);
    const steps = (await client.getWorkflow(run.id))!.steps;
    expect(steps.map((s) => `${s.name}:${s.state}`)).toEqual(['flaky:succeeded', 'broken:failed', 'slow:failed']);
    expect(steps[1]!.error).toMatchObject({ message: 'broken, always', attempts: 2 });
    expect(steps[2]!.error).toMatchObject({ name: 'TimeoutError' });
  });

  it('fails a run whose step result is over the bound, with a clear error', async () => {
    await start({ big: flow('big') }, { workflowLimits: { maxStepResultBytes: 1_000 } });
    const { run } = await client.startWorkflow('big', null);
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 15_000 });
    expect(done.state).toBe('failed');
    expect(done.error).toMatchObject({ name: 'WorkflowBoundsError' });
    expect(done.error!.message).toMatch(/step "huge" is 5002 bytes, over maxStepResultBytes \(1000\)/);
  });

  it('cancels a run: completed steps are compensated newest first', async () => {
    await start({ trip: flow('trip') });
    const log = join(dir, 'trip.log');
    const { run } = await client.startWorkflow('trip', { log }, { id: 'trip-1' });
    await runIn(run.id, 'waiting');
    const outcome = await client.cancelWorkflow(run.id, 'changed my mind');
    expect(outcome.changed).toBe(true);
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 15_000 });
    expect(done.state).toBe('cancelled');
    expect(done.error).toMatchObject({ message: 'changed my mind', compensated: 3 });
    expect(lines(log)).toEqual([
      'do:flight', 'do:hotel', 'do:car',
      'undo:car:begin', 'undo:car-booking',
      'undo:hotel:begin', 'undo:hotel-booking',
      'undo:flight:begin', 'undo:flight-booking',
    ]);
    expect((await client.cancelWorkflow(run.id)).changed).toBe(false);
  });

  it('a compensation that fails for good stops the others, unless its step asked to continue; each step says what became of it', async () => {
    await start({ 'undo-chain': flow('undo-chain') }, { workflowLimits: { compensationAttempts: 2 } });
    const log = join(dir, 'undo-chain.log');
    const { run } = await client.startWorkflow('undo-chain', { log });
    await runIn(run.id, 'waiting');
    await client.cancelWorkflow(run.id, 'no trip');
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 15_000 });
    expect(done.state).toBe('compensation_failed');
    expect(done.error).toMatchObject({ step: 'car', attempts: 2, failed: [{ step: 'car' }, { step: 'hotel' }] });
    expect(lines(log)).toEqual(['undo:car', 'undo:car', 'undo:hotel', 'undo:hotel']);
    const steps = (await client.getWorkflow(run.id))!.steps;
    expect(steps.map((s) => [s.name, s.compensation?.state, s.compensation?.attempts])).toEqual([
      ['flight', 'skipped', 0],
      ['hotel', 'failed', 2],
      ['car', 'failed', 2],
      ['never', undefined, undefined],
    ]);
    // Each failed attempt let the run go until its backoff passed: the tries were resumes of their own.
    expect(done.resumes).toBeGreaterThanOrEqual(4);
  });

  it('fails a run whose body waits past maxIdleMs on something that is not a wf.* call, naming the bound', async () => {
    await start({ hangs: flow('hangs') }, { workflowLimits: { maxIdleMs: 200 } });
    const { run } = await client.startWorkflow('hangs', null);
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 15_000 });
    expect(done.state).toBe('failed');
    expect(done.error).toMatchObject({ name: 'WorkflowBoundsError' });
    expect(done.error!.message).toMatch(/waited 200 ms \(maxIdleMs\) on something that is not a wf\.\* call/);
    expect((await client.getWorkflow(run.id))!.steps.map((s) => `${s.name}:${s.state}`)).toEqual(['first:succeeded']);
  });

  it('warns of a step whose function holds the event loop, naming the step and for how long', async () => {
    const logged: { msg: string; step?: string; blockedMs?: number; level: number }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => logged.push(JSON.parse(line)) });
    await start({ blocks: flow('blocks') }, { logger });
    const { run } = await client.startWorkflow('blocks', null);
    expect((await client.waitForWorkflow(run.id, { timeoutMs: 15_000 })).output).toBe(true);
    const warning = logged.find((l) => l.step === 'crunch');
    expect(warning).toMatchObject({ level: 40, msg: expect.stringMatching(/^step "crunch" held the event loop for \d+ ms/) });
    expect(warning!.blockedMs).toBeGreaterThanOrEqual(1_000);
  });

  it("records when a step's function began, so its time is the function's, not 0 ms", async () => {
    await start({ timed: flow('timed') });
    const ms = 150;
    const { run } = await client.startWorkflow('timed', { ms });
    expect((await client.waitForWorkflow(run.id, { timeoutMs: 15_000 })).output).toEqual({ failure: expect.stringMatching(/late failure/) });
    const { rows } = await db.pool.query<{ name: string; state: string; ms: number }>(
      `SELECT name, state, extract(epoch FROM finished_at - started_at)::float8 * 1000 AS ms
         FROM spindle.workflow_steps WHERE run_id = $1 ORDER BY seq`,
      [run.id],
    );
    expect(rows.map((r) => [r.name, r.state])).toEqual([['slow', 'succeeded'], ['slow-failure', 'failed']]);
    // The start is the database's time as the supervisor reckons it; a few ms of slack for clock steps.
    for (const row of rows) expect(row.ms, row.name).toBeGreaterThanOrEqual(ms - 10);
    const steps = (await client.getWorkflow(run.id))!.steps;
    for (const step of steps) expect(step.finishedAt!.getTime() - step.startedAt.getTime(), step.name).toBeGreaterThanOrEqual(ms - 10);
  });
});

describe('workflows across supervisors', () => {
  /** How many resumes a supervisor's scheduler made, by how they ended. */
  const resumesOf = (handle: SupervisorHandle) =>
    (handle.snapshot().actors.children.find((c) => c.name === 'scheduler')!.state as { resumes: Record<string, number> }).resumes;

  it('every supervisor resumes the runs it serves: a run goes on on one that does not lead', async () => {
    const leader = await start({});
    await until('the first supervisor to lead', async () => leader.supervisor.isLeader);
    const follower = await start({ order: flow('order') });
    const log = join(dir, 'follower.log');
    const { run } = await client.startWorkflow('order', { log, jobMs: 10, sleepMs: 100 });
    await until('the wait for the event', async () => {
      const current = await client.getWorkflow(run.id);
      return current?.state === 'waiting' && 'event' in (current.waitingFor ?? {}) ? current : undefined;
    });
    await client.sendEvent(run.id, 'approved', { by: 'ann' });
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 15_000 });
    expect(done.state).toBe('succeeded');
    expect(leader.supervisor.isLeader).toBe(true);
    expect(follower.supervisor.isLeader).toBe(false);
    // The leader serves no workflow: every resume was the follower's (counted once its scheduler
    // has heard that the last one ended, which may come just after the run's row says so).
    await until('the follower to count every resume', async () =>
      Object.values(resumesOf(follower)).reduce((a, b) => a + b, 0) === done.resumes,
    );
    expect(resumesOf(leader)).toEqual({});
    expect(lines(log)).toEqual(['step:reserve', 'job:charge', 'step:ship']);
  });
});

describe('values a run cannot store, broken modules, concurrent starts', () => {
  it('160 concurrent startWorkflow calls over 20 ids return 20 runs and no error', async () => {
    const ids = Array.from({ length: 20 }, (_, i) => `same-${i}`);
    const calls = Array.from({ length: 160 }, (_, i) => client.startWorkflow('order', { i }, { id: ids[i % 20] }));
    const results = await Promise.all(calls);
    expect(results.filter((r) => r.created).map((r) => r.run.id).sort()).toEqual([...ids].sort());
    for (const { run } of results) expect(ids).toContain(run.id);
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM spindle.workflow_runs WHERE id LIKE 'same-%'`);
    expect(rows[0].n).toBe(20);
    await db.pool.query(`DELETE FROM spindle.workflow_runs WHERE id LIKE 'same-%'`);
  });

  it('fails a run whose result JSON cannot hold, once, instead of resuming it forever', async () => {
    await start({ unstorable: flow('unstorable') });
    const { run } = await client.startWorkflow('unstorable', { kind: 'bigint-output' });
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 15_000 });
    expect(done.state).toBe('failed');
    expect(done.error).toMatchObject({
      name: 'OutputError',
      message: `the result of workflow run ${run.id} cannot be stored: output.total is a bigint, which JSON cannot hold`,
    });
    expect(done.resumes).toBe(1);
  });

  it('fails a step whose result cannot be stored, naming the step and the cause; the body may go on', async () => {
    await start({ unstorable: flow('unstorable') });
    const { run } = await client.startWorkflow('unstorable', { kind: 'function-step' });
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 15_000 });
    expect(done.state).toBe('succeeded');
    const message = 'step "callback" returned a value that cannot be stored: result.fn is a function, which JSON cannot hold';
    expect(done.output).toEqual({ caught: `WorkflowStepError: ${message}` });
    const [step] = (await client.getWorkflow(run.id))!.steps;
    expect(step).toMatchObject({ name: 'callback', state: 'failed', error: { name: 'OutputError', message } });

    const { run: nul } = await client.startWorkflow('unstorable', { kind: 'nul-step' });
    const nulDone = await client.waitForWorkflow(nul.id, { timeoutMs: 15_000 });
    expect(nulDone.state).toBe('failed');
    expect(nulDone.error!.message).toBe('step "nul" returned a value that cannot be stored: result contains a NUL character (U+0000), which PostgreSQL cannot store');
  });

  it('records a step error whose message holds a NUL, escaped, and ends the run', async () => {
    await start({ unstorable: flow('unstorable') });
    const { run } = await client.startWorkflow('unstorable', { kind: 'nul-error' });
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 15_000 });
    expect(done.state).toBe('failed');
    expect(done.error).toMatchObject({ name: 'WorkflowStepError', message: 'bad\\u0000msg' });
    expect(done.resumes).toBe(1);
  });

  it('serves every other workflow when one module cannot load, and blocks that one\'s runs with the reason', async () => {
    const bad = (file: string) => fileURLToPath(new URL(`./fixtures/bad-workflows/${file}`, import.meta.url));
    await start({ broken: bad('broken.mjs'), fine: bad('fine.ts') });
    const { run: fine } = await client.startWorkflow('fine', { n: 21 });
    expect((await client.waitForWorkflow(fine.id, { timeoutMs: 15_000 })).output).toBe(42);
    const { run: broken } = await client.startWorkflow('broken', null);
    const blocked = await runIn(broken.id, 'blocked');
    expect(blocked.blockedReason).toMatch(/^cannot load workflow module "broken" \(.*broken\.mjs\): Error: Cannot find package 'no-such-package-for-spindle'/);
  });
});

// ---- crashes: supervisors in child processes ------------------------------------------------

interface Child {
  process: ChildProcess;
  lines: string[];
  exited: Promise<void>;
}

async function spawnSupervisor(workflows: Record<string, string>): Promise<Child> {
  const options = { ...FAST, logLevel: 'warn', databaseUrl: db.url, workers: WORKERS, workflows };
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, JSON.stringify(options)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  const out: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      out.push(line);
      if (line.includes('"event":"ready"')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`supervisor exited (${code}) before ready\n${stderr}\n${out.join('\n')}`)));
  });
  return { process: child, lines: out, exited };
}

async function kill(child: Child): Promise<void> {
  child.process.kill('SIGKILL');
  await child.exited;
  children.delete(child.process);
}

describe('workflows across SIGKILL', () => {
  it('a run killed in each phase (job, sleep, event wait) ends with every step and job run once', async () => {
    const workflows = { order: flow('order') };
    const log = join(dir, 'crash.log');
    let sup = await spawnSupervisor(workflows);
    const { run } = await client.startWorkflow('order', { log, jobMs: 1_500, sleepMs: 1_500 }, { id: 'crash-1' });

    // Phase 1: the job is running on the supervisor that is killed.
    await until('the job to run', async () => {
      const { rows } = await db.pool.query(`SELECT 1 FROM spindle.jobs WHERE key = $1 AND state = 'running'`, [`wf:${run.id}:2`]);
      return rows.length === 1;
    });
    await kill(sup);
    sup = await spawnSupervisor(workflows);

    // Phase 2: sleeping.
    await runIn(run.id, 'sleeping');
    await kill(sup);
    sup = await spawnSupervisor(workflows);

    // Phase 3: waiting for the event, which is sent while no supervisor runs.
    await runIn(run.id, 'waiting');
    await kill(sup);
    await client.sendEvent(run.id, 'approved', { by: 'bob' });
    sup = await spawnSupervisor(workflows);

    const done = await client.waitForWorkflow(run.id, { timeoutMs: 20_000 });
    expect(done.state).toBe('succeeded');
    const all = lines(log);
    expect(count(all, 'step:reserve')).toBe(1);
    expect(count(all, 'job:charge')).toBe(1);
    expect(count(all, 'step:ship')).toBe(1);
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM spindle.jobs WHERE key = $1`, [`wf:${run.id}:2`]);
    expect(rows[0].n).toBe(1);
    await kill(sup);
  }, 60_000);

  it('concurrent branches killed mid-run: the replay interleaves them as they ran, each step once', async () => {
    const workflows = { branches: flow('branches') };
    const log = join(dir, 'branches-crash.log');
    let sup = await spawnSupervisor(workflows);
    const { run } = await client.startWorkflow('branches', { log, slowMs: 800 });
    const recorded = async (name: string) =>
      (await db.pool.query(`SELECT 1 FROM spindle.workflow_steps WHERE run_id = $1 AND name = $2 AND state = 'succeeded'`, [run.id, name])).rowCount === 1;
    // Killed while A-1 still runs and B has gone ahead to B-2 (recorded) and its sleep.
    await until('branch B ahead of A', async () => (await recorded('B-2')) && !lines(log).includes('A-2'));
    await kill(sup);
    sup = await spawnSupervisor(workflows);
    // And again while the race's slow step runs, its fast one recorded.
    await until('the race', async () => lines(log).includes('slow') && !(await recorded('slow')) && (await recorded('fast')));
    await kill(sup);
    sup = await spawnSupervisor(workflows);
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 30_000 });
    expect(done.error).toBeNull();
    expect(done.output).toEqual({ a: 'A1A2', b: 'B1B2', raced: 'fast', twins: ['first', 'second'] });
    const all = lines(log);
    // A-1 and slow were running when their supervisor died: they may run again (at least once);
    // every step that was recorded ran once.
    for (const name of ['A-2', 'B-1', 'B-2', 'fast', 'twin:first', 'twin:second']) expect([name, count(all, name)], all.join(' ')).toEqual([name, 1]);
    await kill(sup);
  }, 60_000);

  it('a step that holds its main thread past the lease runs once: the lease keeper keeps the claim', async () => {
    const workflows = { overrun: flow('overrun') };
    const log = join(dir, 'overrun.log');
    const [a, b] = [await spawnSupervisor(workflows), await spawnSupervisor(workflows)];
    // Past the first beat of both (their lease keepers start with it).
    await until('a beat of both supervisors', async () => {
      const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM spindle.supervisors WHERE last_seen_at > started_at`);
      return rows[0].n === 2;
    });
    const { run } = await client.startWorkflow('overrun', { log, ms: 2 * FAST.leaseMs });
    const done = await client.waitForWorkflow(run.id, { timeoutMs: 30_000 });
    expect(done.state).toBe('succeeded');
    expect(lines(log)).toEqual(['crunch', 'after']);
    expect(done.resumes).toBe(1);
    // The supervisor that ran it says its main thread was held up and the keeper stood in.
    await until('the keeper\'s report', async () => [...a.lines, ...b.lines].some((l) => l.includes('the lease keeper kept its leases')));
    await Promise.all([kill(a), kill(b)]);
  }, 60_000);

  it('a supervisor killed during compensation: a new one resumes it where it stopped', async () => {
    const workflows = { trip: flow('trip') };
    const log = join(dir, 'trip-crash.log');
    const gate = join(dir, 'trip-gate');
    let sup = await spawnSupervisor(workflows);
    const { run } = await client.startWorkflow('trip', { log, gate }, { id: 'trip-crash' });
    await runIn(run.id, 'waiting');
    await client.cancelWorkflow(run.id, 'stop');
    await until('the hotel compensation to begin', async () => lines(log).includes('undo:hotel:begin'));
    expect((await client.getWorkflow(run.id))!.state).toBe('compensating');
    await kill(sup);
    writeFileSync(gate, '');
    sup = await spawnSupervisor(workflows);
    const done: WorkflowRun = await client.waitForWorkflow(run.id, { timeoutMs: 20_000 });
    expect(done.state).toBe('cancelled');
    const all = lines(log);
    // The car's compensation had finished before the kill: it is not run again.
    expect(count(all, 'undo:car-booking')).toBe(1);
    expect(count(all, 'undo:car:begin')).toBe(1);
    expect(count(all, 'undo:hotel:begin')).toBe(2);
    expect(count(all, 'undo:hotel-booking')).toBe(1);
    expect(count(all, 'undo:flight-booking')).toBe(1);
    expect(all.indexOf('undo:car-booking')).toBeLessThan(all.indexOf('undo:hotel-booking'));
    expect(all.indexOf('undo:hotel-booking')).toBeLessThan(all.indexOf('undo:flight-booking'));
    const steps = (await client.getWorkflow(run.id))!.steps.filter((s) => s.compensation);
    expect(steps.map((s) => [s.name, s.compensation!.state, s.compensation!.attempts])).toEqual([
      ['flight', 'succeeded', 1],
      ['hotel', 'succeeded', 2],
      ['car', 'succeeded', 1],
    ]);
    await kill(sup);
  }, 60_000);
});
