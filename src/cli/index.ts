// The `slimfit` command: one sub-command per file in this folder; logic lives in the library modules.
import { Command, CommanderError } from 'commander';
import { envSettings } from '../core/config.ts';
import { EXIT, UsageError, describeSystemError, isSlimfitError, isSystemError } from '../core/errors.ts';
import { type MpiWorld, startedMpiWorld } from '../core/mpi.ts';
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
  'export-model': [() => import('./export-model.ts')],
  info: [() => import('./info.ts')],
  merge: [() => import('./merge.ts')],
  pull: [() => import('./pull.ts')],
  push: [() => import('./push.ts')],
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
    .showHelpAfterError()
    // Commander's own errors (unknown option, missing argument) are thrown, so main() sets the usage exit code;
    // sub-commands registered below inherit this.
    .exitOverride();
  const loaders = only !== undefined && Object.hasOwn(COMMANDS, only) ? COMMANDS[only] : Object.values(COMMANDS).flat();
  for (const load of loaders) (await load()).register(program);
  return program;
}

/** Run the CLI with `argv` (as process.argv); prints every error as one line and sets the exit code (see {@link EXIT}). */
export async function main(argv: string[]): Promise<void> {
  // An error outside the awaited chain (a stream or worker event nobody listens to) ends the run the same way.
  const fatal = (e: unknown) => {
    const [line, code] = explain(e);
    if (line) process.stderr.write(`${errorPrefix()}${line}\n`);
    process.exit(code);
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  try {
    // Parsed first, so a malformed SLIMFIT_* variable is reported before anything runs.
    const env = envSettings();
    // Tests measure the memory of a real CLI run through this line (see dev/helpers.ts).
    if (env.reportRss) process.on('exit', () => process.stderr.write(`slimfit-peak-rss-bytes=${peakRssBytes()}\n`));
    const program = await buildProgram(argv[2]);
    await program.parseAsync(argv);
  } catch (e) {
    const [line, code] = explain(e);
    if (line) process.stderr.write(`${errorPrefix()}${line}\n`);
    process.exitCode = code;
  }
}

/**
 * What starts an error line: `slimfit: `, or `slimfit (rank 1 of 2): ` in one of several MPI ranks whose error is
 * its own (mpirun interleaves the ranks' output); an error all ranks agreed on names the ranks itself and is the same
 * line on every rank.
 */
export function errorPrefix(w: Pick<MpiWorld, 'rank' | 'size' | 'stoppedTogether'> | null = startedMpiWorld()): string {
  return w && w.size > 1 && !w.stoppedTogether() ? `slimfit (rank ${w.rank} of ${w.size}): ` : 'slimfit: ';
}

/** The one line to print for an error that reached main (empty when commander already printed it) and the exit code. */
export function explain(e: unknown): [string, number] {
  if (e instanceof CommanderError) {
    // help and --version end this way too, with exit code 0; commander has printed its message already
    return ['', e.exitCode === 0 ? EXIT.ok : EXIT.usage];
  }
  if (e instanceof UsageError) return [`error: ${e.message}`, EXIT.usage];
  if (isSlimfitError(e)) return [`error: ${e.message}`, EXIT.data];
  if (isSystemError(e)) return [`error: ${describeSystemError(e)}`, EXIT.data];
  const err = e instanceof Error ? e : new Error(String(e));
  // A bug: one line with where it happened, never the whole stack.
  const at = /\n\s+at (.*)/.exec(err.stack ?? '')?.[1];
  return [`internal error: ${err.name}: ${err.message}${at ? ` (at ${at})` : ''}. This is a bug in slimfit; please report it with the command line`, EXIT.internal];
}
