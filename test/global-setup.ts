/**
 * vitest globalSetup: every test file gets `inject('databaseUrl')`.
 * With DATABASE_URL set, that server is used as it is. Without it, an embedded
 * PostgreSQL is started in a fresh temp dir on a free port, and stopped (and the
 * dir removed) in the teardown.
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { startEmbedded } from '../src/db/embedded.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    databaseUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const fromEnv = process.env.DATABASE_URL;
  if (fromEnv) {
    project.provide('databaseUrl', fromEnv);
    return undefined;
  }
  const dir = await mkdtemp(join(tmpdir(), 'spindle-test-pg-'));
  // As root PostgreSQL runs as the OS user `postgres`, which must traverse the dir (mkdtemp makes it 0700).
  await chmod(dir, 0o755);
  let server;
  try {
    server = await startEmbedded({
      stateDir: dir,
      fast: true,
      postgresFlags: ['-c', 'max_connections=300'],
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  project.provide('databaseUrl', server.url);
  return async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  };
}
