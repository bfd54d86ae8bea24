/**
 * One start of spindle as a library, in a fresh process (scenario 7, bench/scenarios/startup.ts):
 * imports the compiled package (dist/index.js, as `import ... from 'spindle'` gets it), opens a
 * LISTEN on `spindle_finished`, then calls startSupervisor() with one job already queued and
 * reports when that job finished. Plain JavaScript run by plain node: nothing here loads tsx.
 *
 * argv[2] is a JSON StartupChildSpec (see startup.ts); the answer goes back over IPC.
 * A traced run also records pg, socket, server, fs and thread events (trace.mjs), installed after
 * the import so that the import is timed as a user's app pays it.
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { cpuNow, cpuSpent, createTrace, now, traceFs, tracePg, traceSockets, traceThreads } from './trace.mjs';

const spec = JSON.parse(process.argv[2] ?? '{}');
const mainAt = now();
const FINISH_TIMEOUT_MS = 30_000;

async function measure() {
  const importStart = now();
  const spindle = await import(pathToFileURL(spec.entry).href);
  const importEnd = now();
  // The pg that spindle itself loaded (already in the module cache: importing it costs nothing).
  const { default: pg } = await import(pathToFileURL(createRequire(spec.entry).resolve('pg')).href);

  const listener = new pg.Client({ connectionString: spec.databaseUrl });
  await listener.connect();
  let notifiedAt;
  let cpuAtNotify;
  const notified = new Promise((resolve) => {
    listener.on('notification', (message) => {
      if (message.channel !== 'spindle_finished' || !message.payload?.split(',').includes(spec.jobId)) return;
      if (notifiedAt === undefined) {
        notifiedAt = now();
        cpuAtNotify = cpuNow();
      }
      resolve();
    });
  });
  await listener.query('LISTEN spindle_finished');

  const trace = spec.traced ? createTrace() : undefined;
  if (trace) {
    tracePg(pg, trace);
    traceSockets(trace);
    traceFs(trace);
    traceThreads(trace);
  }

  const cpuAtCall = cpuNow();
  const callAt = now();
  const handle = await spindle.startSupervisor({
    databaseUrl: spec.databaseUrl,
    workers: spec.workers,
    concurrency: spec.concurrency,
  });
  const returnedAt = now();
  const seen = {};
  for (const name of ['job:claimed', 'job:started', 'job:finished']) {
    handle.supervisor.events.on(name, (event) => {
      if (String(event.id) === spec.jobId) seen[name] ??= now();
    });
  }
  let timer;
  const timedOut = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`job ${spec.jobId} did not finish within ${FINISH_TIMEOUT_MS} ms`)), FINISH_TIMEOUT_MS);
  });
  await Promise.race([notified, timedOut]);
  clearTimeout(timer);

  const stopStart = now();
  await handle.stop();
  const stopEnd = now();
  await listener.end();
  return {
    ok: true,
    processStart: performance.timeOrigin,
    mainAt,
    importStart,
    importEnd,
    callAt,
    returnedAt,
    claimedAt: seen['job:claimed'],
    startedAt: seen['job:started'],
    handledAt: seen['job:finished'],
    notifiedAt,
    stopMs: stopEnd - stopStart,
    cpu: cpuSpent(cpuAtCall, cpuAtNotify),
    trace,
  };
}

const answer = await measure().catch((error) => ({ ok: false, error: error?.stack ?? String(error) }));
process.send?.(answer, () => process.exit(0));
if (!process.send) {
  process.stdout.write(`${JSON.stringify(answer)}\n`);
  process.exit(0);
}
