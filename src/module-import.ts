/**
 * Imports a user's module (a worker or workflow module) by path. JavaScript is imported as it is.
 * TypeScript is imported by Node itself where this Node strips types (22.18+, 23.6+); else, or for
 * what stripping cannot do (enums, `./x.js` naming `x.ts`, ...), through tsx: registered for the
 * whole thread in one of spindle's own threads, scoped to this one import in a user's process, so a
 * process that uses spindle as a library never gets a module hook from it.
 */
import { pathToFileURL } from 'node:url';

const TYPESCRIPT_FILE = /\.(?:[cm]?ts|tsx)$/i;
/** Errors that mean "this Node cannot load that TypeScript", as opposed to errors of the module. */
const TYPESCRIPT_UNSUPPORTED = new Set([
  'ERR_UNKNOWN_FILE_EXTENSION',
  'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX',
  'ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING',
  'ERR_INVALID_TYPESCRIPT_SYNTAX',
  'ERR_MODULE_NOT_FOUND',
]);

/** 'thread': one of spindle's pool threads; 'process': a thread that is the user's. */
export type ImportScope = 'thread' | 'process';

export async function importModule(path: string, scope: ImportScope): Promise<Record<string, unknown>> {
  const url = path.startsWith('file:') ? path : pathToFileURL(path).href;
  try {
    return (await import(url)) as Record<string, unknown>;
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    const typescript = TYPESCRIPT_FILE.test(new URL(url).pathname);
    if (typeof code !== 'string' || !TYPESCRIPT_UNSUPPORTED.has(code) || (!typescript && code !== 'ERR_UNKNOWN_FILE_EXTENSION')) {
      throw err;
    }
  }
  return scope === 'thread' ? importInOwnThread(url) : importScoped(url);
}

async function importInOwnThread(url: string): Promise<Record<string, unknown>> {
  await import(new URL('./pool/register-tsx.mjs', import.meta.url).href);
  // A new URL: Node may keep the failed attempt under the old one.
  return (await import(`${url}${url.includes('?') ? '&' : '?'}tsx`)) as Record<string, unknown>;
}

async function importScoped(url: string): Promise<Record<string, unknown>> {
  const { tsImport } = await import('tsx/esm/api');
  return (await tsImport(url, import.meta.url)) as Record<string, unknown>;
}
