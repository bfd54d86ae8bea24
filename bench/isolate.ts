/** Bench code in fresh Node processes: child.ts for one run (its answer, with a time limit), and forkTsx for any script. */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Metrics } from './scenarios/types.ts';

/** What the harness asks of a child. */
export interface RunSpec {
  system: string;
  scenario: string;
  run: number;
  quick: boolean;
  threads: number;
  databaseUrl: string;
}

/** What a child answers. */
export type RunOutcome =
  | { ok: true; metrics: Metrics; unfinished: number; setupMs: number }
  | { ok: false; error: string };

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TAIL_BYTES = 4_000;

/**
 * Starts `script` under tsx in a fresh Node process with `arg` (as JSON) and an IPC channel; `tail()`
 * is the last TAIL_BYTES of what it wrote to stdout and stderr, for error messages.
 */
export function forkTsx(script: string, arg: unknown): { child: ChildProcess; tail(): string } {
  const child = fork(script, [JSON.stringify(arg)], {
    cwd: ROOT,
    execArgv: ['--import', import.meta.resolve('tsx')],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-TAIL_BYTES);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { child, tail: () => output };
}

/** Runs `spec` in a fresh Node process; kills it after `timeoutMs`. Never rejects. */
export function runIsolated(spec: RunSpec, timeoutMs: number): Promise<RunOutcome> {
  return new Promise((resolve) => {
    const { child, tail } = forkTsx(CHILD, spec);
    let outcome: RunOutcome | undefined;
    child.on('message', (message) => {
      outcome = message as RunOutcome;
    });
    const timer = setTimeout(() => {
      outcome ??= { ok: false, error: `killed after ${Math.round(timeoutMs / 1000)} s\n${tail()}` };
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(outcome ?? { ok: false, error: `exited (${signal ?? `code ${code}`}) without an answer\n${tail()}` });
    });
  });
}
