/**
 * Flow-control limits as users write them: in a worker module's `options`, through the Client, the
 * CLI and the HTTP API. One set of rules checks them all, naming the field that is wrong; the
 * database stores what passed (db/limits.ts) and enforces it in the claim (migration 0012).
 */
import { ValidationError } from './errors.ts';
import { describe, NAME_PATTERN } from './validate.ts';

/** At most `limit` job starts in any window of `intervalMs`. */
export interface RateLimit {
  limit: number;
  intervalMs: number;
}

/** The limits of one job type or queue, across every supervisor. */
export interface FlowLimits {
  /** At most this many of its jobs running at once. */
  globalConcurrency?: number;
  /** At most this many running at once per concurrency key (types only). */
  keyConcurrency?: number;
  /** At most `limit` starts in any window of `intervalMs`. */
  rateLimit?: RateLimit;
  /** The same, per concurrency key (types only). */
  keyRateLimit?: RateLimit;
  /** Claim round-robin across concurrency keys, so a key with many jobs does not hold up one with few (types only). */
  fair?: boolean;
}

/** What an operator sets: a field set to null lifts the module's limit of that name. */
export type FlowLimitsUpdate = { [K in keyof FlowLimits]?: FlowLimits[K] | null };

/** A job type or a queue: what limits and pauses apply to. */
export interface LimitScope {
  kind: 'type' | 'queue';
  name: string;
}

const INT32_MAX = 2_147_483_647;
/** The longest rate window: a day. */
export const MAX_RATE_INTERVAL_MS = 86_400_000;
export const FLOW_LIMIT_FIELDS = ['globalConcurrency', 'keyConcurrency', 'rateLimit', 'keyRateLimit', 'fair'] as const;
const KEY_ONLY_FIELDS: readonly string[] = ['keyConcurrency', 'keyRateLimit', 'fair'];

/** `resize`, `type:resize` or `queue:emails`; a bare name is a type. */
export function parseScope(field: string, value: unknown): LimitScope {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const o = value as Record<string, unknown>;
    if ((o.kind === 'type' || o.kind === 'queue') && Object.keys(o).length === 2 && 'name' in o) {
      return { kind: o.kind, name: scopeName(`${field}.name`, o.name) };
    }
    const kinds = (['type', 'queue'] as const).filter((k) => o[k] !== undefined);
    if (kinds.length !== 1 || Object.keys(o).length !== 1) {
      throw new ValidationError(field, 'must be { type: NAME } or { queue: NAME }');
    }
    const kind = kinds[0]!;
    return { kind, name: scopeName(`${field}.${kind}`, o[kind]) };
  }
  if (typeof value !== 'string') throw new ValidationError(field, `must be TYPE, type:TYPE or queue:QUEUE, got ${describe(value)}`);
  const m = /^(type|queue):(.*)$/s.exec(value);
  if (m) return { kind: m[1] as 'type' | 'queue', name: scopeName(field, m[2]) };
  return { kind: 'type', name: scopeName(field, value) };
}

function scopeName(field: string, value: unknown): string {
  if (typeof value !== 'string' || !NAME_PATTERN.test(value)) {
    throw new ValidationError(field, `must name a type or queue of 1 to 128 characters of A-Z a-z 0-9 _ . : -, got ${describe(value)}`);
  }
  return value;
}

/** `type resize` */
export function scopeLabel(scope: LimitScope): string {
  return `${scope.kind} ${scope.name}`;
}

/**
 * Checks limits; `field` prefixes the names in errors (`options.globalConcurrency`). With
 * `allowNull`, a null field is kept (an operator lifting a module's limit).
 */
export function checkFlowLimits(field: string, raw: unknown, scope: LimitScope['kind'], allowNull = false): FlowLimitsUpdate {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ValidationError(field, `must be an object, got ${describe(raw)}`);
  }
  const o = raw as Record<string, unknown>;
  const out: FlowLimitsUpdate = {};
  const name = (key: string) => (field === '' ? key : `${field}.${key}`);
  for (const key of Object.keys(o)) {
    if (!(FLOW_LIMIT_FIELDS as readonly string[]).includes(key)) throw new ValidationError(name(key), 'is not a known limit');
    if (scope === 'queue' && KEY_ONLY_FIELDS.includes(key) && o[key] !== null && o[key] !== false) {
      throw new ValidationError(name(key), 'applies to job types only (concurrency keys belong to a type)');
    }
  }
  for (const key of FLOW_LIMIT_FIELDS) {
    const value = o[key];
    if (value === undefined) continue;
    if (value === null) {
      if (!allowNull) throw new ValidationError(name(key), 'must not be null');
      out[key] = null;
      continue;
    }
    if (key === 'fair') {
      if (typeof value !== 'boolean') throw new ValidationError(name(key), `must be true or false, got ${describe(value)}`);
      out.fair = value;
    } else if (key === 'rateLimit' || key === 'keyRateLimit') {
      out[key] = checkRate(name(key), value);
    } else {
      out[key] = positiveInt(name(key), value, INT32_MAX);
    }
  }
  return out;
}

function checkRate(field: string, value: unknown): RateLimit {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError(field, `must be { limit, intervalMs }, got ${describe(value)}`);
  }
  const o = value as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (key !== 'limit' && key !== 'intervalMs') throw new ValidationError(`${field}.${key}`, 'is not a known field');
  }
  return {
    limit: positiveInt(`${field}.limit`, o.limit, 1_000_000),
    intervalMs: positiveInt(`${field}.intervalMs`, o.intervalMs, MAX_RATE_INTERVAL_MS),
  };
}

function positiveInt(field: string, value: unknown, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) {
    throw new ValidationError(field, `must be an integer from 1 to ${max}, got ${describe(value)}`);
  }
  return value;
}

/** `20 per 1 s` */
export function rateText(rate: RateLimit): string {
  const { intervalMs: ms } = rate;
  const window = ms % 60_000 === 0 ? `${ms / 60_000} min` : ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
  return `${rate.limit} per ${window}`;
}

/** The flow-control limits among a worker module's options. */
export function flowLimitsOf(options: FlowLimits): FlowLimits {
  const limits: Record<string, unknown> = {};
  for (const key of FLOW_LIMIT_FIELDS) if (options[key] !== undefined) limits[key] = options[key];
  return limits as FlowLimits;
}

/** Whether any limit is set (a scope with none claims on the fast path). */
export function hasLimits(limits: FlowLimitsUpdate): boolean {
  return FLOW_LIMIT_FIELDS.some((key) => limits[key] !== undefined && limits[key] !== null && limits[key] !== false);
}
