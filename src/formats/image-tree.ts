// Image folder trees: root/<class>/<file>.{png,jpg,jpeg,gif,bmp}. Classes are the sub-folder names sorted by
// code unit (index = label); files are visited class by class in the same sorted order. Only one class folder's
// file names are in memory at a time. Other files (.DS_Store, .txt, nested folders) are ignored.
import { opendir, readdir, stat } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { SlimfitError } from './errors.ts';
import { isImageName } from './images.ts';
import { type ImageEntry, type ImageInput, openImageSource, type ImageSourceOptions } from './image-source.ts';
import type { SampleSource } from './source.ts';

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

/** One class folder's image file names, sorted, packed as one string (name i = text.slice(ends[i - 1] + 1, ends[i])). */
interface FolderListing { text: string; ends: Uint32Array; count: number }

async function classFiles(root: string, cls: string): Promise<FolderListing> {
  const names = (await readdir(join(root, cls))).filter((n) => !n.startsWith('._') && isImageName(n)).sort(byCodeUnit);
  // Packed: one string and one typed array held while the folder is converted, instead of 10k small strings that
  // V8 promotes and frees only at a full GC.
  const text = names.join('\0');
  const ends = new Uint32Array(names.length);
  for (let i = 0, o = 0; i < names.length; i++) { o += names[i].length; ends[i] = o; o++; }
  return { text, ends, count: names.length };
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
      const { text, ends, count } = await classFiles(root, cls);
      // Only paths: the decode workers read the files (natively when the PNG addon is built), so the main thread
      // is free for hashing and writing (reading 210k small files here cost ~25% of a conversion's main thread).
      const dir = join(root, cls);
      for (let i = 0; i < count; i += 256) {
        const chunk: ImageEntry[] = [];
        for (let k = i; k < Math.min(count, i + 256); k++) {
          const name = text.slice(k === 0 ? 0 : ends[k - 1] + 1, ends[k]); // names from readdir: no separators
          chunk.push({ path: `${dir}${sep}${name}`, label, data: EMPTY, lazy: true });
        }
        yield chunk;
      }
    }
  }
  async function* entries(): AsyncGenerator<ImageEntry> {
    for await (const chunk of entryChunks()) yield* chunk;
  }
  async function* labelsOnly(): AsyncGenerator<number> {
    for (let label = 0; label < classNames.length; label++) {
      const n = (await classFiles(root, classNames[label])).count;
      for (let i = 0; i < n; i++) yield label;
    }
  }
  return { name: root, classNames, entries, entryChunks, labelsOnly };
}

/** Open an image folder tree as a SampleSource. */
export async function openImageTree(root: string, opts: ImageSourceOptions = {}): Promise<SampleSource> {
  return openImageSource(await imageTreeInput(root), opts);
}
