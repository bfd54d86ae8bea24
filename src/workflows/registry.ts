/**
 * Finds the workflow modules and imports them. Unlike worker modules (probed in a thread), a
 * workflow's body runs on the supervisor's main thread, so its module is imported there.
 */
import type { Dirent } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ValidationError } from '../errors.ts';
import { importModule } from '../module-import.ts';
import { findUnstorable } from '../storable.ts';
import { NAME_PATTERN } from '../validate.ts';
import { parseCron, type CronSchedule } from './cron.ts';
import type { WorkflowBody } from './types.ts';

const EXTENSIONS = ['.ts', '.mts', '.js', '.mjs'];
const SKIPPED = /(\.(test|spec)\.[cm]?[jt]s|\.d\.[cm]?ts)$/;
/** Ticks fired for one schedule after a gap, the newest ones; the older missed ticks are skipped. */
export const DEFAULT_CATCH_UP = 1;

/** A cron schedule of a worker or workflow module. */
export interface ModuleSchedule {
  cron: CronSchedule;
  /** At most this many missed ticks are fired after a gap (the newest ones). */
  catchUp: number;
  /** The input of each job or run it starts. */
  input: unknown;
}

/** One workflow. */
export interface WorkflowModule {
  name: string;
  path: string;
  version: string;
  /** Older versions whose runs this module can resume (through `wf.patched`). */
  supports: string[];
  run: WorkflowBody;
  schedule?: ModuleSchedule;
}

/** The workflows by name, and the ones that cannot load with the reason (their runs are blocked with it). */
export class WorkflowRegistry extends Map<string, WorkflowModule> {
  /** Workflow name -> why its module cannot load. */
  readonly broken = new Map<string, string>();
}

/**
 * Loads the workflow modules of a directory (absent: none) or a `{ name: path }` map. A module
 * must export `version` (a non-empty string) and a default async function. One that cannot be
 * imported or lacks those is kept in `broken` with the reason, and the others load: one bad file
 * does not stop a supervisor from serving everything else.
 */
export async function loadWorkflows(source: string | Record<string, string>, cwd = process.cwd()): Promise<WorkflowRegistry> {
  const found = typeof source === 'string' ? await scan(resolvePath(source, cwd)) : fromMap(source, cwd);
  const registry = new WorkflowRegistry();
  for (const { name, path } of found) {
    try {
      const ns = await importModule(path, 'process');
      registry.set(name, describeWorkflow(name, path, ns));
    } catch (err) {
      const reason = err instanceof ValidationError ? err.message : `${(err as Error)?.name ?? 'Error'}: ${(err as Error)?.message ?? String(err)}`;
      registry.broken.set(name, `cannot load workflow module "${name}" (${path}): ${reason}`);
    }
  }
  return registry;
}

function describeWorkflow(name: string, path: string, ns: Record<string, unknown>): WorkflowModule {
  const where = `workflow "${name}" (${path})`;
  if (typeof ns.default !== 'function') throw new ValidationError(where, 'must export a default async function (input, wf)');
  if (typeof ns.version !== 'string' || ns.version === '') {
    throw new ValidationError(where, "must export a version, for example: export const version = '1'");
  }
  const supports = ns.supports ?? [];
  if (!Array.isArray(supports) || !supports.every((v) => typeof v === 'string')) {
    throw new ValidationError(where, 'supports must be an array of version strings');
  }
  const module: WorkflowModule = { name, path, version: ns.version, supports, run: ns.default as WorkflowBody };
  if (ns.schedule !== undefined) module.schedule = parseSchedule(ns.schedule, ns.timezone, where);
  return module;
}

/**
 * Reads a module's `schedule` export: a cron string (with an optional `timezone` export), or
 * `{ cron, timezone?, catchUp?, input? }`.
 */
export function parseSchedule(raw: unknown, timezone: unknown, where: string): ModuleSchedule {
  const spec = typeof raw === 'string' ? { cron: raw } : (raw as Record<string, unknown>);
  if (typeof spec !== 'object' || spec === null || typeof spec.cron !== 'string') {
    throw new ValidationError(`schedule of ${where}`, "must be a cron string or { cron, timezone?, catchUp?, input? }");
  }
  const zone = spec.timezone ?? timezone ?? 'UTC';
  if (typeof zone !== 'string') throw new ValidationError(`timezone of ${where}`, 'must be an IANA time zone name');
  const catchUp = spec.catchUp ?? DEFAULT_CATCH_UP;
  if (typeof catchUp !== 'number' || !Number.isInteger(catchUp) || catchUp < 0 || catchUp > 1_000) {
    throw new ValidationError(`schedule.catchUp of ${where}`, 'must be an integer from 0 to 1000');
  }
  const bad = findUnstorable(spec.input, 'input');
  if (bad !== undefined) throw new ValidationError(`schedule.${bad.path} of ${where}`, bad.problem);
  return { cron: parseCron(spec.cron, zone), catchUp, input: spec.input ?? null };
}

function resolvePath(path: string, cwd: string): string {
  return path.startsWith('file:') ? fileURLToPath(path) : resolve(cwd, path);
}

async function scan(dir: string): Promise<{ name: string; path: string }[]> {
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new ValidationError('workflows', `must be a readable directory: ${(err as Error).message}`);
  }
  const found = new Map<string, string>();
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const ext = extname(entry.name);
    if (!EXTENSIONS.includes(ext) || !entry.isFile() || SKIPPED.test(entry.name)) continue;
    if (entry.name.startsWith('_') || entry.name.startsWith('.')) continue;
    const name = entry.name.slice(0, -ext.length);
    if (NAME_PATTERN.test(name) && !found.has(name)) found.set(name, join(dir, entry.name));
  }
  return [...found].map(([name, path]) => ({ name, path }));
}

function fromMap(source: Record<string, string>, cwd: string): { name: string; path: string }[] {
  if (typeof source !== 'object' || source === null) {
    throw new ValidationError('workflows', 'must be a directory or a { name: path } map');
  }
  return Object.entries(source).map(([name, path]) => {
    if (!NAME_PATTERN.test(name)) throw new ValidationError(`workflows["${name}"]`, 'is not a valid workflow name');
    if (typeof path !== 'string' || path === '') throw new ValidationError(`workflows["${name}"]`, 'must be the path of a module');
    return { name, path: resolvePath(path, cwd) };
  });
}
