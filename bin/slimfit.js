#!/usr/bin/env node
// The `slimfit` command: runs the compiled CLI in dist/ (`npm run build` makes it; `npm ci` and `npm pack` run it).
let cli;
try {
  cli = await import('../dist/cli/index.js');
} catch (e) {
  if (e?.code !== 'ERR_MODULE_NOT_FOUND' || !String(e.message).includes('dist/cli/index.js')) throw e;
  process.stderr.write('slimfit: error: dist/ is missing (the compiled CLI); run `npm run build` in the slimfit folder\n');
  process.exit(1);
}
await cli.main(process.argv);
