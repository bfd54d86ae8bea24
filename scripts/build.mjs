#!/usr/bin/env node
/**
 * npm run build: compiles src/ to dist/ (ES modules, declarations, source maps), then copies the
 * files tsc does not emit and the runtime reads beside the code: SQL migrations, the dashboard's
 * static files, and the plain-JavaScript thread entries.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { extname } from 'node:path';

const ASSETS = new Set(['.sql', '.mjs', '.cjs', '.js', '.html', '.css']);
const root = new URL('../', import.meta.url);
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

rmSync(new URL('dist/', root), { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
cpSync(new URL('src/', root), new URL('dist/', root), {
  recursive: true,
  filter: (path) => extname(path) === '' || ASSETS.has(extname(path)),
});
