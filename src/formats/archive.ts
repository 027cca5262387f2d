// Image trees inside archives, read as streams: never extracted to disk, never listed fully into memory.
//
// Layout: any path ending in <class>/<file>.{png,jpg,jpeg,gif,bmp}; the class is the file's IMMEDIATE parent
// folder name (so "notMNIST_large/A/x.png" is class "A"). Images at the archive root and images whose path is
// absolute or holds a ".." part (which an extracting tool would write outside its folder) are not read: they are
// listed as skipped. macOS "__MACOSX/" and "._*" entries and non-image files are ignored.
//
// .tar/.tar.gz/.tgz (src/formats/tar.ts: a header walk over node:zlib's gunzip stream): a tar can only be read
// front to back, so opening it makes one cheap first pass over the headers (file data is streamed past, not
// copied) to collect the class names, which must be known before the first sample (labels are indices into the
// sorted names). The decode pass then yields samples in ARCHIVE order. Memory: the set of class names and about
// 1 MB of members at a time.
// .zip (yauzl): entries come from the central directory one at a time (lazyEntries), in directory order.
// A broken zip member is skipped (members are independent); a corrupt tar/gzip stream is fatal, because nothing
// after the damage can be located.
import { open as openFile, stat } from 'node:fs/promises';
import yauzl from 'yauzl';
import { SlimfitError } from '../core/errors.ts';
import { isImageName, MAX_IMAGE_FILE_BYTES, notSampleList } from './images.ts';
import { type EntryChunk, type ImageEntry, type ImageInput, openImageSource, type ImageSourceOptions } from './image-source.ts';
import type { SampleSource } from '../core/source.ts';
import { TarError, type TarMembers, type TarProgress, tarMembers } from './tar.ts';

/** Which archive container a file is, from its first bytes. */
export type ArchiveKind = 'tar' | 'tar.gz' | 'zip';

/** Detect .tar / .tar.gz / .zip by magic bytes (gzip is assumed to hold a tar). Null if neither. */
export async function archiveKind(path: string): Promise<ArchiveKind | null> {
  const fh = await openFile(path, 'r');
  try {
    const b = Buffer.alloc(512);
    const { bytesRead } = await fh.read(b, 0, 512, 0);
    if (bytesRead >= 2 && b[0] === 0x1f && b[1] === 0x8b) return 'tar.gz';
    if (bytesRead >= 4 && b[0] === 0x50 && b[1] === 0x4b && (b[2] === 3 || b[2] === 5) && (b[3] === 4 || b[3] === 6)) return 'zip';
    if (bytesRead >= 262 && b.toString('latin1', 257, 262) === 'ustar') return 'tar';
    // Damaged magic: the name decides, and the reader then says what is wrong (a v7 tar has no magic at all).
    const lower = path.toLowerCase();
    if (lower.endsWith('.tar.gz') || lower.endsWith('.tgz')) return 'tar.gz';
    if (lower.endsWith('.tar')) return 'tar';
    if (lower.endsWith('.zip')) return 'zip';
    return null;
  } finally {
    await fh.close();
  }
}

/** Class name of an archive path, or null if the entry is not a sample (see the layout rules above). */
export function classOfPath(path: string): string | null {
  const parts = path.replace(/\\/g, '/').split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length < 2) return null;
  const file = parts[parts.length - 1];
  if (parts[0] === '__MACOSX' || file.startsWith('._') || !isImageName(file)) return null;
  if (unsafePath(path)) return null;
  return parts[parts.length - 2];
}

/** An absolute path (or drive letter) or one with a ".." part: never a sample, never a class name. */
function unsafePath(path: string): boolean {
  const p = path.replace(/\\/g, '/');
  return p.startsWith('/') || /^[A-Za-z]:/.test(p) || p.split('/').includes('..');
}

/** Why an image member is not read as a sample (unsafe path, not in a class folder), or null (a sample, or not an image). */
export function notSampleReason(path: string): string | null {
  const parts = path.replace(/\\/g, '/').split('/').filter((p) => p !== '' && p !== '.');
  const file = parts[parts.length - 1] ?? '';
  if (parts[0] === '__MACOSX' || file.startsWith('._') || !isImageName(file)) return null;
  if (unsafePath(path)) return 'unsafe path (absolute or with a ".." part): not read';
  if (parts.length < 2) return 'image at the top of the archive, not in a class folder: not read';
  return null;
}

const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

async function readAll(stream: AsyncIterable<Buffer>, size: number): Promise<Uint8Array> {
  const out = new Uint8Array(size);
  let o = 0;
  for await (const chunk of stream) {
    if (o + chunk.length > size) throw new Error('member is longer than its header says');
    out.set(chunk, o);
    o += chunk.length;
  }
  return o === size ? out : out.subarray(0, o);
}

/** A tar/tar.gz of class folders as an ImageInput (first pass over headers for the class names). */
export async function tarInput(path: string, gz: boolean): Promise<ImageInput> {
  const kind = gz ? 'tar.gz' : 'tar';
  /** Every member of one pass, in arrays, with a clear error for a damaged archive. */
  async function* members(want: (name: string, size: number) => boolean, progress?: TarProgress): AsyncGenerator<TarMembers> {
    try {
      yield* tarMembers(path, gz, want, progress);
    } catch (e) {
      const after = e instanceof TarError && e.after ? ` after entry ${e.after}` : '';
      throw new SlimfitError(`cannot read the ${kind} archive${after}: ${(e as Error).message}`, {
        file: path, hint: `the archive is truncated or corrupt; check it with \`tar t${gz ? 'z' : ''}f\``,
      });
    }
  }
  const none = () => false;
  const counts = new Map<string, number>();
  const notSamples = notSampleList();
  for await (const arr of members(none)) {
    for (const m of arr) {
      const cls = classOfPath(m.name);
      if (cls !== null) counts.set(cls, (counts.get(cls) ?? 0) + 1);
      else { const why = notSampleReason(m.name); if (why) notSamples.add(m.name, why); }
    }
  }
  if (counts.size === 0) {
    throw new SlimfitError('no image files in class folders found in the archive', { file: path, hint: 'expected <class>/<file>.png entries, e.g. notMNIST_small/A/x.png' });
  }
  const classNames = [...counts.keys()].sort(byCodeUnit);
  const index = new Map(classNames.map((c, i) => [c, i]));
  const { size: bytes } = await stat(path);

  const progress: TarProgress = { bytes: 0 }; // how far the latest pass has read the file
  const wanted = (name: string, size: number) => size <= MAX_IMAGE_FILE_BYTES && classOfPath(name) !== null;
  async function* entryChunks(): AsyncGenerator<EntryChunk> {
    for await (const arr of members(wanted, progress)) {
      const out: ImageEntry[] = [];
      for (const m of arr) {
        const cls = classOfPath(m.name);
        if (cls === null) continue;
        out.push(m.data ? { path: m.name, label: index.get(cls)!, data: m.data }
          : { path: m.name, label: index.get(cls)!, data: new Uint8Array(0), error: `file too large for an image sample (${m.size} bytes)` });
      }
      if (out.length > 0) yield Object.assign(out, { release: arr.release });
      else arr.release();
    }
  }
  async function* entries(): AsyncGenerator<ImageEntry> {
    for await (const chunk of entryChunks()) yield* chunk; // (bytes not released: they stay the caller's)
  }
  async function* labelsOnly(): AsyncGenerator<number> {
    for await (const arr of members(none)) {
      for (const m of arr) {
        const cls = classOfPath(m.name);
        if (cls !== null) yield index.get(cls)!;
      }
    }
  }
  return { name: path, classNames, bytes, entries, entryChunks, labelsOnly, bytesRead: () => progress.bytes, notSamples: notSamples.list() };
}

function openZip(path: string): Promise<yauzl.ZipFile> {
  return new Promise((resolve, reject) => {
    // decodeStrings off: yauzl would fail the whole archive on one absolute or "../" name; zipEntries decodes the
    // names the same way and notSampleReason lists such members as skipped.
    yauzl.open(path, { lazyEntries: true, autoClose: false, decodeStrings: false }, (err, zf) => (err ? reject(err) : resolve(zf)));
  });
}

/** Iterate a zip's central directory one entry at a time. */
async function* zipEntries(zf: yauzl.ZipFile): AsyncGenerator<yauzl.Entry> {
  for (;;) {
    const e = await new Promise<yauzl.Entry | null>((resolve, reject) => {
      const onEntry = (en: yauzl.Entry) => { cleanup(); resolve(en); };
      const onEnd = () => { cleanup(); resolve(null); };
      const onError = (err: Error) => { cleanup(); reject(err); };
      const cleanup = () => { zf.off('entry', onEntry); zf.off('end', onEnd); zf.off('error', onError); };
      zf.on('entry', onEntry); zf.on('end', onEnd); zf.on('error', onError);
      zf.readEntry();
    });
    if (!e) return;
    // yauzl's own decoding (UTF-8 flag or CP437, Info-ZIP unicode path field), without its name validation.
    e.fileName = yauzl.getFileNameLowLevel(e.generalPurposeBitFlag, e.fileName as unknown as Buffer, e.extraFields, false);
    yield e;
  }
}

/** A .zip of class folders as an ImageInput (class names from a pass over the central directory only). */
export async function zipInput(path: string): Promise<ImageInput> {
  const zipError = (e: unknown): never => {
    throw new SlimfitError(`cannot read the zip archive: ${(e as Error).message}`, { file: path, hint: 'the zip is truncated or corrupt; check it with `unzip -t`' });
  };
  const names = new Set<string>();
  const notSamples = notSampleList();
  {
    const zf = await openZip(path).catch(zipError);
    try {
      for await (const e of zipEntries(zf)) {
        const cls = classOfPath(e.fileName);
        if (cls !== null && !e.fileName.endsWith('/')) names.add(cls);
        else if (!e.fileName.endsWith('/')) { const why = notSampleReason(e.fileName); if (why) notSamples.add(e.fileName, why); }
      }
    } catch (e) { zipError(e); } finally { zf.close(); }
  }
  if (names.size === 0) {
    throw new SlimfitError('no image files in class folders found in the zip', { file: path, hint: 'expected <class>/<file>.png entries' });
  }
  const classNames = [...names].sort(byCodeUnit);
  const index = new Map(classNames.map((c, i) => [c, i]));
  const { size: bytes } = await stat(path);

  let readTo = 0; // how far into the file the current entries() pass has got (members are in file order), for progress
  async function* entries(): AsyncGenerator<ImageEntry> {
    const zf = await openZip(path).catch(zipError);
    readTo = 0;
    try {
      for await (const e of zipEntries(zf)) {
        readTo = Math.max(readTo, e.relativeOffsetOfLocalHeader + e.compressedSize);
        const cls = classOfPath(e.fileName);
        if (cls === null || e.fileName.endsWith('/')) continue;
        const label = index.get(cls)!;
        if (e.uncompressedSize > MAX_IMAGE_FILE_BYTES) {
          yield { path: e.fileName, label, data: new Uint8Array(0), error: `file too large for an image sample (${e.uncompressedSize} bytes)` };
          continue;
        }
        let data: Uint8Array;
        try {
          data = await readAll(await zf.openReadStreamPromise(e), e.uncompressedSize);
        } catch (err) {
          yield { path: e.fileName, label, data: new Uint8Array(0), error: `broken zip member: ${(err as Error).message}` };
          continue;
        }
        yield { path: e.fileName, label, data };
      }
    } finally {
      zf.close();
    }
  }
  async function* labelsOnly(): AsyncGenerator<number> {
    const zf = await openZip(path).catch(zipError);
    try {
      for await (const e of zipEntries(zf)) {
        const cls = classOfPath(e.fileName);
        if (cls !== null && !e.fileName.endsWith('/')) yield index.get(cls)!;
      }
    } finally {
      zf.close();
    }
  }
  return { name: path, classNames, bytes, entries, labelsOnly, bytesRead: () => readTo, notSamples: notSamples.list() };
}

/** Open a .tar/.tar.gz/.tgz/.zip of class folders as a SampleSource; null if `path` is not such an archive. */
export async function openImageArchive(path: string, opts: ImageSourceOptions = {}): Promise<SampleSource | null> {
  const kind = await archiveKind(path);
  if (!kind) return null;
  const input = kind === 'zip' ? await zipInput(path) : await tarInput(path, kind === 'tar.gz');
  return openImageSource(input, opts);
}
