/** A Client on a database without spindle's schema, or with another version of it, says so and what to do. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createClient, type Client } from '../src/client.ts';
import { migrate, migrationNames } from '../src/db/migrate.ts';
import { SchemaError } from '../src/errors.ts';
import { createBareDatabase, createTestDatabase, type TestDatabase } from './helpers/database.ts';

const MIGRATE = 'run `spindle migrate`, or start a supervisor, which migrates';

let db: TestDatabase;
let bare: { url: string; drop(): Promise<void> };
let newest: string;
const clients: Client[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  bare = await createBareDatabase();
  newest = (await migrationNames()).at(-1)!;
});

afterAll(async () => {
  for (const c of clients) await c.close();
  await bare?.drop();
  await db?.drop();
});

function client(url: string): Client {
  const c = createClient({ connectionString: url, maxConnections: 2 });
  clients.push(c);
  return c;
}

/** `6 (0006_strict_enqueue)`, as the errors name a version. */
const version = (name: string) => `${Number(name.slice(0, 4))} (${name})`;

describe('the schema a Client finds', () => {
  it('none: every call says to migrate, and nothing is written', async () => {
    const c = client(bare.url);
    for (const call of [() => c.enqueue('t', {}), () => c.get('1'), () => c.list(), () => c.listWorkflows()]) {
      const error = await call().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SchemaError);
      expect((error as Error).message).toBe(`this database has no spindle schema: ${MIGRATE}`);
    }
    // Once migrated, the same Client works: a failed check is made again.
    await migrate(bare.url);
    expect((await c.enqueue('t', {})).state).toBe('queued');
  });

  it('a newer one names both versions and says to upgrade', async () => {
    await db.pool.query(`INSERT INTO spindle.migrations (name) VALUES ('9999_from_the_future')`);
    try {
      await expect(client(db.url).enqueue('t', {})).rejects.toThrow(
        `this database's spindle schema is at version 9999 (9999_from_the_future), newer than this spindle's ${version(newest)}: ` +
          'upgrade spindle here (the database was migrated by a newer spindle)',
      );
    } finally {
      await db.pool.query(`DELETE FROM spindle.migrations WHERE name = '9999_from_the_future'`);
    }
  });

  it('an older one names both versions and says to migrate', async () => {
    const previous = (await migrationNames()).at(-2)!;
    await db.pool.query('DELETE FROM spindle.migrations WHERE name = $1', [newest]);
    try {
      await expect(client(db.url).list()).rejects.toThrow(
        `this database's spindle schema is at version ${version(previous)}, older than this spindle's ${version(newest)}: ${MIGRATE}`,
      );
    } finally {
      await db.pool.query('INSERT INTO spindle.migrations (name) VALUES ($1)', [newest]);
    }
  });

  it('the same one: checked once per Client, not on every call', async () => {
    const c = client(db.url);
    await c.list();
    await db.pool.query(`INSERT INTO spindle.migrations (name) VALUES ('9999_from_the_future')`);
    try {
      expect((await c.enqueue('t', {})).state).toBe('queued');
    } finally {
      await db.pool.query(`DELETE FROM spindle.migrations WHERE name = '9999_from_the_future'`);
    }
  });
});
