#!/usr/bin/env node
// The `slimfit` command: runs the compiled CLI in dist/ (`npm run build` makes it; `npm ci` and `npm pack` run it).
import { existsSync } from 'node:fs';

const entry = new URL('../dist/cli/index.js', import.meta.url);
if (!existsSync(entry)) {
  // A git checkout builds dist/ itself; an installed package ships it (and no sources), so only a reinstall restores it.
  process.stderr.write('slimfit: error: dist/ is missing (the compiled CLI). In a checkout of slimfit, run `npm run build` there; in an installed package, reinstall slimfit (`npm i slimfit`)\n');
  process.exit(1);
}
const { main } = await import(entry.href);
await main(process.argv);
