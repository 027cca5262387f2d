"""PyTorch peer of bench/train.ts: trains the same mlp/cnn (batch 128, Adam 1e-3, one-hot cross-entropy) on the SAME
slimfit store, reading its .npy shards with numpy memmap, a fresh random permutation per epoch, per-batch fancy-index
gather and the manifest's mean/std normalization (what slimfit's loader does), then evaluates on the test split.

Usage: /usr/bin/python3 bench/train-torch.py <mlp|cnn> <store dir> <epochs> <batch> [threads (default: all cores)]
Prints one JSON line: samplesPerSec (training epochs only), testAccuracy, seconds, peakRss (bytes), threads, version.
"""
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn

kind, store, epochs, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(int(sys.argv[5]) if len(sys.argv) > 5 else (os.cpu_count() or 1))
torch.manual_seed(0)
man = json.load(open(os.path.join(store, 'dataset.json')))
mean, std = man['stats']['mean'][0], man['stats']['std'][0]


def split(name):
    xs, ys = [], []
    for sh in man['splits'][name]['shards']:
        xs.append(np.load(os.path.join(store, sh['x']['file']), mmap_mode='r'))
        ys.append(np.load(os.path.join(store, sh['y']['file']), mmap_mode='r'))
    return xs, ys


def gather(xs, ys, idx):
    # One shard for MNIST; concatenate lazily for several.
    x = xs[0] if len(xs) == 1 else np.concatenate(xs)
    y = ys[0] if len(ys) == 1 else np.concatenate(ys)
    xb = (x[np.sort(idx)].astype(np.float32) - mean) / std
    yb = y[np.sort(idx)].astype(np.int64)
    return torch.from_numpy(xb), torch.from_numpy(yb)


if kind == 'mlp':
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
else:
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
xs, ys = split('train')
n = man['splits']['train']['samples']
rng = np.random.default_rng(0)


def nchw(xb):
    return xb.permute(0, 3, 1, 2) if kind == 'cnn' else xb


t0 = time.perf_counter()
for e in range(epochs):
    perm = rng.permutation(n)
    model.train()
    for i in range(0, n, batch):
        xb, yb = gather(xs, ys, perm[i:i + batch])
        opt.zero_grad()
        loss = loss_fn(model(nchw(xb)), yb)
        loss.backward()
        opt.step()
sec = time.perf_counter() - t0
model.eval()
txs, tys = split('test')
nt = man['splits']['test']['samples']
correct = 0
with torch.no_grad():
    for i in range(0, nt, 1000):
        xb, yb = gather(txs, tys, np.arange(i, min(nt, i + 1000)))
        correct += int((model(nchw(xb)).argmax(1) == yb).sum())
print(json.dumps({
    'samplesPerSec': epochs * n / sec, 'testAccuracy': correct / nt, 'seconds': sec,
    'peakRss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    'threads': torch.get_num_threads(), 'version': torch.__version__,
}))
