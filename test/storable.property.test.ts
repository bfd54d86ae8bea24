/**
 * Property tests of issue 19's rule (src/storable.ts): every string and JSON value that reaches the
 * database is either stored faithfully or refused at the edge with a ValidationError naming the
 * field, and an output or error that cannot be stored fails that job alone, readably.
 *
 * Values come from fast-check: fc.jsonValue, and arbitraries of our own that mix in NUL, lone
 * surrogates (both halves, at string ends and inside), -0, numbers past 2^53, keys such as
 * `__proto__` (own members), deep nesting and huge strings. An unstorable value is *planted* from a
 * storable recipe (test/fixtures/storable-workers/_plant.ts), which also says the path spindle must
 * name; the same recipe crosses into a worker thread or a workflow body as plain input.
 *
 * "Read back equal" means equal to JSON.parse(JSON.stringify(v)): JSON's own semantics (-0 reads back
 * as 0, undefined members are left out, key order may change) and nothing else. The comparison is
 * of a canonical text that tells -0 from 0, an own `__proto__` from a prototype, and U+FFFD from a
 * lone surrogate.
 *
 * Paths, in order: the Client (enqueue, enqueueMany, keys, cancel reasons), SQL spindle.enqueue,
 * workflow input and event payloads, the CLI and HTTP, handlers on a real supervisor (output, error,
 * logs, progress), workflows on a real supervisor (step results, body results, step errors), a cron
 * schedule's input, and the issue's own check with a supervisor in a child process.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpServerState } from '../src/ops/http-server.ts';
import { createClient, type Client } from '../src/client.ts';
import { ValidationError } from '../src/errors.ts';
import type { Job } from '../src/job.ts';
import { startSupervisor, type SupervisorHandle } from '../src/start.ts';
import type { ReportInput } from './fixtures/storable-workers/report.ts';
import type { ThrowsInput as ThrowsJobInput } from './fixtures/storable-workers/throws.ts';
import type { PlantInput } from './fixtures/storable-workflows/plant.ts';
import type { ThrowsInput as RunThrowsInput } from './fixtures/storable-workflows/throws.ts';
import {
  MAX_DEPTH,
  member,
  objectOf,
  plant,
  text,
  type Bad,
  type Json,
  type Recipe,
  type Step,
  type TextRecipe,
} from './fixtures/storable-workers/_plant.ts';
import { SupervisorProcess } from './helpers/supervisor-process.ts';
import { createTestDatabase, type TestDatabase } from './helpers/database.ts';
import { actorState } from './helpers/ops.ts';

const BIN = fileURLToPath(new URL('../bin/spindle.mjs', import.meta.url));
const WORKERS = fileURLToPath(new URL('./fixtures/storable-workers/', import.meta.url));
const WORKFLOWS = fileURLToPath(new URL('./fixtures/storable-workflows/', import.meta.url));

/** The Client's default bound on an input's JSON, in bytes. */
const MAX_INPUT_BYTES = 1024 * 1024;
/** Characters kept of an error's message, and of its stack (src/storable.ts MAX_ERROR_TEXT_CHARS). */
const MAX_ERROR_CHARS = 64 * 1024;
/** Characters of a progress message and of a log line before the thread cuts them (src/pool/thread.ts). */
const MAX_PROGRESS_MESSAGE_CHARS = 1024;
const MAX_LOG_LINE_CHARS = 8192;
/** Jobs nobody runs go to this queue; the supervisor below serves only LIVE. */
const PARKED = { queue: 'parked' };
const LIVE = 'live';

let db: TestDatabase;
let client: Client;
let tmp: string;

beforeAll(async () => {
  db = await createTestDatabase();
  client = createClient({ connectionString: db.url });
  tmp = await mkdtemp(join(tmpdir(), 'spindle-storable-'));
});

afterAll(async () => {
  await client?.close();
  await db?.drop();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

// ---- the oracle: what the rule says, written independently of src/storable.ts ---------------------

/** True when PostgreSQL can store the string: no U+0000, every surrogate in a pair. */
function textIsStorable(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0) return false;
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      return false;
    }
    if (c >= 0xdc00 && c <= 0xdfff) return false;
  }
  return true;
}

/** Text for people as it must be stored: U+0000 and lone surrogates as the six characters \uXXXX. */
function escapeForPeople(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const pairs = c >= 0xd800 && c <= 0xdbff && s.charCodeAt(i + 1) >= 0xdc00 && s.charCodeAt(i + 1) <= 0xdfff;
    if (pairs) {
      out += s[i]! + s[i + 1]!;
      i++;
    } else if (c === 0 || (c >= 0xd800 && c <= 0xdfff)) {
      out += `\\u${c.toString(16).padStart(4, '0')}`;
    } else {
      out += s[i]!;
    }
  }
  return out;
}

/** Every path (under `root`) of a part of `value` that cannot be stored; empty when all of it can. */
function unstorablePaths(value: unknown, root: string): string[] {
  const found: string[] = [];
  // Recursive, but never past MAX_DEPTH levels: a container there is a fault, and not entered.
  const visit = (input: unknown, path: string, depth: number, open: Set<object>): void => {
    let v = input;
    if (typeof v === 'object' && v !== null && typeof (v as { toJSON?: unknown }).toJSON === 'function') {
      v = (v as { toJSON(key: string): unknown }).toJSON('');
    }
    switch (typeof v) {
      case 'string':
        if (!textIsStorable(v)) found.push(path);
        return;
      case 'number':
        if (!Number.isFinite(v)) found.push(path);
        return;
      case 'bigint':
      case 'function':
      case 'symbol':
        found.push(path);
        return;
      case 'boolean':
      case 'undefined':
        return;
    }
    if (v === null) return;
    const o = v as object;
    if (o instanceof Map || o instanceof Set || open.has(o) || depth >= MAX_DEPTH) {
      found.push(path);
      return;
    }
    open.add(o);
    if (Array.isArray(o)) {
      o.forEach((element, i) => visit(element, `${path}[${i}]`, depth + 1, open));
    } else {
      for (const key of Object.keys(o)) {
        const memberPath = `${path}${member(key)}`;
        if (!textIsStorable(key)) {
          found.push(memberPath);
          continue;
        }
        const m = (o as Record<string, unknown>)[key];
        if (m !== undefined) visit(m, memberPath, depth + 1, open);
      }
    }
    open.delete(o);
  };
  visit(value, root, 0, new Set());
  return found;
}

/**
 * JSON text of a value, as JSON.stringify writes it, but without recursion: JSON.stringify overflows
 * the stack on 100,000 levels, and SQL and HTTP callers must be sent such text all the same.
 */
function jsonText(value: unknown): string {
  const out: string[] = [];
  // Each item is a value to write, or a piece of punctuation to emit as it is.
  const stack: ({ value: unknown } | { raw: string })[] = [{ value }];
  while (stack.length > 0) {
    const item = stack.pop()!;
    if ('raw' in item) {
      out.push(item.raw);
      continue;
    }
    let v = item.value;
    if (typeof v === 'object' && v !== null && typeof (v as { toJSON?: unknown }).toJSON === 'function') {
      v = (v as { toJSON(key: string): unknown }).toJSON('');
    }
    if (Array.isArray(v)) {
      stack.push({ raw: ']' });
      for (let i = v.length - 1; i >= 0; i--) {
        stack.push({ value: v[i] === undefined ? null : v[i] });
        if (i > 0) stack.push({ raw: ',' });
      }
      out.push('[');
    } else if (typeof v === 'object' && v !== null) {
      const keys = Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined);
      stack.push({ raw: '}' });
      for (let i = keys.length - 1; i >= 0; i--) {
        stack.push({ value: (v as Record<string, unknown>)[keys[i]!] });
        stack.push({ raw: `${i > 0 ? ',' : ''}${JSON.stringify(keys[i])}:` });
      }
      out.push('{');
    } else {
      out.push(JSON.stringify(v) ?? 'null');
    }
  }
  return out.join('');
}

/** What a storable value must read back as: JSON's semantics, nothing more. */
function roundTrip(value: unknown): unknown {
  return JSON.parse(JSON.stringify(value === undefined ? null : value) ?? 'null');
}

/**
 * A text that two values share only if they are equal as stored JSON should be: keys sorted, -0 told
 * from 0, an own `__proto__` member kept apart from an object's prototype (which must be Object's).
 */
function canonical(value: unknown): string {
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const plain = Object.getPrototypeOf(value) === Object.prototype ? '' : '<not a plain object>';
    const keys = Object.keys(value).sort();
    const members = keys.map((k) => `${JSON.stringify(k)}:${canonical(Object.getOwnPropertyDescriptor(value, k)!.value)}`);
    return `${plain}{${members.join(',')}}`;
  }
  return JSON.stringify(value) ?? String(value);
}

function expectStoredAs(read: unknown, written: unknown): void {
  expect(canonical(read)).toBe(canonical(roundTrip(written)));
}

/**
 * Text for people as stored, bounded to `max` characters: the escaped text itself, or a prefix of it
 * with the cut marked and the number of characters cut told right; never half a surrogate pair.
 */
function expectPeopleText(stored: unknown, original: string, max: number): void {
  expect(typeof stored).toBe('string');
  const s = stored as string;
  const escaped = escapeForPeople(original);
  expect(textIsStorable(s)).toBe(true);
  expect(s.length).toBeLessThanOrEqual(max);
  if (escaped.length <= max) {
    expect(s).toBe(escaped);
    return;
  }
  const mark = /… \[(\d+) more characters cut\]$/.exec(s);
  expect(mark, `a cut marked at the end of ${JSON.stringify(s.slice(-80))}`).not.toBeNull();
  const kept = s.slice(0, s.length - mark![0].length);
  expect(escaped.startsWith(kept)).toBe(true);
  expect(Number(mark![1])).toBe(escaped.length - kept.length);
  // A cut that keeps almost nothing is not a bound but a loss.
  expect(kept.length).toBeGreaterThan(max - 100);
}

// ---- arbitraries ----------------------------------------------------------------------------------

/** One storable "character": a grapheme, any code point but U+0000, or text that looks like trouble. */
const storableUnit: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }) },
  { weight: 3, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }).filter((s) => s !== '\u0000') },
  {
    weight: 1,
    arbitrary: fc.constantFrom('\\u0000', '\\ud800', '"', '\\', '\n', '\u2028', '\uFFFF', '\uFEFF', '\u{10FFFF}', '\u{1F600}', '%s', '.', '['),
  },
);
const loneSurrogate = fc
  .oneof(fc.integer({ min: 0xd800, max: 0xdbff }), fc.integer({ min: 0xdc00, max: 0xdfff }))
  .map((code) => String.fromCharCode(code));
/** A unit that is sometimes U+0000 or a lone surrogate (two lone halves side by side make a pair). */
const anyUnit: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: storableUnit },
  { weight: 1, arbitrary: loneSurrogate },
  { weight: 1, arbitrary: fc.constant('\u0000') },
);

const storableString = fc.string({ unit: storableUnit, maxLength: 12 });

/** Keys, with the ones that name prototype machinery. */
const storableKey = fc.oneof(
  { weight: 3, arbitrary: storableString },
  {
    weight: 1,
    arbitrary: fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'valueOf', 'hasOwnProperty', '__defineGetter__', '0', '01', '-1', '1e3', 'length', ''),
  },
);

/** Doubles, with -0 and numbers where text and double part ways (past 2^53, 1e308, 5e-324). */
const edgeNumbers = [-0, 2 ** 53, 2 ** 53 + 2, 2 ** 60, -(2 ** 63), 1e21, 1e308, -1e308, Number.MAX_VALUE, 5e-324, -5e-324, Number.EPSILON, 0.1 + 0.2, 123456789012345680000];
const storableNumber = fc.oneof(
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.integer(),
  fc.constantFrom(...edgeNumbers),
);

const storableLeaf: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: storableString },
  { weight: 3, arbitrary: storableNumber },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  // A Date is stored as its toJSON(): an ISO string, or null for an invalid one.
  { weight: 1, arbitrary: fc.date() },
);

/** A member value, sometimes undefined: left out of an object, null in an array, as JSON does. */
const withUndefined = (value: fc.Arbitrary<unknown>) =>
  fc.oneof({ weight: 9, arbitrary: value }, { weight: 1, arbitrary: fc.constant(undefined) });

/** Storable values of our own: own `__proto__` members, undefined members, edge numbers, Dates. */
const ownStorable: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown; array: unknown; object: unknown }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', maxDepth: 5, withCrossShrink: true }, storableLeaf, tie('array'), tie('object')),
  array: fc.array(withUndefined(tie('value')), { maxLength: 5 }),
  object: fc
    .uniqueArray(fc.tuple(storableKey, withUndefined(tie('value'))), { selector: ([key]) => key, maxLength: 5 })
    .map((entries) => objectOf(entries)),
})).value;

/** Storable values: fast-check's own JSON values, or ours. */
const storableValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ stringUnit: storableUnit, maxDepth: 4 }),
  ownStorable,
);

/** JSON values whose strings and keys sometimes hold U+0000 or a lone surrogate: the oracle says which. */
const mixedJson = fc.jsonValue({ stringUnit: anyUnit, maxDepth: 4 });

/** Storable JSON for the siblings of a recipe (it crosses the database as a job's input). */
const recipeJson = fc.jsonValue({ stringUnit: storableUnit, maxDepth: 2 }) as fc.Arbitrary<Json>;

const step: fc.Arbitrary<Step> = fc.oneof(
  fc.record({
    in: fc.constant('object' as const),
    key: storableKey,
    siblings: fc.uniqueArray(fc.tuple(storableKey, recipeJson), { selector: ([key]) => key, maxLength: 3 }),
    at: fc.nat(3),
  }),
  fc.record({
    in: fc.constant('array' as const),
    before: fc.array(recipeJson, { maxLength: 3 }),
    after: fc.array(recipeJson, { maxLength: 3 }),
  }),
);

const badCode = fc.oneof(fc.constant(0), fc.integer({ min: 0xd800, max: 0xdbff }), fc.integer({ min: 0xdc00, max: 0xdfff }));

/** The faults JSON text can carry (strings, keys, depth): what SQL, HTTP and the CLI can be sent. */
const jsonTextBad: fc.Arbitrary<Bad> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('text' as const), before: storableString, code: badCode, after: storableString }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('key' as const), before: storableString, code: badCode, after: storableString, value: recipeJson }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('deep' as const),
      levels: fc.constantFrom(1001, 1500, 100_000),
      shape: fc.constantFrom('array' as const, 'object' as const, 'mixed' as const),
    }),
  },
);

/** Every fault: also what only a JavaScript value can hold (NaN, BigInt, functions, Map, Set, symbols). */
const anyBad: fc.Arbitrary<Bad> = fc.oneof(
  { weight: 4, arbitrary: jsonTextBad },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('number' as const), value: fc.constantFrom('NaN' as const, 'Infinity' as const, '-Infinity' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bigint' as const), digits: fc.bigInt().map(String) }) },
  { weight: 1, arbitrary: fc.constantFrom<Bad>({ kind: 'function' }, { kind: 'symbol' }, { kind: 'map' }, { kind: 'set' }) },
);

const spine = (minLength: number) => fc.array(step, { minLength, maxLength: 4 });

/** A recipe of a value with exactly one part that cannot be stored, cycles included. */
const anyRecipe: fc.Arbitrary<Recipe> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ spine: spine(0), bad: anyBad }) },
  {
    weight: 1,
    arbitrary: spine(1).chain((steps) =>
      fc.record({ spine: fc.constant(steps), bad: fc.record({ kind: fc.constant('cycle' as const), up: fc.integer({ min: 1, max: steps.length }) }) }),
    ),
  },
);
const jsonTextRecipe: fc.Arbitrary<Recipe> = fc.record({ spine: spine(0), bad: jsonTextBad });

/** Text for people: short, with U+0000 and lone surrogates (either half, once or a few times over) anywhere. */
const shortText: fc.Arbitrary<TextRecipe> = fc.record({
  parts: fc.array(
    fc.oneof(
      { weight: 2, arbitrary: storableString },
      { weight: 1, arbitrary: fc.record({ code: badCode, times: fc.integer({ min: 1, max: 3 }) }) },
    ),
    { maxLength: 5 },
  ),
});

// ---- helpers --------------------------------------------------------------------------------------

async function countRows(table: 'jobs' | 'workflow_runs' | 'workflow_events'): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM spindle.${table}`);
  return rows[0]!.n;
}

/** The ValidationError `run` rejects with; fails the test if it resolves or rejects with anything else. */
async function validationError(run: () => Promise<unknown>): Promise<ValidationError> {
  let error: unknown;
  try {
    await run();
  } catch (e) {
    error = e;
  }
  expect(error, 'a ValidationError').toBeInstanceOf(ValidationError);
  return error as ValidationError;
}

/** Refused, naming `field` first in the message, and nothing written to `table`. */
async function expectRefused(
  table: 'jobs' | 'workflow_runs' | 'workflow_events',
  fields: string[],
  run: () => Promise<unknown>,
): Promise<ValidationError> {
  const before = await countRows(table);
  const error = await validationError(run);
  expect(fields).toContain(error.field);
  expect(error.message.startsWith(`${error.field} `)).toBe(true);
  expect(await countRows(table)).toBe(before);
  return error;
}

const FINAL = `('succeeded', 'failed', 'timed_out', 'cancelled')`;

/**
 * Resolves once every job of `ids` has ended, woken by NOTIFY spindle_finished on one connection
 * (not a waitFor per job: that would hold a connection each). `timeoutMs` only bounds a hang.
 */
async function waitUntilEnded(url: string, ids: string[], timeoutMs = 30_000): Promise<void> {
  const listener = new pg.Client({ connectionString: url });
  await listener.connect();
  try {
    let wake: () => void = () => {};
    listener.on('notification', () => wake());
    await listener.query('LISTEN spindle_finished');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const woken = new Promise<void>((resolve) => (wake = resolve));
      const { rows } = await listener.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM spindle.jobs WHERE id = ANY($1::bigint[]) AND state IN ${FINAL}`,
        [ids],
      );
      if (rows[0]!.n === ids.length) return;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`only ${rows[0]!.n} of ${ids.length} jobs ended within ${timeoutMs} ms`);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([woken, new Promise<void>((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
    }
  } finally {
    await listener.end();
  }
}

/** The jobs, once all have ended (see waitUntilEnded). */
async function waitForJobs(ids: string[], timeoutMs = 30_000): Promise<Map<string, Job>> {
  await waitUntilEnded(db.url, ids, timeoutMs);
  const jobs = new Map<string, Job>();
  for (const id of ids) jobs.set(id, (await client.get(id))!);
  return jobs;
}

// ---- the Client, SQL, workflow input and events ---------------------------------------------------

describe('the Client stores what it can and refuses the rest, naming the field', () => {
  it('Client.enqueue stores any storable value (fc.jsonValue and our own) and client.get reads it back equal', async () => {
    await fc.assert(
      fc.asyncProperty(storableValue, async (value) => {
        expect(unstorablePaths(value, 'input')).toEqual([]);
        const job = await client.enqueue('t', value, PARKED);
        expectStoredAs(job.input, value);
        expectStoredAs((await client.get(job.id))!.input, value);
      }),
      { numRuns: 50 },
    );
  });

  it('Client.enqueue refuses a value with one part that cannot be stored, naming its path, and writes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(anyRecipe, async (recipe) => {
        const { value, path } = plant(recipe, 'input');
        expect(unstorablePaths(value, 'input')).toEqual([path]);
        await expectRefused('jobs', [path], () => client.enqueue('t', value, PARKED));
      }),
      { numRuns: 50 },
    );
  });

  it('Client.enqueue of JSON whose strings and keys may hold NUL or lone surrogates: stored equal, or refused at a faulty path', async () => {
    await fc.assert(
      fc.asyncProperty(mixedJson, async (value) => {
        const bad = unstorablePaths(value, 'input');
        if (bad.length === 0) {
          const job = await client.enqueue('t', value, PARKED);
          expectStoredAs((await client.get(job.id))!.input, value);
        } else {
          await expectRefused('jobs', bad, () => client.enqueue('t', value, PARKED));
        }
      }),
      { numRuns: 50 },
    );
  });

  it('enqueueMany is all or none: one unstorable spec refuses the call, naming specs[i] and the path; else all read back equal', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(storableValue, { minLength: 1, maxLength: 6 }),
        fc.option(anyRecipe, { nil: undefined }),
        fc.nat(),
        fc.boolean(),
        async (values, recipe, where, keyed) => {
          // With a key, enqueueMany goes through spindle.enqueue_job row by row; without, one INSERT.
          // A counter keeps keys apart: a key of a live job would return that job instead.
          const key = (i: number) => (keyed && i % 2 === 0 ? { key: `many:${n++}` } : {});
          const specs = values.map((input, i) => ({ type: 't', input, options: { ...PARKED, ...key(i) } }));
          if (recipe === undefined) {
            const jobs = await client.enqueueMany(specs);
            expect(jobs).toHaveLength(values.length);
            for (let i = 0; i < values.length; i++) {
              expectStoredAs(jobs[i]!.input, values[i]);
              expectStoredAs((await client.get(jobs[i]!.id))!.input, values[i]);
            }
            return;
          }
          const at = where % (specs.length + 1);
          const { value, path } = plant(recipe, 'input');
          specs.splice(at, 0, { type: 't', input: value, options: { ...PARKED, ...key(at) } });
          await expectRefused('jobs', [`specs[${at}].${path}`], () => client.enqueueMany(specs));
        },
      ),
      { numRuns: 40 },
    );
  });

  it('keys: a storable key is stored and read back as it is; one with NUL or a lone surrogate is refused as options.key', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: anyUnit, minLength: 1, maxLength: 40 }), async (raw) => {
        if (textIsStorable(raw)) {
          // A counter keeps keys apart: a key of a live job would return that job instead.
          const key = `${raw}#${n++}`;
          const job = await client.enqueue('t', { n }, { ...PARKED, key });
          expect(job.key).toBe(key);
          expect((await client.get(job.id))!.key).toBe(key);
        } else {
          await expectRefused('jobs', ['options.key'], () => client.enqueue('t', null, { ...PARKED, key: raw }));
        }
      }),
      { numRuns: 40 },
    );
  });

  it('cancel reasons: a storable reason is stored as it is; one with NUL or a lone surrogate is refused as reason, the job untouched', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: anyUnit, minLength: 1, maxLength: 40 }), async (reason) => {
        const job = await client.enqueue('t', null, PARKED);
        if (textIsStorable(reason)) {
          await client.cancel(job.id, reason);
          expect(await client.get(job.id)).toMatchObject({ state: 'cancelled', cancelReason: reason });
        } else {
          await expectRefused('jobs', ['reason'], () => client.cancel(job.id, reason));
          expect(await client.get(job.id)).toMatchObject({ state: 'queued', cancelReason: null });
        }
      }),
      { numRuns: 30 },
    );
  });

  it('fixed edge values: -0, numbers past 2^53, 1e308, 5e-324 and own __proto__ / constructor members round-trip; nothing is polluted', async () => {
    const value = JSON.parse(
      '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}},"neg":-0,"list":[-0,0],' +
        '"big":1152921504606846976,"max":1e308,"tiny":5e-324,"maxValue":1.7976931348623157e308,"text":"\\\\u0000 is six characters"}',
    ) as Record<string, unknown>;
    expect(Object.hasOwn(value, '__proto__')).toBe(true);
    const job = await client.enqueue('t', value, PARKED);
    const read = (await client.get(job.id))!.input as Record<string, unknown>;
    expectStoredAs(read, value);
    expect(Object.hasOwn(read, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(read)).toBe(Object.prototype);
    expect(read.big).toBe(2 ** 60);
    expect(read.max).toBe(1e308);
    expect(read.tiny).toBe(5e-324);
    expect(Object.is(read.neg, 0)).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('nesting: 1000 levels are stored and read back; 1001 and 100,000 levels (arrays, objects) are refused at level 1000', async () => {
    const nest = (levels: number, shape: 'array' | 'object') => plant({ spine: [], bad: { kind: 'deep', levels, shape } }, 'input');
    // Level 1000 is the first refused: a chain of 1000 containers (levels 0 to 999) is fine.
    let ok: unknown = [];
    for (let i = 1; i < MAX_DEPTH; i++) ok = [ok];
    const job = await client.enqueue('t', ok, PARKED);
    expectStoredAs((await client.get(job.id))!.input, ok);
    for (const shape of ['array', 'object'] as const) {
      for (const levels of [1001, 100_000]) {
        const { value, path } = nest(levels, shape);
        await expectRefused('jobs', [path], () => client.enqueue('t', value, PARKED));
        await expectRefused('jobs', [`specs[0].${path}`], () => client.enqueueMany([{ type: 't', input: value, options: PARKED }]));
      }
    }
  });

  it('huge strings: ~1 MB and exactly 1 MiB of JSON are stored; one byte over the default limit is refused as input', async () => {
    const exact = 'x'.repeat(MAX_INPUT_BYTES - 2); // with its quotes: 1,048,576 bytes
    const astral = '\u{1F600}'.repeat(262_143); // 4 bytes each in UTF-8: 1,048,574 bytes with its quotes
    for (const value of [exact, astral]) {
      const job = await client.enqueue('t', value, PARKED);
      expect((await client.get(job.id))!.input).toBe(value);
    }
    const [many] = await client.enqueueMany([{ type: 't', input: exact, options: PARKED }]);
    expect((await client.get(many!.id))!.input).toBe(exact);
    // Bytes, not characters: 349,525 euro signs are 1,048,575 bytes, 1,048,577 with the quotes.
    for (const over of ['x'.repeat(MAX_INPUT_BYTES - 1), '\u20AC'.repeat(349_525)]) {
      const error = await expectRefused('jobs', ['input'], () => client.enqueue('t', over, PARKED));
      expect(error.message).toMatch(/^input is 1048577 bytes of JSON, over the limit of 1048576 bytes$/);
      await expectRefused('jobs', ['specs[0].input'], () => client.enqueueMany([{ type: 't', input: over, options: PARKED }]));
    }
  });

  // Before the fix (issue 19): spindle.enqueue_job() measures octet_length(input::text), and jsonb's text puts a space
  // after every ',' and ':', so enqueue() refuses inputs the Client measured under maxInputBytes
  // (enqueueMany without keys skips enqueue_job and takes the same input).
  it('Client.enqueue takes an input whose JSON is under maxInputBytes whatever its shape (350,000 zeros: 700,001 bytes)', async () => {
    const zeros = new Array<number>(350_000).fill(0);
    expect(Buffer.byteLength(JSON.stringify(zeros))).toBeLessThan(MAX_INPUT_BYTES);
    const job = await client.enqueue('t', zeros, PARKED);
    expect((job.input as number[]).length).toBe(350_000);
  });

  // Before the fix (issue 19): the same SQL bound ignores the Client's maxInputBytes; only the session setting
  // spindle.max_input_bytes (which the Client never sets) raises it.
  it('a Client made with maxInputBytes of 4 MiB takes a 2 MB input', async () => {
    const big = createClient({ connectionString: db.url, maxInputBytes: 4 * MAX_INPUT_BYTES, maxConnections: 1 });
    try {
      const job = await big.enqueue('t', 'x'.repeat(2_000_000), PARKED);
      expect((job.input as string).length).toBe(2_000_000);
    } finally {
      await big.close();
    }
  });

  // Before the fix (issue 19): a boxed number is an object to findUnstorable (no members, so nothing to refuse), and
  // JSON.stringify writes a boxed NaN or Infinity as null: a value changed silently, which the rule
  // refuses for an unboxed NaN.
  it('a boxed NaN or Infinity is refused as an unboxed one is, not stored as null', async () => {
    await expectRefused('jobs', ['input.n'], () => client.enqueue('t', { n: new Number(NaN) }, PARKED));
  });

  // Before the fix (issue 19): a boxed BigInt passes findUnstorable, then JSON.stringify throws a TypeError that names no field.
  it('a boxed BigInt is refused with a ValidationError naming its path, not a TypeError', async () => {
    await expectRefused('jobs', ['input.n'], () => client.enqueue('t', { n: Object(10n) }, PARKED));
  });
});

describe('SQL spindle.enqueue', () => {
  const enqueueSql = (json: string) =>
    db.pool.query<{ id: string }>(`SELECT spindle.enqueue('t', $1::jsonb, '{"queue":"parked"}') AS id`, [json]);

  it('stores any storable value and client.get reads it back equal', async () => {
    await fc.assert(
      fc.asyncProperty(storableValue, async (value) => {
        const { rows } = await enqueueSql(jsonText(value));
        expectStoredAs((await client.get(rows[0]!.id))!.input, value);
      }),
      { numRuns: 40 },
    );
  });

  it('refuses JSON text with NUL, a lone surrogate (PostgreSQL) or nesting past 1000 levels (22023, or PostgreSQL\'s stack limit), writing nothing', async () => {
    await fc.assert(
      fc.asyncProperty(jsonTextRecipe, async (recipe) => {
        const { value } = plant(recipe, 'input');
        const before = await countRows('jobs');
        const error = (await enqueueSql(jsonText(value)).then(
          () => null,
          (e: unknown) => e,
        )) as { code?: string; message?: string } | null;
        expect(error, 'an error from PostgreSQL').not.toBeNull();
        if (recipe.bad.kind === 'deep') {
          // 22023 is spindle's own check; 54001 is PostgreSQL's parser at 100,000 levels.
          expect(['22023', '54001']).toContain(error!.code);
          if (error!.code === '22023') expect(error!.message).toBe('input is nested deeper than 1000 levels');
        } else {
          // 22P05: "unsupported Unicode escape sequence" (\u0000); 22P02: invalid JSON (a lone surrogate).
          expect(['22P05', '22P02']).toContain(error!.code);
        }
        expect(await countRows('jobs')).toBe(before);
      }),
      { numRuns: 25 },
    );
  });

  it('takes 1 MiB of JSON text, and 1000 levels of nesting but not 1001', async () => {
    const exact = JSON.stringify('x'.repeat(MAX_INPUT_BYTES - 2));
    const { rows } = await enqueueSql(exact);
    expect(((await client.get(rows[0]!.id))!.input as string).length).toBe(MAX_INPUT_BYTES - 2);
    const before = await countRows('jobs');
    await expect(enqueueSql(JSON.stringify('x'.repeat(MAX_INPUT_BYTES - 1)))).rejects.toMatchObject({ code: '22023' });
    await expect(enqueueSql(`${'['.repeat(1001)}${']'.repeat(1001)}`)).rejects.toMatchObject({ code: '22023' });
    expect(await countRows('jobs')).toBe(before);
    await enqueueSql(`${'['.repeat(1000)}${']'.repeat(1000)}`);
    expect(await countRows('jobs')).toBe(before + 1);
  });
});

describe('workflow input and event payloads (no supervisor: the runs stay unclaimed)', () => {
  afterAll(async () => {
    // Parked runs would be claimed, and blocked, by the supervisors of the next describes.
    await db.pool.query(`DELETE FROM spindle.workflow_runs WHERE name = 'parked'`);
  });

  it('startWorkflow stores any storable input and getWorkflow reads it back equal; an unstorable one is refused naming its path', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(storableValue.map((v) => ({ v })), anyRecipe.map((r) => ({ r }))), async (c) => {
        if ('v' in c) {
          const { run } = await client.startWorkflow('parked', c.v);
          expectStoredAs(run.input, c.v);
          expectStoredAs((await client.getWorkflow(run.id))!.input, c.v);
        } else {
          const { value, path } = plant(c.r, 'input');
          await expectRefused('workflow_runs', [path], () => client.startWorkflow('parked', value));
        }
      }),
      { numRuns: 40 },
    );
  });

  it('sendEvent stores any storable payload as it is; an unstorable payload or event name is refused naming it', async () => {
    const { run } = await client.startWorkflow('parked', null);
    const lastPayload = async () =>
      (await db.pool.query(`SELECT payload FROM spindle.workflow_events WHERE run_id = $1 ORDER BY id DESC LIMIT 1`, [run.id])).rows[0]
        ?.payload as unknown;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(storableValue.map((v) => ({ v })), anyRecipe.map((r) => ({ r }))),
        fc.string({ unit: anyUnit, minLength: 1, maxLength: 20 }),
        async (c, name) => {
          if (!textIsStorable(name)) {
            await expectRefused('workflow_events', ['name'], () => client.sendEvent(run.id, name, null));
            return;
          }
          if ('v' in c) {
            await client.sendEvent(run.id, name, c.v);
            expectStoredAs(await lastPayload(), c.v);
          } else {
            const { value, path } = plant(c.r, 'payload');
            await expectRefused('workflow_events', [path], () => client.sendEvent(run.id, name, value));
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('workflow input: exactly 1 MiB of JSON is stored, a byte over is refused; a cancel reason with NUL is refused as reason', async () => {
    const { run } = await client.startWorkflow('parked', 'x'.repeat(MAX_INPUT_BYTES - 2));
    expect(((await client.getWorkflow(run.id))!.input as string).length).toBe(MAX_INPUT_BYTES - 2);
    await expectRefused('workflow_runs', ['input'], () => client.startWorkflow('parked', 'x'.repeat(MAX_INPUT_BYTES - 1)));
    await expectRefused('workflow_events', ['payload'], () => client.sendEvent(run.id, 'e', '\u20AC'.repeat(349_525)));
    const error = await validationError(() => client.cancelWorkflow(run.id, 'why\u0000'));
    expect(error.field).toBe('reason');
    expect((await client.getWorkflow(run.id))!.cancelRequestedAt).toBeNull();
  });
});

// ---- the CLI ---------------------------------------------------------------------------------------

describe('the CLI: spindle enqueue TYPE JSON', () => {
  interface Run {
    code: number | null;
    stdout: string;
    stderr: string;
  }
  const spindle = (args: string[]): Promise<Run> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [BIN, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, DATABASE_URL: db.url },
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('exit', (code) => resolve({ code, stdout, stderr }));
    });

  it('stores edge values as they are, and refuses unstorable ones with one line naming the field and a non-zero exit', async () => {
    // A handful of fixed values: each spawn is a process start. Escapes in the JSON text carry what
    // argv cannot (a NUL) or would re-encode (a lone surrogate).
    const good = [
      '{"__proto__":{"x":1},"constructor":-0,"big":1152921504606846976,"max":1e308,"min":5e-324,"s":"\\\\u0000 \\ud83d\\ude00 \\u2028"}',
    ];
    // JSON text and the fields that may be named (the second has two faults: either is right).
    const bad: [string, string[]][] = [
      ['{"a":[1,2,"x\\u0000"]}', ['input.a[2]']],
      ['{"k\\udc00":1,"v":"\\ud800x"}', ['input["k\\udc00"]', 'input.v']],
      [`${'['.repeat(1001)}${']'.repeat(1001)}`, [`input${'[0]'.repeat(1000)}`]],
    ];
    const before = await countRows('jobs');
    const runs = await Promise.all([
      ...good.map((json) => spindle(['enqueue', 't', json, '--queue', 'parked', '--json'])),
      ...bad.map(([json]) => spindle(['enqueue', 't', json, '--queue', 'parked'])),
    ]);
    for (let i = 0; i < good.length; i++) {
      const run = runs[i]!;
      expect(run.code, run.stderr).toBe(0);
      const job = JSON.parse(run.stdout) as Job;
      expectStoredAs(job.input, JSON.parse(good[i]!));
      expectStoredAs((await client.get(job.id))!.input, JSON.parse(good[i]!));
    }
    for (let i = 0; i < bad.length; i++) {
      const run = runs[good.length + i]!;
      const fields = bad[i]![1];
      expect([1, 2]).toContain(run.code);
      const lines = run.stderr.trimEnd().split('\n');
      expect(lines).toHaveLength(1);
      expect(fields.some((field) => lines[0]!.startsWith(`spindle: ${field} `)), lines[0]).toBe(true);
    }
    expect(await countRows('jobs')).toBe(before + good.length);
  }, 60_000);
});

// ---- handlers, HTTP and workflows on a real supervisor --------------------------------------------

describe('on a running supervisor', () => {
  let handle: SupervisorHandle;
  let base: string;
  let token: string;

  beforeAll(async () => {
    handle = await startSupervisor({
      databaseUrl: db.url,
      workers: WORKERS,
      workflows: WORKFLOWS,
      queues: [LIVE],
      concurrency: 2,
      logLevel: 'silent',
      socket: false,
      stateDir: join(tmp, 'state'),
      pollMs: 100,
      progressFlushMs: 20,
      shutdownTimeoutMs: 2_000,
      httpPort: 0,
    });
    const http = actorState<HttpServerState>(handle, 'http');
    base = http.url!.replace(/\/$/, '');
    token = (await readFile(http.tokenFile, 'utf8')).trim();
  });

  afterAll(async () => {
    await handle?.stop();
  });

  const post = async (path: string, body: string): Promise<{ status: number; body: any }> => {
    const res = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body,
    });
    const raw = await res.text();
    return { status: res.status, body: raw === '' ? null : JSON.parse(raw) };
  };

  describe('HTTP POST /api/jobs and friends', () => {
    it('stores any storable input (201, read back equal); refuses JSON with NUL, a lone surrogate or depth past 1000 (400 naming the path)', async () => {
      await fc.assert(
        fc.asyncProperty(fc.oneof(storableValue.map((v) => ({ v })), jsonTextRecipe.map((r) => ({ r }))), async (c) => {
          if ('v' in c) {
            const reply = await post('/api/jobs', jsonText({ type: 't', input: c.v, options: PARKED }));
            expect(reply.status).toBe(201);
            expectStoredAs(reply.body.job.input, c.v);
            expectStoredAs((await client.get(reply.body.job.id as string))!.input, c.v);
            return;
          }
          const { value, path } = plant(c.r, 'input');
          const before = await countRows('jobs');
          const reply = await post('/api/jobs', jsonText({ type: 't', input: value, options: PARKED }));
          expect(reply.status).toBe(400);
          expect((reply.body.error as string).startsWith(`${path} `), reply.body.error).toBe(true);
          expect(await countRows('jobs')).toBe(before);
        }),
        { numRuns: 30 },
      );
    });

    it('an array body is all or none: one unstorable spec is a 400 naming its index and path, nothing written', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(storableValue, { minLength: 1, maxLength: 4 }), jsonTextRecipe, fc.nat(), async (values, recipe, where) => {
          const specs: unknown[] = values.map((input) => ({ type: 't', input, options: PARKED }));
          const at = where % (specs.length + 1);
          const { value, path } = plant(recipe, 'input');
          specs.splice(at, 0, { type: 't', input: value, options: PARKED });
          const before = await countRows('jobs');
          const reply = await post('/api/jobs', jsonText(specs));
          expect(reply.status).toBe(400);
          const error = reply.body.error as string;
          expect(error.startsWith(`specs[${at}].${path} `) || error.startsWith(`body[${at}].${path} `), error).toBe(true);
          expect(await countRows('jobs')).toBe(before);
        }),
        { numRuns: 20 },
      );
    });

    it('a number past the double range (1e400 reads as Infinity) is a 400 naming it; a body over 1 MiB is a 413; bad reasons, workflow input and payloads are 400s', async () => {
      const before = await countRows('jobs');
      const infinite = await post('/api/jobs', '{"type":"t","input":{"n":[1e400]},"options":{"queue":"parked"}}');
      expect(infinite.status).toBe(400);
      expect(infinite.body.error).toMatch(/^input\.n\[0\] is Infinity/);
      const huge = await post('/api/jobs', JSON.stringify({ type: 't', input: 'x'.repeat(MAX_INPUT_BYTES), options: PARKED }));
      expect(huge.status).toBe(413);
      expect(await countRows('jobs')).toBe(before);

      const job = await client.enqueue('t', null, PARKED);
      const cancel = await post(`/api/jobs/${job.id}/cancel`, JSON.stringify({ reason: 'why\ud800' }));
      expect(cancel.status).toBe(400);
      expect(cancel.body.error).toMatch(/^reason contains a lone surrogate/);
      expect((await client.get(job.id))!.state).toBe('queued');

      const runs = await countRows('workflow_runs');
      const start = await post('/api/workflows', JSON.stringify({ name: 'relay', input: { deep: ['a\u0000'] } }));
      expect(start.status).toBe(400);
      expect(start.body.error).toMatch(/^input\.deep\[0\] contains a NUL character/);
      expect(await countRows('workflow_runs')).toBe(runs);

      const { run } = await client.startWorkflow('relay', null);
      const events = await countRows('workflow_events');
      const send = await post(`/api/workflows/${run.id}/events`, JSON.stringify({ name: 'payload', payload: { x: '\udc00' } }));
      expect(send.status).toBe(400);
      expect(send.body.error).toMatch(/^payload\.x contains a lone surrogate/);
      expect(await countRows('workflow_events')).toBe(events);
      const cancelRun = await post(`/api/workflows/${run.id}/cancel`, JSON.stringify({ reason: '\u0000' }));
      expect(cancelRun.status).toBe(400);
      expect(cancelRun.body.error).toMatch(/^reason contains a NUL character/);
      expect((await client.getWorkflow(run.id))!.cancelRequestedAt).toBeNull();
      await client.sendEvent(run.id, 'payload', 'done');
      expect((await client.waitForWorkflow(run.id, { timeoutMs: 15_000 })).output).toBe('done');
    });
  });

  describe('handlers', () => {
    type Case =
      | { kind: 'echo'; value: unknown }
      | { kind: 'plant'; recipe: Recipe }
      | { kind: 'report'; text: TextRecipe; data: { good: Json } | { bad: Recipe } }
      | { kind: 'throws'; input: ThrowsJobInput };

    const jobCase: fc.Arbitrary<Case> = fc.oneof(
      { weight: 3, arbitrary: storableValue.map((value): Case => ({ kind: 'echo', value })) },
      { weight: 2, arbitrary: anyRecipe.map((recipe): Case => ({ kind: 'plant', recipe })) },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('report' as const),
          text: shortText,
          // Storable data crosses as the job's input first, so it is given as JSON (own __proto__ members kept).
          data: fc.oneof(storableValue.map((good) => ({ good: roundTrip(good) as Json })), anyRecipe.map((bad) => ({ bad }))),
        }),
      },
      {
        weight: 1,
        arbitrary: fc
          .record({ how: fc.constantFrom('name' as const, 'value' as const, 'object' as const), text: shortText })
          .map((input): Case => ({ kind: 'throws', input })),
      },
    );

    const specOf = (c: Case) => {
      const options = { queue: LIVE };
      switch (c.kind) {
        case 'echo':
          return { type: 'echo', input: c.value, options };
        case 'plant':
          return { type: 'plant', input: c.recipe, options };
        case 'report':
          return { type: 'report', input: { db: db.url, text: c.text, data: c.data } satisfies ReportInput, options };
        case 'throws':
          return { type: 'throws', input: c.input, options };
      }
    };

    async function check(c: Case, job: Job): Promise<void> {
      const attempts = await client.attempts(job.id);
      switch (c.kind) {
        case 'echo':
          expect(job).toMatchObject({ state: 'succeeded', attempt: 1 });
          expectStoredAs(job.output, c.value);
          expect(attempts).toMatchObject([{ attempt: 1, outcome: 'succeeded' }]);
          // A string input (a Date arrives as its ISO string) is logged as it is: storable, and short
          // here. Nothing else is logged.
          const input = roundTrip(c.value);
          expect(attempts[0]!.logs).toBe(typeof input === 'string' ? `${input}\n` : null);
          break;
        case 'plant': {
          const { path } = plant(c.recipe, 'output');
          // maxAttempts 3 (the module's): failed at the first all the same, not retried.
          expect(job).toMatchObject({ state: 'failed', attempt: 1, maxAttempts: 3, output: null });
          expect(job.error!.name).toBe('OutputError');
          const prefix = `the handler's result cannot be stored: ${path} `;
          expect(job.error!.message.startsWith(prefix), job.error!.message).toBe(true);
          expect(attempts).toMatchObject([{ attempt: 1, outcome: 'failed' }]);
          break;
        }
        case 'report': {
          const message = text(c.text);
          expect(job).toMatchObject({ state: 'failed', attempt: 1, progress: 50 });
          expect(attempts).toHaveLength(1);
          expect(job.error!.name).toBe('Error');
          if (message === '') expect(job.error!.message).toBe('Error (without a message)');
          else expectPeopleText(job.error!.message, message, MAX_ERROR_CHARS);
          const stack = job.error!.stack!;
          expect(textIsStorable(stack)).toBe(true);
          expect(stack.length).toBeLessThanOrEqual(MAX_ERROR_CHARS);
          if (message !== '') expect(stack.startsWith(`Error: ${escapeForPeople(message)}`), stack.slice(0, 200)).toBe(true);
          expectPeopleText(job.progressMessage, message, MAX_PROGRESS_MESSAGE_CHARS + 100);
          const logs = attempts[0]!.logs!;
          expect(textIsStorable(logs)).toBe(true);
          expect(logs).toContain(`${escapeForPeople(message)}\n`);
          if ('good' in c.data) {
            expectStoredAs(job.progressData, c.data.good);
          } else {
            const { path } = plant(c.data.bad, 'data');
            expect(job.progressData).toBeNull();
            expect(logs).toContain(`[spindle] ctx.progress() dropped data that cannot be stored: ${path} `);
          }
          break;
        }
        case 'throws': {
          const thrown = text(c.input.text);
          expect(job).toMatchObject({ state: 'failed', attempt: 1 });
          expect(attempts).toHaveLength(1);
          const { name, message } = job.error!;
          expect(textIsStorable(name) && textIsStorable(message)).toBe(true);
          if (c.input.how === 'name') {
            // An empty name reads as 'Error'; any other is stored escaped, bounded to 200 characters.
            if (thrown === '') expect(name).toBe('Error');
            else expectPeopleText(name, thrown, 200);
            expect(message).toBe('named');
          } else {
            // Described as JSON, which writes NUL and lone surrogates as \u escapes itself.
            const shown = c.input.how === 'value' ? JSON.stringify(thrown) : JSON.stringify({ detail: thrown });
            expect(message).toBe(`handler threw a non-Error value: ${shown}`);
          }
          break;
        }
      }
    }

    it('an output that cannot be stored fails that job alone (OutputError naming output..., not retried); texts for people are stored escaped; healthy jobs drain beside them', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(jobCase, { minLength: 3, maxLength: 12 }), async (cases) => {
          const jobs = await client.enqueueMany(cases.map(specOf));
          const done = await waitForJobs(jobs.map((j) => j.id));
          for (let i = 0; i < cases.length; i++) await check(cases[i]!, done.get(jobs[i]!.id)!);
        }),
        { numRuns: 10 },
      );
    });

    it('long texts for people: error message and stack bounded to 64 Ki characters with the cut marked and counted, progress message and log line cut, NULs and lone surrogates escaped', async () => {
      const long: TextRecipe[] = [
        { parts: ['x'.repeat(70_000)] },
        { parts: [{ code: 0, times: 65_536 }] },
        // The cut falls inside the emoji run: it must not leave half of a pair.
        { parts: ['x'.repeat(65_535), '\u{1F600}'.repeat(10)] },
        { parts: ['a', { code: 0xdc00, times: 20_000 }, 'z'] },
        { parts: ['\u{1F600}'.repeat(5_000), { code: 0xd800, times: 1 }] },
      ];
      const cases: Case[] = long.map((t) => ({ kind: 'report', text: t, data: { good: null } }));
      // Healthy jobs in the same batch: a huge error must not hold them up.
      const healthy: Case[] = Array.from({ length: 20 }, (_, i) => ({ kind: 'echo', value: { i } }));
      const all = [...cases, ...healthy];
      const jobs = await client.enqueueMany(all.map(specOf));
      const done = await waitForJobs(jobs.map((j) => j.id));
      for (let i = 0; i < all.length; i++) {
        const c = all[i]!;
        const job = done.get(jobs[i]!.id)!;
        if (c.kind !== 'report') {
          await check(c, job);
          continue;
        }
        const message = text(c.text);
        expect(job.state).toBe('failed');
        expectPeopleText(job.error!.message, message, MAX_ERROR_CHARS);
        const stack = job.error!.stack!;
        expect(textIsStorable(stack)).toBe(true);
        expect(stack.length).toBeLessThanOrEqual(MAX_ERROR_CHARS);
        // The stack starts with "Error: " and the message: cut, and marked, when the message is.
        if (escapeForPeople(message).length > MAX_ERROR_CHARS - 10) expect(stack).toMatch(/… \[\d+ more characters cut\]$/);
        else expect(stack.startsWith(`Error: ${escapeForPeople(message)}\n`)).toBe(true);
        const progress = job.progressMessage!;
        expect(textIsStorable(progress)).toBe(true);
        expect(escapeForPeople(message).startsWith(progress.slice(0, 1000))).toBe(true);
        const logs = (await client.attempts(job.id))[0]!.logs!;
        expect(textIsStorable(logs)).toBe(true);
        // One line: cut to MAX_LOG_LINE_CHARS, then escaped (at most six characters each).
        expect(logs.length).toBeLessThanOrEqual(MAX_LOG_LINE_CHARS * 6 + 100);
        expect(escapeForPeople(message).startsWith(logs.slice(0, 1000))).toBe(true);
      }
    });

    it('fixed edge values through a handler: 1000 levels, a ~1 MB string, numbers past 2^53, own __proto__ members come out as they went in', async () => {
      let deep: unknown = { end: -0 };
      for (let i = 1; i < MAX_DEPTH; i++) deep = i % 2 === 0 ? [deep] : { a: deep };
      const values: unknown[] = [
        deep,
        'y'.repeat(MAX_INPUT_BYTES - 2),
        JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":1},"big":[1152921504606846976,1e308,5e-324,-0]}'),
      ];
      const jobs = await client.enqueueMany(values.map((input) => ({ type: 'echo', input, options: { queue: LIVE } })));
      const done = await waitForJobs(jobs.map((j) => j.id));
      for (let i = 0; i < values.length; i++) {
        const job = done.get(jobs[i]!.id)!;
        expect(job.state).toBe('succeeded');
        expectStoredAs(job.output, values[i]);
      }
      const third = done.get(jobs[2]!.id)!.output as Record<string, unknown>;
      expect(Object.hasOwn(third, '__proto__')).toBe(true);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    });
  });

  describe('workflows', () => {
    it('input and event payloads are recorded as step results and returned as they went in', async () => {
      // 1000 levels is the most either may have; the event's record wraps it in one more, which is fine.
      let deep: unknown = [-0];
      for (let i = 1; i < MAX_DEPTH; i++) deep = i % 2 === 0 ? [deep] : { a: deep };
      await fc.assert(
        fc.asyncProperty(fc.array(fc.tuple(storableValue, storableValue), { minLength: 1, maxLength: 4 }), async (pairs) => {
          const runs = await Promise.all(pairs.map(([input]) => client.startWorkflow('relay', input)));
          await Promise.all(runs.map(({ run }, i) => client.sendEvent(run.id, 'payload', pairs[i]![1])));
          for (let i = 0; i < pairs.length; i++) {
            const [input, payload] = pairs[i]!;
            const id = runs[i]!.run.id;
            const done = await client.waitForWorkflow(id, { timeoutMs: 15_000 });
            expect(done.state, JSON.stringify(done.error)).toBe('succeeded');
            expectStoredAs(done.output, payload);
            const { steps } = (await client.getWorkflow(id))!;
            expect(steps.map((s) => `${s.kind}:${s.name}:${s.state}`)).toEqual(['step:input:succeeded', 'event:payload:succeeded', 'step:payload:succeeded']);
            expectStoredAs(steps[0]!.result, input);
            expectStoredAs(steps[1]!.result, { timedOut: false, payload });
            expectStoredAs(steps[2]!.result, payload);
          }
        }),
        { numRuns: 8, examples: [[[[deep, deep]]]] },
      );
    });

    it('a step result that cannot be stored fails the step (recorded, WorkflowStepError in the body); a body result fails the run with an OutputError; none stays running', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.tuple(anyRecipe, fc.constantFrom('step' as const, 'body' as const)), { minLength: 1, maxLength: 4 }),
          async (cases) => {
            const runs = await Promise.all(cases.map(([recipe, where]) => client.startWorkflow('plant', { where, recipe } satisfies PlantInput)));
            for (let i = 0; i < cases.length; i++) {
              const [recipe, where] = cases[i]!;
              const id = runs[i]!.run.id;
              const done = await client.waitForWorkflow(id, { timeoutMs: 15_000 });
              const detail = (await client.getWorkflow(id))!;
              if (where === 'step') {
                const { path } = plant(recipe, 'result');
                const message = `step "bad" returned a value that cannot be stored: ${path} `;
                expect(done.state).toBe('succeeded');
                const caught = done.output as { name: string; message: string };
                expect(caught.name).toBe('WorkflowStepError');
                expect(caught.message.startsWith(message), caught.message).toBe(true);
                expect(detail.steps).toHaveLength(1);
                expect(detail.steps[0]).toMatchObject({ name: 'bad', state: 'failed', result: null });
                expect((detail.steps[0]!.error as { name: string }).name).toBe('OutputError');
              } else {
                const { path } = plant(recipe, 'output');
                expect(done.state).toBe('failed');
                expect(done.error!.name).toBe('OutputError');
                expect(done.error!.message, String(done.error!.message)).toContain(` cannot be stored: ${path} `);
                expect(done.output).toBeNull();
              }
              expect(done.resumes).toBe(1);
            }
          },
        ),
        { numRuns: 10 },
      );
    });

    it('a body that throws a plain Error fails its run once, with the error recorded', async () => {
      const { run } = await client.startWorkflow('throws', { extra: 'plain' } satisfies RunThrowsInput);
      const done = await client.waitForWorkflow(run.id, { timeoutMs: 15_000 });
      expect(done).toMatchObject({ state: 'failed', resumes: 1, error: { name: 'Error', message: 'the body failed' } });
    });

    // Before the fix (issue 19): errorJson() (src/workflows/signals.ts) copies an Error's seq, recorded, reached, jobId,
    // state and step members into the run's error record, and makes only string ones storable. A
    // body that throws an Error whose `state` holds a NUL (or whose `seq` is a BigInt) makes the
    // final write fail (finishWorkflowRun is not behind #tx's data-error check; JSON.stringify
    // throws on the BigInt before it), resumeRun takes it for a database error and releases the
    // run: it stays `running`, its body re-run about every second, for ever.
    it('a body that throws an Error with an unstorable extra member (state, seq, step) still fails its run, instead of staying running', async () => {
      const extras: RunThrowsInput['extra'][] = ['nul-in-state', 'bigint-seq', 'lone-surrogate-in-step'];
      const runs = await Promise.all(extras.map((extra) => client.startWorkflow('throws', { extra } satisfies RunThrowsInput)));
      // A plain throw ends its run in well under a second (above); three seconds is a bound, not a pause.
      try {
        const ended = await Promise.all(
          runs.map(({ run }) => client.waitForWorkflow(run.id, { timeoutMs: 3_000 }).catch((error: Error) => error)),
        );
        for (const done of ended) {
          expect(done).not.toBeInstanceOf(Error);
          expect(done).toMatchObject({ state: 'failed', error: { message: 'the body failed' } });
        }
      } finally {
        // Runs stuck this way would be resumed until the supervisor stops.
        await db.pool.query('DELETE FROM spindle.workflow_runs WHERE id = ANY($1::text[])', [runs.map(({ run }) => run.id)]);
      }
    });

    it('a step error whose message holds NUL or lone surrogates is recorded escaped and bounded, and the body sees that text', async () => {
      const long: TextRecipe[] = [
        { parts: [{ code: 0, times: 65_536 }] },
        { parts: ['x'.repeat(70_000)] },
        { parts: ['a', { code: 0xdbff, times: 30_000 }] },
      ];
      const texts = [...fc.sample(shortText.filter((t) => text(t) !== ''), { numRuns: 12, seed: 19 }), ...long];
      const runs = await Promise.all(texts.map((t) => client.startWorkflow('plant', { where: 'throw', text: t } satisfies PlantInput)));
      for (let i = 0; i < texts.length; i++) {
        const message = text(texts[i]!);
        const id = runs[i]!.run.id;
        const done = await client.waitForWorkflow(id, { timeoutMs: 15_000 });
        expect(done.state).toBe('succeeded');
        const caught = done.output as { name: string; message: string };
        expect(caught.name).toBe('WorkflowStepError');
        expectPeopleText(caught.message, message, MAX_ERROR_CHARS);
        const step = (await client.getWorkflow(id))!.steps[0]!;
        expect(step.state).toBe('failed');
        const recorded = step.error as { message: string; stack?: string };
        expectPeopleText(recorded.message, message, MAX_ERROR_CHARS);
        if (recorded.stack !== undefined) {
          expect(textIsStorable(recorded.stack)).toBe(true);
          expect(recorded.stack.length).toBeLessThanOrEqual(MAX_ERROR_CHARS);
        }
      }
    });
  });
});

// ---- schedules ---------------------------------------------------------------------------------

describe('cron schedules', () => {
  // Before the fix (issue 19): parseSchedule() (src/workflows/registry.ts) keeps a schedule's `input` unchecked and the
  // scheduler writes JSON.stringify(input) at every tick (src/actors/scheduler.ts #cron). An input
  // holding a NUL is refused by PostgreSQL at each cron check (a warning every 250 ms), and the
  // exception ends the loop over schedules: every schedule after it never fires.
  it('a schedule whose input cannot be stored is refused at load; the schedules beside it fire', async () => {
    const own = await createTestDatabase();
    // Its own database: only the leader fires schedules, and the supervisor above leads in ours.
    const cron = await startSupervisor({
      databaseUrl: own.url,
      // In this order: the bad schedule is checked first.
      workers: { 'cron-bad': join(WORKERS, '_cron-bad.ts'), 'cron-good': join(WORKERS, '_cron-good.ts') },
      workflows: {},
      concurrency: 1,
      logLevel: 'silent',
      socket: false,
      stateDir: join(tmp, 'cron-state'),
      pollMs: 100,
    });
    try {
      // A schedule every second: three seconds bound the wait for its first job, they are no pause.
      const fired = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 3_000);
        cron.supervisor.events.on('job:finished', (e) => {
          if (e.type !== 'cron-good') return;
          clearTimeout(timer);
          resolve(true);
        });
      });
      expect(fired).toBe(true);
    } finally {
      await cron.stop();
      await own.drop();
    }
  });
});

// ---- the check -----------------------------------------------------------------------------

describe('issue 19', () => {
  it(
    'a handler that returns a NUL byte beside 200 healthy jobs on one supervisor: the bad job fails with a readable error within a second, ' +
      'all 200 others succeed, and SIGTERM exits within the shutdown timeout with nothing left running',
    async () => {
      const shutdownTimeoutMs = 2_000;
      const own = await createTestDatabase();
      const stateDir = await mkdtemp(join(tmpdir(), 'spindle-storable-child-'));
      const ownClient = createClient({ connectionString: own.url, maxConnections: 2 });
      const options = {
        databaseUrl: own.url,
        workers: WORKERS,
        workflows: WORKFLOWS,
        queues: ['issue'],
        concurrency: 2,
        logLevel: 'warn' as const,
        stateDir,
        shutdownTimeoutMs,
        pollMs: 100,
      };
      const sup = new SupervisorProcess(options);
      try {
        // Ready: the supervisor has started and claims from now on (a bound, not a pause).
        await sup.ready(30_000);
        // One job first, so the threads are up and have loaded tsx: the second is for the NUL job alone.
        const warmUp = await ownClient.enqueue('echo', { warm: true }, { queue: 'issue' });
        await ownClient.waitFor(warmUp.id, { timeoutMs: 30_000 });
        const specs = Array.from({ length: 201 }, (_, i) =>
          i === 100 ? { type: 'returns-nul', options: { queue: 'issue' } } : { type: 'echo', input: { i }, options: { queue: 'issue' } },
        );
        const jobs = await ownClient.enqueueMany(specs);
        const bad = jobs[100]!;
        const healthy = jobs.filter((j) => j.id !== bad.id);
        await waitUntilEnded(own.url, jobs.map((j) => j.id));

        const failed = (await ownClient.get(bad.id))!;
        expect(failed).toMatchObject({ state: 'failed', attempt: 1, output: null });
        expect(failed.error).toMatchObject({
          name: 'OutputError',
          message: "the handler's result cannot be stored: output.s contains a NUL character (U+0000), which PostgreSQL cannot store",
        });
        const { rows: timing } = await own.pool.query<{ ms: number }>(
          'SELECT extract(epoch FROM finished_at - started_at) * 1000 AS ms FROM spindle.jobs WHERE id = $1',
          [bad.id],
        );
        expect(Number(timing[0]!.ms)).toBeLessThan(1_000);

        const { rows: states } = await own.pool.query<{ state: string; n: number }>(
          `SELECT state, count(*)::int AS n FROM spindle.jobs WHERE id = ANY($1::bigint[]) GROUP BY state`,
          [healthy.map((j) => j.id)],
        );
        expect(states).toEqual([{ state: 'succeeded', n: 200 }]);
        const { rows: outputs } = await own.pool.query<{ input: unknown; output: unknown }>(
          `SELECT input, output FROM spindle.jobs WHERE id = ANY($1::bigint[])`,
          [healthy.map((j) => j.id)],
        );
        for (const row of outputs) expect(row.output).toEqual(row.input);

        const stopAt = Date.now();
        await sup.stop();
        expect(sup.exitStatus, sup.stderr).toMatchObject({ code: 0, signal: null });
        // Nothing was running, so the stop is quick; the bound is the shutdown timeout and slack.
        expect(sup.exitedAt! - stopAt).toBeLessThan(shutdownTimeoutMs + 3_000);
        expect(sup.lines.some((e) => e.event === 'stopped')).toBe(true);

        const { rows: running } = await own.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM spindle.jobs WHERE state = 'running'`);
        expect(running[0]!.n).toBe(0);
        // Each job ran exactly once: one attempt recorded, one start seen by the supervisor.
        const { rows: attempts } = await own.pool.query<{ job_id: string; n: number }>(
          `SELECT job_id::text, count(*)::int AS n FROM spindle.attempts GROUP BY job_id`,
        );
        expect(attempts).toHaveLength(202);
        expect(attempts.every((a) => a.n === 1)).toBe(true);
        const { rows: tries } = await own.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM spindle.jobs WHERE attempt <> 1`);
        expect(tries[0]!.n).toBe(0);
        const started = new Map<string, number>();
        for (const e of sup.lines) if (e.event === 'job:started') started.set(String(e.id), (started.get(String(e.id)) ?? 0) + 1);
        expect(started.size).toBe(202);
        expect([...started.values()].every((n) => n === 1)).toBe(true);
      } finally {
        sup.signal('SIGKILL');
        await sup.exited;
        await ownClient.close();
        await own.drop();
        await rm(stateDir, { recursive: true, force: true });
      }
    },
    60_000,
  );
});
