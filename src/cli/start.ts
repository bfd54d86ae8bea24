/** `spindle start`: run a supervisor until SIGINT/SIGTERM, then shut down gracefully. */
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SupervisorOptions } from '../config.ts';
import { startSupervisor } from '../start.ts';
import { INT32_MAX, intFlag, parse, PORT_MAX, UsageError } from './args.ts';

export async function startCommand(args: string[]): Promise<number> {
  const { values } = parse('start', args);
  const options: SupervisorOptions = {
    databaseUrl: values['database-url'],
    // The library checks both; flag-names.ts names the flag in its error.
    pooler: values.pooler as SupervisorOptions['pooler'],
    sessionDatabaseUrl: values['session-database-url'],
    stateDir: values['state-dir'],
    workers: values.workers,
    workflows: values.workflows,
    concurrency: intFlag('concurrency', values.concurrency, 1, 1_024),
    queues: values.queues?.split(',').map((q) => q.trim()).filter(Boolean),
    // The library checks the level; flag-names.ts names the flag in its error.
    logLevel: values['log-level'] as SupervisorOptions['logLevel'],
    shutdownTimeoutMs: intFlag('shutdown-timeout', values['shutdown-timeout'], 0, INT32_MAX),
    socket: values['no-socket'] ? false : values.socket,
    debugPort: intFlag('debug-port', values['debug-port'], 0, PORT_MAX),
    metricsPort: intFlag('metrics-port', values['metrics-port'], 0, PORT_MAX),
    metricsHost: values['metrics-host'],
    httpPort: intFlag('http-port', values['http-port'], 0, PORT_MAX),
    httpHost: values['http-host'],
    id: values.id,
  };
  // Before anything starts: a mistyped directory is a one-line error, not a database started for nothing.
  const workers = values.workers ?? process.env.SPINDLE_WORKERS;
  const source = values.workers !== undefined ? '--workers' : workers !== undefined ? 'SPINDLE_WORKERS' : undefined;
  await checkDirectory(source ?? '--workers', workers ?? 'workers', source === undefined ? ' (the default; give --workers DIR)' : '');
  // The default ./workflows may be absent (no workflows); one that was named must exist.
  if (values.workflows !== undefined) await checkDirectory('--workflows', values.workflows);
  // Listened for from before the start: a signal while it starts stops the supervisor gracefully once
  // it has started (jobs may be claimed by then), instead of the default exit that leaves them held.
  const signalled = new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        process.stderr.write(`spindle: second ${signal}, exiting now\n`);
        process.exit(130);
      }
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  const handle = await startSupervisor(options);
  await signalled;
  await handle.stop();
  return 0;
}

/** Throws a usage error naming `source` unless `path` (or a file: URL) is a directory. */
async function checkDirectory(source: string, path: string, note = ''): Promise<void> {
  const full = path.startsWith('file:') ? fileURLToPath(path) : resolve(path);
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(full)).isDirectory();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`${source} must be a directory: ${full} does not exist${note}`);
    throw new UsageError(`${source} must be a readable directory: ${(error as Error).message}`);
  }
  if (!isDirectory) throw new UsageError(`${source} must be a directory: ${full} is not one`);
}
