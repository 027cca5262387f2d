// The `slimfit` command: one sub-command per file in this folder; logic lives in the library modules.
import { Command } from 'commander';
import { envSettings } from '../core/config.ts';
import { isSlimfitError } from '../core/errors.ts';
import { peakRssBytes } from '../core/rss.ts';

/** Version printed by --version and recorded in manifests. */
export const VERSION = '0.1.0';

type Register = { register: (p: Command) => void };
/**
 * Every sub-command's file, by command name (heavy imports stay inside actions, so `--help` and one command load
 * only what they need). Literal imports, so the layer check sees them; a test checks this table against this folder.
 */
export const COMMANDS: Record<string, Array<() => Promise<Register>>> = {
  convert: [() => import('./convert.ts')],
  demo: [() => import('./demo.ts')],
  doctor: [() => import('./doctor.ts')],
  eval: [() => import('./eval.ts')],
  export: [() => import('./export.ts')],
  info: [() => import('./info.ts')],
  show: [() => import('./show.ts')],
  train: [() => import('./train.ts')],
  verify: [() => import('./verify.ts')],
};

/**
 * Build the command-line program. With `only` (the sub-command about to run) just its files are loaded, when it is
 * one (each file costs ~10 ms to load); otherwise every sub-command is registered (help, unknown commands).
 */
export async function buildProgram(only?: string): Promise<Command> {
  const program = new Command('slimfit')
    .description('Train on datasets bigger than your RAM, from standard files.')
    .version(VERSION)
    .showHelpAfterError();
  const loaders = only !== undefined && Object.hasOwn(COMMANDS, only) ? COMMANDS[only] : Object.values(COMMANDS).flat();
  for (const load of loaders) (await load()).register(program);
  return program;
}

/** Run the CLI with `argv` (as process.argv); prints user errors plainly and sets the exit code. */
export async function main(argv: string[]): Promise<void> {
  try {
    // Parsed first, so a malformed SLIMFIT_* variable is reported before anything runs.
    const env = envSettings();
    // Tests measure the memory of a real CLI run through this line (see dev/helpers.ts).
    if (env.reportRss) process.on('exit', () => process.stderr.write(`slimfit-peak-rss-bytes=${peakRssBytes()}\n`));
    const program = await buildProgram(argv[2]);
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
