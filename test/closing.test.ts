/**
 * Closing means closed: once `client.close()` or a supervisor's `stop()` resolves, none of its
 * sessions is left on the server, so a caller can count sessions, or drop the database, right after;
 * a closed client's waits end and its later calls are refused, each with a StateError.
 */
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient } from '../src/client.ts';
import { migrate } from '../src/db/migrate.ts';
import { StateError } from '../src/errors.ts';
import { startSupervisor } from '../src/start.ts';
import { createBareDatabase, serverUrl, sessionCount } from './helpers/database.ts';
import { eventually } from './helpers/processes.ts';

const WORKERS = fileURLToPath(new URL('./fixtures/supervisor-workers/', import.meta.url));

let bare: { url: string; drop(): Promise<void> };
let admin: pg.Client;

beforeAll(async () => {
  bare = await createBareDatabase();
  await migrate(bare.url);
  // On another database of the server, so it is not one of the sessions counted.
  admin = new pg.Client({ connectionString: serverUrl() });
  await admin.connect();
});

afterAll(async () => {
  await admin?.end();
  await bare?.drop();
});

const sessions = () => sessionCount(admin, new URL(bare.url).pathname.slice(1));

describe('closing', () => {
  it("a client's close resolves once its connections have closed", async () => {
    const client = createClient({ connectionString: bare.url, maxConnections: 8 });
    // Eight at once, so the pool opens eight connections.
    await Promise.all(Array.from({ length: 8 }, (_, i) => client.enqueue('echo', { i })));
    expect(await sessions()).toBeGreaterThanOrEqual(2);
    await Promise.all([client.close(), client.close()]);
    expect(await sessions()).toBe(0);
    await client.close();
  });

  it("a supervisor's stop resolves once its connections have closed", async () => {
    const client = createClient({ connectionString: bare.url, maxConnections: 1 });
    const job = await client.enqueue('echo', { hello: 'world' });
    await client.close();
    const handle = await startSupervisor({ databaseUrl: bare.url, workers: WORKERS, concurrency: 2, logLevel: 'silent', socket: false });
    const waiter = createClient({ connectionString: bare.url, maxConnections: 1 });
    expect((await waiter.waitFor(job.id, { timeoutMs: 20_000 })).state).toBe('succeeded');
    await waiter.close();
    expect(await sessions()).toBeGreaterThanOrEqual(3);
    await handle.stop();
    expect(await sessions()).toBe(0);
  });
});

describe('a closed client', () => {
  it('ends the waits under way with a StateError, gives their connections back, and refuses later calls', async () => {
    const client = createClient({ connectionString: bare.url, maxConnections: 4 });
    const job = await client.enqueue('nobody-serves-this', {});
    const { run } = await client.startWorkflow('nobody-serves-this-either', {});
    const waits = [
      client.waitFor(job.id),
      client.waitForWorkflow(run.id),
      (async () => {
        for await (const update of client.watch(job.id)) void update;
      })(),
    ].map((p) => p.then(() => 'resolved', (error: unknown) => error));
    // All three hold a listening connection before the close.
    expect(await eventually(async () => (await sessions()) >= 3, 10_000)).toBe(true);
    await client.close();
    for (const outcome of await Promise.all(waits)) {
      expect(outcome).toBeInstanceOf(StateError);
      expect((outcome as Error).message).toMatch(/closed/);
    }
    expect(await sessions()).toBe(0);
    await expect(client.enqueue('echo', {})).rejects.toThrow(StateError);
    await expect(client.get(job.id)).rejects.toThrow(/this Client is closed/);
  });
});
