/** Starts child.ts for one run and collects its answer, with a time limit. */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { RunOutcome, RunSpec } from './child.ts';

const CHILD = fileURLToPath(new URL('./child.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TAIL_BYTES = 4_000;

/** Runs `spec` in a fresh Node process; kills it after `timeoutMs`. Never rejects. */
export function runIsolated(spec: RunSpec, timeoutMs: number): Promise<RunOutcome> {
  return new Promise((resolve) => {
    const child = fork(CHILD, [JSON.stringify(spec)], {
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
    let outcome: RunOutcome | undefined;
    child.on('message', (message) => {
      outcome = message as RunOutcome;
    });
    const timer = setTimeout(() => {
      outcome ??= { ok: false, error: `killed after ${Math.round(timeoutMs / 1000)} s\n${output}` };
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(outcome ?? { ok: false, error: `exited (${signal ?? `code ${code}`}) without an answer\n${output}` });
    });
  });
}
