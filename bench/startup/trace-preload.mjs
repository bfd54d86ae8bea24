/**
 * Preloaded (`node --import`) into `spindle start` in the traced CLI runs of scenario 7: records
 * when user code began (node is up), every socket connect and every worker thread, and writes them
 * as JSON to the file named by SPINDLE_BENCH_TRACE when the process exits. It loads nothing but
 * Node's own modules, so the CLI still pays for every package it imports.
 */
import { writeFileSync } from 'node:fs';
import { createTrace, now, traceSockets, traceThreads } from './trace.mjs';

const out = process.env.SPINDLE_BENCH_TRACE;
const trace = createTrace();
const preloadAt = now();
traceSockets(trace);
traceThreads(trace);
process.once('exit', () => {
  if (out) writeFileSync(out, JSON.stringify({ processStart: performance.timeOrigin, preloadAt, trace }));
});
