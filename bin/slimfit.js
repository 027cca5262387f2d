#!/usr/bin/env node
// Runs the TypeScript CLI (no build step, so `npm ci && npx slimfit` just works): compiled once into
// node_modules/.cache by bin/compile-cli.mjs, or through tsx when that cannot be built (or SLIMFIT_TSX=1).
let main;
if (!process.env.SLIMFIT_TSX) {
  try {
    const { compiledCli } = await import('./compile-cli.mjs');
    const url = await compiledCli();
    process.setSourceMapsEnabled(true); // stack traces name the .ts sources
    ({ main } = await import(url));
  } catch {
    main = undefined; // esbuild missing or the cache not writable: run the sources through tsx below
  }
}
if (!main) {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../src/cli/index.ts'));
}
await main(process.argv);
