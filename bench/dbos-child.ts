/**
 * DBOS Transact's side of scenario 8 (bench/scenarios/workflows.ts), in a process of its own (`node
 * --import tsx`, fork): a workflow of `steps` no-op steps (DBOS.runStep), `runs` of them started one
 * after another with DBOS.startWorkflow, timed from the first start to the last result.
 *   argv[2]: JSON DbosChildSpec; the answer goes back over IPC as a DbosChildAnswer.
 * (The parent imports only its types: importing this file runs it.)
 */
import { importPeer } from './systems/packages.ts';

/** The part of DBOS's API used here (the harness type-checks without the peers installed). */
interface DbosApi {
  DBOS: {
    setConfig(config: { name: string; systemDatabaseUrl: string; logLevel: string }): void;
    runStep<R>(fn: () => Promise<R>, config: { name: string }): Promise<R>;
    registerWorkflow<A extends unknown[], R>(fn: (...args: A) => Promise<R>, config: { name: string }): (...args: A) => Promise<R>;
    startWorkflow<A extends unknown[], R>(fn: (...args: A) => Promise<R>): (...args: A) => Promise<{ getResult(): Promise<R> }>;
    launch(): Promise<void>;
    shutdown(): Promise<void>;
  };
}

export interface DbosChildSpec {
  /** A database of its own (DBOS keeps its system tables there). */
  databaseUrl: string;
  runs: number;
  steps: number;
}

export type DbosChildAnswer = { ok: true; ms: number } | { ok: false; error: string };

async function measure(spec: DbosChildSpec): Promise<number> {
  const { DBOS } = await importPeer<DbosApi>('@dbos-inc/dbos-sdk', 'DBOS');
  DBOS.setConfig({ name: 'spindle-bench', systemDatabaseUrl: spec.databaseUrl, logLevel: 'error' });
  const step = (i: number) => DBOS.runStep(async () => i, { name: `s${i}` });
  const workflow = DBOS.registerWorkflow(
    async (steps: number) => {
      for (let i = 0; i < steps; i++) await step(i);
      return steps;
    },
    { name: 'steps' },
  );
  await DBOS.launch();
  const started = performance.now();
  const handles = [];
  for (let i = 0; i < spec.runs; i++) handles.push(await DBOS.startWorkflow(workflow)(spec.steps));
  await Promise.all(handles.map((h) => h.getResult()));
  const ms = performance.now() - started;
  await DBOS.shutdown();
  return ms;
}

const spec = JSON.parse(process.argv[2] ?? '{}') as DbosChildSpec;
const answer: DbosChildAnswer = await measure(spec).then(
  (ms) => ({ ok: true as const, ms }),
  (error: unknown) => ({ ok: false as const, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
);
process.send?.(answer, () => process.exit(0));
