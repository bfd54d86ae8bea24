/**
 * `spindle demo`: a supervisor on the embedded database runs a batch of the example CPU-heavy jobs
 * while the terminal shows each one moving through its states, then a summary.
 */
import { fileURLToPath } from 'node:url';
import { createClient } from '../client.ts';
import type { SupervisorOptions } from '../config.ts';
import type { Job, JobState } from '../job.ts';
import { startSupervisor } from '../start.ts';
import { intFlag, parse } from './args.ts';
import { bar, duration, table } from './format.ts';

const WORKERS_DIR = fileURLToPath(new URL('../../workers/', import.meta.url));

/** The batch: real work of a few hundred milliseconds each. */
function demoJobs(count: number): { type: string; input: unknown }[] {
  const kinds = [
    (i: number) => ({ type: 'primes', input: { limit: 40_000_000 + i * 1_000_000 } }),
    (i: number) => ({ type: 'hashchain', input: { seed: `spindle-${i}`, rounds: 150_000 } }),
    (i: number) => ({ type: 'mandelbrot', input: { width: 640, height: 480, maxIter: 400, zoom: 1 + i } }),
    (i: number) => ({ type: 'wordfreq', input: { words: 600_000, seed: i, top: 5 } }),
  ];
  return Array.from({ length: count }, (_, i) => kinds[i % kinds.length]!(i));
}

interface Row {
  id: string;
  type: string;
  state: JobState | 'claimed';
  attempt: number;
  progress: number | null;
  message: string | null;
  thread: number | null;
  ms: number | null;
}

export async function demoCommand(args: string[]): Promise<number> {
  const { values } = parse('demo', args);
  const count = intFlag('jobs', values.jobs, 1, 10_000) ?? 16;
  const handle = await startSupervisor({
    databaseUrl: values['database-url'],
    stateDir: values['state-dir'],
    workers: WORKERS_DIR,
    concurrency: intFlag('concurrency', values.concurrency, 1, 1_024),
    logLevel: (values['log-level'] as SupervisorOptions['logLevel']) ?? 'warn',
    // The advice of a taken debug socket names these flags (ops/debug-socket-file.ts).
    socket: values['no-socket'] ? false : values.socket,
  });
  const client = createClient({ connectionString: handle.databaseUrl, maxConnections: 2 });
  // Ctrl-C stops the demo's supervisor, and with it the embedded server if the demo was its last user.
  const onSignal = (signal: NodeJS.Signals) => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    void client
      .close()
      .catch(() => {})
      .then(() => handle.stop())
      .finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const tty = process.stdout.isTTY === true;
  try {
    const rows = new Map<string, Row>();
    // The pool's thread numbers (1 to the concurrency) that ran a job.
    const threads = new Set<number>();
    const events = handle.supervisor.events;
    const started = performance.now();
    let finished = 0;
    let allDone: () => void = () => {};
    const done = new Promise<void>((resolve) => (allDone = resolve));

    events.on('job:started', (e) => {
      const row = rows.get(e.id);
      if (!row) return;
      threads.add(e.thread);
      Object.assign(row, { state: 'running', attempt: e.attempt, thread: e.thread });
      if (!tty) console.log(`job ${e.id} ${e.type} running on thread ${e.thread}`);
    });
    events.on('job:progress', (e) => {
      const row = rows.get(e.id);
      if (row) Object.assign(row, { progress: e.percent, message: e.message });
    });
    events.on('job:finished', (e) => {
      const row = rows.get(e.id);
      if (!row) return;
      const final = e.state !== null && e.state !== 'queued';
      Object.assign(row, { state: e.state ?? 'queued', ms: e.ms });
      if (e.outcome === 'succeeded') row.progress = 100;
      if (!tty) console.log(`job ${e.id} ${e.type} ${e.outcome} in ${duration(e.ms)}`);
      if (final && ++finished === rows.size) allDone();
    });

    const jobs = await client.enqueueMany(demoJobs(count));
    for (const job of jobs) {
      rows.set(job.id, { id: job.id, type: job.type, state: 'queued', attempt: 0, progress: null, message: null, thread: null, ms: null });
    }
    const database = values['database-url'] ? '--database-url' : handle.config.databaseUrl ? 'DATABASE_URL' : `embedded PostgreSQL in ${handle.config.stateDir}/pg`;
    console.log(`spindle demo: ${jobs.length} CPU-heavy jobs on ${handle.config.concurrency} worker threads (database: ${database})`);

    let drawn = 0;
    const draw = () => {
      const text = render([...rows.values()]);
      if (drawn) process.stdout.write(`\x1b[${drawn}A\x1b[0J`);
      process.stdout.write(`${text}\n`);
      drawn = text.split('\n').length;
    };
    const timer = tty ? setInterval(draw, 100) : undefined;
    await done;
    if (timer) clearInterval(timer);
    if (tty) draw();
    const wallMs = performance.now() - started;

    // The last outcomes may still be on their way to the database: wait for each row to be final.
    const final: Job[] = [];
    for (const job of jobs) final.push(await client.waitFor(job.id, { timeoutMs: 30_000 }));
    const states = new Map<string, number>();
    for (const job of final) states.set(job.state, (states.get(job.state) ?? 0) + 1);
    const pool = handle.snapshot().pool;
    console.log('');
    console.log(
      table(
        ['JOBS', 'STATES', 'WALL TIME', 'JOBS/S', 'THREADS USED', 'POOL UTILISATION'],
        [[
          final.length,
          [...states].map(([s, n]) => `${s} ${n}`).join(', '),
          duration(wallMs),
          (final.length / (wallMs / 1_000)).toFixed(1),
          `${threads.size} of ${handle.config.concurrency}`,
          `${Math.round(pool.utilisation * 100)}%`,
        ]],
      ),
    );
    const ok = final.every((j) => j.state === 'succeeded');
    if (!ok) console.log('some jobs did not succeed: see `spindle jobs --state failed`');
    return ok ? 0 : 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await client.close();
    await handle.stop();
  }
}

function render(rows: Row[]): string {
  return table(
    ['ID', 'TYPE', 'STATE', 'THREAD', 'PROGRESS', 'TIME', 'MESSAGE'],
    rows.map((r) => [r.id, r.type, r.state, r.thread ?? '-', bar(r.progress, 20), duration(r.ms), r.message ?? '']),
  );
}
