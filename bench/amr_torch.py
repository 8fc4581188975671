"""AMR in PyTorch: a line-by-line transcription of the official code (jieqin-ai/AMR: net/amm.py, net/resnet50.py,
net/resnet50_amr.py and step/train_amr.py's losses), the reference for src/methods/amr.ts (bench/amr-crosscheck.ts).

Backbones:
  resnet50      net/resnet50.py as released: torchvision layout, strides (2, 2, 2, 1) (output stride 16, no
                dilation), FixedBatchNorm, an AMM in every Bottleneck after bn3 and before the residual add.
  mobilenet_v2  bench/cam_torch.py's MobileNetV2 (output stride 8, TF SAME padding, frozen BN) with the AMM in every
                inverted residual that adds its input back (use_res), after the projection's BN and before the
                residual add: weakseg's placement (the official code has no MobileNetV2; in a block without the
                shortcut the unscaled Gaussian would scale the whole signal). Its "stage2_1" (the detached stem) is features.0-3, as weakseg's.

The Net keeps the code's attribute names (resnet50, classifier, resnet50_2, classifier2) and its train() override,
which never calls nn.Module.train: every module stays in training mode, so the AMM's nn.BatchNorm2d always
normalises with the batch statistics (FixedBatchNorm ignores the mode). One weakseg difference the gradient
comparison leaves out: the code's FixedBatchNorm still trains its affine weight and bias (F.batch_norm passes them
gradients), weakseg's frozen BatchNorm does not; those gradients are written under `bn_grad.` and not compared.

--crosscheck DIR: reads DIR/model.safetensors (weakseg's AmrNet state: spotlight.*, compensation.*),
DIR/batch.safetensors (images, labels, amm_in) and DIR/meta.json ({"backbone": ..., "amm": "<block path>"}), runs
the code's forward and loss once with backward, and writes DIR/torch.safetensors: `loss.*` (cls_s, cls_c, cps,
total), `out.*` (logits_s, cam_s, logits_c, cam_c: the flip-combined CAMs as train_amr.py sees them, and amm: the
named block's AMM applied to amm_in) and `grad.<weakseg name>` for every parameter that gets a gradient.
Without --crosscheck: the timing peer of bench/torch_peer.py ("step" = one SGD step on the code's loss with the
code's three groups, lr 0.01 / 0.1 / 0.01), arguments threads batch crop --weights FILE --batch-file FILE.
"""
import argparse
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cam_torch import FrozenBN, InvertedResidual, MobileNetV2, load_batch  # noqa: E402
from seam_torch import read_safetensors, write_safetensors  # noqa: E402
from torch_peer import serve_training  # noqa: E402

# ------------------------------------------------------------------------------------------------ net/amm.py


# weakseg's setting gaussianScale (not in the code): 'mean' divides the weights by their detached mean
GAUSSIAN_SCALE = 'code'


def GaussProjection(x, mean, std):
    sigma = math.sqrt(2 * math.pi) * std
    x_out = torch.exp(-(x - mean) ** 2 / (2 * std ** 2)) / sigma
    if GAUSSIAN_SCALE == 'mean':
        x_out = x_out / x_out.mean().detach()
    return x_out


class BasicConv(nn.Module):
    def __init__(self, in_planes, out_planes, kernel_size, stride=1, padding=0, dilation=1, groups=1, relu=True, bn=True, bias=False):
        super(BasicConv, self).__init__()
        self.out_channels = out_planes
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_planes, eps=1e-5, momentum=0.01, affine=True) if bn else None
        self.relu = nn.ReLU() if relu else None

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


class Flatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class ChannelGate(nn.Module):
    def __init__(self, gate_channels, reduction_ratio=16, pool_types=['avg']):
        super(ChannelGate, self).__init__()
        self.gate_channels = gate_channels
        self.mlp = nn.Sequential(
            Flatten(),
            nn.Linear(gate_channels, gate_channels // reduction_ratio),
            nn.ReLU(),
            nn.Linear(gate_channels // reduction_ratio, gate_channels)
        )
        self.pool_types = pool_types

    def forward(self, x):
        channel_att_sum = None
        for pool_type in self.pool_types:
            if pool_type == 'avg':
                avg_pool = F.avg_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
                channel_att_raw = self.mlp(avg_pool)
            elif pool_type == 'max':
                max_pool = F.max_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
                channel_att_raw = self.mlp(max_pool)

            if channel_att_sum is None:
                channel_att_sum = channel_att_raw
            else:
                channel_att_sum = channel_att_sum + channel_att_raw

        # Gauss modulation
        mean = torch.mean(channel_att_sum).detach()
        std = torch.std(channel_att_sum).detach()
        scale = GaussProjection(channel_att_sum, mean, std).unsqueeze(2).unsqueeze(3).expand_as(x)
        return x * scale


class ChannelPool(nn.Module):
    def forward(self, x):
        return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)


class SpatialGate(nn.Module):
    def __init__(self):
        super(SpatialGate, self).__init__()
        kernel_size = 7
        self.pool = ChannelPool()
        self.spatial = BasicConv(2, 1, kernel_size, stride=1, padding=(kernel_size - 1) // 2, relu=False)

    def forward(self, x):
        x_pool = self.pool(x)
        x_out = self.spatial(x_pool)

        # Gauss modulation
        mean = torch.mean(x_out).detach()
        std = torch.std(x_out).detach()
        scale = GaussProjection(x_out, mean, std)
        return x * scale


class AMM(nn.Module):
    def __init__(self, gate_channels, reduction_ratio=16, pool_types=['avg']):
        super(AMM, self).__init__()
        self.ChannelAMM = ChannelGate(gate_channels, reduction_ratio, pool_types)
        self.SpatialAMM = SpatialGate()

    def forward(self, x):
        x_out = self.ChannelAMM(x)
        x_out = self.SpatialAMM(x_out)
        return x_out

# ------------------------------------------------------------------------------------------- net/resnet50.py


class FixedBatchNorm(nn.BatchNorm2d):
    def forward(self, input):
        return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1, use_amm=False):
        super(Bottleneck, self).__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = FixedBatchNorm(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride,
                               padding=dilation, bias=False, dilation=dilation)
        self.bn2 = FixedBatchNorm(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = FixedBatchNorm(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.dilation = dilation
        self.use_amm = use_amm

        if use_amm == True:  # noqa: E712 (as released)
            self.amm = AMM(planes * 4, 16)

    def forward(self, x):
        residual = x

        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)

        out = self.conv2(out)

        out = self.bn2(out)
        out = self.relu(out)

        out = self.conv3(out)
        out = self.bn3(out)

        if self.downsample is not None:
            residual = self.downsample(x)

        if self.use_amm:
            out = self.amm(out)

        out += residual
        out = self.relu(out)

        return out


class ResNet(nn.Module):

    def __init__(self, block, layers, strides=(2, 2, 2, 2), dilations=(1, 1, 1, 1), use_amm=False):
        self.inplanes = 64
        super(ResNet, self).__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=strides[0], padding=3,
                               bias=False)
        self.bn1 = FixedBatchNorm(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], stride=1, dilation=dilations[0], use_amm=use_amm)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=strides[1], dilation=dilations[1], use_amm=use_amm)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=strides[2], dilation=dilations[2], use_amm=use_amm)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=strides[3], dilation=dilations[3], use_amm=use_amm)
        self.inplanes = 1024

    def _make_layer(self, block, planes, blocks, stride=1, dilation=1, use_amm=False):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion,
                          kernel_size=1, stride=stride, bias=False),
                FixedBatchNorm(planes * block.expansion),
            )

        layers = [block(self.inplanes, planes, stride, downsample, dilation=1, use_amm=use_amm)]
        self.inplanes = planes * block.expansion
        for i in range(1, blocks):
            layers.append(block(self.inplanes, planes, dilation=dilation, use_amm=use_amm))

        return nn.Sequential(*layers)


def resnet50(pretrained=False, use_amm=False, **kwargs):
    # pretrained=False: the weights come from weakseg's state (a torchvision-layout fixture of random weights)
    return ResNet(Bottleneck, [3, 4, 6, 3], use_amm=use_amm, **kwargs)

# ------------------------------------------------------------------------------ MobileNetV2 (weakseg's placement)


class AmmInvertedResidual(InvertedResidual):
    def __init__(self, base):
        nn.Module.__init__(self)
        self.use_res = base.use_res
        self.conv = base.conv
        self.amm = AMM(base.conv[-1].num_features, 16)

    def forward(self, x):
        out = self.amm(self.conv(x))
        return x + out if self.use_res else out


def mobilenet_v2(use_amm=False):
    # eval() puts cam_torch's FrozenBN into eval mode: Net.train() below never reaches it (the code's override);
    # the AMMs added afterwards stay in training mode, as in the code
    net = MobileNetV2(8, 'space-to-batch').eval()
    if use_amm:
        for i in range(1, 18):
            if net.features[i].use_res:
                net.features[i] = AmmInvertedResidual(net.features[i])
    return net

# -------------------------------------------------------------------------------------- net/resnet50_amr.py


class Net(nn.Module):

    def __init__(self, backbone='resnet50'):
        super(Net, self).__init__()
        channels = 2048 if backbone == 'resnet50' else 1280

        if backbone == 'resnet50':
            self.resnet50 = resnet50(pretrained=True, strides=(2, 2, 2, 1))
            self.stage1 = nn.Sequential(self.resnet50.conv1, self.resnet50.bn1, self.resnet50.relu, self.resnet50.maxpool,
                                        self.resnet50.layer1)
            self.stage2 = nn.Sequential(self.resnet50.layer2)
            self.stage3 = nn.Sequential(self.resnet50.layer3)
            self.stage4 = nn.Sequential(self.resnet50.layer4)
        else:
            self.resnet50 = mobilenet_v2()
            f = self.resnet50.features
            self.stage1 = nn.Sequential(*f[:4])
            self.stage2 = nn.Sequential(*f[4:7])
            self.stage3 = nn.Sequential(*f[7:14])
            self.stage4 = nn.Sequential(*f[14:])

        self.classifier = nn.Conv2d(channels, 20, 1, bias=False)

        if backbone == 'resnet50':
            self.resnet50_2 = resnet50(pretrained=True, use_amm=True, strides=(2, 2, 2, 1))
            self.stage2_1 = nn.Sequential(self.resnet50_2.conv1, self.resnet50_2.bn1, self.resnet50_2.relu, self.resnet50_2.maxpool,
                                          self.resnet50_2.layer1)
            self.stage2_2 = nn.Sequential(self.resnet50_2.layer2)
            self.stage2_3 = nn.Sequential(self.resnet50_2.layer3)
            self.stage2_4 = nn.Sequential(self.resnet50_2.layer4)
        else:
            self.resnet50_2 = mobilenet_v2(use_amm=True)
            f = self.resnet50_2.features
            self.stage2_1 = nn.Sequential(*f[:4])
            self.stage2_2 = nn.Sequential(*f[4:7])
            self.stage2_3 = nn.Sequential(*f[7:14])
            self.stage2_4 = nn.Sequential(*f[14:])

        self.classifier2 = nn.Conv2d(channels, 20, 1, bias=False)

        self.backbone = nn.ModuleList([self.stage1, self.stage2, self.stage3, self.stage4])
        self.backbone2 = nn.ModuleList([self.stage2_1, self.stage2_2, self.stage2_3, self.stage2_4])
        self.newly_added = nn.ModuleList([self.classifier, self.classifier2])

    def forward(self, x):

        x_ori = x.clone()

        # # branch1

        x = self.stage1(x).detach()
        x = self.stage2(x).detach()
        x = self.stage3(x).detach()
        x = self.stage4(x).detach()

        cam = F.conv2d(x, self.classifier.weight)
        cam = F.relu(cam)
        cam = cam[0] + cam[1].flip(-1)

        x = gap2d(x, keepdims=True)
        x = self.classifier(x).detach()
        x = x.view(-1, 20)

        # # branch2

        x2 = self.stage2_1(x_ori).detach()
        x2 = self.stage2_2(x2)
        x2 = self.stage2_3(x2)
        x2 = self.stage2_4(x2)

        cam2 = F.conv2d(x2, self.classifier2.weight)
        cam2 = F.relu(cam2)
        cam2 = cam2[0] + cam2[1].flip(-1)

        x2 = gap2d(x2, keepdims=True)
        x2 = self.classifier2(x2)
        x2 = x2.view(-1, 20)

        return x, cam, x2, cam2

    def train(self, mode=True):
        if hasattr(self.resnet50, 'conv1'):
            for p in self.resnet50.conv1.parameters():
                p.requires_grad = False
            for p in self.resnet50.bn1.parameters():
                p.requires_grad = False
            for p in self.resnet50_2.conv1.parameters():
                p.requires_grad = False
            for p in self.resnet50_2.bn1.parameters():
                p.requires_grad = False

    def trainable_parameters(self):

        return (list(self.backbone.parameters()), list(self.backbone2.parameters()), list(self.newly_added.parameters()))


def gap2d(x, keepdims=False):  # misc/torchutils.py
    out = torch.mean(x.view(x.size(0), x.size(1), -1), -1)
    if keepdims:
        out = out.view(out.size(0), out.size(1), 1, 1)
    return out

# ------------------------------------------------------------------------------------------ step/train_amr.py


def amr_loss(model, img, label):
    logits1, cam1, logits2, cam2 = model(img)

    losscls1 = F.multilabel_soft_margin_loss(logits1, label)
    losscls2 = F.multilabel_soft_margin_loss(logits2, label)

    loss_cps = torch.mean(torch.abs(cam1 - cam2))

    loss = 0.5 * losscls1 + 0.5 * losscls2 + 0.05 * loss_cps
    parts = {'cls_s': losscls1.detach(), 'cls_c': losscls2.detach(), 'cps': loss_cps.detach(), 'total': loss.detach()}
    outputs = {'logits_s': logits1.detach(), 'cam_s': cam1.detach(), 'logits_c': logits2.detach(), 'cam_c': cam2.detach()}
    return loss, parts, outputs

# ------------------------------------------------------------------------------------------------------- driver


# weakseg's AmrNet keys and the code's Net keys: backbone prefixes, then the two classifiers
KEY_PREFIXES = (('spotlight.backbone.', 'resnet50.'), ('compensation.backbone.', 'resnet50_2.'))
KEY_NAMES = (('spotlight.classifier.conv.weight', 'classifier.weight'), ('compensation.classifier.conv.weight', 'classifier2.weight'))


def rename(name, to_code):
    """weakseg -> code (to_code) or code -> weakseg; None when the key has no counterpart."""
    for ours, code in KEY_NAMES:
        if name == (ours if to_code else code):
            return code if to_code else ours
    for ours, code in KEY_PREFIXES:
        src, dst = (ours, code) if to_code else (code, ours)
        if name.startswith(src):
            return dst + name[len(src):]
    return None


def load_ours(net, path):
    sd, _ = read_safetensors(path)
    mapped = {}
    for k, v in sd.items():
        code = rename(k, True)
        if code is None:
            raise SystemExit(f'{path}: no code key for {k}')
        mapped[code] = v.float() if v.is_floating_point() else v
    r = net.load_state_dict(mapped, strict=False)
    # the stageN.* aliases share the modules: only they may be reported missing
    missing = [k for k in r.missing_keys if not k.startswith(('stage', 'backbone', 'newly_added')) and not k.endswith('num_batches_tracked')]
    if missing or r.unexpected_keys:
        raise SystemExit(f'{path}: missing {missing[:5]} ({len(missing)}), unexpected {r.unexpected_keys[:5]}')


def crosscheck(folder):
    with open(os.path.join(folder, 'meta.json')) as f:
        meta = json.load(f)
    global GAUSSIAN_SCALE
    GAUSSIAN_SCALE = meta.get('gaussian_scale', 'code')
    net = Net(meta['backbone'])
    load_ours(net, os.path.join(folder, 'model.safetensors'))
    batch, _ = read_safetensors(os.path.join(folder, 'batch.safetensors'))
    x, y = batch['images'].float(), batch['labels'].float()
    net.train()
    net.zero_grad(set_to_none=True)
    amm = net.get_submodule(meta['amm'].replace('compensation.backbone.', 'resnet50_2.') + '.amm')
    with torch.no_grad():
        amm_out = amm(batch['amm_in'].float())
    loss, parts, outputs = amr_loss(net, x, y)
    loss.backward()
    out = {f'loss.{k}': v.reshape(()) for k, v in parts.items()}
    out.update({f'out.{k}': v for k, v in outputs.items()})
    out['out.amm'] = amm_out
    bn = set(id(p) for m in net.modules() if isinstance(m, (FixedBatchNorm, FrozenBN)) for p in m.parameters())
    for name, p in net.named_parameters():
        if p.grad is None:
            continue
        prefix = 'bn_grad' if id(p) in bn else 'grad'
        out[f'{prefix}.{rename(name, False)}'] = p.grad
    write_safetensors(os.path.join(folder, 'torch.safetensors'), out)
    print(json.dumps({k: float(v) for k, v in parts.items()}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('threads', type=int)
    p.add_argument('batch', type=int, nargs='?', default=2)
    p.add_argument('crop', type=int, nargs='?', default=224)
    p.add_argument('--backbone', default='mobilenet_v2', choices=['resnet50', 'mobilenet_v2'])
    p.add_argument('--batch-file')
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--weights', help="safetensors state dict of weakseg's AmrNet")
    p.add_argument('--crosscheck', metavar='DIR')
    p.add_argument('--gaussian-scale', default='code', choices=['code', 'mean'])
    a = p.parse_args()
    global GAUSSIAN_SCALE
    GAUSSIAN_SCALE = a.gaussian_scale
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.crosscheck:
        crosscheck(a.crosscheck)
        return
    net = Net(a.backbone)
    if a.weights:
        load_ours(net, a.weights)
    net.train()
    groups = net.trainable_parameters()
    opt = torch.optim.SGD([
        {'params': [q for q in groups[0] if q.requires_grad], 'lr': 0.01, 'weight_decay': 1e-4},
        {'params': [q for q in groups[1] if q.requires_grad], 'lr': 0.1, 'weight_decay': 1e-4},
        {'params': groups[2], 'lr': 0.01, 'weight_decay': 1e-4},
    ], lr=0.01, weight_decay=1e-4, momentum=0.9)
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    net = net.to(memory_format=mf)
    x, y = load_batch(a.batch_file, a.batch, a.crop, mf)
    serve_training(net, opt, x, lambda net, x: amr_loss(net, x, y)[0])


if __name__ == '__main__':
    main()
