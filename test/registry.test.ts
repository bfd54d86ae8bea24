/**
 * The registry: which files become job types, what their options say, and
 * modules that fail, exit or hang at import without hurting the main thread.
 */
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WorkerPool } from '../src/pool/pool.ts';
import { loadRegistry, validateOptions, type Registry } from '../src/pool/registry.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/workers/', import.meta.url));
/** The probe's bound on importing one module, in the directory of awkward files. */
const PROBE_TIMEOUT_MS = 5_000;

describe('the fixtures directory', () => {
  let registry: Registry;

  beforeAll(async () => {
    registry = await loadRegistry(FIXTURES);
  });

  it('has one type per module file, named after it, with absolute paths', () => {
    expect(registry.get('echo')).toEqual({
      type: 'echo',
      path: join(FIXTURES, 'echo.ts'),
      options: { timeoutMs: 5_000, maxAttempts: 2, concurrency: 3, backoff: { baseMs: 100, maxMs: 1_000 } },
      hasCompensate: false,
    });
    expect(registry.get('cooperative-sync')?.path).toBe(join(FIXTURES, 'cooperative-sync.mts'));
    expect(registry.get('throws-undefined')?.path).toBe(join(FIXTURES, 'throws-undefined.js'));
    expect(registry.get('syntax-error')?.path).toBe(join(FIXTURES, 'syntax-error.mjs'));
    expect(registry.warnings).toEqual([]);
  });

  it('reads options and compensate exports', () => {
    expect(registry.get('heap-hog')?.options).toEqual({ maxMemoryMb: 64 });
    expect(registry.get('compensating')).toMatchObject({ hasCompensate: true, options: { maxAttempts: 1 } });
  });

  it('keeps modules that cannot load, with the reason', () => {
    expect(registry.get('throws-at-import')?.loadError).toBe(
      `cannot load worker module "throws-at-import" (${join(FIXTURES, 'throws-at-import.ts')}): Error: cannot start: missing configuration`,
    );
    expect(registry.get('syntax-error')?.loadError).toContain('SyntaxError');
    expect(registry.get('no-default')?.loadError).toContain('it has no default export function');
    expect(registry.get('echo')?.loadError).toBeUndefined();
  });
});

describe('a directory of awkward files', () => {
  let dir: string;
  let registry: Registry;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spindle-registry-'));
    const files: Record<string, string> = {
      // Outside any "type": "module" package: tsx compiles it to CommonJS.
      'typed.ts':
        'interface In { n: number }\nexport const options = { timeoutMs: 100 };\nexport default async function (input: In) { return input.n * 2; }\n',
      'exits.mjs': 'process.exit(5);\nexport default async () => 1;\n',
      'hangs.mjs': 'for (;;) {}\nexport default async () => 1;\n',
      'awaits-forever.mjs': 'await new Promise(() => {});\nexport default async () => 1;\n',
      'bad-options.mjs': 'export const options = { concurrency: -1 };\nexport default async () => 1;\n',
      'unknown-option.mjs': 'export const options = { retries: 3 };\nexport default async () => 1;\n',
      'function-options.mjs': 'export const options = { backoff: () => 5 };\nexport default async () => 1;\n',
      'dup.ts': 'export default async () => "ts";\n',
      'dup.mjs': 'export default async () => "mjs";\n',
      'last.mjs': 'export default async () => "probed after the bad ones";\n',
      '_private.ts': 'throw new Error("must not be imported");\n',
      '.hidden.mjs': 'throw new Error("must not be imported");\n',
      'types.d.ts': 'export type X = number;\n',
      'thing.test.ts': 'throw new Error("must not be imported");\n',
      'bad name.mjs': 'export default async () => 1;\n',
      'notes.md': '# not a module\n',
    };
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
    await symlink(join(dir, 'last.mjs'), join(dir, 'linked.mjs'));
    // The bound also covers the start of the thread that probes, which a loaded machine can stretch
    // past a second or two; only 'hangs' and 'awaits-forever' wait for all of it.
    registry = await loadRegistry(dir, { probeTimeoutMs: PROBE_TIMEOUT_MS });
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('skips what is not a worker module', () => {
    expect([...registry.keys()].sort()).toEqual([
      'awaits-forever',
      'bad-options',
      'dup',
      'exits',
      'function-options',
      'hangs',
      'last',
      'linked',
      'typed',
      'unknown-option',
    ]);
    expect(registry.get('dup')?.path).toBe(join(dir, 'dup.ts'));
    expect(registry.warnings).toContain('two modules for job type "dup": using dup.ts, skipping dup.mjs');
    expect(registry.warnings.some((w) => w.startsWith(`skipped ${join(dir, 'bad name.mjs')}: "bad name" is not a valid job type`))).toBe(
      true,
    );
  });

  it('survives modules that exit or hang at import, and probes the rest', () => {
    expect(registry.get('exits')?.loadError).toMatch(/: it ended its thread with exit code 5$/);
    const hung = `: importing it did not finish within ${PROBE_TIMEOUT_MS} ms (a loop at its top level, or a top-level await that never settles)`;
    expect(registry.get('hangs')?.loadError?.endsWith(hung)).toBe(true);
    expect(registry.get('awaits-forever')?.loadError?.endsWith(hung)).toBe(true);
    expect(registry.get('last')).toMatchObject({ options: {}, hasCompensate: false });
    expect(registry.get('last')?.loadError).toBeUndefined();
    expect(registry.get('linked')?.loadError).toBeUndefined();
  });

  it('turns invalid options into a load error, and unknown ones into a warning', () => {
    expect(registry.get('bad-options')?.loadError).toBe('options.concurrency of worker "bad-options" must be a positive integer, got -1');
    expect(registry.get('function-options')?.loadError).toMatch(/its "options" export cannot be cloned/);
    expect(registry.get('unknown-option')).toMatchObject({ options: {} });
    expect(registry.get('unknown-option')?.loadError).toBeUndefined();
    expect(registry.warnings).toContain(
      'options.retries of worker "unknown-option" is not a known option (known: timeoutMs, maxAttempts, concurrency, maxMemoryMb, backoff, globalConcurrency, keyConcurrency, rateLimit, keyRateLimit, fair); it is ignored',
    );
  });

  it('runs a TypeScript module compiled as CommonJS', async () => {
    expect(registry.get('typed')?.options).toEqual({ timeoutMs: 100 });
    const pool = new WorkerPool({ maxThreads: 1 });
    try {
      const job = pool.run({
        mode: 'run',
        jobId: '1',
        type: 'typed',
        modulePath: registry.get('typed')!.path,
        input: { n: 21 },
        attempt: 1,
        maxAttempts: 1,
      });
      expect(await job.outcome).toEqual({ kind: 'succeeded', output: 42 });
    } finally {
      await pool.close();
    }
  });
});

describe("the pool's threads", () => {
  it('import the modules for the probe, and the thread that probed runs their first job without importing them again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'spindle-registry-'));
    const path = join(dir, 'stamp.mjs');
    await writeFile(path, 'const loadedAt = Date.now();\nexport default async () => ({ loadedAt });\n');
    const pool = new WorkerPool({ maxThreads: 1 });
    try {
      const registry = await loadRegistry({ stamp: path }, { pool });
      expect(registry.get('stamp')?.loadError).toBeUndefined();
      const submitted = Date.now();
      const job = pool.run({ mode: 'run', jobId: '1', type: 'stamp', modulePath: path, input: {}, attempt: 1, maxAttempts: 1 });
      const outcome = await job.outcome;
      expect(outcome.kind).toBe('succeeded');
      // Its top level ran for the probe, on this same thread, before the job was handed over.
      expect((outcome as { output: { loadedAt: number } }).output.loadedAt).toBeLessThanOrEqual(submitted);
    } finally {
      await pool.close({ force: true });
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('an explicit map', () => {
  it('resolves relative paths from cwd and rejects bad type names', async () => {
    const registry = await loadRegistry({ greet: 'echo.ts', missing: 'nope.ts' }, { cwd: FIXTURES });
    expect(registry.get('greet')?.path).toBe(join(FIXTURES, 'echo.ts'));
    expect(registry.get('greet')?.loadError).toBeUndefined();
    expect(registry.get('missing')?.loadError).toContain('Cannot find module');
    await expect(loadRegistry({ 'bad type': 'echo.ts' }, { cwd: FIXTURES })).rejects.toThrow(/workers\["bad type"\] is not a valid job type/);
  });

  it('rejects a directory that does not exist', async () => {
    await expect(loadRegistry(join(FIXTURES, 'nope'))).rejects.toThrow(/^workers must be a readable directory/);
  });
});

describe('validateOptions', () => {
  it.each([
    [{ timeoutMs: 0 }, 'options.timeoutMs of worker "x" must be a positive integer (ms), got 0'],
    [{ maxAttempts: 1.5 }, 'options.maxAttempts of worker "x" must be a positive integer, got 1.5'],
    [{ concurrency: '2' }, 'options.concurrency of worker "x" must be a positive integer, got "2"'],
    [{ maxMemoryMb: 8 }, 'options.maxMemoryMb of worker "x" must be an integer of at least 16 (MB), got 8'],
    [{ backoff: 5 }, 'options.backoff of worker "x" must be an object, got 5'],
    [{ backoff: { baseMs: 500, maxMs: 100 } }, 'options.backoff.maxMs of worker "x" must be at least backoff.baseMs (500), got 100'],
    [[1], 'options of worker "x" must be an object, got an array'],
  ])('refuses %j', (options, message) => {
    expect(() => validateOptions('x', options)).toThrow(message);
  });

  it('completes a partial backoff from the defaults', () => {
    expect(validateOptions('x', { backoff: { baseMs: 50 } })).toEqual({ backoff: { baseMs: 50, maxMs: 600_000 } });
  });
});
