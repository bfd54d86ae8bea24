/**
 * The registry's probe thread (a plain Worker, not Piscina): loads probe.ts, which imports each
 * module listed in workerData and reports what it exports. Awaited: a module whose top-level await
 * never settles then ends this thread with Node's exit code 13, which the registry reports as such.
 */
import { importOwn } from './own-code.mjs';

await importOwn('probe');
