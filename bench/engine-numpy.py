"""numpy/OpenBLAS peer of `npm run bench -- engine`: float32 GEMM GFLOP/s at given shapes.

Usage: python3 bench/engine-numpy.py '[[name, M, N, K, transA, transB], ...]' <seconds per shape> <rounds>
Prints one JSON line: {"rows": [{"name", "gflops"}], "blas": "...", "threads": n}; gflops is the best of rounds
(the least disturbed by other load on the machine, as for the engine).
"""
import json
import sys
import time

import numpy as np

shapes, secs, rounds = json.loads(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
out = []
for name, m, n, k, ta, tb in shapes:
    rng = np.random.default_rng(0)
    a = rng.random((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.random((n, k) if tb else (k, n), dtype=np.float32)
    A = a.T if ta else a
    B = b.T if tb else b
    A @ B
    rates = []
    for _ in range(rounds):
        reps, t0 = 0, time.perf_counter()
        while True:
            A @ B
            reps += 1
            dt = time.perf_counter() - t0
            if dt >= secs / rounds:
                break
        rates.append(2.0 * m * n * k * reps / dt / 1e9)
    out.append({'name': name, 'gflops': max(rates)})
try:
    cfg = np.show_config(mode='dicts')['Build Dependencies']['blas']
    blas = f"{cfg.get('name')} {cfg.get('version')}"
except Exception:  # older numpy
    blas = 'unknown'
print(json.dumps({'rows': out, 'blas': blas, 'numpy': np.__version__}))
