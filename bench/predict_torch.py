"""PyTorch side of `npm run bench:predict`: the same segmenter as weakseg's (MobileNetV2 at output stride 8 with
TensorFlow SAME padding, bench/cam_torch.py's hand-built copy, + the LargeFOV head with eval-mode BatchNorm) on the
same normalised images, loaded from the state dict and images bench/predict.ts wrote (speaks bench/common.ts's
TorchPeer protocol).

Workload 'predict': for every image, logits = net(x), probabilities = softmax(bilinear_up(logits, H x W, corners
aligned)), as weakseg's single-scale prediction. Workload 'check' answers, instead of times, the max abs difference
of the first image's logits against the reference logits the bench wrote.
Arguments: threads state.safetensors images.bin (JSON header line with the shapes, then raw float32).
"""
import json
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from cam_torch import MobileNetV2


def load_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in header.items():
        if k == '__metadata__':
            continue
        a, b = v['data_offsets']
        dt = {'F32': torch.float32, 'I64': torch.int64}[v['dtype']]
        out[k] = torch.frombuffer(bytearray(data[a:b]), dtype=dt).reshape(v['shape']) if b > a else torch.zeros(v['shape'], dtype=dt)
    return out


class LargeFov(nn.Module):
    def __init__(self, cin, k):
        super().__init__()
        self.conv_fov = nn.Conv2d(cin, 512, 3, padding=12, dilation=12, bias=False)
        self.bn_fov = nn.BatchNorm2d(512)
        self.conv_fov2 = nn.Conv2d(512, 512, 1, bias=False)
        self.bn_fov2 = nn.BatchNorm2d(512)
        self.cls_conv = nn.Conv2d(512, k, 1)

    def forward(self, f):
        a = F.relu(self.bn_fov(self.conv_fov(f)))
        return self.cls_conv(F.relu(self.bn_fov2(self.conv_fov2(a))))


class DeepLab(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.backbone = MobileNetV2(8, 'direct')
        self.head = LargeFov(1280, k)

    def forward(self, x):
        return self.head(self.backbone(x))


def main():
    threads, state_path, images_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    torch.set_num_threads(threads)
    state = load_safetensors(state_path)
    k = state['head.cls_conv.weight'].shape[0]
    net = DeepLab(k).eval()
    net.load_state_dict(state, strict=True)
    with open(images_path, 'rb') as f:
        header = json.loads(f.readline())
        raw = f.read()
    images, off = [], 0
    for h, w in header['sizes']:
        n = 3 * h * w
        images.append(torch.frombuffer(bytearray(raw[off * 4:(off + n) * 4]), dtype=torch.float32).reshape(1, 3, h, w))
        off += n
    reference = torch.frombuffer(bytearray(raw[off * 4:]), dtype=torch.float32)

    def run():
        with torch.no_grad():
            for x in images:
                logits = net(x)
                F.interpolate(logits, size=x.shape[2:], mode='bilinear', align_corners=True).softmax(1)

    def check():
        with torch.no_grad():
            return float((net(images[0]).flatten() - reference).abs().max())

    for line in sys.stdin:
        workload, steps = line.split()
        if workload == 'check':
            print(json.dumps([check()]), flush=True)
            continue
        times = []
        for _ in range(int(steps)):
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) * 1000)
        print(json.dumps(times), flush=True)


if __name__ == '__main__':
    main()
