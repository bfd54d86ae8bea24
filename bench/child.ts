/**
 * One run in a process of its own: one system, one system scenario. A fresh
 * process per run means no system inherits another's threads, timers, heap or
 * JIT state. Started by isolate.ts with `--import tsx`, so worker threads
 * (Piscina's, BullMQ's) inherit TypeScript support through execArgv.
 */
import { markThreadsAtStart } from './cpu.ts';
import { settle } from './database.ts';
import { systemScenario } from './scenarios/index.ts';
import type { Metrics } from './scenarios/types.ts';
import { findSystem } from './systems/index.ts';
import type { RunOutcome, RunSpec } from './isolate.ts';
import { wallClockMs } from './work.ts';

async function runOnce(spec: RunSpec): Promise<RunOutcome> {
  markThreadsAtStart();
  const adapter = findSystem(spec.system);
  if (!adapter) throw new Error(`no system called ${JSON.stringify(spec.system)}`);
  const scenario = systemScenario(spec.scenario);
  const setupStart = wallClockMs();
  await adapter.reset(spec.databaseUrl);
  await settle(spec.databaseUrl);
  const system = await adapter.start({ databaseUrl: spec.databaseUrl, kind: scenario.work, threads: spec.threads });
  const setupMs = wallClockMs() - setupStart;
  const databaseUrl = adapter.info.store === 'PostgreSQL' ? spec.databaseUrl : undefined;
  let metrics: Metrics;
  try {
    metrics = await scenario.measure(system, { quick: spec.quick, threads: spec.threads, run: spec.run, databaseUrl });
  } catch (error) {
    await system.stop().catch(() => {});
    throw error;
  }
  await system.stop();
  return { ok: true, metrics, unfinished: await system.unfinished(), setupMs };
}

function send(outcome: RunOutcome): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) {
      process.stdout.write(`${JSON.stringify(outcome)}\n`);
      resolve();
      return;
    }
    process.send(outcome, () => resolve());
  });
}

const spec = JSON.parse(process.argv[2] ?? '{}') as RunSpec;
const outcome = await runOnce(spec).catch(
  (error: unknown): RunOutcome => ({ ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
);
await send(outcome);
// Some libraries leave timers or sockets behind after close(); the run is over either way.
process.exit(0);
