/**
 * Finds the worker modules (one job type each) and reads what they export,
 * without importing user code into the main thread: every module is imported
 * on a thread of the pool (probe.ts), one after the other. A module that
 * throws, exits its thread or hangs at import gets a `loadError` and stays in
 * the registry, so its jobs are claimed and failed with that error rather
 * than left queued forever; the other modules are probed on another thread.
 */
import type { Dirent } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_BACKOFF, type BackoffOptions } from '../backoff.ts';
import { ValidationError } from '../errors.ts';
import { checkFlowLimits, FLOW_LIMIT_FIELDS, type FlowLimits } from '../limits.ts';
import { NAME_PATTERN } from '../validate.ts';
import { MIN_MEMORY_MB, WorkerPool } from './pool.ts';
import { probeModules, type ProbeHost } from './probe.ts';
import { MODULE_IMPORT_LIMIT_MS, type ModuleReport } from './protocol.ts';

/** File extensions of worker modules, in the order preferred when two files give the same type. */
export const WORKER_MODULE_EXTENSIONS: readonly string[] = ['.ts', '.mts', '.js', '.mjs'];
/** Default bound on importing one module (and on the start of the thread that imports it): as on a job's thread. */
export const DEFAULT_PROBE_TIMEOUT_MS = MODULE_IMPORT_LIMIT_MS;

const TEST_FILE = /\.(test|spec)\.[cm]?[jt]s$/;
const DECLARATION_FILE = /\.d\.[cm]?ts$/;
const MAX_TIMER_MS = 2_147_483_647;
const KNOWN_OPTIONS = ['timeoutMs', 'maxAttempts', 'concurrency', 'maxMemoryMb', 'backoff', ...FLOW_LIMIT_FIELDS];

/**
 * A worker module's `options` export, validated. Absent fields take the runtime's defaults. The
 * flow-control limits (FlowLimits) hold across every supervisor; `concurrency` holds on one.
 */
export interface WorkerOptions extends FlowLimits {
  /** Abort an attempt this long (ms) after its handler is called. */
  timeoutMs?: number;
  /** Attempts a job of this type may use in all. */
  maxAttempts?: number;
  /** At most this many jobs of this type run at once on one supervisor. */
  concurrency?: number;
  /** Heap limit (MB) of the thread that runs it. */
  maxMemoryMb?: number;
  /** Delay before a retry; a partial object is completed from the defaults. */
  backoff?: BackoffOptions;
}

/** One job type. */
export interface WorkerModuleInfo {
  type: string;
  /** Absolute path of the module. */
  path: string;
  options: WorkerOptions;
  hasCompensate: boolean;
  /** The module's `schedule` export, unvalidated, if it has one. */
  schedule?: unknown;
  /** Why the module cannot run (import failed, no default export, invalid options): its jobs fail with this. */
  loadError?: string;
}

/** The job types by name, with what was skipped or looked wrong. */
export class Registry extends Map<string, WorkerModuleInfo> {
  /** Skipped files, duplicate types, unknown options: to show at start. */
  readonly warnings: string[] = [];
}

/** Options of loadRegistry. */
export interface LoadRegistryOptions {
  /** Relative paths are resolved from here (default: process.cwd()). */
  cwd?: string;
  /** Bound (ms) on importing one module, and on the start of the thread that imports it (default 10 s). */
  probeTimeoutMs?: number;
  /** The pool whose threads import the modules (and keep them for their jobs); default: a pool of one thread, closed after. */
  pool?: ProbeHost;
}

/**
 * Loads the worker modules of a directory (not recursive: `.ts .mts .js .mjs`,
 * not `.d.ts`, test files or names starting with `_` or `.`; type = file name
 * without extension) or of an explicit `{ type: path }` map.
 */
export async function loadRegistry(
  source: string | Record<string, string>,
  options: LoadRegistryOptions = {},
): Promise<Registry> {
  const cwd = options.cwd ?? process.cwd();
  const timeoutMs = options.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMER_MS) {
    throw new ValidationError('options.probeTimeoutMs', `must be a positive integer, got ${String(timeoutMs)}`);
  }
  const registry = new Registry();
  const modules =
    typeof source === 'string'
      ? await scanDirectory(resolvePath(source, cwd), registry.warnings)
      : fromMap(source, cwd);
  const paths = modules.map((m) => m.path);
  let reports: Map<string, ModuleReport>;
  if (options.pool !== undefined) {
    reports = await probeModules(options.pool, paths, timeoutMs);
  } else {
    const pool = new WorkerPool({ maxThreads: 1 });
    try {
      reports = await probeModules(pool, paths, timeoutMs);
    } finally {
      await pool.close({ force: true });
    }
  }
  for (const { type, path } of modules) {
    const report = reports.get(path) ?? { ok: false, error: 'it was not probed' };
    registry.set(type, describeModule(type, path, report, registry.warnings));
  }
  return registry;
}

interface FoundModule {
  type: string;
  path: string;
}

function resolvePath(path: string, cwd: string): string {
  return path.startsWith('file:') ? fileURLToPath(path) : resolve(cwd, path);
}

async function scanDirectory(dir: string, warnings: string[]): Promise<FoundModule[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw new ValidationError('workers', `must be a readable directory: ${(err as Error).message}`);
  }
  const found = new Map<string, FoundModule & { rank: number; file: string }>();
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const name = entry.name;
    const ext = extname(name);
    const rank = WORKER_MODULE_EXTENSIONS.indexOf(ext);
    if (rank === -1 || name.startsWith('_') || name.startsWith('.')) continue;
    if (DECLARATION_FILE.test(name) || TEST_FILE.test(name)) continue;
    const path = join(dir, name);
    if (!entry.isFile() && !(entry.isSymbolicLink() && (await isFile(path)))) continue;
    const type = name.slice(0, -ext.length);
    if (!NAME_PATTERN.test(type)) {
      warnings.push(`skipped ${path}: "${type}" is not a valid job type (1 to 128 characters of A-Z a-z 0-9 _ . : -)`);
      continue;
    }
    const other = found.get(type);
    if (other !== undefined) {
      const [kept, dropped] = other.rank <= rank ? [other.file, name] : [name, other.file];
      warnings.push(`two modules for job type "${type}": using ${kept}, skipping ${dropped}`);
      if (other.rank <= rank) continue;
    }
    found.set(type, { type, path, rank, file: name });
  }
  return [...found.values()].map(({ type, path }) => ({ type, path }));
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

function fromMap(source: Record<string, string>, cwd: string): FoundModule[] {
  if (typeof source !== 'object' || source === null) {
    throw new ValidationError('workers', 'must be a directory or a { type: path } map');
  }
  return Object.entries(source).map(([type, path]) => {
    if (!NAME_PATTERN.test(type)) {
      throw new ValidationError(`workers["${type}"]`, 'is not a valid job type (1 to 128 characters of A-Z a-z 0-9 _ . : -)');
    }
    if (typeof path !== 'string' || path === '') {
      throw new ValidationError(`workers["${type}"]`, 'must be the path of a module');
    }
    return { type, path: resolvePath(path, cwd) };
  });
}

function describeModule(type: string, path: string, report: ModuleReport, warnings: string[]): WorkerModuleInfo {
  if (!report.ok) {
    return { type, path, options: {}, hasCompensate: false, loadError: `cannot load worker module "${type}" (${path}): ${report.error}` };
  }
  const info: WorkerModuleInfo = { type, path, options: {}, hasCompensate: report.hasCompensate };
  if (report.schedule !== undefined) info.schedule = report.schedule;
  try {
    info.options = validateOptions(type, report.options, warnings);
  } catch (err) {
    info.loadError = (err as Error).message;
  }
  return info;
}

/** Checks a module's `options` export; throws a readable Error for the first problem. */
export function validateOptions(type: string, raw: unknown, warnings: string[] = []): WorkerOptions {
  if (raw === undefined) return {};
  const where = (key: string): string => `options.${key} of worker "${type}"`;
  if (!isPlainObject(raw)) throw new Error(`options of worker "${type}" must be an object, got ${describe(raw)}`);
  for (const key of Object.keys(raw)) {
    if (!KNOWN_OPTIONS.includes(key)) {
      warnings.push(`${where(key)} is not a known option (known: ${KNOWN_OPTIONS.join(', ')}); it is ignored`);
    }
  }
  const options: WorkerOptions = {};
  const integer = (key: string, value: unknown, min: number, max: number, what: string): number | undefined => {
    if (value === undefined) return undefined;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw new Error(`${where(key)} must be ${what}, got ${describe(value)}`);
    }
    return value;
  };
  const timeoutMs = integer('timeoutMs', raw.timeoutMs, 1, MAX_TIMER_MS, 'a positive integer (ms)');
  if (timeoutMs !== undefined) options.timeoutMs = timeoutMs;
  const maxAttempts = integer('maxAttempts', raw.maxAttempts, 1, 2_147_483_647, 'a positive integer');
  if (maxAttempts !== undefined) options.maxAttempts = maxAttempts;
  const concurrency = integer('concurrency', raw.concurrency, 1, 2_147_483_647, 'a positive integer');
  if (concurrency !== undefined) options.concurrency = concurrency;
  const maxMemoryMb = integer('maxMemoryMb', raw.maxMemoryMb, MIN_MEMORY_MB, 1_048_576, `an integer of at least ${MIN_MEMORY_MB} (MB)`);
  if (maxMemoryMb !== undefined) options.maxMemoryMb = maxMemoryMb;
  if (raw.backoff !== undefined) {
    if (!isPlainObject(raw.backoff)) throw new Error(`${where('backoff')} must be an object, got ${describe(raw.backoff)}`);
    const baseMs = integer('backoff.baseMs', raw.backoff.baseMs, 1, MAX_TIMER_MS, 'a positive integer (ms)') ?? DEFAULT_BACKOFF.baseMs;
    const maxMs =
      integer('backoff.maxMs', raw.backoff.maxMs, 1, MAX_TIMER_MS, 'a positive integer (ms)') ?? Math.max(DEFAULT_BACKOFF.maxMs, baseMs);
    if (maxMs < baseMs) throw new Error(`${where('backoff.maxMs')} must be at least backoff.baseMs (${baseMs}), got ${maxMs}`);
    options.backoff = { baseMs, maxMs };
  }
  const declared = Object.fromEntries(FLOW_LIMIT_FIELDS.filter((key) => raw[key] !== undefined).map((key) => [key, raw[key]]));
  try {
    Object.assign(options, checkFlowLimits('', declared, 'type'));
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    throw new Error(`${where(err.field)} ${err.message.slice(err.field.length + 1)}`);
  }
  return options;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object' && value !== null) return Array.isArray(value) ? 'an array' : 'an object';
  return String(value);
}
