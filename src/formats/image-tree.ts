// Image folder trees: root/<class>/<file>.{png,jpg,jpeg,gif,bmp}. Classes are the sub-folder names sorted by
// code unit (index = label); files are visited class by class, each folder's by UTF-8 bytes (Python's sorted()
// order). Only one class folder's file names are in memory at a time, as one byte array.
// Other files (.DS_Store, .txt) are ignored; images at the root or in folders below a class folder are not read
// and are listed as skipped (a class is one folder level; a deeper tree is usually a wrong SRC).
import { opendir, readdir, stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { SlimfitError } from '../core/errors.ts';
import { IMAGE_EXTENSIONS, isImageName, notSampleList } from './images.ts';
import { pngAddon } from './png-native.ts';
import { type ImageEntry, type ImageInput, openImageSource, type ImageSourceOptions } from './image-source.ts';
import type { SampleSource, SkippedInput } from '../core/source.ts';

const EMPTY = new Uint8Array(0);
const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Sorted class folder names under `root`. */
export async function treeClasses(root: string): Promise<string[]> {
  const names: string[] = [];
  const dir = await opendir(root);
  for await (const d of dir) {
    if (d.isDirectory() && !d.name.startsWith('.') && d.name !== '__MACOSX') names.push(d.name);
    else if (d.isSymbolicLink()) {
      const s = await stat(join(root, d.name)).catch(() => null);
      if (s?.isDirectory()) names.push(d.name);
    }
  }
  return names.sort(byCodeUnit);
}

/** One class folder's image file names, sorted by UTF-8 bytes, each followed by a NUL, in one byte array. */
interface FolderListing { names: Uint8Array; count: number; /** names.buffer is ours alone (made by the addon) */ own: boolean }

/** The listing buffer the last folder gave back (a folder tree is converted one folder at a time). */
let spareListing: ArrayBuffer | undefined;
const EXTS = IMAGE_EXTENSIONS.join('\0');

async function classFiles(root: string, cls: string): Promise<FolderListing> {
  const dir = join(root, cls);
  const addon = pngAddon();
  if (addon) {
    const into = spareListing;
    spareListing = undefined;
    const r = addon.listImages(dir, EXTS, into);
    if (r.names) return { names: r.names, count: r.count!, own: true };
    if (into) spareListing = into; // unreadable folder: readdir below throws its error with the folder's name
  }
  // Without the addon (or to get a folder's error): names sorted by their UTF-8 bytes, as the addon does.
  const names = (await readdir(dir)).filter((n) => !n.startsWith('._') && isImageName(n)).map((n) => Buffer.from(n)).sort(Buffer.compare);
  const packed = Buffer.concat(names.flatMap((b) => [b, NUL]));
  return { names: new Uint8Array(packed.buffer, packed.byteOffset, packed.length), count: names.length, own: false };
}
const NUL = Buffer.from([0]);

/** Give a listing's bytes back for the next folder (the addon's, up to 4 MB; a Buffer may share a pooled slab). */
function doneWith(l: FolderListing): void {
  const b = l.names.buffer as ArrayBuffer;
  if (l.own && b.byteLength <= 4 << 20 && (spareListing === undefined || spareListing.byteLength < b.byteLength)) spareListing = b;
}

/** True if `root` looks like an image tree: a directory whose sub-folders hold image files. */
export async function looksLikeImageTree(root: string): Promise<boolean> {
  const s = await stat(root).catch(() => null);
  if (!s?.isDirectory()) return false;
  for (const cls of await treeClasses(root)) {
    const dir = await opendir(join(root, cls));
    try {
      for await (const d of dir) if (isImageName(d.name)) return true;
    } finally {
      await dir.close().catch(() => {});
    }
  }
  return false;
}

/** The tree as an ImageInput (entries in sorted class, then sorted file name order). */
export async function imageTreeInput(root: string): Promise<ImageInput> {
  const classNames = await treeClasses(root);
  if (classNames.length === 0) {
    throw new SlimfitError('no class folders found', { file: root, hint: 'expected root/<class>/<file>.png (one folder per class)' });
  }
  /** One class folder's files in sorted order, in arrays of up to 256 path-only entries. */
  async function* entryChunks(): AsyncGenerator<ImageEntry[]> {
    for (let label = 0; label < classNames.length; label++) {
      const cls = classNames[label];
      const listing = await classFiles(root, cls);
      const { names, count } = listing;
      // Only paths: the decode workers read the files (natively when the PNG addon is built), so the main thread
      // is free for hashing and writing (reading 210k small files here cost ~25% of a conversion's main thread).
      const dir = join(root, cls);
      const bytes = Buffer.from(names.buffer, names.byteOffset, names.length);
      let at = 0;
      for (let i = 0; i < count; i += 256) {
        // 256 names: one decode and split (names from a folder listing hold no separators).
        const k = Math.min(count, i + 256) - i;
        let end = at;
        for (let seen = 0; seen < k; end++) if (bytes[end] === 0) seen++;
        const part = bytes.toString('utf8', at, end - 1).split('\0');
        at = end;
        const chunk: ImageEntry[] = new Array(k);
        for (let j = 0; j < k; j++) chunk[j] = { path: `${dir}${sep}${part[j]}`, label, data: EMPTY, lazy: true };
        yield chunk;
      }
      doneWith(listing);
    }
  }
  async function* entries(): AsyncGenerator<ImageEntry> {
    for await (const chunk of entryChunks()) yield* chunk;
  }
  async function* labelsOnly(): AsyncGenerator<number> {
    for (let label = 0; label < classNames.length; label++) {
      const listing = await classFiles(root, classNames[label]);
      const n = listing.count;
      doneWith(listing);
      for (let i = 0; i < n; i++) yield label;
    }
  }
  return { name: root, classNames, entries, entryChunks, labelsOnly, notSamples: await strayImages(root, classNames) };
}

/** Images at the root and below class folders' sub-folders: never samples, listed as skipped. */
async function strayImages(root: string, classNames: string[]): Promise<SkippedInput[]> {
  const found = notSampleList();
  for (const d of await readdir(root, { withFileTypes: true })) {
    if (!d.isDirectory() && !d.name.startsWith('._') && isImageName(d.name)) found.add(join(root, d.name), 'image at the top of the tree, not in a class folder: not read');
  }
  for (const cls of classNames) {
    const dir = join(root, cls);
    // A folder's link count is 2 + its sub-folders on most Linux file systems: skip listing it again when it has none.
    if ((await stat(dir)).nlink === 2) continue;
    for (const d of await readdir(dir, { withFileTypes: true })) {
      if (d.isDirectory() && !d.name.startsWith('.')) await imagesBelow(join(dir, d.name), cls, found, 0);
    }
  }
  return found.list();
}

async function imagesBelow(dir: string, cls: string, found: ReturnType<typeof notSampleList>, depth: number): Promise<void> {
  if (depth > 32) return; // a link loop
  for (const d of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const p = join(dir, d.name);
    if (d.isDirectory() && !d.name.startsWith('.')) await imagesBelow(p, cls, found, depth + 1);
    else if (!d.isDirectory() && !d.name.startsWith('._') && isImageName(d.name)) found.add(p, `image in a sub-folder of class folder ${cls} (only <class>/<file> is read): not read`);
  }
}

/** Open an image folder tree as a SampleSource. */
export async function openImageTree(root: string, opts: ImageSourceOptions = {}): Promise<SampleSource> {
  return openImageSource(await imageTreeInput(root), opts);
}
