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

/** Exit codes of the `slimfit` command, defined once (README "Exit codes"). */
export const EXIT = {
  /** Success. */
  ok: 0,
  /** Bad input or output data, or the operating system refused a file operation. */
  data: 1,
  /** Bad flags or arguments (commander's own errors and {@link UsageError}). */
  usage: 2,
  /** A bug in slimfit (BSD sysexits EX_SOFTWARE). */
  internal: 70,
} as const;

/** A bad flag or argument on the command line: exits with {@link EXIT.usage}. */
export class UsageError extends SlimfitError {
  override name = 'UsageError';
}

/** A Node system error: an fs/OS call that failed with an errno code such as ENOSPC. */
export interface SystemError extends Error { code: string; syscall?: string; path?: string; dest?: string }

/** True for errors raised by the operating system through node (fs, pipes): `code` is an errno name like ENOSPC. */
export function isSystemError(e: unknown): e is SystemError {
  return e instanceof Error && typeof (e as SystemError).code === 'string' && /^E[A-Z0-9]+$/.test((e as SystemError).code);
}

/** What each errno means for a user, and what they can do about it. */
const SYSTEM_ADVICE: Record<string, [what: string, fix: string]> = {
  ENOSPC: ['no space left on the device', 'free some space or write the output to another disk'],
  EDQUOT: ['disk quota exceeded', 'free some space or write the output to another disk'],
  EROFS: ['the file system is read-only', 'write the output to a writable folder'],
  ENOTDIR: ['a part of this path is a file, not a folder', 'check the path; the folders above it must be folders'],
  EISDIR: ['this is a folder where a file was expected', 'give the path of a file'],
  ESPIPE: ['this is a pipe or device, which cannot be read by position', 'copy it to a regular file first'],
  EACCES: ['permission denied', 'check the permissions of the file and the folders above it'],
  EPERM: ['operation not permitted', 'check the permissions of the file and the folders above it'],
  ENOENT: ['no such file or folder', 'check the path'],
  EEXIST: ['it already exists', 'remove it or choose another path'],
  ENOTEMPTY: ['the folder is not empty', 'remove it or choose another path'],
  EMFILE: ['too many open files', 'raise the limit (ulimit -n) or use fewer --workers'],
  ENFILE: ['too many open files on the system', 'close other programs or raise the system limit'],
  ENOMEM: ['out of memory', 'close other programs or use fewer --workers'],
  EIO: ['an input/output error from the device', 'check the disk (dmesg); the file may be on a failing device'],
  ENXIO: ['no such device', 'check the path'],
  ENAMETOOLONG: ['the path is too long', 'use a shorter path'],
  ELOOP: ['too many symbolic links (a loop?)', 'check the links in the path'],
  EFBIG: ['the file is too large for this file system', 'write the output to another file system'],
  EBUSY: ['the file or device is busy', 'close what uses it and try again'],
  EXDEV: ['the rename crosses file systems', 'keep the output on one file system'],
};

/** One sentence for a failed OS call: which call on which path failed, what it means, what to do. */
export function describeSystemError(e: SystemError, fallbackPath?: string): string {
  const [what, fix] = SYSTEM_ADVICE[e.code] ?? [`the operating system refused it (${e.code})`, 'check the path and the disk'];
  const path = e.path ?? fallbackPath;
  const op = e.syscall ? `${e.syscall} failed` : 'a file operation failed';
  const code = SYSTEM_ADVICE[e.code] ? ` (${e.code})` : '';
  return `${path ? `${path}: ` : ''}${op}: ${what}${code}. ${fix[0].toUpperCase()}${fix.slice(1)}`;
}
