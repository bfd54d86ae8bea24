/** What scenario 7 (bench/scenarios/startup.ts) measures and reports: its variants, goals and import targets, shared with the report. */

/** Threads (spindle), concurrency (graphile-worker), work() loops (pg-boss). */
export const STARTUP_THREADS = 2;

/** Goals of issue 20: from the startSupervisor() call to the first job finished, at most `limitMs`, on 2 cores. */
export const STARTUP_GOALS = [
  { variant: 'libJs', language: 'JavaScript', limitMs: 150 },
  { variant: 'libTs', language: 'TypeScript', limitMs: 300 },
] as const;

/** The measured variants, in the order they take turns; the traced ones feed the breakdown only. */
export const STARTUP_VARIANTS = [
  { id: 'libJs', label: 'spindle startSupervisor(), JavaScript module' },
  { id: 'libTs', label: 'spindle startSupervisor(), TypeScript module' },
  { id: 'cliJs', label: 'spindle start (CLI), JavaScript module' },
  { id: 'cliTs', label: 'spindle start (CLI), TypeScript module' },
  { id: 'graphile', label: 'graphile-worker run()' },
  { id: 'pgBoss', label: 'pg-boss start() + work()' },
  { id: 'libJsTraced', label: 'spindle startSupervisor(), JavaScript, traced' },
  { id: 'libTsTraced', label: 'spindle startSupervisor(), TypeScript, traced' },
  { id: 'cliJsTraced', label: 'spindle start (CLI), JavaScript, traced' },
  { id: 'cliTsTraced', label: 'spindle start (CLI), TypeScript, traced' },
] as const;

/** One variant's id. */
export type StartupVariant = (typeof STARTUP_VARIANTS)[number]['id'];

/** The variants of the results table (not the traced ones). */
export const STARTUP_ROWS: readonly { id: StartupVariant; label: string }[] = STARTUP_VARIANTS.filter((v) => !v.id.endsWith('Traced'));

/** Modules whose import is timed on its own, each in a fresh process (bare names resolved from dist/, as spindle loads them). */
export const STARTUP_IMPORTS: readonly { key: string; label: string; specifier: string }[] = [
  { key: 'pg', label: 'pg', specifier: 'pg' },
  { key: 'pino', label: 'pino', specifier: 'pino' },
  { key: 'pinoPretty', label: 'pino-pretty', specifier: 'pino-pretty' },
  { key: 'piscina', label: 'piscina', specifier: 'piscina' },
  { key: 'promClient', label: 'prom-client', specifier: 'prom-client' },
  { key: 'eventemitter3', label: 'eventemitter3', specifier: 'eventemitter3' },
  { key: 'distClient', label: 'dist/client.js (createClient and what it imports)', specifier: './client.js' },
  { key: 'distStart', label: 'dist/start.js (startSupervisor and what it imports)', specifier: './start.js' },
  { key: 'distIndex', label: "dist/index.js (the package: import from 'spindle')", specifier: './index.js' },
  { key: 'distCli', label: 'dist/cli/main.js (the CLI, before it loads its command)', specifier: './cli/main.js' },
];

/** What a worker thread costs before a job runs, measured apart (thread-child.mjs), by metric key. */
export const STARTUP_THREAD_COSTS: readonly { key: string; label: string }[] = [
  { key: 'thread_threadStartMs', label: 'a worker thread: new Worker() to its first line' },
  { key: 'thread_jsImportMs', label: 'in it: import the JavaScript worker module' },
  { key: 'thread_tsxRegisterMs', label: "another thread: register tsx (dist/pool/register-tsx.mjs, as spindle's threads do)" },
  { key: 'thread_tsImportMs', label: 'in it: then import the TypeScript worker module through tsx' },
];
