/**
 * Scenario 5 (issue 5, "Measured"): cancel latency and timeout overshoot, as
 * bench/termination.ts measures them (see its file comment for the clocks):
 * - cancel: from client.cancel() returning to the job's `spindle_finished` NOTIFY
 *   (sent in the transaction that writes `cancelled`);
 * - overshoot: from the deadline (thread start + timeoutMs) to that NOTIFY, for a
 *   handler that returns at its signal and for an endless synchronous loop
 *   (terminated after abortGraceMs).
 * Goals: cancel p99 under 100 ms; overshoot p99 under abortGraceMs + 100 ms.
 * Also the supervisor's main-thread event-loop lag while the endless loops' threads are terminated
 * and while CPU jobs keep both threads busy (no goal: figures to watch).
 */
import { loadavg } from 'node:os';
import { DEFAULT_GRACE_MS, measureTermination, type Figure } from '../termination.ts';
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
    { key: 'lagTerminatingP99', label: 'event-loop lag, threads terminated p99 ms', better: 'lower', digits: 1 },
    { key: 'lagCpuP99', label: 'event-loop lag, CPU jobs p99 ms', better: 'lower', digits: 1 },
  ],
  size: (quick) =>
    `${quick ? CANCELS.quick : CANCELS.full} cancels of running jobs, one at a time; ` +
    `${quick ? OVERSHOOTS.quick : OVERSHOOTS.full} timed-out jobs (timeoutMs 100) per handler kind, enqueued at once; ` +
    `as many CPU jobs of 100 ms for the event-loop lag; ` +
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
      lagTerminatingP50: f.lagTerminating.p50,
      lagTerminatingP99: f.lagTerminating.p99,
      lagTerminatingMax: f.lagTerminating.max,
      lagTerminatingSamples: f.lagTerminating.samples,
      lagCpuP50: f.lagCpu.p50,
      lagCpuP99: f.lagCpu.p99,
      lagCpuMax: f.lagCpu.max,
      lagCpuSamples: f.lagCpu.samples,
      cpuJobMs: f.cpuJobMs,
      abortGraceMs: f.abortGraceMs,
      timeoutMs: f.timeoutMs,
      loadBefore,
      loadAfter: loadavg()[0]!,
    };
    const goal = f.abortGraceMs + OVERSHOOT_SLACK_MS;
    log(`cancel p50 ${f.cancel.p50} ms, p99 ${f.cancel.p99} ms (goal < ${CANCEL_GOAL_MS}); n=${f.cancel.samples}`);
    log(`overshoot, cooperative: p50 ${f.overshootCooperative.p50} ms, p99 ${f.overshootCooperative.p99} ms (goal < ${goal})`);
    log(`overshoot, endless loop: p50 ${f.overshootEndless.p50} ms, p99 ${f.overshootEndless.p99} ms (goal < ${goal})`);
    const lag = (label: string, l: Figure) => log(`main-thread event-loop lag, ${label}: p50 ${l.p50} ms, p99 ${l.p99} ms, max ${l.max} ms`);
    lag('threads terminated', f.lagTerminating);
    lag(`${f.cpuJobMs} ms CPU jobs on every thread`, f.lagCpu);
    return metrics;
  },
};
