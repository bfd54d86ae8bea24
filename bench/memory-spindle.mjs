// spindle's process for the memory scenario (issue 25), as a user runs it: the compiled package
// (dist/) on plain Node, no tsx, a JavaScript worker module. Started by scenarios/memory.ts; argv[2]
// is JSON { databaseUrl, threads, holdMs, settleMs, startMs }. Reads its RSS before importing
// spindle (the bare process), idle with the supervisor and a client started, and with `threads`
// jobs in flight; answers { baseRssBytes, idleRssBytes, busyRssBytes } or { error } over IPC.
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const TYPE = 'bench-hold';
const HOLD = fileURLToPath(new URL('./workers/hold.mjs', import.meta.url));

async function measure(spec) {
  const baseRssBytes = process.memoryUsage().rss;
  const { createClient, startSupervisor } = await import('../dist/index.js');
  const supervisor = await startSupervisor({
    databaseUrl: spec.databaseUrl,
    workers: { [TYPE]: HOLD },
    concurrency: spec.threads,
    logLevel: 'silent',
    socket: false,
  });
  const client = createClient({ connectionString: spec.databaseUrl });
  try {
    await sleep(spec.settleMs);
    const idleRssBytes = process.memoryUsage().rss;
    await client.enqueueMany(Array.from({ length: spec.threads }, () => ({ type: TYPE, input: { ms: spec.holdMs } })));
    const deadline = Date.now() + spec.holdMs / 2;
    while (supervisor.supervisor.jobs().length < spec.threads) {
      if (Date.now() > deadline) throw new Error(`fewer than ${spec.threads} jobs in flight after ${spec.holdMs / 2} ms`);
      await sleep(20);
    }
    await sleep(spec.startMs);
    const busyRssBytes = process.memoryUsage().rss;
    return { baseRssBytes, idleRssBytes, busyRssBytes };
  } finally {
    // The hold jobs return at the stop's signal.
    await supervisor.stop();
    await client.close();
  }
}

const spec = JSON.parse(process.argv[2] ?? '{}');
const answer = await measure(spec).catch((error) => ({ error: error instanceof Error ? (error.stack ?? error.message) : String(error) }));
await new Promise((resolve) => (process.send ? process.send(answer, () => resolve()) : resolve()));
process.exit(0);
