"""The PyTorch side of bench/common.ts's TorchPeer: one request per stdin line, "<workload> <steps>", answered
with one JSON line of per-step milliseconds. Each benchmark script builds its model and calls serve(run)."""
import json
import sys
import time


def serve(run):
    """run(workload) does one step of the named workload (and synchronises the device if it has to)."""
    for line in sys.stdin:
        workload, steps = line.split()
        times = []
        for _ in range(int(steps)):
            t0 = time.perf_counter()
            run(workload)
            times.append((time.perf_counter() - t0) * 1000)
        print(json.dumps(times), flush=True)
