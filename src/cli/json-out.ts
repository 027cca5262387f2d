// `--json` for scripts: a command's result as one JSON object on stdout, printed once at its end. Everything for
// people (progress, tables, summaries, warnings) goes to stderr or is left out then, so stdout parses as JSON; on an
// error nothing is printed here: main() prints its one `slimfit: error:` line on stderr and sets the exit code.

/** The help text of every command's `--json` flag. */
export const JSON_FLAG = 'print the result as one JSON object on stdout (everything else goes to stderr)';

/**
 * Print `result` as the command's JSON output. Also the point after which nothing else may write to stdout, so
 * callers print it last.
 */
export function printJson(result: object): void {
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
}

/**
 * For --json runs: send console.log/console.info to stderr, so a library (TensorFlow.js, a backend) that logs with
 * them cannot put a line of text in front of the JSON on stdout.
 */
export function keepStdoutForJson(): void {
  console.log = console.error;
  console.info = console.error;
}
