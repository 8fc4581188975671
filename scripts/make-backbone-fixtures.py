#!/usr/bin/python3
"""Reference forwards of the ResNet backbones, for test/backbones/torch-reference.test.ts.

Run with a Python that has torch and torchvision (Debian's: /usr/bin/python3 scripts/make-backbone-fixtures.py OUT).
The weights are too big to commit, so they are made here from a seed: torchvision's resnet50 and resnet101, and
ResNet-38 "d" transcribed below from the official network/resnet38d.py (PSA, SEAM), each with random BatchNorm
statistics and affine parameters so that eval-mode BN is not close to the identity. Writes to OUT:
  <net>.pth                   the state dict (torch.save)
  input.f32                   the input, 1 x 3 x 65 x 97 float32 (odd sizes: padding and rounding matter)
  <net>.os<k>.<map>.f32       eval-mode outputs: resnet50 at output stride 32 and 8, resnet101 at 16
                              (replace_stride_with_dilation), maps layer1..layer4; resnet38 conv3..conv6
  index.json                  the shape of every map
"""
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


class ResBlock(nn.Module):
    def __init__(self, in_channels, mid_channels, out_channels, stride=1, first_dilation=None, dilation=1):
        super().__init__()
        self.same_shape = in_channels == out_channels and stride == 1
        if first_dilation is None:
            first_dilation = dilation
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(in_channels, mid_channels, 3, stride, padding=first_dilation,
                                       dilation=first_dilation, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(mid_channels)
        self.conv_branch2b1 = nn.Conv2d(mid_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x):
        branch2 = F.relu(self.bn_branch2a(x))
        x_bn_relu = branch2
        branch1 = x if self.same_shape else self.conv_branch1(branch2)
        branch2 = self.conv_branch2a(branch2)
        branch2 = F.relu(self.bn_branch2b1(branch2))
        branch2 = self.conv_branch2b1(branch2)
        return branch1 + branch2, x_bn_relu


class ResBlockBot(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1, dilation=1, dropout=0.):
        super().__init__()
        self.same_shape = in_channels == out_channels and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(in_channels)
        self.conv_branch2a = nn.Conv2d(in_channels, out_channels // 4, 1, stride, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(out_channels // 4)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(out_channels // 4, out_channels // 2, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn_branch2b2 = nn.BatchNorm2d(out_channels // 2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(out_channels // 2, out_channels, 1, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    def forward(self, x):
        branch2 = F.relu(self.bn_branch2a(x))
        x_bn_relu = branch2
        branch1 = self.conv_branch1(branch2)
        branch2 = self.conv_branch2a(branch2)
        branch2 = self.dropout_2b1(F.relu(self.bn_branch2b1(branch2)))
        branch2 = self.conv_branch2b1(branch2)
        branch2 = self.dropout_2b2(F.relu(self.bn_branch2b2(branch2)))
        branch2 = self.conv_branch2b2(branch2)
        return branch1 + branch2, x_bn_relu


class ResNet38d(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1a = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.b2 = ResBlock(64, 128, 128, stride=2)
        self.b2_1 = ResBlock(128, 128, 128)
        self.b2_2 = ResBlock(128, 128, 128)
        self.b3 = ResBlock(128, 256, 256, stride=2)
        self.b3_1 = ResBlock(256, 256, 256)
        self.b3_2 = ResBlock(256, 256, 256)
        self.b4 = ResBlock(256, 512, 512, stride=2)
        self.b4_1 = ResBlock(512, 512, 512)
        self.b4_2 = ResBlock(512, 512, 512)
        self.b4_3 = ResBlock(512, 512, 512)
        self.b4_4 = ResBlock(512, 512, 512)
        self.b4_5 = ResBlock(512, 512, 512)
        self.b5 = ResBlock(512, 512, 1024, stride=1, first_dilation=1, dilation=2)
        self.b5_1 = ResBlock(1024, 512, 1024, dilation=2)
        self.b5_2 = ResBlock(1024, 512, 1024, dilation=2)
        self.b6 = ResBlockBot(1024, 2048, stride=1, dilation=4, dropout=0.3)
        self.b7 = ResBlockBot(2048, 4096, dilation=4, dropout=0.5)
        self.bn7 = nn.BatchNorm2d(4096)

    def forward_as_dict(self, x):
        x = self.conv1a(x)
        for b in (self.b2, self.b2_1, self.b2_2, self.b3, self.b3_1, self.b3_2):
            x, _ = b(x)
        x, conv3 = self.b4(x)
        for b in (self.b4_1, self.b4_2, self.b4_3, self.b4_4, self.b4_5):
            x, _ = b(x)
        x, conv4 = self.b5(x)
        x, _ = self.b5_1(x)
        x, _ = self.b5_2(x)
        x, conv5 = self.b6(x)
        x, _ = self.b7(x)
        return {'conv3': conv3, 'conv4': conv4, 'conv5': conv5, 'conv6': F.relu(self.bn7(x))}


def randomize_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


def torchvision_maps(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    out = {}
    for name in ('layer1', 'layer2', 'layer3', 'layer4'):
        x = getattr(model, name)(x)
        out[name] = x
    return out


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x = torch.randn(1, 3, 65, 97)
    x.numpy().tofile(os.path.join(out, 'input.f32'))
    index = {}

    def save(tag, maps):
        for name, t in maps.items():
            t.contiguous().numpy().tofile(os.path.join(out, f'{tag}.{name}.f32'))
            index[f'{tag}.{name}'] = list(t.shape)

    dilation = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}
    for name, strides in (('resnet50', (32, 8)), ('resnet101', (16,))):
        base = randomize_bn(getattr(torchvision.models, name)())
        torch.save(base.state_dict(), os.path.join(out, f'{name}.pth'))
        for os_ in strides:
            model = getattr(torchvision.models, name)(replace_stride_with_dilation=dilation[os_])
            model.load_state_dict(base.state_dict())
            with torch.no_grad():
                save(f'{name}.os{os_}', torchvision_maps(model.eval(), x))
    net = randomize_bn(ResNet38d())
    torch.save(net.state_dict(), os.path.join(out, 'resnet38.pth'))
    with torch.no_grad():
        save('resnet38.os8', net.forward_as_dict(x))
    with open(os.path.join(out, 'index.json'), 'w') as f:
        json.dump(index, f)


if __name__ == '__main__':
    main()
