/** A problem with the user's input or output files, told in their terms: which file, where, what to do. */
export class SlimfitError extends Error {
  override name = 'SlimfitError';
  /** The file the problem is in, when there is one. */
  readonly file?: string;
  /** Byte offset (or record number, see message) where the problem was found. */
  readonly offset?: number;
  /** What the user can do about it. */
  readonly hint?: string;

  constructor(message: string, where: { file?: string; offset?: number; hint?: string } = {}) {
    const parts = [where.file ? `${where.file}: ${message}` : message];
    if (where.offset !== undefined) parts[0] += ` (at byte ${where.offset})`;
    if (where.hint) parts.push(where.hint);
    super(parts.join('. '));
    this.file = where.file;
    this.offset = where.offset;
    this.hint = where.hint;
  }
}

/** True for errors slimfit raised on purpose (bad input), as opposed to bugs. */
export function isSlimfitError(e: unknown): e is SlimfitError {
  return e instanceof SlimfitError;
}
