#!/usr/bin/env node
// Runs the TypeScript CLI directly through tsx (no build step, so `npm ci && npx slimfit` just works).
import { register } from 'tsx/esm/api';
register();
const { main } = await import('../src/cli/index.ts');
await main(process.argv);
