/** Helpers of the operations tests (metrics, HTTP API, dashboard). */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ActorSnapshot } from '../../src/actors/snapshot.ts';
import type { RuntimeEvents } from '../../src/runtime-events.ts';
import { createClient, type Client } from '../../src/client.ts';
import { startSupervisor, type StartOptions, type SupervisorHandle } from '../../src/start.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';

/** The state of the supervisor's child actor `name` (e.g. 'http', 'metrics'). */
export function actorState<T>(handle: SupervisorHandle, name: string): T {
  const child = handle.snapshot().actors.children.find((c: ActorSnapshot) => c.name === name);
  if (!child) throw new Error(`no actor "${name}" under the supervisor`);
  return child.state as T;
}

/** Resolves with the first event `name` of the supervisor that `match` accepts. */
export function nextEvent<E extends keyof EventsOf>(
  handle: SupervisorHandle,
  name: E,
  match: (e: EventsOf[E]) => boolean,
  timeoutMs = 15_000,
): Promise<EventsOf[E]> {
  const events = handle.supervisor.events;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      events.off(name, on as never);
      reject(new Error(`no ${String(name)} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (e: EventsOf[E]) => {
      if (!match(e)) return;
      clearTimeout(timer);
      events.off(name, on as never);
      resolve(e);
    };
    events.on(name, on as never);
  });
}

type EventsOf = { [K in keyof RuntimeEvents]: RuntimeEvents[K][0] };

/** A supervisor of the operations fixtures on a fresh database, with a state dir of its own. */
export interface OpsSupervisor {
  db: TestDatabase;
  client: Client;
  handle: SupervisorHandle;
  /** A temporary directory; the supervisor's state dir is `<tmp>/state`. */
  tmp: string;
  stateDir: string;
}

const OPS_FIXTURES = fileURLToPath(new URL('../fixtures/ops-workers/', import.meta.url));

/** Starts it; `options` adds ports and intervals to the common test settings. */
export async function startOpsSupervisor(name: string, options: StartOptions): Promise<OpsSupervisor> {
  const db = await createTestDatabase();
  const client = createClient({ connectionString: db.url, maxConnections: 4 });
  const tmp = await mkdtemp(join(tmpdir(), `spindle-${name}-`));
  const stateDir = join(tmp, 'state');
  const handle = await startSupervisor({
    databaseUrl: db.url,
    workers: OPS_FIXTURES,
    concurrency: 2,
    logLevel: 'silent',
    socket: false,
    stateDir,
    pollMs: 200,
    ...options,
  });
  return { db, client, handle, tmp, stateDir };
}

/** Stops what startOpsSupervisor() started, whatever part of it did start. */
export async function stopOpsSupervisor(s: Partial<OpsSupervisor>): Promise<void> {
  await s.handle?.stop();
  await s.client?.close();
  await s.db?.drop();
  if (s.tmp) await rm(s.tmp, { recursive: true, force: true });
}
