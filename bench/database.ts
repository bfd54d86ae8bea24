/**
 * The PostgreSQL the benchmark runs on, chosen once for every system:
 * - BENCH_DATABASE_URL: used as it is (its benchmark schemas are dropped and recreated);
 * - else DATABASE_URL: its server, but a database of its own, `spindle_bench`
 *   (created when missing), so the runs never drop a schema someone uses;
 * - else spindle's embedded PostgreSQL in a temp dir (fast mode), removed at the end.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startEmbedded } from '../src/db/embedded.ts';
import { withConnection } from './systems/postgres.ts';

/** The benchmark database's own name on a DATABASE_URL server. */
export const BENCH_DATABASE = 'spindle_bench';

/** What the report says about the server. */
export interface ServerInfo {
  version: string;
  /** Settings that move the figures: fsync, synchronous_commit, shared_buffers, ... */
  settings: Record<string, string>;
}

/** The database in use. */
export interface BenchDatabase {
  url: string;
  /** Where it came from, for people. */
  source: string;
  server: ServerInfo;
  /** Stops what was started (the embedded server); idempotent. */
  close(): Promise<void>;
}

const REPORTED_SETTINGS = ['fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers', 'max_connections'];

/** Opens the benchmark database (see the file comment for the order of choice). */
export async function openDatabase(): Promise<BenchDatabase> {
  const explicit = process.env.BENCH_DATABASE_URL;
  if (explicit) {
    return { url: explicit, source: 'BENCH_DATABASE_URL, as given', server: await serverInfo(explicit), close: async () => {} };
  }
  const fromEnv = process.env.DATABASE_URL;
  if (fromEnv) {
    const url = await ensureBenchDatabase(fromEnv);
    return {
      url,
      source: `DATABASE_URL's server, database "${BENCH_DATABASE}"`,
      server: await serverInfo(url),
      close: async () => {},
    };
  }
  return openEmbedded();
}

async function ensureBenchDatabase(serverUrl: string): Promise<string> {
  await withConnection(serverUrl, async (client) => {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [BENCH_DATABASE]);
    if (rowCount === 0) await client.query(`CREATE DATABASE ${pg.escapeIdentifier(BENCH_DATABASE)}`);
  });
  const url = new URL(serverUrl);
  url.pathname = `/${BENCH_DATABASE}`;
  return url.toString();
}

async function openEmbedded(): Promise<BenchDatabase> {
  const dir = await mkdtemp(join(tmpdir(), 'spindle-bench-pg-'));
  // As root PostgreSQL runs as the OS user `postgres`, which must traverse the dir (mkdtemp makes it 0700).
  await chmod(dir, 0o755);
  let server;
  try {
    server = await startEmbedded({ stateDir: dir, fast: true, postgresFlags: ['-c', 'max_connections=200'] });
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  let closed = false;
  return {
    url: server.url,
    source: `spindle's embedded PostgreSQL (fast mode: fsync and synchronous_commit off), in a temporary directory`,
    server: await serverInfo(server.url),
    async close() {
      if (closed) return;
      closed = true;
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function serverInfo(url: string): Promise<ServerInfo> {
  return withConnection(url, async (client) => {
    const version = (await client.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
    const { rows } = await client.query<{ name: string; setting: string; unit: string | null }>(
      'SELECT name, setting, unit FROM pg_settings WHERE name = ANY($1)',
      [REPORTED_SETTINGS],
    );
    const settings: Record<string, string> = {};
    for (const r of rows) settings[r.name] = r.name === 'shared_buffers' ? `${(Number(r.setting) * 8) / 1024} MB` : r.setting;
    return { version, settings };
  });
}

/** Writes dirty pages out before a run, so one run's writes are not paid by the next. Best effort. */
export async function settle(url: string): Promise<void> {
  await withConnection(url, (client) => client.query('CHECKPOINT')).catch(() => {});
}
