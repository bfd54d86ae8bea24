/**
 * Times one `import()` in a fresh process (scenario 7: what each of spindle's dependencies adds to
 * the import of the package). argv[2] is the URL to import; prints `{"ms": ..., "packages": [...]}`,
 * `packages` being the packages the import loaded through CommonJS (every one of spindle's
 * dependencies is, or has, a CommonJS entry). Plain JavaScript.
 */
import { createRequire } from 'node:module';

const url = process.argv[2];
const start = performance.now();
await import(url);
const ms = performance.now() - start;
const packages = new Set();
for (const path of Object.keys(createRequire(import.meta.url).cache)) {
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path.slice(path.lastIndexOf('node_modules/')));
  if (match) packages.add(match[1]);
}
process.stdout.write(`${JSON.stringify({ ms, packages: [...packages].sort() })}\n`);
process.exit(0);
