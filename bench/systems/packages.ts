/**
 * Where the systems' packages come from. Piscina is one of spindle's own
 * dependencies; the peers (graphile-worker, pg-boss, BullMQ) are installed
 * apart, in bench/node_modules (`npm run bench:install`), so they never enter
 * spindle's install. They are loaded at run time by name, which is also why
 * the harness type-checks without them: each adapter declares the part of its
 * library's API it uses.
 */
import { existsSync, readFileSync } from 'node:fs';

const ROOT_MODULES = new URL('../../node_modules/', import.meta.url);
const PEER_MODULES = new URL('../node_modules/', import.meta.url);

/** The command that installs the peers. */
export const INSTALL_PEERS = 'npm run bench:install';

function versionIn(modules: URL, name: string): string | undefined {
  const file = new URL(`${name}/package.json`, modules);
  if (!existsSync(file)) return undefined;
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

/** The version of one of spindle's own dependencies (some do not export their package.json). */
export function ownDependencyVersion(name: string): string {
  return versionIn(ROOT_MODULES, name) ?? 'unknown';
}

/** The installed version of a peer, or `not installed`. */
export function peerVersion(name: string): string {
  return versionIn(PEER_MODULES, name) ?? 'not installed';
}

/** Why a peer cannot run (it is not installed), or undefined when it can. */
export function peerMissing(name: string): string | undefined {
  return versionIn(PEER_MODULES, name) === undefined
    ? `${name} is not installed in bench/node_modules (run \`${INSTALL_PEERS}\`)`
    : undefined;
}

/**
 * Imports a peer by name, resolved from here: bench/node_modules. `member` is
 * an export the caller needs: it is looked for on the namespace, then on its
 * `default` (a CommonJS module.exports, whose named exports Node, tsx and
 * esModuleInterop do not all expose alike).
 */
export async function importPeer<T>(name: string, member: string): Promise<T> {
  const missing = peerMissing(name);
  if (missing) throw new Error(missing);
  const namespace = (await import(name)) as Record<string, unknown>;
  if (member in namespace) return namespace as T;
  const fallback = namespace.default;
  if (typeof fallback === 'object' && fallback !== null && member in fallback) return fallback as T;
  throw new Error(`${name} has no export called ${member}`);
}
