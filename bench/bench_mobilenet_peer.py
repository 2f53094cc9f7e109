#!/usr/bin/python3
"""
bench_mobilenet_peer.py - the PyTorch side of bench_mobilenet.c: sat_ref.py's MobileNetV2Encoder
(torchvision's mobilenet_v2 features, eval mode, no_grad; ../shared/peer/sat_ref.py) timed the
same way: one image and a batch at 224 x 224, grid 14 and 7, median / min wall-clock ms and the
median process CPU ms.

    MALLOC_MMAP_THRESHOLD_=1099511627776 MALLOC_TRIM_THRESHOLD_=1099511627776 \
        /usr/bin/python3 bench/bench_mobilenet_peer.py --threads 2 --batch 64
(the malloc thresholds are what sat_ref.py sets for itself: PyTorch at its best).
"""
import argparse
import os
import statistics
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--iters", type=int, default=30)
ap.add_argument("--peer", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../shared/peer"))
a = ap.parse_args()
# sat_ref.py reads its own arguments at import: give it the ones that set the threads up
sys.argv = ["sat_ref.py", "--threads", str(a.threads), "--omp-passive", "--encoder", "mnv2"]
sys.path.insert(0, a.peer)
import sat_ref  # noqa: E402
import torch  # noqa: E402


def measure(enc, x, iters):
    with torch.no_grad():
        enc(x)
        wall, cpu = [], []
        for _ in range(iters):
            t0, c0 = time.perf_counter(), time.process_time()
            enc(x)
            wall.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
    return statistics.median(wall), min(wall), statistics.median(cpu)


print("peer: torch %s, %d threads, mkldnn %s" % (torch.__version__, torch.get_num_threads(),
                                                  torch.backends.mkldnn.is_available()))
for grid in (14, 7):
    enc = sat_ref.MobileNetV2Encoder(grid).eval()
    med, mn, cpu = measure(enc, torch.randn(1, 3, 224, 224), a.iters)
    print("grid %2d  1 image   median %7.2f ms  min %7.2f ms  cpu %7.2f ms" % (grid, med, mn, cpu))
    med, mn, cpu = measure(enc, torch.randn(a.batch, 3, 224, 224), 5)
    print("grid %2d  %d images  median %7.1f ms  min %7.1f ms  cpu %7.1f ms  (%.2f ms per image)"
          % (grid, a.batch, med, mn, cpu, med / a.batch))
    sys.stdout.flush()
