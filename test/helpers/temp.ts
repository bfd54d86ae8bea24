/** Scratch files for a test: in a directory of their own, removed when the test ends. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';

/** The path `name` in a new temporary directory (`prefix` names it), removed with it when the test ends. */
export async function tempPath(prefix: string, name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return join(dir, name);
}
