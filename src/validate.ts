/**
 * Checks of what users pass to the Client, before anything reaches the database.
 * spindle.enqueue_job() in SQL applies the same rules for callers that are not this Client.
 */
import { ValidationError } from './errors.ts';
import { FINAL_STATES, type JobState } from './job.ts';

/** A job type or queue name. */
export const NAME_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;
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

/** Throws unless `value` is a valid Date or ISO date string; returns it as ISO text. */
export function checkDate(field: string, value: unknown): string {
  const date = value instanceof Date ? value : typeof value === 'string' ? new Date(value) : undefined;
  if (date === undefined || Number.isNaN(date.getTime())) {
    throw new ValidationError(field, `must be a valid Date or ISO date string, got ${describe(value)}`);
  }
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

/** Serialises a job's input, refusing what JSON would silently drop or change, and bounds its size. */
export function serializeInput(input: unknown, maxBytes: number): string {
  checkJsonable(input, 'input', new Set());
  const json = JSON.stringify(input === undefined ? null : input);
  const bytes = Buffer.byteLength(json);
  if (bytes > maxBytes) {
    throw new ValidationError('input', `is ${bytes} bytes of JSON, over the limit of ${maxBytes} bytes`);
  }
  return json;
}

function checkJsonable(value: unknown, path: string, seen: Set<object>): void {
  switch (typeof value) {
    case 'string':
    case 'boolean':
    case 'undefined':
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new ValidationError(path, `is ${value}, which JSON cannot hold`);
      return;
    case 'bigint':
    case 'function':
    case 'symbol':
      throw new ValidationError(path, `is a ${typeof value}, which JSON cannot hold`);
    case 'object': {
      if (value === null) return;
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return;
      if (value instanceof Map || value instanceof Set) {
        throw new ValidationError(path, `is a ${value.constructor.name}, which JSON cannot hold (use an object or array)`);
      }
      if (seen.has(value)) throw new ValidationError(path, 'is a circular reference, which JSON cannot hold');
      seen.add(value);
      if (Array.isArray(value)) {
        value.forEach((item, i) => checkJsonable(item, `${path}[${i}]`, seen));
      } else {
        for (const [key, item] of Object.entries(value)) {
          if (item !== undefined) checkJsonable(item, `${path}.${key}`, seen);
        }
      }
      seen.delete(value);
      return;
    }
  }
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
}

const OPTION_KEYS = new Set(['queue', 'priority', 'runAt', 'delayMs', 'maxAttempts', 'timeoutMs', 'key', 'client']);

/** Enqueue options once checked: the JSON object spindle.enqueue_job() takes (runAt an ISO string). */
export interface CheckedEnqueueOptions {
  queue?: string;
  priority?: number;
  runAt?: string;
  delayMs?: number;
  maxAttempts?: number;
  timeoutMs?: number;
  key?: string;
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
  if (o.delayMs !== undefined) out.delayMs = checkInteger('options.delayMs', o.delayMs, 0, Number.MAX_SAFE_INTEGER);
  if (o.maxAttempts !== undefined) out.maxAttempts = checkInteger('options.maxAttempts', o.maxAttempts, 1, 1_000_000);
  if (o.timeoutMs !== undefined) out.timeoutMs = checkInteger('options.timeoutMs', o.timeoutMs, 1, INT32_MAX);
  if (o.key !== undefined) {
    if (typeof o.key !== 'string' || o.key.length < 1 || o.key.length > 512) {
      throw new ValidationError('options.key', `must be a string of 1 to 512 characters, got ${describe(o.key)}`);
    }
    out.key = o.key;
  }
  return out;
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
