"""Peers for `npm run bench -- loader`: shuffled float32 batches from the same .npy shards with numpy memmap or PyTorch.

Usage: loader_peers.py KIND SPEC_JSON
  KIND: numpy | torch | torch-batched
  SPEC_JSON: {"x": [paths], "y": [paths], "batch": 128, "seconds": 15, "seed": 0, "workers": 0}
Prints one JSON line: samples, seconds (timed from the first batch on), peak RSS of this process (and of its largest
child, for DataLoader workers) and a checksum so the work cannot be skipped.
"""
import json
import os
import resource
import sys
import time

import numpy as np

kind, spec = sys.argv[1], json.loads(sys.argv[2])
B, seconds, seed = spec["batch"], spec["seconds"], spec.get("seed", 0)
xs = [np.load(p, mmap_mode="r") for p in spec["x"]]
ys = [np.load(p, mmap_mode="r") for p in spec["y"]]
starts = np.cumsum([0] + [len(a) for a in xs])
N = int(starts[-1])
scale = np.float32(1 / 255)


def gather(idx):
    """x[idx] as float32 / 255 and y[idx], from one memmap or several shards."""
    if len(xs) == 1:
        xb = np.multiply(xs[0][idx], scale, dtype=np.float32)
        return xb, np.asarray(ys[0][idx], dtype=np.int64)
    shard = np.searchsorted(starts, idx, side="right") - 1
    xb = np.empty((len(idx),) + xs[0].shape[1:], dtype=np.float32)
    yb = np.empty(len(idx), dtype=np.int64)
    for s in np.unique(shard):
        m = shard == s
        rows = idx[m] - starts[s]
        xb[m] = np.multiply(xs[s][rows], scale, dtype=np.float32)
        yb[m] = ys[s][rows]
    return xb, yb


def peak():
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return me, kids


check = 0.0
n = 0
t0 = None
if kind == "numpy":
    rng = np.random.default_rng(seed)
    done = False
    while not done:  # epoch after epoch until the time is up, a new permutation each epoch
        perm = rng.permutation(N)
        for i in range(0, N, B):
            xb, yb = gather(perm[i:i + B])
            check += float(xb.reshape(len(yb), -1)[0, 0])
            if t0 is None:
                t0 = time.perf_counter()
                c0 = time.process_time()
                continue
            n += len(yb)
            if time.perf_counter() - t0 > seconds:
                done = True
                break
else:
    import torch
    from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

    torch.set_num_threads(1)

    class Samples(Dataset):
        """Map-style dataset over the memmapped shards; per sample (the usual way) or per list of indices (batched)."""

        def __len__(self):
            return N

        def __getitem__(self, i):
            if isinstance(i, list):
                xb, yb = gather(np.asarray(i))
                return torch.from_numpy(xb), torch.from_numpy(yb)
            s = int(np.searchsorted(starts, i, side="right") - 1)
            r = i - int(starts[s])
            return torch.from_numpy(np.multiply(xs[s][r], scale, dtype=np.float32)), int(ys[s][r])

    g = torch.Generator()
    g.manual_seed(seed)
    nw = spec.get("workers", 0)
    if kind == "torch":
        dl = DataLoader(Samples(), batch_size=B, shuffle=True, generator=g, num_workers=nw, persistent_workers=False)
    else:
        sampler = BatchSampler(RandomSampler(range(N), generator=g), batch_size=B, drop_last=False)
        dl = DataLoader(Samples(), sampler=sampler, batch_size=None, num_workers=nw)
    done = False
    while not done:  # epoch after epoch until the time is up
        for xb, yb in dl:
            check += float(xb.reshape(len(yb), -1)[0, 0])
            if t0 is None:
                t0 = time.perf_counter()
                c0 = time.process_time()
                continue
            n += len(yb)
            if time.perf_counter() - t0 > seconds:
                done = True
                break
    del dl

dt = time.perf_counter() - t0 if t0 else 0.0
cpu = time.process_time() - c0 if t0 else 0.0  # this process only (DataLoader worker processes not included)
me, kids = peak()
print(json.dumps({"samples": n, "seconds": dt, "cpuSeconds": cpu, "cpuIncomplete": kind != "numpy" and spec.get("workers", 0) > 0, "peakRss": me, "peakRssChildren": kids, "check": check}))
