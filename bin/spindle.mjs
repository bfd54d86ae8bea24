#!/usr/bin/env node
// `spindle` in a checkout of spindle (npm run spindle, the tests): the TypeScript source, through
// tsx registered for this process only. The package's own command is dist/cli/bin.js.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
await main(process.argv.slice(2));
