"""PyTorch peer of `npm run bench -- engine`: trains the same MLP/CNN (batch, Adam 1e-3) on random data.

Usage: python3 bench/engine-torch.py <mlp|cnn> <samples> <batch> [threads (default: all cores)] [float32|bf16]
bf16: forward and loss under torch.autocast('cpu', dtype=torch.bfloat16) (Linear/Conv in bfloat16 through oneDNN,
float32 master weights and Adam), the peer of slimfit's opt-in --matmul-precision bf16.
Prints one JSON line: samplesPerSec, samplesPerCpuSec (all threads' CPU time), peakRss (bytes, ru_maxrss), threads,
version, blas (the BLAS library this process really mapped, from /proc/self/maps: torch.__config__ only says how torch
was built, and Debian's torch calls whatever libblas.so.3 the alternatives system points at) and blasKind
('openblas', 'mkl', 'blis', 'reference' or 'unknown'). The parent sets OMP_NUM_THREADS and OPENBLAS_NUM_THREADS to the
same thread count, so a 1-thread row runs on one thread inside the BLAS too.
"""
import gc
import json
import os
import resource
import sys
import time

import torch
import torch.nn as nn

kind, samples, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] else (os.cpu_count() or 1))
precision = sys.argv[5] if len(sys.argv) > 5 else 'float32'
if precision not in ('float32', 'bf16'):
    sys.exit(f'unknown precision {precision!r}: float32 or bf16')
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


def mapped_blas():
    """The BLAS shared objects mapped into this process (resolved paths) and what kind of BLAS they are."""
    libs = []
    try:
        with open('/proc/self/maps') as f:
            for line in f:
                path = line.split()[-1] if len(line.split()) >= 6 else ''
                name = os.path.basename(path)
                if path.startswith('/') and any(k in name for k in ('blas', 'mkl_', 'blis')) and path not in libs:
                    libs.append(os.path.realpath(path))
    except OSError:
        return 'unknown (no /proc/self/maps)', 'unknown'
    libs = sorted(set(libs))
    joined = ' '.join(libs)
    if 'openblas' in joined:
        kind = 'openblas'
    elif 'mkl' in joined:
        kind = 'mkl'
    elif 'blis' in joined:
        kind = 'blis'
    elif any(os.path.basename(p).startswith('libblas.so') for p in libs):
        kind = 'reference'  # Debian's netlib libblas.so.3 (/usr/lib/x86_64-linux-gnu/blas/): unoptimized loops
    else:
        kind = 'unknown'
    return joined or 'none mapped', kind


def epoch(n):
    for i in range(0, n, batch):
        opt.zero_grad()
        if precision == 'bf16':
            with torch.autocast('cpu', dtype=torch.bfloat16):
                loss = loss_fn(model(x[i:i + batch]), y[i:i + batch])
        else:
            loss = loss_fn(model(x[i:i + batch]), y[i:i + batch])
        loss.backward()
        opt.step()


epoch(min(samples, 3 * batch))  # warm-up, like the tfjs runs
gc.collect()  # the setup's garbage, as the tfjs runs collect theirs before the clock starts
epoch(min(samples, 3 * batch))  # and the warm-up once more after the collection, as the tfjs runs
t0, c0 = time.perf_counter(), time.process_time()
epoch(samples)
sec, cpu = time.perf_counter() - t0, time.process_time() - c0
blas, blas_kind = mapped_blas()
print(json.dumps({
    'samplesPerSec': samples / sec,
    'samplesPerCpuSec': samples / cpu,
    'peakRss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    'threads': torch.get_num_threads(),
    'precision': precision,
    'version': torch.__version__,
    'blas': blas,
    'blasKind': blas_kind,
    'env': {k: os.environ.get(k, '') for k in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')},
}))
