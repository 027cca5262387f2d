// The `slimfit` command: one sub-command per file in this folder; logic lives in the library modules.
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Command } from 'commander';
import { isSlimfitError } from '../formats/errors.ts';
import { peakRssBytes } from '../util/rss.ts';

/** Version printed by --version and recorded in manifests. */
export const VERSION = '0.1.0';

/**
 * Build the command-line program. With `only` (the sub-command about to run) just its files are loaded, when there
 * are any (each file costs ~10 ms to load); otherwise every sub-command is registered (help, unknown commands).
 */
export async function buildProgram(only?: string): Promise<Command> {
  const program = new Command('slimfit')
    .description('Train on datasets bigger than your RAM, from standard files.')
    .version(VERSION)
    .showHelpAfterError();
  // Every file in this folder that exports `register(program)` is a command (heavy imports stay inside actions);
  // `bench-engine.ts` and `bench-loader.ts` both add to the `bench` group.
  const here = dirname(fileURLToPath(import.meta.url));
  const all = readdirSync(here).filter((f) => f.endsWith('.ts') && f !== 'index.ts').sort();
  const mine = only && /^[a-z][a-z0-9-]*$/.test(only) ? all.filter((f) => f === `${only}.ts` || f.startsWith(`${only}-`)) : [];
  const files = mine.length > 0 ? mine : all;
  for (const f of files) {
    const mod = (await import(pathToFileURL(join(here, f)).href)) as { register?: (p: Command) => void };
    if (typeof mod.register === 'function') mod.register(program);
  }
  return program;
}

/** Run the CLI with `argv` (as process.argv); prints user errors plainly and sets the exit code. */
export async function main(argv: string[]): Promise<void> {
  // Tests measure the memory of a real CLI run through this line (see test/helpers.ts).
  if (process.env.SLIMFIT_REPORT_RSS) process.on('exit', () => process.stderr.write(`slimfit-peak-rss-bytes=${peakRssBytes()}\n`));
  const program = await buildProgram(argv[2]);
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (isSlimfitError(e)) {
      process.stderr.write(`slimfit: error: ${e.message}\n`);
      process.exitCode = 1;
      return;
    }
    throw e;
  }
}
