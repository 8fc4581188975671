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


def serve_training(net, opt, x, loss_of):
    """serve() for a model: workload 'step' is one SGD step on loss_of(net, x), anything else a no-grad forward."""
    import torch

    def run(workload):
        if workload == 'step':
            loss = loss_of(net, x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            with torch.no_grad():
                net(x)

    serve(run)
