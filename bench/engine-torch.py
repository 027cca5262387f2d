"""PyTorch peer of `npm run bench -- engine`: trains the same MLP/CNN (batch, Adam 1e-3) on random data.

Usage: python3 bench/engine-torch.py <mlp|cnn> <samples> <batch> [threads (default: all cores)]
Prints one JSON line: samplesPerSec, samplesPerCpuSec (all threads' CPU time), peakRss (bytes, ru_maxrss), threads, version.
"""
import json
import os
import resource
import sys
import time

import torch
import torch.nn as nn

kind, samples, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else (os.cpu_count() or 1))
torch.manual_seed(0)

if kind == 'mlp':
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    x = torch.rand(samples, 784)
else:
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, 10))
    x = torch.rand(samples, 1, 28, 28)
y = torch.randint(0, 10, (samples,))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()


def epoch(n):
    for i in range(0, n, batch):
        opt.zero_grad()
        loss = loss_fn(model(x[i:i + batch]), y[i:i + batch])
        loss.backward()
        opt.step()


epoch(min(samples, 3 * batch))  # warm-up, like the tfjs runs
t0, c0 = time.perf_counter(), time.process_time()
epoch(samples)
sec, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({
    'samplesPerSec': samples / sec,
    'samplesPerCpuSec': samples / cpu,
    'peakRss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    'threads': torch.get_num_threads(),
    'version': torch.__version__,
}))
