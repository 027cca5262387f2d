// Runs a commander program for the repository's own tools (bench/, lab/) the way the slimfit CLI runs its commands:
// a SlimfitError is one `error:` line and exit code 1, anything else a stack trace.
import { Command } from 'commander';
import { isSlimfitError } from '../src/core/errors.ts';

/** Build a program named `name`, let each of `registers` add its commands, and run it on process.argv. */
export async function runProgram(name: string, description: string, registers: Array<(p: Command) => void>): Promise<void> {
  const program = new Command(name).description(description).showHelpAfterError();
  for (const r of registers) r(program);
  try {
    await program.parseAsync(process.argv);
  } catch (e) {
    if (!isSlimfitError(e)) throw e;
    process.stderr.write(`${name}: error: ${e.message}\n`);
    process.exitCode = 1;
  }
}
