/** `spindle start`: run a supervisor until SIGINT/SIGTERM, then shut down gracefully. */
import { startSupervisor } from '../start.ts';
import { INT32_MAX, intFlag, parse, PORT_MAX } from './main.ts';

export async function startCommand(args: string[]): Promise<number> {
  const { values } = parse(
    args,
    {
      workers: { type: 'string' },
      workflows: { type: 'string' },
      concurrency: { type: 'string' },
      queues: { type: 'string' },
      'log-level': { type: 'string' },
      'shutdown-timeout': { type: 'string' },
      socket: { type: 'string' },
      'no-socket': { type: 'boolean' },
      'debug-port': { type: 'string' },
      'metrics-port': { type: 'string' },
      'metrics-host': { type: 'string' },
      'http-port': { type: 'string' },
      'http-host': { type: 'string' },
      id: { type: 'string' },
    },
    { min: 0, max: 0, names: '' },
  );
  const handle = await startSupervisor({
    databaseUrl: values['database-url'],
    stateDir: values['state-dir'],
    workers: values.workers,
    workflows: values.workflows,
    concurrency: intFlag('concurrency', values.concurrency, 1, 1_024),
    queues: values.queues?.split(',').map((q) => q.trim()).filter(Boolean),
    logLevel: values['log-level'] as never,
    shutdownTimeoutMs: intFlag('shutdown-timeout', values['shutdown-timeout'], 0, INT32_MAX),
    socket: values['no-socket'] ? false : values.socket,
    debugPort: intFlag('debug-port', values['debug-port'], 0, PORT_MAX),
    metricsPort: intFlag('metrics-port', values['metrics-port'], 0, PORT_MAX),
    metricsHost: values['metrics-host'],
    httpPort: intFlag('http-port', values['http-port'], 0, PORT_MAX),
    httpHost: values['http-host'],
    id: values.id,
  });
  await new Promise<void>((resolve) => {
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
  await handle.stop();
  return 0;
}
