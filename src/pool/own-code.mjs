/**
 * Loads one of spindle's own thread-side modules by name: the compiled JavaScript beside this file
 * in the package (dist/), or the TypeScript source in a checkout of spindle (src/), which needs
 * tsx in this thread. Plain JavaScript, so a thread can load it before anything else.
 */
import { existsSync } from 'node:fs';

export async function importOwn(name) {
  const compiled = new URL(`./${name}.js`, import.meta.url);
  if (existsSync(compiled)) return import(compiled.href);
  await import('./register-tsx.mjs');
  return import(new URL(`./${name}.ts`, import.meta.url).href);
}
