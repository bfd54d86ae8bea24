/**
 * The runs of scenario 7 (bench/scenarios/startup.ts): the app folders and the database they start
 * on, one start of each variant in a fresh process (the children in this folder), and the costs
 * measured apart (imports, a worker thread). Every figure is read here from what the children
 * report, or from outside them (the NOTIFY this process receives, /proc for `spindle start`).
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import type { Metrics } from '../scenarios/types.ts';
import { percentile } from '../stats.ts';
import { graphileWorker } from '../systems/graphile-worker.ts';
import { importPeer, peerMissing } from '../systems/packages.ts';
import { dropSchema } from '../systems/postgres.ts';
import { wallClockMs } from '../work.ts';
import { cliBreakdown, libraryBreakdown, type Span } from './breakdown.ts';
import { STARTUP_IMPORTS, STARTUP_THREADS, type StartupVariant } from './figures.ts';
import type { CliTrace, CpuSpent, JobStamps, PeerChildAnswer, PeerChildSpec, SpindleChildAnswer, SpindleChildSpec } from './protocol.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIST_ENTRY = join(ROOT, 'dist', 'index.js');
const DIST_BIN = join(ROOT, 'dist', 'cli', 'bin.js');
const CHILDREN = new URL('./', import.meta.url);
const SPINDLE_CHILD = fileURLToPath(new URL('spindle-child.mjs', CHILDREN));
const PEER_CHILD = fileURLToPath(new URL('peer-child.mjs', CHILDREN));
const IMPORT_CHILD = fileURLToPath(new URL('import-child.mjs', CHILDREN));
const THREAD_CHILD = fileURLToPath(new URL('thread-child.mjs', CHILDREN));
const TRACE_PRELOAD = new URL('trace-preload.mjs', CHILDREN).href;
/** Resolves the peers from bench/, where `npm run bench:install` puts them. */
const fromBench = createRequire(new URL('../package.json', import.meta.url));

const RUN_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;
/** The job type (the worker module's file name), graphile-worker's task and pg-boss's queue. */
const JOB = 'first';
const PG_BOSS_SCHEMA = 'pgboss';
/** As the pg-boss adapter (bench/systems/pg-boss.ts): batchSize 100, its minimum polling interval. */
export const PG_BOSS_WORK = { loops: STARTUP_THREADS, batchSize: 100, pollingIntervalSeconds: 0.5 };

/** The worker module in JavaScript: it returns its job thread's times (JobStamps). */
const WORKER_JS = `// The job of spindle's startup benchmark (bench/scenarios/startup.ts): it reports when this module
// was loaded in the job thread that runs it, and when the handler ran.
const now = () => performance.timeOrigin + performance.now();
const loadedAt = now();

export default async function first() {
  const handlerStart = now();
  return { loadedAt, handlerStart, handlerEnd: now() };
}
`;

/** The same in TypeScript, as a user writes one (a type import from spindle, annotations). */
const WORKER_TS = `// The job of spindle's startup benchmark (bench/scenarios/startup.ts): it reports when this module
// was loaded in the job thread that runs it, and when the handler ran.
import type { JobContext } from 'spindle';

interface Stamps {
  loadedAt: number;
  handlerStart: number;
  handlerEnd: number;
}

const now = (): number => performance.timeOrigin + performance.now();
const loadedAt: number = now();

export default async function first(_input: Record<string, unknown>, _ctx: JobContext): Promise<Stamps> {
  const handlerStart = now();
  return { loadedAt, handlerStart, handlerEnd: now() };
}
`;

type Language = 'js' | 'ts';

/** One run of one variant: ms from its start call (`spindle start`: from the spawn). */
export interface RunRecord {
  /** To the first job finished: its outcome written (spindle: the NOTIFY; peers: the statement answered), ms. */
  written: number;
  /** To its handler's end as the runtime saw it (spindle: job:finished; peers: the handler returned), ms. */
  handled?: number;
  /** The start call returned (startSupervisor(), run(), start() + work()), ms. */
  returned?: number;
  /** Importing the package, in the child, before the call. */
  importMs?: number;
  /** From spawning the process to the job written. */
  fromSpawn: number;
  /** From spawning the process to its first line of JavaScript (node's own start), children that report it. */
  bootMs?: number;
  /** A graceful stop (stop() in the child; SIGTERM for the CLI). */
  stopMs?: number;
  /** CPU from the start call (the CLI: the spawn) to the job written. */
  cpu?: CpuSpent;
  /** Traced runs: the phases (library: ms from the call; CLI: ms from the spawn). */
  phases?: Record<string, Span>;
  marks?: Record<string, number>;
}

/** What the runs share: the database, the app folders, this process's LISTEN connection. */
export interface Bench {
  databaseUrl: string;
  postgresPort: string;
  /** An app folder per language: package.json ("type": "module"), workers/first.(js|ts). */
  apps: Record<Language, string>;
  /** LISTEN spindle_finished, and the queries of this process. */
  db: pg.Client;
  /** Who waits for which job's NOTIFY (by job id), told the moment it arrives. */
  finished: Map<string, (at: number) => void>;
  pgBoss?: PgBossSender;
  graphile: boolean;
  /** Where traced CLI runs write their trace. */
  traceFile: string;
}

/** The part of pg-boss this process uses to queue its job (see packages.ts). */
interface PgBossSender {
  start(): Promise<unknown>;
  stop(options: { graceful: boolean; wait: boolean }): Promise<void>;
  createQueue(name: string): Promise<void>;
  send(name: string, data: object): Promise<string | null>;
  on(event: 'error', listener: (error: Error) => void): unknown;
}
type PgBossClass = new (options: {
  connectionString: string;
  schema: string;
  schedule: boolean;
  supervise: boolean;
}) => PgBossSender;

/** Why dist/ cannot be measured (not built), or undefined. */
export async function distMissing(): Promise<string | undefined> {
  for (const file of [DIST_ENTRY, DIST_BIN]) {
    try {
      await stat(file);
    } catch {
      return `${file} is missing: run \`npm run build\` first (the scenario measures the compiled package, as a user installs it)`;
    }
  }
  return undefined;
}

/** When dist/ was built, and whether a file of src/ is newer (then dist/ may not be the source of this checkout). */
export async function distAge(): Promise<{ builtAt: number; newerSources: string[] }> {
  const builtAt = (await stat(DIST_ENTRY)).mtimeMs;
  const newer: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if ((await stat(path)).mtimeMs > builtAt) newer.push(path.slice(ROOT.length));
    }
  };
  await walk(join(ROOT, 'src'));
  return { builtAt, newerSources: newer.sort() };
}

/** The environment of a measured process: no NODE_OPTIONS (no tsx), none of spindle's settings but those given. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key === 'NODE_OPTIONS' || key.startsWith('SPINDLE_') || key === 'DATABASE_URL') continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

/** Collects the last bytes a child wrote, for errors; and, when asked, all of its stderr lines. */
function collect(child: ChildProcess): { tail(): string; lines(): string[] } {
  let tail = '';
  let err = '';
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString()).slice(-4_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', (chunk: Buffer) => {
    keep(chunk);
    if (err.length < 200_000) err += chunk.toString();
  });
  return { tail: () => tail, lines: () => err.split('\n').filter(Boolean) };
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

/** Kills `child` if it has not exited within `ms`. */
async function exitOrKill(child: ChildProcess, ms: number): Promise<void> {
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  await exited(child);
  clearTimeout(timer);
}

/** Forks a plain-JavaScript child (no execArgv: nothing inherited from this tsx process) and waits for its one answer. */
async function forkForAnswer<T extends { ok: boolean }>(
  script: string,
  arg: unknown,
  cwd: string,
): Promise<{ answer: T; spawnAt: number }> {
  const spawnAt = wallClockMs();
  const child = fork(script, [JSON.stringify(arg)], { cwd, execArgv: [], env: childEnv(), stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  const out = collect(child);
  let answer: T | undefined;
  child.on('message', (message) => {
    answer = message as T;
  });
  await exitOrKill(child, RUN_TIMEOUT_MS);
  if (answer === undefined) throw new Error(`${script} exited (${child.signalCode ?? `code ${child.exitCode}`}) without an answer\n${out.tail()}`);
  if (!answer.ok) throw new Error(`${(answer as unknown as { error: string }).error}\n${out.tail()}`);
  return { answer, spawnAt };
}

async function enqueueSpindle(bench: Bench): Promise<string> {
  const { rows } = await bench.db.query<{ id: string }>(`SELECT spindle.enqueue($1, '{}'::jsonb)::text AS id`, [JOB]);
  return rows[0]!.id;
}

async function jobStamps(bench: Bench, id: string): Promise<JobStamps | undefined> {
  const { rows } = await bench.db.query<{ output: JobStamps | null; state: string }>('SELECT output, state FROM spindle.jobs WHERE id = $1', [id]);
  const row = rows[0];
  if (row?.state !== 'succeeded') throw new Error(`job ${id} ended ${row?.state ?? 'missing'}, not succeeded`);
  return row.output ?? undefined;
}

/**
 * Resolves with the time this process received the job's `spindle_finished` NOTIFY; rejects after
 * RUN_TIMEOUT_MS, or at once when `abandon()` is called (the run failed another way).
 */
function whenWritten(bench: Bench, id: string): { written: Promise<number>; abandon(): void } {
  let abandon = () => {};
  const written = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      bench.finished.delete(id);
      reject(new Error(`job ${id} was not finished within ${RUN_TIMEOUT_MS} ms`));
    }, RUN_TIMEOUT_MS);
    abandon = () => {
      clearTimeout(timer);
      bench.finished.delete(id);
      reject(new Error(`job ${id}: the run was abandoned`));
    };
    bench.finished.set(id, (at) => {
      clearTimeout(timer);
      bench.finished.delete(id);
      resolve(at);
    });
  });
  written.catch(() => {});
  return { written, abandon };
}

async function runLibrary(bench: Bench, language: Language, traced: boolean): Promise<RunRecord> {
  const jobId = await enqueueSpindle(bench);
  const spec: SpindleChildSpec = {
    entry: DIST_ENTRY,
    databaseUrl: bench.databaseUrl,
    workers: join(bench.apps[language], 'workers'),
    concurrency: STARTUP_THREADS,
    jobId,
    traced,
  };
  const { answer, spawnAt } = await forkForAnswer<SpindleChildAnswer>(SPINDLE_CHILD, spec, bench.apps[language]);
  if (!answer.ok) throw new Error(answer.error);
  const stamps = await jobStamps(bench, jobId);
  const record: RunRecord = {
    written: answer.notifiedAt - answer.callAt,
    returned: answer.returnedAt - answer.callAt,
    importMs: answer.importEnd - answer.importStart,
    fromSpawn: answer.notifiedAt - spawnAt,
    bootMs: answer.mainAt - spawnAt,
    stopMs: answer.stopMs,
    cpu: answer.cpu,
  };
  if (answer.handledAt !== undefined) record.handled = answer.handledAt - answer.callAt;
  if (traced) {
    const { phases, marks } = libraryBreakdown(answer, stamps, spec.workers);
    record.phases = phases;
    record.marks = { ...marks, processStart: answer.processStart - answer.callAt, mainAt: answer.mainAt - answer.callAt, spawn: spawnAt - answer.callAt };
  }
  return record;
}

async function runCli(bench: Bench, language: Language, traced: boolean): Promise<RunRecord> {
  const jobId = await enqueueSpindle(bench);
  const { written, abandon } = whenWritten(bench, jobId);
  if (traced) await rm(bench.traceFile, { force: true });
  const args = [...(traced ? ['--import', TRACE_PRELOAD] : []), DIST_BIN, 'start', '--workers', 'workers', '--concurrency', String(STARTUP_THREADS)];
  const env = childEnv({ DATABASE_URL: bench.databaseUrl, ...(traced ? { SPINDLE_BENCH_TRACE: bench.traceFile } : {}) });
  const spawnAt = wallClockMs();
  const child = spawn(process.execPath, args, { cwd: bench.apps[language], env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = collect(child);
  const early = exited(child).then(() => {
    throw new Error(`spindle start exited (${child.signalCode ?? `code ${child.exitCode}`}) before job ${jobId} was finished\n${out.tail()}`);
  });
  let writtenAt: number;
  try {
    writtenAt = await Promise.race([written, early]);
  } catch (error) {
    abandon();
    child.kill('SIGKILL');
    throw error;
  }
  early.catch(() => {});
  const cpu = child.pid === undefined ? undefined : childCpu(child.pid);
  const stopStart = wallClockMs();
  child.kill('SIGTERM');
  await exitOrKill(child, STOP_TIMEOUT_MS);
  const stopMs = wallClockMs() - stopStart;
  const stamps = await jobStamps(bench, jobId);
  const record: RunRecord = { written: writtenAt - spawnAt, fromSpawn: writtenAt - spawnAt, stopMs };
  if (cpu) record.cpu = cpu;
  const started = out.lines().map(parseLogLine).find((l) => l?.msg === 'supervisor started');
  if (started) record.returned = started.time - spawnAt;
  if (traced) {
    const cli = JSON.parse(await readFile(bench.traceFile, 'utf8')) as CliTrace;
    record.phases = cliBreakdown(spawnAt, writtenAt, cli, stamps, bench.postgresPort);
  }
  return record;
}

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on Linux). */
const USER_HZ = 100;

/**
 * A live child's CPU so far, read from outside (Linux): every thread's, exited ones included
 * (/proc/<pid>/stat, in 10 ms ticks), and its main thread's with its wait for a core (schedstat).
 */
function childCpu(pid: number): CpuSpent | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces): state is the 3rd field, utime the 14th, stime the 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpu: CpuSpent = { processMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / USER_HZ };
    const [run, wait] = readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ').map(Number);
    if (Number.isFinite(run) && Number.isFinite(wait)) Object.assign(cpu, { mainMs: run! / 1e6, mainWaitMs: wait! / 1e6 });
    return cpu;
  } catch {
    return undefined;
  }
}

function parseLogLine(line: string): { msg: string; time: number } | undefined {
  try {
    const parsed = JSON.parse(line) as { msg?: unknown; time?: unknown };
    return typeof parsed.msg === 'string' && typeof parsed.time === 'number' ? { msg: parsed.msg, time: parsed.time } : undefined;
  } catch {
    return undefined;
  }
}

async function runPeer(bench: Bench, system: PeerChildSpec['system']): Promise<RunRecord> {
  if (system === 'graphile-worker') {
    await bench.db.query(`SELECT graphile_worker.add_job($1, '{}'::json)`, [JOB]);
  } else {
    await bench.pgBoss!.send(JOB, {});
  }
  const spec: PeerChildSpec = {
    system,
    entry: fromBench.resolve(system),
    databaseUrl: bench.databaseUrl,
    concurrency: STARTUP_THREADS,
    task: JOB,
    ...(system === 'pg-boss' ? { schema: PG_BOSS_SCHEMA, ...PG_BOSS_WORK } : {}),
  };
  const { answer, spawnAt } = await forkForAnswer<PeerChildAnswer>(PEER_CHILD, spec, bench.apps.js);
  if (!answer.ok) throw new Error(answer.error);
  return {
    written: answer.writtenAt - answer.callAt,
    handled: answer.handledAt - answer.callAt,
    returned: answer.returnedAt - answer.callAt,
    importMs: answer.importEnd - answer.importStart,
    fromSpawn: answer.writtenAt - spawnAt,
    bootMs: answer.mainAt - spawnAt,
    cpu: answer.cpu,
  };
}

export function runVariant(bench: Bench, id: StartupVariant): Promise<RunRecord> {
  switch (id) {
    case 'libJs':
      return runLibrary(bench, 'js', false);
    case 'libTs':
      return runLibrary(bench, 'ts', false);
    case 'cliJs':
      return runCli(bench, 'js', false);
    case 'cliTs':
      return runCli(bench, 'ts', false);
    case 'graphile':
      return runPeer(bench, 'graphile-worker');
    case 'pgBoss':
      return runPeer(bench, 'pg-boss');
    case 'libJsTraced':
      return runLibrary(bench, 'js', true);
    case 'libTsTraced':
      return runLibrary(bench, 'ts', true);
    case 'cliJsTraced':
      return runCli(bench, 'js', true);
    case 'cliTsTraced':
      return runCli(bench, 'ts', true);
  }
}

/** Runs a plain-JavaScript script in a fresh process; resolves with the JSON of its last stdout line. */
async function runForJson<T>(args: string[]): Promise<T> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  const out = collect(child);
  let stdout = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  await exitOrKill(child, RUN_TIMEOUT_MS);
  const last = stdout.trim().split('\n').at(-1);
  if (child.exitCode !== 0 || !last) throw new Error(`${args.join(' ')} failed\n${out.tail()}`);
  return JSON.parse(last) as T;
}

/**
 * Costs measured apart, each in fresh processes, in turns, medians in ms: `import()` of the package,
 * its parts and its dependencies (with an empty module's import as the floor), and what a worker
 * thread costs before a job runs (start; import of the JavaScript module; tsx registered as spindle's
 * threads do it, then the TypeScript module).
 */
export async function moduleCosts(bench: Bench, rounds: number): Promise<Metrics> {
  const fromDist = createRequire(DIST_ENTRY);
  const urls: [string, string][] = [
    ['empty', 'data:text/javascript,export {}'],
    ...STARTUP_IMPORTS.map(({ key, specifier }): [string, string] => [
      key,
      specifier.startsWith('.') ? new URL(specifier, pathToFileURL(DIST_ENTRY)).href : pathToFileURL(fromDist.resolve(specifier)).href,
    ]),
  ];
  const thread = JSON.stringify({
    registerTsx: new URL('pool/register-tsx.mjs', pathToFileURL(DIST_ENTRY)).href,
    jsModule: pathToFileURL(join(bench.apps.js, 'workers', `${JOB}.js`)).href,
    tsModule: pathToFileURL(join(bench.apps.ts, 'workers', `${JOB}.ts`)).href,
  });
  const samples = new Map<string, number[]>();
  const add = (key: string, ms: number) => samples.set(key, [...(samples.get(key) ?? []), ms]);
  for (let round = 0; round < rounds; round++) {
    for (const [key, url] of urls) {
      const { ms, packages } = await runForJson<{ ms: number; packages: string[] }>([IMPORT_CHILD, url]);
      add(`import_${key}Ms`, ms);
      // Which of the dependencies timed alone this import loaded (1) or not (0).
      for (const dependency of STARTUP_IMPORTS.filter((d) => !d.specifier.startsWith('.'))) {
        add(`import_${key}Loads_${dependency.key}`, packages.includes(dependency.specifier) ? 1 : 0);
      }
    }
    const costs = await runForJson<Record<string, number>>([THREAD_CHILD, thread]);
    for (const [key, ms] of Object.entries(costs)) add(`thread_${key}`, ms);
  }
  return Object.fromEntries([...samples].map(([key, list]) => [key, percentile(list, 50)]));
}

export async function prepare(databaseUrl: string, log: (line: string) => void): Promise<Bench> {
  const root = await mkdtemp(join(tmpdir(), 'spindle-startup-'));
  const apps = { js: join(root, 'js'), ts: join(root, 'ts') };
  for (const [language, dir] of Object.entries(apps) as [Language, string][]) {
    await mkdir(join(dir, 'workers'), { recursive: true });
    await writeFile(join(dir, 'package.json'), `${JSON.stringify({ name: `startup-${language}`, private: true, type: 'module' }, null, 2)}\n`);
    await writeFile(join(dir, 'workers', `${JOB}.${language}`), language === 'js' ? WORKER_JS : WORKER_TS);
  }
  // spindle's schema, migrated by the compiled CLI (the version under test), as `spindle migrate` does.
  await dropSchema(databaseUrl, 'spindle');
  const migrate = spawn(process.execPath, [DIST_BIN, 'migrate'], { cwd: apps.js, env: childEnv({ DATABASE_URL: databaseUrl }), stdio: ['ignore', 'pipe', 'pipe'] });
  const migrateOut = collect(migrate);
  await exitOrKill(migrate, RUN_TIMEOUT_MS);
  if (migrate.exitCode !== 0) throw new Error(`spindle migrate failed\n${migrateOut.tail()}`);

  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  const finished = new Map<string, (at: number) => void>();
  db.on('notification', (message) => {
    if (message.channel !== 'spindle_finished' || !message.payload) return;
    const at = wallClockMs();
    for (const id of message.payload.split(',')) finished.get(id)?.(at);
  });
  await db.query('LISTEN spindle_finished');

  const bench: Bench = {
    databaseUrl,
    postgresPort: new URL(databaseUrl).port || '5432',
    apps,
    db,
    finished,
    graphile: false,
    traceFile: join(root, 'cli-trace.json'),
  };
  const graphileMissing = peerMissing('graphile-worker');
  if (graphileMissing) log(`graphile-worker not measured: ${graphileMissing}`);
  else {
    await graphileWorker.reset(databaseUrl);
    bench.graphile = true;
  }
  const pgBossMissing = peerMissing('pg-boss');
  if (pgBossMissing) log(`pg-boss not measured: ${pgBossMissing}`);
  else {
    await dropSchema(databaseUrl, PG_BOSS_SCHEMA);
    const { default: PgBoss } = await importPeer<{ default: PgBossClass }>('pg-boss', 'default');
    // Only to queue jobs: no maintenance, no cron in this process.
    const boss = new PgBoss({ connectionString: databaseUrl, schema: PG_BOSS_SCHEMA, schedule: false, supervise: false });
    boss.on('error', () => {});
    await boss.start();
    await boss.createQueue(JOB);
    bench.pgBoss = boss;
  }
  return bench;
}

export async function release(bench: Bench): Promise<void> {
  await bench.pgBoss?.stop({ graceful: false, wait: true }).catch(() => {});
  await bench.db.end().catch(() => {});
  await rm(join(bench.apps.js, '..'), { recursive: true, force: true });
}
