#!/usr/bin/env node
// The package's `spindle` command (dist/cli/bin.js). In a checkout of spindle, bin/spindle.mjs runs the source instead.
import { main } from './main.ts';

await main(process.argv.slice(2));
