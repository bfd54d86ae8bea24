/** Files of the ops servers (debug socket, HTTP API): their directories and their secrets. */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** mkdir -p: every directory created gets `mode` whatever the umask; `chmodExisting` also sets it on `dir` if it existed. */
export async function mkdirp(dir: string, mode: number, options: { chmodExisting?: boolean } = {}): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode });
  if (first === undefined) {
    if (options.chmodExisting) await chmod(dir, mode);
    return;
  }
  for (let d = dir; ; d = dirname(d)) {
    await chmod(d, mode);
    if (d === first || dirname(d) === d) break;
  }
}

/** Writes a file readable by its owner only, replacing it atomically. */
export async function writeSecret(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, text, { mode: 0o600, flag: 'wx' });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
}
