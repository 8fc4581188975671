"""SEAM in PyTorch: a line-by-line transcription of the official code (YudeWang/SEAM, network/resnet38_SEAM.py
and train_SEAM.py) on the hand-built MobileNetV2 of bench/cam_torch.py, the reference for src/methods/seam.ts.

The network: MobileNetV2 at output stride 8 (TF SAME padding, space-to-batch dilated depthwise convolutions,
frozen BatchNorm) whose forward also returns the outputs of features.6 (32 channels, stride 8) and features.13
(96 channels, stride 8 at OS 8), the taps src/backbones/mobilenet_v2.ts offers under those names (the output of
block i, after its residual add); then the official SEAM head: fc8 (1280 -> 21, no bias; no dropout on
MobileNetV2), f8_3 (32 -> 64), f8_4 (96 -> 128), f9 (3 + 64 + 128 -> 192), all 1x1 without bias, initialised as
the official code does. The training step is train_SEAM.py's loss (siamese rescale by 0.3, cls, min-pool, ER,
ECR with OHEM) with SGD as the CAM baseline's (momentum 0.9, weight decay 1e-4, lr 0.01 backbone / 0.1 new
layers) instead of the official PolyOptimizer's four groups. The official code's .view calls are .reshape here
(the same op on contiguous tensors) so that the channels-last timing runs too.

multilabel_soft_margin_loss on the official code's 4-D [N, 20, 1, 1] inputs: torch 1.13 accepts them as they are
(class_dim = input.dim() - 1 is then the trailing size-1 dim, so the per-sample sum over "classes" is the identity
and the mean runs over all N * 20 terms), which equals the 2-D [N, 20] loss (the mean over 20 classes, then over
N): same value and same gradient. It is transcribed as is.

Modes (arguments in bench/cam_torch.py's style: threads batch crop [--batch-file path] [--weights file]):
  default       stdin/stdout protocol of cam_torch.py: "<workload> <steps>" (workload: step | fwd) answered by one
                JSON line with the step times in ms. --batch-file: raw float32 N x 3 x crop x crop images, then
                N x 20 labels (as bench/seam-crosscheck.ts writes it). --weights: a safetensors state dict of our
                SeamNet (keys backbone.features..., fc8.weight, f8_3.weight, f8_4.weight, f9.weight).
  --crosscheck DIR  reads DIR/model.safetensors (our SeamNet's full state) and DIR/batch.safetensors (images,
                labels), runs one loss + backward and writes DIR/torch.safetensors: the loss parts (scalars,
                `loss.*`), the four network outputs (`out.cam1`, ...) and the gradients of every trainable
                parameter (`grad.<name>`); prints the loss parts as one JSON line.
No safetensors package is installed: the reader and writer below handle the format directly (8-byte little-endian
header length, JSON header, raw little-endian bytes).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cam_torch import MobileNetV2, load_batch  # noqa: E402
from torch_peer import serve_training  # noqa: E402

# ---------------------------------------------------------------------------------------------- safetensors I/O

_ST_DTYPES = {'F32': np.float32, 'F16': np.float16, 'F64': np.float64, 'I64': np.int64, 'I32': np.int32,
              'U8': np.uint8, 'BOOL': np.bool_}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}


def read_safetensors(path):
    """Returns ({name: torch.Tensor}, metadata)."""
    with open(path, 'rb') as f:
        buf = f.read()
    (n,) = struct.unpack('<Q', buf[:8])
    header = json.loads(buf[8:8 + n].decode('utf-8'))
    base = 8 + n
    meta = header.pop('__metadata__', {}) or {}
    out = {}
    for name, e in header.items():
        if e['dtype'] == 'BF16':
            raise ValueError(f'{path}: {name}: BF16 not supported by this reader')
        begin, end = e['data_offsets']
        arr = np.frombuffer(buf, dtype=np.dtype(_ST_DTYPES[e['dtype']]).newbyteorder('<'), count=(end - begin) //
                            np.dtype(_ST_DTYPES[e['dtype']]).itemsize, offset=base + begin)
        out[name] = torch.from_numpy(arr.reshape(e['shape']).copy())
    return out, meta


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy())
        b = a.astype(a.dtype.newbyteorder('<'), copy=False).tobytes()
        header[name] = {'dtype': _ST_NAMES[a.dtype], 'shape': list(a.shape), 'data_offsets': [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode('utf-8')
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)

# ------------------------------------------------------------------------------------------------------ network


class TapMobileNetV2(MobileNetV2):
    """cam_torch's MobileNetV2, also returning the outputs of the requested blocks (after the residual add)."""

    def forward(self, x, taps=()):
        d = {}
        for i, block in enumerate(self.features):
            x = block(x)
            if f'features.{i}' in taps:
                d[f'features.{i}'] = x
        return x, d


class SEAMNet(nn.Module):
    """network/resnet38_SEAM.py's Net on MobileNetV2: d['conv4'] -> features.6, d['conv5'] -> features.13,
    d['conv6'] -> the 1280-channel output (features.18)."""

    TAPS = ('features.6', 'features.13')

    def __init__(self, impl='space-to-batch', num_classes=20):
        super().__init__()
        self.backbone = TapMobileNetV2(8, impl)
        self.fc8 = torch.nn.Conv2d(1280, num_classes + 1, 1, bias=False)
        self.f8_3 = torch.nn.Conv2d(32, 64, 1, bias=False)
        self.f8_4 = torch.nn.Conv2d(96, 128, 1, bias=False)
        self.f9 = torch.nn.Conv2d(192 + 3, 192, 1, bias=False)
        torch.nn.init.xavier_uniform_(self.fc8.weight)
        torch.nn.init.kaiming_normal_(self.f8_3.weight)
        torch.nn.init.kaiming_normal_(self.f8_4.weight)
        torch.nn.init.xavier_uniform_(self.f9.weight, gain=4)

    def forward(self, x):
        N, C, H, W = x.size()
        conv6, taps = self.backbone(x, self.TAPS)
        d = {'conv4': taps['features.6'], 'conv5': taps['features.13'], 'conv6': conv6}
        cam = self.fc8(d['conv6'])  # the official self.dropout7 is not used on MobileNetV2
        n, c, h, w = cam.size()
        with torch.no_grad():
            cam_d = F.relu(cam.detach())
            cam_d_max = torch.max(cam_d.reshape(n, c, -1), dim=-1)[0].reshape(n, c, 1, 1) + 1e-5
            cam_d_norm = F.relu(cam_d - 1e-5) / cam_d_max
            cam_d_norm[:, 0, :, :] = 1 - torch.max(cam_d_norm[:, 1:, :, :], dim=1)[0]
            cam_max = torch.max(cam_d_norm[:, 1:, :, :], dim=1, keepdim=True)[0]
            cam_d_norm[:, 1:, :, :][cam_d_norm[:, 1:, :, :] < cam_max] = 0
        f8_3 = F.relu(self.f8_3(d['conv4'].detach()), inplace=True)
        f8_4 = F.relu(self.f8_4(d['conv5'].detach()), inplace=True)
        x_s = F.interpolate(x, (h, w), mode='bilinear', align_corners=True)
        f = torch.cat([x_s, f8_3, f8_4], dim=1)
        cam_rv_down = self.PCM(cam_d_norm, f)
        # The grid outputs, for methods built on SEAM (bench/pixelss_torch.py); not part of the official code.
        self.grid = {'cam': cam, 'cam_rv': cam_rv_down, 'features': d['conv6']}
        cam_rv = F.interpolate(cam_rv_down, (H, W), mode='bilinear', align_corners=True)
        cam = F.interpolate(cam, (H, W), mode='bilinear', align_corners=True)
        return cam, cam_rv

    def PCM(self, cam, f):
        n, c, h, w = f.size()
        cam = F.interpolate(cam, (h, w), mode='bilinear', align_corners=True).reshape(n, -1, h * w)
        f = self.f9(f)
        f = f.reshape(n, -1, h * w)
        f = f / (torch.norm(f, dim=1, keepdim=True) + 1e-5)
        aff = F.relu(torch.matmul(f.transpose(1, 2), f), inplace=True)
        aff = aff / (torch.sum(aff, dim=1, keepdim=True) + 1e-5)
        cam_rv = torch.matmul(cam, aff).reshape(n, -1, h, w)
        return cam_rv

    def new_parameters(self):
        return [p for m in (self.fc8, self.f8_3, self.f8_4, self.f9) for p in m.parameters()]

# ------------------------------------------------------------------------------------------ train_SEAM.py's step


def max_norm(p, e=1e-5):
    if p.dim() == 3:
        C, H, W = p.size()
        p = F.relu(p)
        max_v = torch.max(p.reshape(C, -1), dim=-1)[0].reshape(C, 1, 1)
        min_v = torch.min(p.reshape(C, -1), dim=-1)[0].reshape(C, 1, 1)
        p = F.relu(p - min_v - e) / (max_v - min_v + e)
    elif p.dim() == 4:
        N, C, H, W = p.size()
        p = F.relu(p)
        max_v = torch.max(p.reshape(N, C, -1), dim=-1)[0].reshape(N, C, 1, 1)
        min_v = torch.min(p.reshape(N, C, -1), dim=-1)[0].reshape(N, C, 1, 1)
        p = F.relu(p - min_v - e) / (max_v - min_v + e)
    return p


def adaptive_min_pooling_loss(x):
    # This loss does not affect the highest performance, but change the optimial background score (alpha)
    n, c, h, w = x.size()
    k = h * w // 4
    x = torch.max(x, dim=1)[0]
    y = torch.topk(x.reshape(n, -1), k=k, dim=-1, largest=False)[0]
    y = F.relu(y, inplace=False)
    loss = torch.sum(y) / (k * n)
    return loss


def max_onehot(x):
    n, c, h, w = x.size()
    x_max = torch.max(x[:, 1:, :, :], dim=1, keepdim=True)[0]
    x[:, 1:, :, :][x[:, 1:, :, :] != x_max] = 0
    return x


def seam_loss(model, img1, label, keep_outputs=False):
    """One batch of train_SEAM.py's loop; returns (loss, parts, outputs). `label`: N x 20 multi-hot floats.
    `outputs` (the two views' cam and cam_rv, copied before the in-place edits) only with keep_outputs."""
    N, C, H, W = img1.size()
    bg_score = torch.ones((N, 1))
    label = torch.cat((bg_score, label), dim=1)
    label = label.unsqueeze(2).unsqueeze(3)

    scale_factor = 0.3
    img2 = F.interpolate(img1, scale_factor=scale_factor, mode='bilinear', align_corners=True)
    N, C, H, W = img1.size()

    cam1, cam_rv1 = model(img1)
    outputs = {'cam1': cam1.detach().clone(), 'cam_rv1': cam_rv1.detach().clone()} if keep_outputs else {}
    label1 = F.adaptive_avg_pool2d(cam1, (1, 1))
    loss_rvmin1 = adaptive_min_pooling_loss((cam_rv1 * label)[:, 1:, :, :])
    cam1 = F.interpolate(max_norm(cam1), scale_factor=scale_factor, mode='bilinear', align_corners=True) * label
    cam_rv1 = F.interpolate(max_norm(cam_rv1), scale_factor=scale_factor, mode='bilinear', align_corners=True) * label

    cam2, cam_rv2 = model(img2)
    if keep_outputs:
        outputs.update({'cam2': cam2.detach().clone(), 'cam_rv2': cam_rv2.detach().clone()})
    label2 = F.adaptive_avg_pool2d(cam2, (1, 1))
    loss_rvmin2 = adaptive_min_pooling_loss((cam_rv2 * label)[:, 1:, :, :])
    cam2 = max_norm(cam2) * label
    cam_rv2 = max_norm(cam_rv2) * label

    loss_cls1 = F.multilabel_soft_margin_loss(label1[:, 1:, :, :], label[:, 1:, :, :])
    loss_cls2 = F.multilabel_soft_margin_loss(label2[:, 1:, :, :], label[:, 1:, :, :])

    ns, cs, hs, ws = cam2.size()
    loss_er = torch.mean(torch.abs(cam1[:, 1:, :, :] - cam2[:, 1:, :, :]))

    cam1[:, 0, :, :] = 1 - torch.max(cam1[:, 1:, :, :], dim=1)[0]
    cam2[:, 0, :, :] = 1 - torch.max(cam2[:, 1:, :, :], dim=1)[0]
    tensor_ecr1 = torch.abs(max_onehot(cam2.detach()) - cam_rv1)
    tensor_ecr2 = torch.abs(max_onehot(cam1.detach()) - cam_rv2)
    loss_ecr1 = torch.mean(torch.topk(tensor_ecr1.reshape(ns, -1), k=(int)(21 * hs * ws * 0.2), dim=-1)[0])
    loss_ecr2 = torch.mean(torch.topk(tensor_ecr2.reshape(ns, -1), k=(int)(21 * hs * ws * 0.2), dim=-1)[0])
    loss_ecr = loss_ecr1 + loss_ecr2

    loss_cls = (loss_cls1 + loss_cls2) / 2 + (loss_rvmin1 + loss_rvmin2) / 2
    loss = loss_cls + loss_er + loss_ecr

    # Our names: cls = the classification part alone, min = the min-pool part (the code folds it into loss_cls).
    parts = {
        'cls': ((loss_cls1 + loss_cls2) / 2).detach(),
        'min': ((loss_rvmin1 + loss_rvmin2) / 2).detach(),
        'er': loss_er.detach(),
        'ecr': loss_ecr.detach(),
        'loss_cls_code': loss_cls.detach(),
        'total': loss.detach(),
    }
    return loss, parts, outputs

# ------------------------------------------------------------------------------------------------------- driver


def load_ours(net, path):
    """Loads a state dict saved by our SeamNet (same key names); only BatchNorm's num_batches_tracked may lack."""
    sd, _ = read_safetensors(path)
    r = net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, strict=False)
    missing = [k for k in r.missing_keys if not k.endswith('num_batches_tracked')]
    if missing or r.unexpected_keys:
        raise SystemExit(f'{path}: missing {missing[:5]} ({len(missing)}), unexpected {r.unexpected_keys[:5]}')


def crosscheck(net, folder):
    load_ours(net, os.path.join(folder, 'model.safetensors'))
    batch, _ = read_safetensors(os.path.join(folder, 'batch.safetensors'))
    x, y = batch['images'].float(), batch['labels'].float()
    net.train()
    net.zero_grad(set_to_none=True)
    loss, parts, outputs = seam_loss(net, x, y, keep_outputs=True)
    loss.backward()
    out = {f'loss.{k}': v.reshape(()) for k, v in parts.items()}
    out.update({f'out.{k}': v for k, v in outputs.items()})
    for name, p in net.named_parameters():
        if p.requires_grad and p.grad is not None:
            out[f'grad.{name}'] = p.grad
    write_safetensors(os.path.join(folder, 'torch.safetensors'), out)
    print(json.dumps({k: float(v) for k, v in parts.items()}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('threads', type=int)
    p.add_argument('batch', type=int)
    p.add_argument('crop', type=int)
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--dilated', default='space-to-batch', choices=['space-to-batch', 'direct'])
    p.add_argument('--batch-file')
    p.add_argument('--weights', help="safetensors state dict of our SeamNet (default: random, torch.manual_seed(0))")
    p.add_argument('--crosscheck', metavar='DIR')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = SEAMNet(a.dilated).train()
    if a.crosscheck:
        crosscheck(net, a.crosscheck)
        return
    if a.weights:
        load_ours(net, a.weights)
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    net = net.to(memory_format=mf)
    new = set(id(q) for q in net.new_parameters())
    backbone = [q for q in net.parameters() if q.requires_grad and id(q) not in new]
    opt = torch.optim.SGD([{'params': backbone, 'lr': 0.01}, {'params': net.new_parameters(), 'lr': 0.1}],
                          lr=0.01, momentum=0.9, weight_decay=1e-4)
    x, y = load_batch(a.batch_file, a.batch, a.crop, mf)

    serve_training(net, opt, x, lambda net, x: seam_loss(net, x, y)[0])


if __name__ == '__main__':
    main()
