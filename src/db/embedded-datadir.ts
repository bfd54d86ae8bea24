/**
 * The data directory of the embedded server: initialised once (initdb beside it, then renamed into
 * place, so a crash half-way leaves no half-made data dir), with the superuser's password kept in
 * it; checked at each start to be one spindle made, of this PostgreSQL's major version.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { EmbeddedPostgresError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { lastLines, mkdirp, run, SUPERUSER, type Binaries, type Ids } from './embedded-host.ts';

/** The superuser's password, in the data dir (0600). */
const PASSWORD_FILE = 'spindle-password';

/** Initialises a new data directory at `dataDir`, which must be missing or empty. */
export async function initialise(dataDir: string, bins: Binaries, ids: Ids | undefined, fast: boolean, log: Logger): Promise<void> {
  if (fs.existsSync(dataDir) && fs.readdirSync(dataDir).length > 0) {
    throw new EmbeddedPostgresError(
      `${dataDir} exists, is not empty and is not a PostgreSQL data directory (no PG_VERSION). Remove it or choose another data dir.`,
    );
  }
  const t0 = performance.now();
  const parent = path.dirname(dataDir);
  await mkdirp(parent, 0o755);
  // Initialise beside the target and rename at the end: a crash half-way leaves
  // no half-made data dir behind (removeAbandonedInits cleans up).
  const suffix = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmpData = `${dataDir}.init-${suffix}`;
  const pwFile = `${dataDir}.pw-${suffix}`;
  const password = randomBytes(18).toString('base64url');
  await fsp.mkdir(tmpData, { mode: 0o700 });
  await fsp.writeFile(pwFile, `${password}\n`, { mode: 0o600 });
  if (ids) {
    await fsp.chown(tmpData, ids.uid, ids.gid);
    await fsp.chown(pwFile, ids.uid, ids.gid);
  }
  log.info({ dataDir }, 'embedded PostgreSQL: initialising a new data directory');
  try {
    const args = [
      '-D', tmpData,
      `--username=${SUPERUSER}`,
      '--auth=scram-sha-256',
      `--pwfile=${pwFile}`,
      '--encoding=UTF8',
      '--locale=C',
      ...(fast ? ['--no-sync'] : []),
    ];
    const { code, output } = await run(bins.initdb, args, { cwd: parent, ids, timeoutMs: 120_000 });
    if (code !== 0) {
      throw new EmbeddedPostgresError(`initdb failed (${code}) for ${dataDir}.`, lastLines(output, 30));
    }
    await fsp.writeFile(path.join(tmpData, PASSWORD_FILE), `${password}\n`, { mode: 0o600 });
    if (ids) await fsp.chown(path.join(tmpData, PASSWORD_FILE), ids.uid, ids.gid);
    try {
      await fsp.rename(tmpData, dataDir);
    } catch (err) {
      // Another process initialised it at the same time: use theirs.
      if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) throw err;
      log.info({ dataDir }, 'embedded PostgreSQL: data directory initialised concurrently by another process');
    }
  } finally {
    await fsp.rm(pwFile, { force: true });
    await fsp.rm(tmpData, { recursive: true, force: true });
  }
  log.info({ dataDir, ms: Math.round(performance.now() - t0) }, 'embedded PostgreSQL: data directory initialised');
}

/** `<dataDir>.init-*` left by an initialise that was killed (older than 10 minutes). */
export async function removeAbandonedInits(dataDir: string, log: Logger): Promise<void> {
  const parent = path.dirname(dataDir);
  const prefix = `${path.basename(dataDir)}.`;
  let names: string[];
  try {
    names = await fsp.readdir(parent);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !/\.(init|pw)-\d+-[0-9a-f]{8}$/.test(name)) continue;
    const full = path.join(parent, name);
    try {
      const st = await fsp.stat(full);
      if (Date.now() - st.mtimeMs < 10 * 60_000) continue;
      log.info({ path: full }, 'embedded PostgreSQL: removing an abandoned initialisation');
      await fsp.rm(full, { recursive: true, force: true });
    } catch {
      // raced with someone else
    }
  }
}

/** Refuses a data dir of another PostgreSQL major version than the binaries'. */
export function checkDataDir(dataDir: string, major: string): void {
  const version = fs.readFileSync(path.join(dataDir, 'PG_VERSION'), 'utf8').trim();
  if (version !== major) {
    throw new EmbeddedPostgresError(
      `${dataDir} holds a PostgreSQL ${JSON.stringify(version.slice(0, 40))} data directory; the embedded server is PostgreSQL ${major}. ` +
        `Move it away (or dump and restore it) to start afresh.`,
    );
  }
}

/** The superuser's password; refuses a data dir that spindle did not create. */
export function readPassword(dataDir: string): string {
  try {
    const password = fs.readFileSync(path.join(dataDir, PASSWORD_FILE), 'utf8').trim();
    if (password) return password;
  } catch {
    // below
  }
  throw new EmbeddedPostgresError(
    `${dataDir} is a PostgreSQL data directory that spindle did not create (no ${PASSWORD_FILE}). ` +
      `Point DATABASE_URL at it instead, or remove it so spindle can initialise a new one.`,
  );
}
