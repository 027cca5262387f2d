#!/usr/bin/env node
// The `slimfit` command: runs the compiled CLI in dist/ (`npm run build` makes it; `npm ci` and `npm pack` run it).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/index.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('slimfit: error: dist/ is missing (the compiled CLI); run `npm run build` in the slimfit folder\n');
  process.exit(1);
}
const { main } = await import(entry.href);
await main(process.argv);
