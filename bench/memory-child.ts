/**
 * A peer's process for the memory scenario (issue 25): started by scenarios/memory.ts with
 * `--import tsx`, it starts one system (its adapter, as every other scenario does), lets it sit
 * idle, reads its RSS, then enqueues `inFlight` jobs that stay in flight (StartOptions.holdMs) and
 * reads it again while they are. The first reading is taken before the adapters are imported: a
 * Node process with tsx, what the system adds is the rest. Answers
 * { baseRssBytes, idleRssBytes, busyRssBytes } over IPC, or { error }.
 */
import { setTimeout as sleep } from 'node:timers/promises';

const baseRssBytes = process.memoryUsage().rss;
const { findSystem } = await import('./systems/index.ts');

/** What the parent passes. */
export interface MemoryChildSpec {
  system: string;
  databaseUrl: string;
  threads: number;
  inFlight: number;
  holdMs: number;
  /** Idle time before the first reading (timers, pools and JIT settle). */
  settleMs: number;
  /** Time after the enqueue before the second reading (every job started). */
  startMs: number;
}

/** What the child answers. */
export type MemoryChildAnswer = { baseRssBytes: number; idleRssBytes: number; busyRssBytes: number } | { error: string };

async function measure(spec: MemoryChildSpec): Promise<MemoryChildAnswer> {
  const adapter = findSystem(spec.system);
  if (!adapter) throw new Error(`no system called ${JSON.stringify(spec.system)}`);
  await adapter.reset(spec.databaseUrl);
  const system = await adapter.start({ databaseUrl: spec.databaseUrl, kind: 'noop', threads: spec.threads, holdMs: spec.holdMs });
  try {
    await sleep(spec.settleMs);
    const idleRssBytes = process.memoryUsage().rss;
    await system.enqueueBatch(Array.from({ length: spec.inFlight }, (_, seq) => ({ seq })));
    await sleep(spec.startMs);
    const busyRssBytes = process.memoryUsage().rss;
    await system.waitForFinished(spec.inFlight, spec.holdMs + 30_000);
    return { baseRssBytes, idleRssBytes, busyRssBytes };
  } finally {
    await system.stop();
  }
}

const spec = JSON.parse(process.argv[2] ?? '{}') as MemoryChildSpec;
const answer = await measure(spec).catch((error: unknown): MemoryChildAnswer => ({ error: error instanceof Error ? (error.stack ?? error.message) : String(error) }));
await new Promise<void>((resolve) => (process.send ? process.send(answer, () => resolve()) : resolve()));
process.exit(0);
