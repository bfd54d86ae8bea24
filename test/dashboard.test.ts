/**
 * The dashboard in a real headless Chromium (Debian's, driven by playwright-core): log in with the
 * token, watch a running job's progress move, cancel it and see it cancelled; a job waiting for a
 * thread shown as such; a retried job shown as its current attempt; the supervisors page with two
 * supervisors and the leader; charts that move while jobs run; a workflow run's timeline, events,
 * child jobs and compensation, with its event and cancel buttons. Screenshots go to SPINDLE_SCREENSHOTS
 * (default: the system's temp directory) for a person to look at. Skipped, with a message, where no
 * Chromium is installed (set CHROMIUM_PATH, or install Debian's `chromium`).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpServerState } from '../src/ops/http-server.ts';
import type { Client } from '../src/client.ts';
import { startSupervisor, type SupervisorHandle } from '../src/start.ts';
import type { TestDatabase } from './helpers/database.ts';
import { startedJobs } from './helpers/job-events.ts';
import { actorState, nextEvent, startOpsSupervisor, stopOpsSupervisor } from './helpers/ops.ts';
/** CHROMIUM_PATH if set (and only it), else Debian's. */
const CHROMIUM = (process.env.CHROMIUM_PATH ? [process.env.CHROMIUM_PATH] : ['/usr/bin/chromium', '/usr/bin/chromium-browser']).find((p) =>
  existsSync(p),
);
const fixture = (path: string) => fileURLToPath(new URL(`fixtures/${path}`, import.meta.url));
/** Where the screenshots go, to look at. */
const SHOTS = process.env.SPINDLE_SCREENSHOTS ?? tmpdir();

if (!CHROMIUM) {
  console.warn(
    `dashboard.test.ts: SKIPPED, no Chromium at ${process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'}: install Debian's "chromium" or set CHROMIUM_PATH`,
  );
}

describe.skipIf(!CHROMIUM)('the dashboard in headless Chromium', () => {
  let db: TestDatabase;
  let client: Client;
  let tmp: string;
  let handle: SupervisorHandle;
  let browser: Browser;
  let page: Page;
  let base: string;
  let token: string;

  beforeAll(async () => {
    ({ db, client, handle, tmp } = await startOpsSupervisor('dashboard', {
      httpPort: 0,
      progressFlushMs: 50,
      workflows: { shipment: fixture('ops-workflows/shipment.ts') },
    }));
    const state = actorState<HttpServerState>(handle, 'http');
    base = state.url!;
    token = (await readFile(state.tokenFile, 'utf8')).trim();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
      ],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('pageerror', (error) => console.error('page error:', error));
  });

  afterAll(async () => {
    await browser?.close();
    await stopOpsSupervisor({ db, client, handle, tmp });
  });

  it('asks for the token, refuses a wrong one, and shows the overview with the right one', async () => {
    await client.enqueue('quick', { hello: 'world' });
    await page.goto(base);
    await page.locator('#login').waitFor({ state: 'visible' });
    await page.fill('#token', 'not-the-token-not-the-token-not-the-token');
    await page.click('#login-form button');
    await expect.poll(() => page.textContent('#login-error')).toMatch(/refused/);
    await page.fill('#token', token);
    await page.click('#login-form button');
    await page.locator('#overview').waitFor({ state: 'visible' });
    await page.locator('#queues tr[data-queue="default"]').waitFor();
    await page.locator('#actors tr[data-actor="supervisor/http"]').waitFor();
    expect(await page.textContent('#who')).toContain(handle.id);
    expect(await page.evaluate<string | null>("sessionStorage.getItem('spindle.token')")).toBe(token);
    await page.locator('#live.on').waitFor();
    await page.screenshot({ path: join(SHOTS, 'spindle-dashboard-overview.png'), fullPage: true });
  });

  it("shows a running job's progress moving, cancels it, and shows it cancelled", async () => {
    const job = await client.enqueue('stepper', { steps: 400, stepMs: 50 });
    await nextEvent(handle, 'job:progress', (e) => e.id === job.id);
    // A fresh tab with the token in the fragment, as a link from `spindle start` would give it.
    const tab = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await tab.goto(`${base}#token=${encodeURIComponent(token)}`);
    await tab.locator('#overview').waitFor({ state: 'visible' });
    expect(tab.url()).not.toContain(token);
    await tab.goto(`${base}#/jobs/${job.id}`);
    await tab.locator('#job-state[data-state="running"]').waitFor();
    const progress = () => tab.locator('#job-progress').getAttribute('data-value').then(Number);
    await expect.poll(progress).toBeGreaterThan(0);
    const first = await progress();
    await expect.poll(progress, { timeout: 10_000 }).toBeGreaterThan(first + 2);
    expect(await tab.textContent('#job-message')).toMatch(/^step \d+ of 400$/);
    await tab.screenshot({ path: join(SHOTS, 'spindle-dashboard-job.png'), fullPage: true });

    await tab.click('#cancel');
    await tab.locator('#job-state[data-state="cancelled"]').waitFor({ timeout: 15_000 });
    expect(await tab.textContent('#action-result')).toMatch(/asked to stop it|cancelled/);
    await tab.locator('#attempts [data-state="cancelled"]').waitFor();
    expect(await tab.isDisabled('#cancel')).toBe(true);
    expect(await tab.isEnabled('#retry')).toBe(true);
    expect((await client.get(job.id))!.state).toBe('cancelled');
    await tab.screenshot({ path: join(SHOTS, 'spindle-dashboard-cancelled.png'), fullPage: true });

    await tab.click('#retry');
    await tab.locator('#job-state[data-state="running"], #job-state[data-state="queued"]').waitFor();
    await client.cancel(job.id);
    await tab.close();
  });

  it('shows a job that waits for a thread apart from the running ones, and words its cancel by its state', async () => {
    // A type measured short, so the supervisor claims one beyond its two busy threads.
    await client.waitFor((await client.enqueue('quick', 'measured')).id, { timeoutMs: 15_000 });
    const busy = startedJobs(handle, 2, (e) => e.type === 'stepper');
    const holders = await client.enqueueMany([1, 2].map(() => ({ type: 'stepper', input: { steps: 400, stepMs: 50 } })));
    await busy;
    const claimed = nextEvent(handle, 'job:claimed', (e) => e.type === 'quick');
    const waiting = await client.enqueue('quick', 'waits');
    try {
      await claimed;
      await page.goto(`${base}#/`);
      await page.locator(`#waiting tr[data-job="${waiting.id}"]`).waitFor();
      for (const job of holders) await page.locator(`#inflight tr[data-job="${job.id}"]`).waitFor();
      expect(await page.locator(`#inflight tr[data-job="${waiting.id}"]`).count()).toBe(0);
      expect(await page.textContent('#running-count')).toBe('2');
      expect(await page.textContent('#waiting-count')).toBe('1');
      expect((await page.locator('#inflight td[data-thread]').allTextContents()).sort()).toEqual(['1', '2']);
      await page.screenshot({ path: join(SHOTS, 'spindle-dashboard-waiting.png'), fullPage: true });

      await page.goto(`${base}#/jobs/${waiting.id}`);
      await page.locator('#job-state[data-phase="waiting"]').waitFor();
      expect(await page.textContent('#job-state')).toBe('waiting for a thread');
      expect(await page.textContent('#job-fields')).toContain('not yet: waiting for a thread');
      // The job page reads only the job, yet the supervisor's uptime in the header goes on.
      const who = await page.textContent('#who');
      await expect.poll(() => page.textContent('#who'), { timeout: 3_000 }).not.toBe(who);

      await page.click('#cancel');
      await page.locator('#job-state[data-state="cancelled"]').waitFor();
      expect(await page.textContent('#action-result')).toBe(`job ${waiting.id} cancelled`);
    } finally {
      for (const job of [waiting, ...holders]) await client.cancel(job.id);
      await Promise.all(holders.map((job) => client.waitFor(job.id, { timeoutMs: 15_000 })));
    }
  });

  it("shows a retried job's current attempt, and the error of the one before as that attempt's", async () => {
    const second = startedJobs(handle, 1, (e) => e.type === 'flaky' && e.attempt === 2);
    const job = await client.enqueue('flaky', null);
    try {
      await second;
      await page.goto(`${base}#/jobs/${job.id}`);
      await page.locator('#job-state[data-state="running"]').waitFor();
      await expect.poll(() => page.textContent('#job-output')).toMatch(/previous attempt, 1, ended failed: Error: attempt 1 failed/);
      expect(await page.textContent('#job-output')).toMatch(/^- \(no result yet\)/);
      expect(await page.textContent('#job-progress')).toBe('-');
      expect(await page.textContent('#job-fields')).toContain('2 of 3');
    } finally {
      await client.cancel(job.id);
      await client.waitFor(job.id, { timeoutMs: 15_000 });
    }
  });

  it('lists limited scopes with their slots, pauses and resumes one for every supervisor, and shows why a queued job waits', async () => {
    // A concurrency key is user data: the dashboard must show it as text.
    const key = '<img src=x onerror="window.pwned=1">';
    await client.setLimits('stepper', { globalConcurrency: 2, keyConcurrency: 1 });
    const first = startedJobs(handle, 1, (e) => e.type === 'stepper');
    const jobs = await client.enqueueMany([1, 2].map(() => ({ type: 'stepper', input: { steps: 400, stepMs: 50 }, options: { concurrencyKey: key } })));
    const paused = async () =>
      (await db.pool.query(`SELECT paused FROM spindle.limits WHERE kind = 'type' AND name = 'stepper'`)).rows[0]?.paused as boolean | undefined;
    try {
      const [running] = await first;
      const held = jobs.find((j) => j.id !== running!.id)!;
      const why = `waiting for a slot: key ${key} at 1/1`;

      await page.goto(`${base}#/jobs/${held.id}`);
      await page.locator('#job-state[data-state="queued"]').waitFor();
      await expect.poll(() => page.textContent('#job-waiting')).toBe(`Held back by flow control: ${why}`);
      await page.goto(`${base}#/jobs?type=stepper&state=queued`);
      const heldRow = page.locator(`#job-list tr[data-job="${held.id}"]`);
      await expect.poll(() => heldRow.locator('[data-waiting]').textContent()).toBe(why);
      expect(await page.locator('#job-list img').count()).toBe(0);

      await page.goto(`${base}#/limits`);
      const row = page.locator('#limit-list tr[data-scope="type:stepper"]');
      await row.waitFor();
      expect(await row.locator('[data-running]').textContent()).toBe('1/2');
      expect(await row.locator('[data-waiting]').textContent()).toBe('1');
      expect(await row.textContent()).toContain('at most 2 running; 1 per key');
      await page.screenshot({ path: join(SHOTS, 'spindle-dashboard-limits.png'), fullPage: true });

      await row.locator('button[data-action="pause"]').click();
      await row.locator('[data-paused="true"]').waitFor();
      expect(await page.textContent('#limit-result')).toBe('type stepper paused');
      expect(await paused()).toBe(true);
      // The held job now says so, and the running one goes on.
      await page.goto(`${base}#/jobs/${held.id}`);
      await expect.poll(() => page.textContent('#job-waiting')).toBe('Held back by flow control: paused: type stepper');
      expect((await client.get(running!.id))!.state).toBe('running');

      await page.goto(`${base}#/limits`);
      await row.locator('button[data-action="resume"]').click();
      await row.locator('[data-paused="false"]').waitFor();
      expect(await paused()).toBe(false);

      // Any type or queue, limited or not, can be paused by name.
      await page.fill('#pause-form input[name="name"]', 'parked');
      await page.selectOption('#pause-form select[name="kind"]', 'queue');
      await page.click('#pause-form button');
      await page.locator('#limit-list tr[data-scope="queue:parked"] [data-paused="true"]').waitFor();
      await page.fill('#pause-form input[name="name"]', 'no spaces');
      await page.click('#pause-form button');
      await expect.poll(() => page.textContent('#limit-result')).toMatch(/^name must name a type or queue/);
      expect(await page.evaluate('window.pwned')).toBeUndefined();
    } finally {
      await client.resume('queue:parked');
      await client.clearLimits('stepper');
      await client.resume('stepper');
      for (const job of jobs) await client.cancel(job.id);
      await Promise.all(jobs.map((job) => client.waitFor(job.id, { timeoutMs: 15_000 })));
    }
  });

  it('shows both of two supervisors on one database, which one leads, and what each serves', async () => {
    const second = await startSupervisor({
      databaseUrl: db.url,
      workers: fixture('ops-workers/'),
      workflows: {},
      concurrency: 1,
      queues: ['elsewhere'],
      logLevel: 'silent',
      socket: false,
      stateDir: join(tmp, 'second'),
      pollMs: 200,
    });
    try {
      await page.goto(`${base}#/supervisors`);
      const first = page.locator(`#supervisor-list tr[data-supervisor="${handle.id}"]`);
      const other = page.locator(`#supervisor-list tr[data-supervisor="${second.id}"]`);
      await first.waitFor();
      await other.waitFor();
      await expect.poll(() => first.getAttribute('data-leader')).toBe('true');
      expect(await other.getAttribute('data-leader')).toBe('false');
      expect(await page.locator('#supervisor-list tr[data-leader="true"]').count()).toBe(1);
      expect(await first.getAttribute('data-live')).toBe('true');
      expect(await other.getAttribute('data-live')).toBe('true');
      expect(await other.textContent()).toContain('elsewhere');
      expect(await first.textContent()).toContain('every queue');
      expect(await first.textContent()).toContain('leader');
      await page.screenshot({ path: join(SHOTS, 'spindle-dashboard-supervisors.png'), fullPage: true });
    } finally {
      await second.stop();
    }
    // A supervisor that stopped cleanly leaves the list.
    await page.locator(`#supervisor-list tr[data-supervisor="${second.id}"]`).waitFor({ state: 'detached' });
  });

  it("draws the charts from the supervisor's samples, and they move while jobs run", async () => {
    await page.goto(`${base}#/charts`, { timeout: 5_000 });
    const chart = page.locator('#chart-finished');
    // Paths are waited for as attached: a flat line has no height, which Playwright calls hidden.
    await page.locator('#chart-depth path').first().waitFor({ state: 'attached', timeout: 10_000 });
    const total = async () => Number(await chart.getAttribute('data-total', { timeout: 2_000 }));
    const paths = () => chart.locator('path').evaluateAll((els) => els.map((e) => e.getAttribute('d')).join('|'));
    await expect.poll(() => chart.getAttribute('data-total', { timeout: 2_000 }), { timeout: 10_000 }).not.toBeNull();
    const [before, drawn] = [await total(), await paths()];
    const jobs = await client.enqueueMany(Array.from({ length: 30 }, (_, i) => ({ type: 'quick', input: i })));
    // One query for them all: thirty waitFor() calls would queue on the client's few connections.
    const ids = jobs.map((j) => j.id);
    const done = async () =>
      Number((await db.pool.query(`SELECT count(*) FROM spindle.jobs WHERE id = ANY($1::bigint[]) AND state = 'succeeded'`, [ids])).rows[0].count);
    await expect.poll(done, { timeout: 10_000 }).toBe(30);
    await expect.poll(total, { timeout: 10_000 }).toBeGreaterThanOrEqual(before + 30);
    expect(await paths()).not.toBe(drawn);
    await chart.locator('path[data-series="succeeded"]').waitFor({ state: 'attached', timeout: 5_000 });
    await page.locator('#chart-runtime path[data-series="quick p50"]').waitFor({ state: 'attached', timeout: 5_000 });
    await page.locator('#chart-runtime path[data-series="quick p99"]').waitFor({ state: 'attached', timeout: 5_000 });
    expect(await page.locator('#chart-depth path[data-series="succeeded"]').count()).toBe(1);
    await page.screenshot({ path: join(SHOTS, 'spindle-dashboard-charts.png'), fullPage: true });
    await page.selectOption('#chart-window select[name="window"]', '1h', { timeout: 5_000 });
    await expect.poll(() => page.url()).toContain('window=1h');
    await expect.poll(total).toBeGreaterThanOrEqual(before + 30);
  });

  it("shows a workflow run's steps as a timeline with its child job, takes an event from the page, and cancels another", async () => {
    // The label is user data: it must show as text.
    const label = '<img src=x onerror="window.pwned=1">';
    const waiting = async (id: string) => (await client.getWorkflow(id))?.waitingFor;
    const { run } = await client.startWorkflow('shipment', { label, sleepMs: 300 }, { id: `dash/ship-${Date.now()}` });
    await expect.poll(() => waiting(run.id), { timeout: 15_000 }).toEqual({ event: 'approved' });

    await page.goto(`${base}#/workflows?name=shipment`);
    await page.locator(`#wf-list tr[data-run="${run.id}"] a`).click();
    await page.locator('#workflow').waitFor({ state: 'visible' });
    expect(page.url()).toContain(encodeURIComponent(run.id));
    const steps = () => page.locator('#wf-timeline [data-step]').evaluateAll((els) => els.map((e) => e.getAttribute('data-step')));
    await expect.poll(steps).toEqual(['reserve', 'quick', 'cool-off', 'approved']);
    // One bar per step, placed and sized on the run's time axis.
    const bars = await page.locator('#wf-timeline .track > span').evaluateAll((els) => els.map((e) => e.getAttribute('style') ?? ''));
    expect(bars).toHaveLength(4);
    const widths = bars.map((style) => Number(/width: ([\d.e-]+)%/.exec(style)?.[1]));
    for (const style of bars) expect(style).toMatch(/left: [\d.e-]+%; width: [\d.e-]+%/);
    // The sleep took its 300 ms of a run that is longer: a bar of some width, not all of it.
    expect(widths[2]).toBeGreaterThan(0);
    expect(widths[2]).toBeLessThan(100);
    await page.locator('#wf-jobs tr[data-job] [data-state="succeeded"]').waitFor();
    expect(await page.locator('#wf-jobs tr[data-job]').count()).toBe(1);
    expect(await page.textContent('#wf-compensation')).toContain('reserve');
    expect(await page.textContent('#wf-input')).toContain(JSON.stringify(label));
    expect(await page.locator('#workflow img').count()).toBe(0);
    await page.screenshot({ path: join(SHOTS, 'spindle-dashboard-workflow-waiting.png'), fullPage: true });

    await page.fill('#wf-event input[name="name"]', 'approved');
    await page.fill('#wf-event input[name="payload"]', '{"by": "the dashboard"}');
    await page.click('#wf-event button');
    await expect.poll(() => page.textContent('#wf-result')).toBe('event "approved" sent');
    await page.locator('#wf-state[data-state="succeeded"]').waitFor({ timeout: 15_000 });
    await expect.poll(steps).toEqual(['reserve', 'quick', 'cool-off', 'approved', 'ship']);
    const approvedSeq = await page.locator('#wf-timeline [data-step="approved"]').getAttribute('data-seq');
    await expect.poll(() => page.textContent('#wf-events')).toMatch(new RegExp(`approved.*\\(step ${approvedSeq}\\)`, 's'));
    expect(await page.isDisabled('#wf-cancel')).toBe(true);
    expect((await client.getWorkflow(run.id))!.output).toMatchObject({ approval: { payload: { by: 'the dashboard' } } });
    await page.screenshot({ path: join(SHOTS, 'spindle-dashboard-workflow.png'), fullPage: true });

    const other = (await client.startWorkflow('shipment', { label: 'second', sleepMs: 0 }, { id: `dash/cancel-${Date.now()}` })).run;
    await expect.poll(() => waiting(other.id), { timeout: 15_000 }).toEqual({ event: 'approved' });
    await page.goto(`${base}#/workflows/${encodeURIComponent(other.id)}`);
    await page.locator('#wf-state[data-state="waiting"]').waitFor();
    await page.click('#wf-cancel');
    await expect.poll(() => page.textContent('#wf-result')).toMatch(/will stop at its next step and compensate/);
    await page.locator('#wf-state[data-state="cancelled"]').waitFor({ timeout: 15_000 });
    // The plan the cancel wrote, and what ran: the reserve step's compensation, succeeded.
    const reserveSeq = await page.locator('#wf-timeline [data-step="reserve"]').getAttribute('data-seq');
    await page.locator(`#wf-compensation tr[data-seq="${reserveSeq}"] [data-state="succeeded"]`).waitFor();
    // The wait the cancel ended is drawn to the run's end, not on to now.
    await expect.poll(() => page.textContent('#wf-timeline')).toMatch(/event\s*waiting\s*[\d.]+ m?s, never ended/);
    await page.screenshot({ path: join(SHOTS, 'spindle-dashboard-workflow-cancelled.png'), fullPage: true });
    expect(await page.evaluate('window.pwned')).toBeUndefined();
  });

  it("shows a blocked run's reason, and pages through thousands of runs", async () => {
    const { run } = await client.startWorkflow('nobody-serves', {}, { id: `dash/blocked-${Date.now()}` });
    await db.pool.query(`UPDATE spindle.workflow_runs SET state = 'blocked', blocked_reason = $2 WHERE id = $1`, [
      run.id,
      'no module serves workflow "nobody-serves" <b>version</b> 1',
    ]);
    await page.goto(`${base}#/workflows/${encodeURIComponent(run.id)}`);
    await expect.poll(() => page.textContent('#wf-blocked')).toBe('Blocked: no module serves workflow "nobody-serves" <b>version</b> 1');
    expect(await page.locator('#wf-blocked b').count()).toBe(0);

    await db.pool.query(
      `INSERT INTO spindle.workflow_runs (id, name, state, created_at)
       SELECT 'bulk-' || lpad(i::text, 5, '0'), 'bulk', 'succeeded', now() - i * interval '1 second' FROM generate_series(1, 3000) i`,
    );
    await page.goto(`${base}#/workflows?name=bulk&limit=100`);
    const ids = () => page.locator('#wf-list tbody tr[data-run]').evaluateAll((els) => els.map((e) => e.getAttribute('data-run')));
    await expect.poll(async () => (await ids())[0]).toBe('bulk-00001');
    expect(await ids()).toHaveLength(100);
    expect(await page.isHidden('#wf-first')).toBe(true);
    await page.click('#wf-next');
    await expect.poll(async () => (await ids())[0]).toBe('bulk-00101');
    expect(await ids()).toHaveLength(100);
    expect(await page.isVisible('#wf-first')).toBe(true);
    await page.screenshot({ path: join(SHOTS, 'spindle-dashboard-workflows.png'), fullPage: true });
    await page.click('#wf-first');
    await expect.poll(async () => (await ids())[0]).toBe('bulk-00001');
  });

  it('filters the jobs table', async () => {
    await page.goto(`${base}#/jobs?state=succeeded&type=quick`);
    await page.locator('#job-list tbody tr').first().waitFor();
    const states = await Promise.all((await page.locator('#job-list tbody [data-state]').all()).map((el) => el.getAttribute('data-state')));
    expect(states.length).toBeGreaterThan(0);
    expect(new Set(states)).toEqual(new Set(['succeeded']));
    await page.selectOption('#filters select[name="state"]', 'cancelled');
    await page.fill('#filters input[name="type"]', 'stepper');
    await page.click('#filters button');
    await page.locator('#job-list tbody tr [data-state="cancelled"]').first().waitFor();
    expect(page.url()).toContain('state=cancelled');
  });
});
