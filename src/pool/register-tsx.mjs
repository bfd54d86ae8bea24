/**
 * Teaches the current thread TypeScript, through tsx, once. Plain JavaScript:
 * Piscina threads and the registry's probe thread start as plain Node, whatever
 * the main thread runs under (vitest's transform, `node --import tsx`, or a
 * bin script that registered tsx only for itself; hooks registered with
 * module.register() do not reach other threads).
 *
 * Both halves are needed: the ESM hooks for `.ts`/`.mts` in "type": "module"
 * packages, the CommonJS hook for `.ts` files that Node treats as CommonJS
 * (no "type": "module" above them).
 */
import { register as registerCommonJs } from 'tsx/cjs/api';
import { register as registerEsm } from 'tsx/esm/api';

registerCommonJs();
registerEsm();
