/**
 * What a worker thread costs before a job runs, in a fresh process (scenario 7): one thread from
 * `new Worker()` to its first line, then its import of the JavaScript worker module; another thread
 * that registers tsx the way spindle's threads do (dist/pool/register-tsx.mjs), then imports the
 * TypeScript worker module. argv[2] is JSON { registerTsx, jsModule, tsModule } (file URLs);
 * prints the times in ms as JSON. Plain JavaScript.
 */
import { Worker } from 'node:worker_threads';

const spec = JSON.parse(process.argv[2] ?? '{}');

/** Runs `body` (module code) in a new thread; resolves with what it posts, plus the time from `new Worker()` to its first line. */
function inThread(body) {
  return new Promise((resolve, reject) => {
    const createdAt = performance.now();
    const code = `import { parentPort } from 'node:worker_threads';\nconst firstLine = performance.now();\n${body}`;
    const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`));
    worker.once('message', (message) => resolve({ ...message, startMs: message.firstLine - createdAt }));
    worker.once('error', reject);
  });
}

const js = await inThread(`
const t0 = performance.now();
await import(${JSON.stringify(spec.jsModule)});
parentPort.postMessage({ firstLine, importMs: performance.now() - t0 });
process.exit(0);
`);
const ts = await inThread(`
const t0 = performance.now();
await import(${JSON.stringify(spec.registerTsx)});
const t1 = performance.now();
await import(${JSON.stringify(`${spec.tsModule}?tsx`)});
parentPort.postMessage({ firstLine, registerMs: t1 - t0, importMs: performance.now() - t1 });
process.exit(0);
`);
process.stdout.write(`${JSON.stringify({ threadStartMs: js.startMs, jsImportMs: js.importMs, tsxRegisterMs: ts.registerMs, tsImportMs: ts.importMs })}\n`);
process.exit(0);
