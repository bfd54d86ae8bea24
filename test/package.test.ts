import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as api from '../src/index.ts';

const ENTRY = fileURLToPath(new URL('../index.mjs', import.meta.url));

describe('the package entry for plain Node', () => {
  it('exports everything src/index.ts exports at run time', () => {
    const script = `const m = await import(${JSON.stringify(ENTRY)}); console.log(JSON.stringify(Object.keys(m).sort()));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(JSON.parse(out)).toEqual(Object.keys(api).sort());
  });
});
