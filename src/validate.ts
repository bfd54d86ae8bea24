/**
 * Checks of what users pass to the Client, before anything reaches the database.
 * spindle.enqueue_job() in SQL applies the same rules for callers that are not this Client.
 */
import { ValidationError } from './errors.ts';
import { FINAL_STATES, type JobState } from './job.ts';
import { findUnstorable, textProblem } from './storable.ts';

/** A job type or queue name. */
export const NAME_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;
/** Characters of a cancel reason. */
export const MAX_REASON_CHARS = 1_000;
/** Default bound on the JSON text of a job's input. */
export const DEFAULT_MAX_INPUT_BYTES = 1024 * 1024;

const INT32_MAX = 2_147_483_647;
const ALL_STATES: readonly JobState[] = ['queued', 'running', ...FINAL_STATES];

/** Throws unless `value` is a valid job type or queue name. */
export function checkName(field: string, value: unknown): string {
  if (typeof value !== 'string' || !NAME_PATTERN.test(value)) {
    throw new ValidationError(field, `must be 1 to 128 characters of A-Z a-z 0-9 _ . : -, got ${describe(value)}`);
  }
  return value;
}

/** Throws unless `value` is an integer within [min, max]; `undefined` passes through. */
export function checkInteger(field: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ValidationError(field, `must be an integer from ${min} to ${max}, got ${describe(value)}`);
  }
  return value;
}

/**
 * An ISO 8601 date, or date-time with its time zone (seconds and fraction optional); the SQL function
 * spindle.enqueue_job() holds the same pattern.
 */
const ISO_DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?([Zz]|[+-]\d{2}(?::?\d{2})?))?$/;
const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
/** How an accepted date is described in errors. */
export const ISO_DATE_FORMS = 'an ISO 8601 date (2026-12-02) or date-time with a time zone (2026-12-02T10:00:00Z)';
/** The longest delay accepted (100 years), in SQL too: a later time is a mistake, not a schedule. */
export const MAX_DELAY_MS = 3_155_760_000_000;

/**
 * `text` as a Date when it is an ISO 8601 date (midnight UTC) or date-time with its zone (Z, ±HH,
 * ±HHMM, ±HH:MM), every field in range and the year from 1 to 9999; else undefined. A date-time
 * without a zone would mean one time here and another in the database; JavaScript's own parser
 * would also roll 2026-02-30 over to March 2.
 */
export function parseIsoDate(text: string): Date | undefined {
  const m = ISO_DATE_TIME.exec(text);
  if (m === null) return undefined;
  const [, y, mo, d, h = '00', mi = '00', sec = '00', fraction = '', zone = 'Z'] = m;
  const [year, month, day] = [Number(y), Number(mo), Number(d)];
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = month === 2 && leap ? 29 : DAYS_IN_MONTH[month - 1];
  if (m[4] !== undefined && m[8] === undefined) return undefined;
  const offset = zone === 'Z' || zone === 'z' ? 'Z' : `${zone.slice(0, 3)}:${zone.length > 3 ? zone.slice(-2) : '00'}`;
  const inRange =
    year >= 1 && days !== undefined && day >= 1 && day <= days &&
    Number(h) <= 23 && Number(mi) <= 59 && Number(sec) <= 59 &&
    (offset === 'Z' || (Number(offset.slice(1, 3)) <= 23 && Number(offset.slice(4)) <= 59));
  if (!inRange) return undefined;
  // Every field checked, this is ECMAScript's own date-time format, which Date reads exactly.
  return new Date(`${y}-${mo}-${d}T${h}:${mi}:${sec}.${fraction.padEnd(3, '0').slice(0, 3)}${offset}`);
}

/** Throws unless `value` is a valid Date or an ISO 8601 string (see parseIsoDate); returns it as ISO text. */
export function checkDate(field: string, value: unknown): string {
  const date = value instanceof Date ? value : typeof value === 'string' ? parseIsoDate(value) : undefined;
  if (date === undefined || Number.isNaN(date.getTime())) {
    throw new ValidationError(field, `must be a Date, ${ISO_DATE_FORMS}, got ${describe(value)}`);
  }
  const year = date.getUTCFullYear();
  if (year < 1 || year > 9999) throw new ValidationError(field, `must be a date from year 1 to 9999, got ${date.toISOString()}`);
  return date.toISOString();
}

/** Throws unless `value` is a job state. */
export function checkState(field: string, value: unknown): JobState {
  if (!ALL_STATES.includes(value as JobState)) {
    throw new ValidationError(field, `must be one of ${ALL_STATES.join(', ')}, got ${describe(value)}`);
  }
  return value as JobState;
}

/** Throws unless `value` is a job id: a positive integer, as a number, bigint or string. */
export function checkId(field: string, value: unknown): string {
  const text = typeof value === 'number' || typeof value === 'bigint' ? String(value) : value;
  if (typeof text !== 'string' || !/^[1-9][0-9]{0,18}$/.test(text)) {
    throw new ValidationError(field, `must be a job id (a positive integer), got ${describe(value)}`);
  }
  return text;
}

/**
 * Serialises a value a caller gives to be stored (a job's input, a workflow's input, an event's
 * payload), refusing what cannot be stored as it is (see storable.ts), and bounds its size.
 */
export function serializeInput(input: unknown, maxBytes: number, field = 'input'): string {
  const bad = findUnstorable(input, field);
  if (bad !== undefined) throw new ValidationError(bad.path, bad.problem);
  const json = JSON.stringify(input === undefined ? null : input);
  const bytes = Buffer.byteLength(json);
  if (bytes > maxBytes) {
    throw new ValidationError(field, `is ${bytes} bytes of JSON, over the limit of ${maxBytes} bytes`);
  }
  return json;
}

/** Throws unless `value` is a string of 1 to `maxChars` characters that can be stored (no NUL, no lone surrogate). */
export function checkText(field: string, value: unknown, maxChars: number): string {
  if (typeof value !== 'string' || value.length < 1 || value.length > maxChars) {
    throw new ValidationError(field, `must be a string of 1 to ${maxChars} characters, got ${describe(value)}`);
  }
  const problem = textProblem(value);
  if (problem !== undefined) throw new ValidationError(field, problem);
  return value;
}

/** Options of one enqueue, as users pass them. */
export interface EnqueueOptions {
  /** Queue name (default 'default'); a supervisor serves the queues it is started with. */
  queue?: string;
  /** Higher runs first; default 0. */
  priority?: number;
  /** Do not run before this time. */
  runAt?: Date | string;
  /** Do not run before this many milliseconds from now. */
  delayMs?: number;
  /** Attempts before the job fails for good; default 3, or the worker module's own. */
  maxAttempts?: number;
  /** Per-attempt time limit; the worker module's or the supervisor's default otherwise. */
  timeoutMs?: number;
  /** While a job with this key is queued or running, enqueueing the same key returns that job. */
  key?: string;
  /** Jobs with the same concurrency key share the type's per-key limits (`keyConcurrency`, `keyRateLimit`) and its fair turns. */
  concurrencyKey?: string;
  /**
   * At most one job per key per window: the first enqueue of the key makes a job and opens a window
   * of `windowMs`; until it ends, enqueueing the key returns that job, whatever its state.
   */
  throttle?: { key: string; windowMs: number };
  /**
   * The job runs `delayMs` after the last enqueue of the key: while a job of the key is queued and has
   * never run, enqueueing the key makes that job this enqueue's (type, input and options) and moves
   * its run_at, and returns it; otherwise it makes a new job.
   */
  debounce?: { key: string; delayMs: number };
}

const OPTION_KEYS = new Set(['queue', 'priority', 'runAt', 'delayMs', 'maxAttempts', 'timeoutMs', 'key', 'concurrencyKey', 'throttle', 'debounce', 'client']);

/** The longest concurrency key, as the SQL function has it. */
export const MAX_CONCURRENCY_KEY_CHARS = 128;
/** The longest throttle or debounce key, as the SQL function has it. */
export const MAX_FLOW_KEY_CHARS = 128;

/** Enqueue options once checked: the JSON object spindle.enqueue_job() takes (runAt an ISO string). */
export interface CheckedEnqueueOptions {
  queue?: string;
  priority?: number;
  runAt?: string;
  delayMs?: number;
  maxAttempts?: number;
  timeoutMs?: number;
  key?: string;
  concurrencyKey?: string;
  throttle?: { key: string; windowMs: number };
  debounce?: { key: string; delayMs: number };
  /** Set by the Client from its producer span (tracing.ts), never by users. */
  traceparent?: string;
}

/** Validates enqueue options; returns them as the JSON object spindle.enqueue_job() takes. */
export function checkEnqueueOptions(options: unknown): CheckedEnqueueOptions {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object' || Array.isArray(options)) {
    throw new ValidationError('options', `must be an object, got ${describe(options)}`);
  }
  const o = options as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!OPTION_KEYS.has(key)) throw new ValidationError(`options.${key}`, 'is not a known option');
  }
  const out: CheckedEnqueueOptions = {};
  if (o.queue !== undefined) out.queue = checkName('options.queue', o.queue);
  if (o.priority !== undefined) out.priority = checkInteger('options.priority', o.priority, -INT32_MAX - 1, INT32_MAX);
  if (o.runAt !== undefined && o.delayMs !== undefined) {
    throw new ValidationError('options.runAt', 'cannot be combined with options.delayMs');
  }
  if (o.runAt !== undefined) out.runAt = checkDate('options.runAt', o.runAt);
  if (o.delayMs !== undefined) out.delayMs = checkInteger('options.delayMs', o.delayMs, 0, MAX_DELAY_MS);
  if (o.maxAttempts !== undefined) out.maxAttempts = checkInteger('options.maxAttempts', o.maxAttempts, 1, 1_000_000);
  if (o.timeoutMs !== undefined) out.timeoutMs = checkInteger('options.timeoutMs', o.timeoutMs, 1, INT32_MAX);
  if (o.key !== undefined) {
    out.key = checkText('options.key', o.key, 512);
  }
  if (o.concurrencyKey !== undefined) {
    out.concurrencyKey = checkText('options.concurrencyKey', o.concurrencyKey, MAX_CONCURRENCY_KEY_CHARS);
  }
  if (o.throttle !== undefined) {
    const { key, ms } = checkFlowOption('throttle', o.throttle, 'windowMs');
    out.throttle = { key, windowMs: ms };
  }
  if (o.debounce !== undefined) {
    const { key, ms } = checkFlowOption('debounce', o.debounce, 'delayMs');
    out.debounce = { key, delayMs: ms };
  }
  checkFlowCombinations(o);
  return out;
}

/** Checks options.throttle or options.debounce (`name`): an object of a key and a duration (`msName`), nothing else. */
function checkFlowOption(name: string, value: unknown, msName: string): { key: string; ms: number } {
  const field = `options.${name}`;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError(field, `must be an object { key, ${msName} }, got ${describe(value)}`);
  }
  const v = value as Record<string, unknown>;
  for (const key of Object.keys(v)) {
    if (key !== 'key' && key !== msName) throw new ValidationError(`${field}.${key}`, 'is not a known option');
  }
  const key = checkText(`${field}.key`, v.key, MAX_FLOW_KEY_CHARS);
  const ms = v[msName];
  if (ms === undefined) throw new ValidationError(`${field}.${msName}`, `must be an integer from 1 to ${MAX_DELAY_MS}, got undefined`);
  return { key, ms: checkInteger(`${field}.${msName}`, ms, 1, MAX_DELAY_MS)! };
}

/** A dedupe key, a throttle and a debounce each decide alone whether an enqueue makes a job; a debounce also decides when it runs. */
function checkFlowCombinations(o: Record<string, unknown>): void {
  const given = (name: string) => o[name] !== undefined;
  if (given('throttle') && given('debounce')) throw new ValidationError('options.throttle', 'cannot be combined with options.debounce');
  if (given('throttle') && given('key')) throw new ValidationError('options.throttle', 'cannot be combined with options.key');
  if (given('debounce') && given('key')) throw new ValidationError('options.debounce', 'cannot be combined with options.key');
  const timing = given('runAt') ? 'runAt' : given('delayMs') ? 'delayMs' : undefined;
  if (given('debounce') && timing !== undefined) {
    throw new ValidationError('options.debounce', `cannot be combined with options.${timing}: its own delayMs decides when the job runs`);
  }
}

/** A short, safe rendering of a bad value for an error message. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  if (typeof value === 'bigint') return `${value}n`;
  if (value instanceof Date) return 'an invalid Date';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}
