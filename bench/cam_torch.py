"""PyTorch side of `npm run bench:cam`: the CAM baseline's training step on the same model and batch as
bench/cam.ts, driven over stdin/stdout so that both engines run interleaved in one invocation.

The model is built by hand (torchvision is not installed here) exactly as src/backbones/mobilenet_v2.ts builds
it: torchvision's MobileNetV2 layout; output stride 8 by TensorFlow DeepLab's rule (features.7 and .14 at stride
1, features.8-14 at rate 2, .15-17 at rate 4); TensorFlow SAME padding computed per convolution from the input
size; dilated depthwise convolutions as space-to-batch + undilated convolution (libtorch 1.13's direct CPU
kernel for their backward is pathologically slow, see src/backbones/conv.ts; `--dilated direct` times it
anyway); frozen BatchNorm (running statistics, no gradient); then the CAM head: 1x1 convolution 1280 -> 20
without bias on the global average pool, multilabel soft margin loss, SGD (momentum 0.9, weight decay 1e-4,
lr 0.01 backbone / 0.1 head).

Protocol: one line per request, "<workload> <steps>" (workload: step | fwd); the reply is one JSON line with
the step times in ms. Arguments: threads batch crop [--channels-last] [--dilated direct|space-to-batch]
[--batch-file path] (raw float32 N x 3 x crop x crop, then N x 20 labels, as written by bench/cam.ts).
"""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_peer import serve_training


def load_batch(path, n, s, mf):
    """The batch bench/cam.ts wrote (raw float32 N x 3 x s x s images, then N x 20 labels), or a random one."""
    if path:
        import numpy as np
        raw = np.fromfile(path, dtype=np.float32)
        x = torch.from_numpy(raw[:n * 3 * s * s].copy()).reshape(n, 3, s, s)
        y = torch.from_numpy(raw[n * 3 * s * s:n * 3 * s * s + n * 20].copy()).reshape(n, 20)
    else:
        x = torch.randn(n, 3, s, s)
        y = (torch.rand(n, 20) > 0.9).float()
    return x.contiguous(memory_format=mf), y


def same_pads(size, k, s, d):
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    before = total // 2
    return before, total - before


def space_to_batch_conv(x, weight, pads, d, groups):
    """A stride-1 dilated convolution as space-to-batch + undilated convolution + batch-to-space."""
    n, c, h, w = x.shape
    kh, kw = weight.shape[2], weight.shape[3]
    pl, pr, pt, pb = pads
    hp, wp = h + pt + pb, w + pl + pr
    ho, wo = hp - d * (kh - 1), wp - d * (kw - 1)
    hq, wq = math.ceil(hp / d) * d, math.ceil(wp / d) * d
    full = (pl, pr + (wq - wp), pt, pb + (hq - hp))
    if any(full):
        x = F.pad(x, full)
    b = x.reshape(n, c, hq // d, d, wq // d, d).permute(3, 5, 0, 1, 2, 4).reshape(d * d * n, c, hq // d, wq // d)
    y = F.conv2d(b, weight, None, groups=groups)
    oc, yh, yw = y.shape[1], y.shape[2], y.shape[3]
    out = y.reshape(d, d, n, oc, yh, yw).permute(2, 3, 4, 0, 5, 1).reshape(n, oc, yh * d, yw * d)
    if yh * d != ho or yw * d != wo:
        out = out[:, :, :ho, :wo].contiguous()
    return out


class SameConv(nn.Conv2d):
    """nn.Conv2d with TensorFlow SAME padding computed from the input, as BackboneConv2d('same')."""

    def __init__(self, cin, cout, k, stride=1, dilation=1, groups=1, dilated_impl='space-to-batch'):
        super().__init__(cin, cout, k, stride=stride, padding=0, dilation=dilation, groups=groups, bias=False)
        self.dilated_impl = dilated_impl

    def forward(self, x):
        k, s, d = self.kernel_size[0], self.stride[0], self.dilation[0]
        pt, pb = same_pads(x.shape[2], k, s, d)
        pl, pr = same_pads(x.shape[3], k, s, d)
        depthwise = self.groups > 1 and self.groups == self.in_channels
        if self.dilated_impl == 'space-to-batch' and depthwise and d > 1 and s == 1:
            return space_to_batch_conv(x, self.weight, (pl, pr, pt, pb), d, self.groups)
        if pl == pr and pt == pb:
            return F.conv2d(x, self.weight, None, s, (pt, pl), d, self.groups)
        return F.conv2d(F.pad(x, (pl, pr, pt, pb)), self.weight, None, s, 0, d, self.groups)


class FrozenBN(nn.BatchNorm2d):
    def __init__(self, c):
        super().__init__(c)
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)

    def train(self, mode=True):
        return super().train(False)


def conv_bn_relu6(cin, cout, k, impl, stride=1, dilation=1, groups=1):
    return nn.Sequential(SameConv(cin, cout, k, stride, dilation, groups, impl), FrozenBN(cout), nn.ReLU6())


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, t, dilation, impl):
        super().__init__()
        hidden = round(cin * t)
        self.use_res = stride == 1 and cin == cout
        layers = []
        if t != 1:
            layers.append(conv_bn_relu6(cin, hidden, 1, impl))
        layers += [conv_bn_relu6(hidden, hidden, 3, impl, stride, dilation, hidden),
                   SameConv(hidden, cout, 1, dilated_impl=impl), FrozenBN(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, output_stride=8, impl='space-to-batch'):
        super().__init__()
        blocks = [conv_bn_relu6(3, 32, 3, impl, stride=2)]
        current, rate, cin = 2, 1, 32
        for t, c, n, s in self.SETTING:
            for i in range(n):
                stride = s if i == 0 else 1
                layer_stride, layer_rate = stride, 1
                if current == output_stride:
                    layer_stride, layer_rate = 1, rate
                    rate *= stride
                else:
                    current *= stride
                blocks.append(InvertedResidual(cin, c, layer_stride, t, layer_rate, impl))
                cin = c
        blocks.append(conv_bn_relu6(cin, 1280, 1, impl))
        self.features = nn.Sequential(*blocks)

    def forward(self, x):
        return self.features(x)


class CamNet(nn.Module):
    def __init__(self, impl):
        super().__init__()
        self.backbone = MobileNetV2(8, impl)
        self.classifier = nn.Conv2d(1280, 20, 1, bias=False)

    def forward(self, x):
        f = self.backbone(x)
        return self.classifier(F.adaptive_avg_pool2d(f, 1)).flatten(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('threads', type=int)
    p.add_argument('batch', type=int)
    p.add_argument('crop', type=int)
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--dilated', default='space-to-batch', choices=['space-to-batch', 'direct'])
    p.add_argument('--batch-file')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = CamNet(a.dilated).train()
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    net = net.to(memory_format=mf)
    backbone = [q for q in net.backbone.parameters() if q.requires_grad]
    opt = torch.optim.SGD([{'params': backbone, 'lr': 0.01}, {'params': net.classifier.parameters(), 'lr': 0.1}],
                          lr=0.01, momentum=0.9, weight_decay=1e-4)
    x, y = load_batch(a.batch_file, a.batch, a.crop, mf)

    serve_training(net, opt, x, lambda net, x: F.multilabel_soft_margin_loss(net(x), y))


if __name__ == '__main__':
    main()
