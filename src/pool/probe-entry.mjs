/**
 * The registry's probe thread (a plain Worker, not Piscina): registers tsx the
 * same way the pool's threads do, then imports each module listed in
 * workerData and reports what it exports (probe.ts).
 */
import './register-tsx.mjs';

await import('./probe.ts');
