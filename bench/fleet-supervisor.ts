/**
 * One supervisor of bench/fleet.ts, in a process of its own:
 * `node --import tsx bench/fleet-supervisor.ts '<startSupervisor options as JSON>'`.
 * It prints one JSON line when it runs (`{"event":"ready","id":...}`), and nothing per job (fifty of
 * them share two cores with the database). Its log (warnings and up) goes to stderr. SIGTERM stops
 * it gracefully; it exits when its parent goes (stdin ends), so a killed run leaves none behind.
 */
import { createLogger } from '../src/logger.ts';
import { startSupervisor, type StartOptions } from '../src/start.ts';

const options = JSON.parse(process.argv[2] ?? '{}') as StartOptions;
const handle = await startSupervisor({ ...options, logger: createLogger(options.logLevel ?? 'warn', process.stderr) });
process.stdout.write(`${JSON.stringify({ event: 'ready', id: handle.id, pid: process.pid })}\n`);

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  void handle.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`stop failed: ${String(err)}\n`);
      process.exit(1);
    },
  );
});
