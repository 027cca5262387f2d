// Command groups (`slimfit bench loader`, `slimfit lab swallow`) shared by several command files.
import type { Command } from 'commander';

/** The sub-command `name` of `program`, created with `description` the first time it is asked for. */
export function group(program: Command, name: string, description: string): Command {
  const existing = program.commands.find((c) => c.name() === name);
  if (existing) return existing;
  return program.command(name).description(description);
}
