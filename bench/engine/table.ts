// Markdown tables for the engine benchmarks.

/** A markdown table: header row, separator, one line per row (cells already formatted). */
export function markdownTable(headers: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n');
}

/** A number with `digits` decimals, or the given text when it is null. */
export function fmt(n: number | null | undefined, digits = 1, missing = '–'): string {
  return n == null || !Number.isFinite(n) ? missing : n.toFixed(digits);
}
