/**
 * Teaches the current thread TypeScript, through tsx, once (a module runs once per thread): a pool
 * thread, for a worker module in TypeScript that Node cannot load itself, or
 * for spindle's own source in a checkout. Never the main thread: a library must not install a
 * module hook in its user's process (see src/module-import.ts). Hooks registered with
 * module.register() do not reach other threads, so each thread registers its own.
 *
 * Both halves are needed: the ESM hooks for `.ts`/`.mts` in "type": "module" packages, the
 * CommonJS hook for `.ts` files that Node treats as CommonJS (no "type": "module" above them).
 */
import { register as registerCommonJs } from 'tsx/cjs/api';
import { register as registerEsm } from 'tsx/esm/api';

registerCommonJs();
registerEsm();
