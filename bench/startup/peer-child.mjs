/**
 * One start of a peer in a fresh process (scenario 7, bench/scenarios/startup.ts), measured as
 * spindle-child.mjs measures spindle: import the package, then from the call that starts it
 * (graphile-worker's run() with a task list; pg-boss's start(), then its work() loops) to its first
 * job, which was queued before the process started. Two moments: the handler returned, and the
 * statement that records the job done was answered (graphile-worker deletes the row, pg-boss sets
 * it 'completed'), seen by wrapping the peer's own pg client (trace.mjs). Plain JavaScript.
 *
 * argv[2] is a JSON PeerChildSpec (see startup.ts); the answer goes back over IPC.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { cpuNow, cpuSpent, createTrace, now, tracePg } from './trace.mjs';

const spec = JSON.parse(process.argv[2] ?? '{}');
const mainAt = now();
const FINISH_TIMEOUT_MS = 30_000;
/** The statement each peer records a finished job with. */
const COMPLETION = {
  'graphile-worker': /delete from .*_private_jobs/i,
  'pg-boss': /SET completed_on = now\(\)/i,
};

async function load(entry, member) {
  const namespace = await import(pathToFileURL(entry).href);
  return member in namespace ? namespace : namespace.default;
}

async function measure() {
  const importStart = now();
  const lib = await load(spec.entry, spec.system === 'graphile-worker' ? 'run' : 'default');
  const importEnd = now();
  const { default: pg } = await import(pathToFileURL(createRequire(spec.entry).resolve('pg')).href);
  const trace = createTrace();
  tracePg(pg, trace);

  let handlerStart;
  let handlerEnd;
  let handled;
  const done = new Promise((resolve) => {
    handled = resolve;
  });
  const handler = async () => {
    handlerStart ??= now();
    handlerEnd ??= now();
    handled();
  };

  let callAt;
  let returnedAt;
  let cpuAtCall;
  if (spec.system === 'graphile-worker') {
    cpuAtCall = cpuNow();
    callAt = now();
    await lib.run({
      connectionString: spec.databaseUrl,
      concurrency: spec.concurrency,
      noHandleSignals: true,
      taskList: { [spec.task]: handler },
    });
    returnedAt = now();
  } else {
    const PgBoss = lib.default ?? lib;
    const boss = new PgBoss({ connectionString: spec.databaseUrl, schema: spec.schema, schedule: false });
    boss.on('error', () => {});
    cpuAtCall = cpuNow();
    callAt = now();
    await boss.start();
    for (let i = 0; i < spec.loops; i++) {
      await boss.work(spec.task, { batchSize: spec.batchSize, pollingIntervalSeconds: spec.pollingIntervalSeconds }, handler);
    }
    returnedAt = now();
  }

  let timer;
  const timedOut = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the first job did not finish within ${FINISH_TIMEOUT_MS} ms`)), FINISH_TIMEOUT_MS);
  });
  await Promise.race([done, timedOut]);
  // The completion statement is sent right after the handler returns; wait for its answer.
  let writtenAt;
  while (writtenAt === undefined) {
    const q = trace.queries.find((e) => e.start >= handlerEnd && COMPLETION[spec.system].test(e.sql) && e.end !== undefined);
    if (q) writtenAt = q.end;
    else await Promise.race([new Promise((resolve) => setTimeout(resolve, 1)), timedOut]);
  }
  // Read up to a millisecond after the answer (the loop above polls).
  const cpu = cpuSpent(cpuAtCall, cpuNow());
  clearTimeout(timer);
  return {
    ok: true,
    processStart: performance.timeOrigin,
    mainAt,
    importStart,
    importEnd,
    callAt,
    returnedAt,
    handledAt: handlerEnd,
    writtenAt,
    cpu,
  };
}

const answer = await measure().catch((error) => ({ ok: false, error: error?.stack ?? String(error) }));
// Not stopped gracefully: its job is done and recorded, and the next run resets nothing it left.
process.send?.(answer, () => process.exit(0));
if (!process.send) {
  process.stdout.write(`${JSON.stringify(answer)}\n`);
  process.exit(0);
}
