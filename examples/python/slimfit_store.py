"""Read a slimfit store from Python: numpy arrays (memory-mapped) and a PyTorch Dataset.

A slimfit store is a folder written by ``slimfit convert``: ``dataset.json`` (the manifest) plus plain ``.npy``
shards that ``numpy.load`` opens unchanged. This file is the whole reader: copy it next to your code. It needs numpy;
``torch`` only for :meth:`Split.torch_dataset`.

What the manifest says, and the units of what you get
------------------------------------------------------
* ``fields.x`` / ``fields.y``: numpy dtype name and the shape of ONE sample. Samples are stored exactly as converted:
  images are **NHWC** (a split's x is ``[N, H, W, C]``, e.g. ``[N, 28, 28, 1]`` uint8 with values 0..255), flat
  features are ``[N, F]``. Nothing is normalized on disk.
* Labels (``y``) are integer class indices ``0..K-1`` in the stored dtype (usually ``uint8``; ``int64`` and
  others are possible), one per sample (``fields.y.shape == []``). ``classNames[i]`` is the name of label ``i``
  when the store has names (else ``None``).
* ``stats``: per-channel ``mean`` and ``std`` (channel = the last axis of an image sample, one channel otherwise),
  plus overall ``min``/``max``, computed on the ``stats.split`` split (normally train) **in stored units**: for
  uint8 images mean ~33 and std ~78 on MNIST, not 0.13 / 0.31. Normalize as ``(x - mean) / std`` on the stored
  values (or scale by 1/255 first AND scale mean/std by 1/255 too).
* ``splits[name].shards``: consecutive runs of samples, each a pair of files ``x-NNNNN.npy`` / ``y-NNNNN.npy`` with
  its byte size and SHA-256 (:meth:`Split.verify` checks them). Sample ``i`` of a split is found by walking the
  shards in order.

Example::

    from slimfit_store import open_store
    store = open_store('mnist-store')
    train = store.split('train')
    print(len(train), train.x.shape, train.x.dtype, store.class_names)
    x0, y0 = train[0]                       # numpy arrays (x0: [28, 28, 1] uint8, y0: scalar)
    xb = train.x[100:228]                   # a batch, read from the memory-mapped shards
    x_all, y_all = train.arrays()           # everything in RAM (np.concatenate of the shards)

    import torch
    ds = train.torch_dataset(normalize='stats', channels_first=True)   # float32 [1, 28, 28], label int64
    loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True)
"""

import hashlib
import json
import os

import numpy as np

__all__ = ['open_store', 'Store', 'Split', 'LazyConcat']

MANIFEST = 'dataset.json'
_DTYPES = {'bool', 'uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'uint64', 'int64', 'float16', 'float32', 'float64'}


class StoreError(Exception):
    """A store that is incomplete, damaged or not what the manifest says."""


def open_store(path):
    """Open the store folder ``path`` (reads and checks dataset.json; shards are opened when first used)."""
    return Store(path)


class Store:
    """A slimfit store: ``manifest`` (the parsed dataset.json), ``splits`` (names), ``class_names``, ``stats``."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        mpath = os.path.join(self.path, MANIFEST)
        try:
            with open(mpath, 'r', encoding='utf-8') as f:
                m = json.load(f)
        except FileNotFoundError:
            raise StoreError(f'{mpath}: no {MANIFEST}, so this is not a (complete) slimfit store; create one with `slimfit convert SRC OUT`') from None
        except json.JSONDecodeError as e:
            raise StoreError(f'{mpath}: not valid JSON ({e})') from None
        if not isinstance(m, dict) or m.get('format') != 'slimfit-dataset':
            raise StoreError(f'{mpath}: missing "format": "slimfit-dataset"')
        if m.get('version') != 1:
            raise StoreError(f'{mpath}: store version {m.get("version")!r}; this reader understands version 1')
        for k in ('x', 'y'):
            f = m.get('fields', {}).get(k)
            if not isinstance(f, dict) or f.get('dtype') not in _DTYPES or not isinstance(f.get('shape'), list):
                raise StoreError(f'{mpath}: bad field spec for {k}')
        self.manifest = m
        self.splits = list(m['splits'].keys())
        self.class_names = m.get('classNames')
        self.stats = m.get('stats')
        self.x_dtype = np.dtype(m['fields']['x']['dtype'])
        self.x_shape = tuple(m['fields']['x']['shape'])
        self.y_dtype = np.dtype(m['fields']['y']['dtype'])
        self.y_shape = tuple(m['fields']['y']['shape'])

    def split(self, name='train'):
        """The :class:`Split` called ``name`` (a KeyError listing the splits if there is none)."""
        if name not in self.manifest['splits']:
            raise KeyError(f'{self.path} has no split {name!r}; it has {", ".join(self.splits)}')
        return Split(self, name)

    def __repr__(self):
        return f'Store({self.path!r}, splits={self.splits}, x={self.x_dtype}{list(self.x_shape)}, y={self.y_dtype}{list(self.y_shape)})'


class LazyConcat:
    """Several memory-mapped arrays seen as one along axis 0 (nothing is read until indexed).

    Supports ``len``, ``shape``, ``dtype``, integer, slice and integer-array indexing (rows come back as a new
    array, or a view of one shard for an int or a slice inside one shard), and ``np.asarray`` (reads everything).
    """

    def __init__(self, parts, dtype, row_shape):
        self.parts = parts
        self.dtype = dtype
        self.starts = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.starts[-1]),) + tuple(row_shape)
        self.ndim = len(self.shape)

    def __len__(self):
        return self.shape[0]

    def _locate(self, i):
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f'index {i} is out of range for {len(self)} samples')
        k = int(np.searchsorted(self.starts, i, side='right') - 1)
        return k, i - int(self.starts[k])

    def __getitem__(self, idx):
        if isinstance(idx, tuple):
            head, rest = idx[0], idx[1:]
            return self[head][(slice(None),) + rest] if not isinstance(head, (int, np.integer)) else self[head][rest]
        if isinstance(idx, (int, np.integer)):
            k, j = self._locate(int(idx))
            return self.parts[k][j]
        if isinstance(idx, slice):
            start, stop, step = idx.indices(len(self))
            if step == 1:
                if stop <= start:
                    return np.empty((0,) + self.shape[1:], self.dtype)
                k0, j0 = self._locate(start)
                k1, j1 = self._locate(stop - 1)
                if k0 == k1:
                    return self.parts[k0][j0:j1 + 1]
                pieces = [self.parts[k0][j0:]] + [self.parts[k] for k in range(k0 + 1, k1)] + [self.parts[k1][:j1 + 1]]
                return np.concatenate(pieces)
            return self[np.arange(start, stop, step)]
        arr = np.asarray(idx)
        if arr.dtype == bool:
            arr = np.nonzero(arr)[0]
        arr = arr.astype(np.int64).reshape(-1)
        arr = np.where(arr < 0, arr + len(self), arr)
        if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
            raise IndexError(f'an index is out of range for {len(self)} samples')
        out = np.empty((arr.size,) + self.shape[1:], self.dtype)
        shard = np.searchsorted(self.starts, arr, side='right') - 1
        for k in np.unique(shard):
            sel = shard == k
            out[sel] = self.parts[k][arr[sel] - self.starts[k]]
        return out

    def __array__(self, dtype=None, copy=None):
        a = np.concatenate([np.asarray(p) for p in self.parts]) if self.parts else np.empty(self.shape, self.dtype)
        return a.astype(dtype) if dtype is not None else a

    def __iter__(self):
        for p in self.parts:
            yield from p

    def __repr__(self):
        return f'LazyConcat(shape={self.shape}, dtype={self.dtype}, shards={len(self.parts)})'


class Split:
    """One split of a store: ``x`` and ``y`` as :class:`LazyConcat` over ``np.load(..., mmap_mode='r')`` shards.

    ``len(split)`` samples; ``split[i]`` is ``(x_i, y_i)``; ``arrays()`` loads both into memory.
    """

    def __init__(self, store, name):
        self.store = store
        self.name = name
        self.info = store.manifest['splits'][name]
        xs, ys = [], []
        for sh in self.info['shards']:
            xs.append(self._open(sh, 'x', store.x_dtype, store.x_shape))
            ys.append(self._open(sh, 'y', store.y_dtype, store.y_shape))
        self.x = LazyConcat(xs, store.x_dtype, store.x_shape)
        self.y = LazyConcat(ys, store.y_dtype, store.y_shape)
        if len(self.x) != self.info['samples']:
            raise StoreError(f'{store.path}: split {name} says {self.info["samples"]} samples but its shards hold {len(self.x)}')

    def _open(self, shard, field, dtype, row_shape):
        rel = shard[field]['file']
        if os.path.isabs(rel) or '..' in rel.replace('\\', '/').split('/'):
            raise StoreError(f'{self.store.path}: shard path {rel!r} points outside the store')
        path = os.path.join(self.store.path, rel)
        try:
            size = os.path.getsize(path)
        except OSError:
            raise StoreError(f'{path}: shard missing; run `slimfit verify {self.store.path}`') from None
        if size != shard[field]['bytes']:
            raise StoreError(f'{path}: {size} bytes but the manifest says {shard[field]["bytes"]}; run `slimfit verify {self.store.path}`')
        a = np.load(path, mmap_mode='r', allow_pickle=False)
        want = (shard['samples'],) + tuple(row_shape)
        if a.dtype != dtype or a.shape != want:
            raise StoreError(f'{path}: holds {a.dtype} {list(a.shape)} but the manifest says {dtype} {list(want)}')
        return a

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def arrays(self):
        """``(x, y)`` as in-memory numpy arrays (the whole split is read)."""
        return np.asarray(self.x), np.asarray(self.y)

    def verify(self):
        """Check every shard of this split against the manifest's SHA-256 (reads the files once); raises StoreError."""
        for sh in self.info['shards']:
            for field in ('x', 'y'):
                path = os.path.join(self.store.path, sh[field]['file'])
                h = hashlib.sha256()
                with open(path, 'rb') as f:
                    for block in iter(lambda: f.read(1 << 20), b''):
                        h.update(block)
                if h.hexdigest() != sh[field]['sha256']:
                    raise StoreError(f'{path}: SHA-256 differs from the manifest; the shard is damaged, re-run `slimfit convert`')

    def torch_dataset(self, normalize=None, channels_first=False, transform=None, target_transform=None):
        """A ``torch.utils.data.Dataset`` over this split (reads each sample from the memory-mapped shards).

        ``normalize``: None keeps the stored dtype and values (e.g. uint8 0..255); ``'stats'`` gives float32
        ``(x - mean) / std`` with the store's per-channel statistics (stored units, see the module docstring);
        ``'scale'`` gives float32 ``x / 255`` for uint8 stores. ``channels_first=True`` turns an ``[H, W, C]``
        sample into ``[C, H, W]`` (torchvision's layout; the store is NHWC). Labels come back as a Python int
        (DataLoader batches them as int64, what ``CrossEntropyLoss`` wants). ``transform`` / ``target_transform``
        are applied last, as in torchvision datasets.
        """
        import torch
        from torch.utils.data import Dataset

        store, split = self.store, self
        mean = std = None
        if normalize == 'stats':
            st = store.stats
            if not st or any(v is None for v in st['mean'] + st['std']):
                raise StoreError(f'{store.path}: the manifest has no usable stats for normalize="stats"')
            mean = np.asarray(st['mean'], np.float32)
            std = np.asarray([s if s > 0 else 1.0 for s in st['std']], np.float32)
        elif normalize == 'scale':
            if store.x_dtype != np.uint8:
                raise StoreError(f'{store.path}: normalize="scale" divides by 255 and is meant for uint8 samples, these are {store.x_dtype}')
        elif normalize is not None:
            raise ValueError(f"normalize must be None, 'stats' or 'scale', got {normalize!r}")
        label_is_int = np.issubdtype(store.y_dtype, np.integer) and store.y_shape == ()

        class SlimfitDataset(Dataset):
            def __len__(self):
                return len(split)

            def __getitem__(self, i):
                x, y = split.x[int(i)], split.y[int(i)]
                if normalize == 'stats':
                    x = (np.asarray(x, np.float32) - mean) / std
                elif normalize == 'scale':
                    x = np.asarray(x, np.float32) / np.float32(255)
                else:
                    x = np.array(x)  # a writable copy: torch refuses read-only memory maps
                if channels_first and x.ndim == 3:
                    x = np.ascontiguousarray(np.moveaxis(x, -1, 0))
                xt = torch.from_numpy(np.ascontiguousarray(x))
                yt = int(y) if label_is_int else torch.from_numpy(np.array(y))
                if transform is not None:
                    xt = transform(xt)
                if target_transform is not None:
                    yt = target_transform(yt)
                return xt, yt

        return SlimfitDataset()

    def __repr__(self):
        return f'Split({self.store.path!r}, {self.name!r}, samples={len(self)})'


if __name__ == '__main__':
    import sys
    if len(sys.argv) != 2:
        sys.exit('usage: python3 slimfit_store.py STORE_DIR')
    s = open_store(sys.argv[1])
    print(s)
    for name in s.splits:
        sp = s.split(name)
        print(f'  {name}: x {sp.x.dtype} {list(sp.x.shape)}, y {sp.y.dtype} {list(sp.y.shape)}, {len(sp.info["shards"])} shard(s)')
    if s.stats:
        print(f'  stats (stored units, split {s.stats["split"]}): mean {s.stats["mean"]}, std {s.stats["std"]}')
