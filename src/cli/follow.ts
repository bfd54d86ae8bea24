/** Follows one job to its end: a live progress bar on a TTY, plain lines otherwise. */
import type { Client } from '../client.ts';
import { bar } from './format.ts';

/** Exit codes of `enqueue --wait` and `watch`: 0 succeeded, 1 failed, 3 timed out, 4 cancelled. */
const EXIT_CODES = { succeeded: 0, failed: 1, timed_out: 3, cancelled: 4 } as const;

export async function followJob(client: Client, id: string, options: { json?: boolean }): Promise<number> {
  const tty = process.stderr.isTTY === true && !options.json;
  let lastLine = '';
  for await (const update of client.watch(id)) {
    const { job } = update;
    if (options.json || (job.state !== 'queued' && job.state !== 'running')) continue;
    const line = `${job.type} ${job.id} [${job.state}] ${bar(update.progress)}${update.message ? ` ${update.message}` : ''}`;
    if (line === lastLine) continue;
    lastLine = line;
    if (tty) process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 100) - 1)}`);
    else process.stderr.write(`${line}\n`);
  }
  if (tty && lastLine) process.stderr.write('\r\x1b[2K');
  const job = await client.get(id);
  if (!job) throw new Error(`no job ${id}`);
  if (options.json) {
    process.stdout.write(`${JSON.stringify(job, null, 2)}\n`);
  } else if (job.state === 'succeeded') {
    process.stdout.write(`${JSON.stringify(job.output, null, 2)}\n`);
  } else {
    const reason = job.error?.message ?? job.cancelReason ?? '';
    process.stderr.write(`job ${job.id} ${job.state.replace('_', ' ')}${reason ? `: ${reason}` : ''}\n`);
  }
  return EXIT_CODES[job.state as keyof typeof EXIT_CODES] ?? 1;
}
