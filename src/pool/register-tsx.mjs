/**
 * Teaches the current thread TypeScript, through tsx, once: a job thread or the probe thread, for
 * a worker module in TypeScript that Node cannot load itself, or for spindle's own source in a
 * checkout. Never the main thread: a library must not install a module hook in its user's process
 * (see src/module-import.ts). Hooks registered with module.register() do not reach other threads,
 * so each thread registers its own.
 *
 * Both halves are needed: the ESM hooks for `.ts`/`.mts` in "type": "module" packages, the
 * CommonJS hook for `.ts` files that Node treats as CommonJS (no "type": "module" above them).
 */
const REGISTERED = Symbol.for('spindle.tsx');

if (!globalThis[REGISTERED]) {
  globalThis[REGISTERED] = true;
  const [{ register: registerCommonJs }, { register: registerEsm }] = await Promise.all([
    import('tsx/cjs/api'),
    import('tsx/esm/api'),
  ]);
  registerCommonJs();
  registerEsm();
}
