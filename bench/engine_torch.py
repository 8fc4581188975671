"""PyTorch side of `npm run bench:engine`: the same workloads as bench/engine.ts, driven over stdin/stdout
so that both engines run interleaved in one invocation on the same machine.

Protocol: one line per request, "<workload> <steps>"; the reply is one JSON line with the step times in ms.
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_peer import serve


def block():
    return nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.blocks = nn.ModuleList([block() for _ in range(3)])
        self.fc = nn.Linear(64, 20)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for b in self.blocks:
            x = F.relu(b(x) + x)
        return self.fc(x.mean((2, 3)))


def main():
    threads, device = int(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sync = (lambda: torch.cuda.synchronize()) if device.startswith('cuda') else (lambda: None)
    # One network per memory format, as a user would hold it (converting per step would time the conversion).
    nets = {'nchw': Net().to(device), 'cl': Net().to(device).to(memory_format=torch.channels_last)}
    opts = {k: torch.optim.SGD(n.parameters(), lr=0.01) for k, n in nets.items()}
    xs = {}
    for fmt in ('nchw', 'cl'):
        mf = torch.channels_last if fmt == 'cl' else torch.contiguous_format
        xs[fmt] = (torch.randn(8, 3, 224, 224, device=device).contiguous(memory_format=mf),
                   torch.randn(8, 64, 56, 56, device=device).contiguous(memory_format=mf),
                   torch.randn(64, 64, 3, 3, device=device).contiguous(memory_format=mf))
    y = (torch.rand(8, 20, device=device) > 0.5).float()

    def run(workload):
        kind, fmt = workload.rsplit('_', 1)
        x, a, w = xs[fmt]
        if kind == 'step':
            loss = F.multilabel_soft_margin_loss(nets[fmt](x), y)
            opts[fmt].zero_grad()
            loss.backward()
            opts[fmt].step()
        elif kind == 'conv_fwd':
            with torch.no_grad():
                F.conv2d(a, w, padding=1)
        elif kind == 'conv_fwdbwd':
            a.requires_grad_(True)
            w.requires_grad_(True)
            F.conv2d(a, w, padding=1).sum().backward()
            a.grad = None
            w.grad = None
        sync()

    serve(run)


if __name__ == '__main__':
    main()
