/**
 * Thread side: imports a worker module once per thread and checks what it exports. Used by job
 * threads before a job's handler, and by the registry's probe (a task on a pool thread).
 */
import { importModule } from '../module-import.ts';
import { serializeThrown } from './thrown.ts';

/** What a handler receives as its second argument. */
export interface ThreadJobContext {
  readonly jobId: string;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly threadId: number;
  readonly signal: AbortSignal;
  progress(percent: number, message?: string, data?: unknown): void;
  log(...args: unknown[]): void;
}

type Handler = (input: unknown, ctx: ThreadJobContext) => unknown;
type Compensator = (input: unknown, reason: string, ctx: ThreadJobContext) => unknown;

/** A worker module after loading: its handler and what else it exports. */
export interface LoadedModule {
  handler: Handler;
  compensate?: Compensator;
  options: unknown;
  schedule?: unknown;
}

/** The result of loading a module: never a rejection. */
export type LoadResult =
  | { ok: true; module: LoadedModule }
  | { ok: false; reason: string; stack?: string; hasDefault: boolean };

const moduleCache = new Map<string, Promise<LoadResult>>();
/** The settled entries of moduleCache: a job of a module loaded already need not wait a tick for it. */
const loadedModules = new Map<string, LoadResult>();

/** The module's load result if this thread has it already (a job of it need not wait a tick). */
export function loadedModule(modulePath: string): LoadResult | undefined {
  return loadedModules.get(modulePath);
}

/** Imports a worker module once per thread (failures are cached too, as ESM caches them). */
export function loadWorkerModule(modulePath: string): Promise<LoadResult> {
  let loading = moduleCache.get(modulePath);
  if (loading === undefined) {
    loading = importWorkerModule(modulePath);
    moduleCache.set(modulePath, loading);
    void loading.then((result) => loadedModules.set(modulePath, result));
  }
  return loading;
}

async function importWorkerModule(modulePath: string): Promise<LoadResult> {
  let namespace: Record<string, unknown>;
  try {
    namespace = await importModule(modulePath, 'thread');
  } catch (err) {
    const error = serializeThrown(err, 'load', 'the module threw a non-Error value');
    return { ok: false, reason: `${error.name}: ${error.message}`, stack: error.stack, hasDefault: false };
  }
  // A TypeScript file outside a "type": "module" package is compiled to CommonJS
  // by tsx; its ES exports then arrive as properties of `default`.
  const inner = namespace.default;
  if (typeof inner !== 'function' && typeof inner === 'object' && inner !== null && 'default' in inner) {
    namespace = inner as Record<string, unknown>;
  }
  const handler = namespace.default;
  if (typeof handler !== 'function') {
    return {
      ok: false,
      reason: 'it has no default export function (export default async function (input, ctx) { ... })',
      hasDefault: false,
    };
  }
  const compensate = namespace.compensate;
  if (compensate !== undefined && typeof compensate !== 'function') {
    return { ok: false, reason: `its "compensate" export is a ${typeof compensate}, not a function`, hasDefault: true };
  }
  return {
    ok: true,
    module: {
      handler: handler as Handler,
      compensate: compensate as Compensator | undefined,
      options: namespace.options,
      schedule: namespace.schedule,
    },
  };
}
