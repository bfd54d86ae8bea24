/**
 * Scenario 5 (issue 5, "Measured"): cancel latency and timeout overshoot, as
 * bench/termination.ts measures them (see its file comment for the clocks):
 * - cancel: from client.cancel() returning to the job's `spindle_finished` NOTIFY
 *   (sent in the transaction that writes `cancelled`);
 * - overshoot: from the deadline (thread start + timeoutMs) to that NOTIFY, for a
 *   handler that returns at its signal and for an endless synchronous loop
 *   (terminated after abortGraceMs).
 * Goals: cancel p99 under 100 ms; overshoot p99 under abortGraceMs + 100 ms.
 */
import { loadavg } from 'node:os';
import { DEFAULT_GRACE_MS, measureTermination } from '../termination.ts';
import type { Metrics, StandaloneScenario } from './types.ts';

const CANCELS = { full: 200, quick: 50 };
const OVERSHOOTS = { full: 50, quick: 20 };
/** Goal of issue 5 for cancel p99, ms. */
export const CANCEL_GOAL_MS = 100;
/** Goal of issue 5: overshoot p99 under abortGraceMs plus this, ms. */
export const OVERSHOOT_SLACK_MS = 100;

/** Scenario 5 of issue 8. */
export const cancelTimeoutLatency: StandaloneScenario = {
  kind: 'standalone',
  id: 'cancel',
  issueNumber: '5',
  title: 'Cancel and timeout latency',
  system: 'spindle',
  metrics: [
    { key: 'cancelP50', label: 'cancel p50 ms', better: 'lower', digits: 1 },
    { key: 'cancelP99', label: 'cancel p99 ms', better: 'lower', digits: 1 },
    { key: 'cooperativeP50', label: 'overshoot, cooperative p50 ms', better: 'lower', digits: 1 },
    { key: 'cooperativeP99', label: 'overshoot, cooperative p99 ms', better: 'lower', digits: 1 },
    { key: 'endlessP50', label: 'overshoot, endless loop p50 ms', better: 'lower', digits: 1 },
    { key: 'endlessP99', label: 'overshoot, endless loop p99 ms', better: 'lower', digits: 1 },
  ],
  size: (quick) =>
    `${quick ? CANCELS.quick : CANCELS.full} cancels of running jobs, one at a time; ` +
    `${quick ? OVERSHOOTS.quick : OVERSHOOTS.full} timed-out jobs (timeoutMs 100) per handler kind, enqueued at once; ` +
    `one supervisor, 2 threads, abortGraceMs ${DEFAULT_GRACE_MS} (bench/termination.ts)`,
  async unavailable() {
    return undefined;
  },
  async run({ databaseUrl, quick, log }): Promise<Metrics> {
    const loadBefore = loadavg()[0]!;
    const f = await measureTermination(databaseUrl, {
      cancels: quick ? CANCELS.quick : CANCELS.full,
      overshoots: quick ? OVERSHOOTS.quick : OVERSHOOTS.full,
    });
    const metrics: Metrics = {
      cancelP50: f.cancel.p50,
      cancelP99: f.cancel.p99,
      cancelMax: f.cancel.max,
      cancels: f.cancel.samples,
      cooperativeP50: f.overshootCooperative.p50,
      cooperativeP99: f.overshootCooperative.p99,
      cooperativeMax: f.overshootCooperative.max,
      endlessP50: f.overshootEndless.p50,
      endlessP99: f.overshootEndless.p99,
      endlessMax: f.overshootEndless.max,
      overshoots: f.overshootEndless.samples,
      abortGraceMs: f.abortGraceMs,
      timeoutMs: f.timeoutMs,
      loadBefore,
      loadAfter: loadavg()[0]!,
    };
    const goal = f.abortGraceMs + OVERSHOOT_SLACK_MS;
    log(`cancel p50 ${f.cancel.p50} ms, p99 ${f.cancel.p99} ms (goal < ${CANCEL_GOAL_MS}); n=${f.cancel.samples}`);
    log(`overshoot, cooperative: p50 ${f.overshootCooperative.p50} ms, p99 ${f.overshootCooperative.p99} ms (goal < ${goal})`);
    log(`overshoot, endless loop: p50 ${f.overshootEndless.p50} ms, p99 ${f.overshootEndless.p99} ms (goal < ${goal})`);
    return metrics;
  },
};
