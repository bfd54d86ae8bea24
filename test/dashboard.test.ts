/**
 * The dashboard in a real headless Chromium (Debian's, driven by playwright-core): log in with the
 * token, watch a running job's progress move, cancel it and see it cancelled; a job waiting for a
 * thread shown as such; a retried job shown as its current attempt. Skipped, with a message, where
 * no Chromium is installed (set CHROMIUM_PATH, or install Debian's `chromium`).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpServerState } from '../src/ops/http-server.ts';
import type { Client } from '../src/client.ts';
import type { SupervisorHandle } from '../src/start.ts';
import type { TestDatabase } from './helpers/database.ts';
import { startedJobs } from './helpers/job-events.ts';
import { actorState, nextEvent, startOpsSupervisor, stopOpsSupervisor } from './helpers/ops.ts';
/** CHROMIUM_PATH if set (and only it), else Debian's. */
const CHROMIUM = (process.env.CHROMIUM_PATH ? [process.env.CHROMIUM_PATH] : ['/usr/bin/chromium', '/usr/bin/chromium-browser']).find((p) =>
  existsSync(p),
);
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
    ({ db, client, handle, tmp } = await startOpsSupervisor('dashboard', { httpPort: 0, progressFlushMs: 50 }));
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
