/**
 * One supervisor of bench/fleet.ts, in a process of its own, run from the compiled package (dist/,
 * as an application runs it; bench/fleet.ts builds it first):
 * `node bench/fleet-supervisor.mjs '<startSupervisor options as JSON>'`.
 * It prints one JSON line when it runs (`{"event":"ready","id":...}`), and nothing per job (fifty of
 * them share two cores with the database). Its log (warnings and up) goes to stderr. SIGTERM stops
 * it gracefully; it exits when its parent goes (stdin ends), so a killed run leaves none behind.
 */
import { startSupervisor } from '../dist/index.js';

const handle = await startSupervisor(JSON.parse(process.argv[2] ?? '{}'));
process.stdout.write(`${JSON.stringify({ event: 'ready', id: handle.id, pid: process.pid })}\n`);

process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  handle.stop().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`stop failed: ${String(err)}\n`);
      process.exit(1);
    },
  );
});
