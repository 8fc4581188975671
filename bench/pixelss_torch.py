"""Pixel-level self-supervision in PyTorch, the reference for src/methods/pixelss.ts (bench/pixelss-crosscheck.ts).

Two parts:

1. PPC's pixel-to-prototype contrast, transcribed line by line from usr922/wseg contrast_train.py (the pseudo
   labels of `scores1 = F.softmax(cam_rv1_down * label)` with the background channel set to bg_threshold, and the
   cross-prototype InfoNCE `loss_nce1`: A1 = exp(f . positive / 0.1), A2 = sum exp(f . prototypes^T / 0.1),
   mean(-log(A1 / A2))), with the temperature as an argument. And, written independently of the TypeScript (per-class
   boolean indexing and loops), our re-interpretation's rule: region labels with an ignore band, prototypes as masked
   means over the batch or per image, the InfoNCE over the prototypes present.

   --crosscheck DIR reads DIR/rcm.safetensors (emb_raw N x D x h x w: the MainNet's projected features before the
   L2 normalisation; support_cams N x C x h x w normalised; labels N x C; support_proj N x D x h x w; ppc_protos
   (C+1) x D; scalars in the metadata) and writes DIR/rcm_torch.safetensors: the PPC pseudo labels, PPC's loss and its
   gradient with respect to emb_raw, our rule's loss (batch and image prototypes) and gradients.

2. A training step of pixel-ss as bench/pixelss-crosscheck.ts --time and bench:pixelss time it: MainNet = SEAM
   (bench/seam_torch.py's SEAMNet and train_SEAM.py's loss, reused) plus a 1x1 projection head 1280 -> 128 with ReLU;
   SupportNet = a frozen SEAMNet in eval mode; RCM (batch prototypes, thresholds 0.2/0.4, tau 0.1, lambda 0.1) and
   MAM (support scales 0.5, 1, 1.5 fused, min-max normalised; upward, gamma 1, lambda 1) as src/methods/pixelss.ts
   computes them, vectorised the same way. Modes as seam_torch.py: threads batch crop [--batch-file] [--weights
   file (our PixelSsModel's state dict: main.base.*, main.proj.weight, support.*)] then the stdin protocol;
   --loss-only prints the step's loss terms (seam, rcm, mam, total) as one JSON line instead.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cam_torch import load_batch  # noqa: E402
from seam_torch import SEAMNet, max_norm, read_safetensors, seam_loss, write_safetensors  # noqa: E402
from torch_peer import serve_training  # noqa: E402

IGNORE = 255

# ------------------------------------------------------------------------------ PPC (usr922/wseg contrast_train.py)


def ppc_pseudo_label(cam_fg, label_fg, bg_threshold):
    """contrast_train.py: cam_rv1_down[:, 0, :, :] = args.bg_threshold; scores1 = F.softmax(cam_rv1_down * label,
    dim=1); pseudo_label1 = scores1.argmax(dim=1, keepdim=True). `cam_fg`: the normalised foreground channels."""
    n, c, h, w = cam_fg.shape
    cam_rv1_down = torch.cat([torch.zeros(n, 1, h, w), cam_fg], dim=1)
    cam_rv1_down[:, 0, :, :] = bg_threshold
    label = torch.cat((torch.ones((n, 1)), label_fg), dim=1).unsqueeze(2).unsqueeze(3)
    scores1 = F.softmax(cam_rv1_down * label, dim=1)
    return scores1.argmax(dim=1, keepdim=True)


def ppc_loss_nce1(f_proj1, pseudo_label1, prototypes2, tau=0.1):
    """contrast_train.py, "1.1 cross-prototype", loss_nce1 (0.1 there is the temperature)."""
    n_f, c_f, h_f, w_f = f_proj1.shape
    f_proj1 = f_proj1.permute(0, 2, 3, 1).reshape(n_f * h_f * w_f, c_f)
    f_proj1 = F.normalize(f_proj1, dim=-1)
    pseudo_label1 = pseudo_label1.reshape(-1)
    positives1 = prototypes2[pseudo_label1]
    negitives1 = prototypes2
    A1 = torch.exp(torch.sum(f_proj1 * positives1, dim=-1) / tau)
    A2 = torch.sum(torch.exp(torch.matmul(f_proj1, negitives1.transpose(0, 1)) / tau), dim=-1)
    loss_nce1 = torch.mean(-1 * torch.log(A1 / A2))
    return loss_nce1

# ------------------------------------------------------------------ our rule, written out per class (no vectorising)


def region_labels_loop(p, low, high):
    n, c, h, w = p.shape
    out = torch.full((n, h, w), IGNORE, dtype=torch.long)
    mx, arg = p.max(dim=1)
    out[mx > high] = arg[mx > high] + 1
    out[mx <= low] = 0
    return out


def prototypes_loop(g, regions, k, scope):
    """Masked means, L2-normalised; returns ({(image or None, class): prototype}, present classes per image)."""
    n = g.shape[0]
    protos = {}
    for cls in range(k):
        if scope == 'batch':
            pix = [g[i][:, regions[i] == cls].t() for i in range(n)]
            pix = torch.cat(pix, 0)
            if pix.shape[0]:
                protos[(None, cls)] = F.normalize(pix.mean(0), dim=0)
        else:
            for i in range(n):
                pix = g[i][:, regions[i] == cls].t()
                if pix.shape[0]:
                    protos[(i, cls)] = F.normalize(pix.mean(0), dim=0)
    return protos


def our_contrast_loop(emb_raw, regions, protos, scope, tau):
    n = emb_raw.shape[0]
    z = F.normalize(emb_raw, dim=1)
    terms = []
    for i in range(n):
        keys = sorted(c for (j, c) in protos if j == (None if scope == 'batch' else i))
        if not keys:
            continue
        P = torch.stack([protos[(None if scope == 'batch' else i, c)] for c in keys])  # K' x D
        zi = z[i].reshape(z.shape[1], -1).t()  # hw x D
        ri = regions[i].reshape(-1)
        for pix in range(zi.shape[0]):
            if ri[pix] == IGNORE:
                continue
            logits = P @ zi[pix] / tau
            terms.append(torch.logsumexp(logits, 0) - logits[keys.index(int(ri[pix]))])
    return torch.stack(terms).mean()


def crosscheck(folder):
    t, meta = read_safetensors(os.path.join(folder, 'rcm.safetensors'))
    low, high, tau = float(meta['low']), float(meta['high']), float(meta['tau'])
    k = t['support_cams'].shape[1] + 1
    out = {}
    # PPC: pseudo labels at the hard threshold, its loss on the given prototypes (all present), grad w.r.t. emb_raw.
    pl = ppc_pseudo_label(t['support_cams'], t['labels'], low)
    out['ppc.pseudo_label'] = pl.squeeze(1).to(torch.int64)
    e = t['emb_raw'].clone().requires_grad_(True)
    loss = ppc_loss_nce1(e, pl, t['ppc_protos'], tau)
    loss.backward()
    out['ppc.loss'] = loss.detach().reshape(())
    out['ppc.grad'] = e.grad
    # Ours, written per class: band labels, masked-mean prototypes of support_proj, InfoNCE over the present ones.
    regions = region_labels_loop(t['support_cams'], low, high)
    out['ours.regions'] = regions
    for scope in ('batch', 'image'):
        protos = prototypes_loop(t['support_proj'], regions, k, scope)
        e = t['emb_raw'].clone().requires_grad_(True)
        loss = our_contrast_loop(e, regions, protos, scope, tau)
        loss.backward()
        out[f'ours.{scope}.loss'] = loss.detach().reshape(())
        out[f'ours.{scope}.grad'] = e.grad
    write_safetensors(os.path.join(folder, 'rcm_torch.safetensors'), out)
    print(json.dumps({k2: float(v) for k2, v in out.items() if v.dim() == 0}), flush=True)

# ------------------------------------------------------------------------------------------- the pixel-ss step


class MainNet(nn.Module):
    """SEAMNet (base) and the projection head, under our PixelSsNet's names (base.*, proj.weight)."""

    def __init__(self):
        super().__init__()
        self.base = SEAMNet()
        self.grids = []
        self.proj = nn.Conv2d(1280, 128, 1, bias=False)
        nn.init.xavier_uniform_(self.proj.weight)

    def forward(self, x):
        out = self.base(x)
        self.grids.append(dict(self.base.grid))  # each view's grid outputs (features, raw CAM)
        return out


def minmax_norm(m, y):
    masked = m * y
    low = masked.amin((2, 3), keepdim=True)
    return (masked - low) / (masked.amax((2, 3), keepdim=True) - low).clamp_min(1e-5)


def support_grid(support, x):
    support(x)
    return support.grid['cam_rv'][:, 1:], support.grid['features']


def pixelss_loss(main, support, x, y, scales=(0.5, 1, 1.5), low=0.2, high=0.4, tau=0.1, l_rcm=0.1, l_mam=1.0):
    main.grids = []
    loss, parts, _ = seam_loss(main, x, y)
    g1 = main.grids[0]  # seam_loss runs the crop first, then its rescaled view
    features, grid_cam = g1['features'], g1['cam'][:, 1:]
    n, c = y.shape
    yy = y.reshape(n, c, 1, 1)
    h, w = features.shape[2], features.shape[3]
    with torch.no_grad():
        cams, sfeat = support_grid(support, x)
        cams1 = F.relu(cams)
        region_cams = minmax_norm(cams1, yy)
        projected = F.relu(main.proj(sfeat))
        total = None
        H, W = x.shape[2], x.shape[3]
        for s in scales:
            size = (max(1, round(H * s)), max(1, round(W * s)))
            if size == (H, W):
                m = cams1
            else:
                cs, _ = support_grid(support, F.interpolate(x, size=size, mode='bilinear', align_corners=False))
                m = F.relu(F.interpolate(cs, size=(h, w), mode='bilinear', align_corners=False))
            total = m if total is None else total + m
        fused = minmax_norm(total, yy)
    # RCM
    mx, arg = region_cams.max(dim=1)
    regions = (arg + 1).masked_fill(mx <= low, 0).masked_fill((mx > low) & (mx <= high), IGNORE)
    flat = regions.reshape(n, -1)
    member = F.one_hot(flat.masked_fill(flat == IGNORE, c + 1), c + 2)[:, :, :c + 1].float()
    sums = member.transpose(1, 2).bmm(projected.reshape(n, 128, -1).transpose(1, 2)).sum(0, keepdim=True).expand(n, -1, -1)
    counts = member.sum(1).sum(0, keepdim=True).expand(n, -1)
    protos = F.normalize(sums / counts.clamp_min(1).unsqueeze(2), dim=2)
    emb = F.normalize(F.relu(main.proj(features)), dim=1)
    logits = protos.bmm(emb.reshape(n, 128, -1)) / tau
    logits = logits.masked_fill((counts == 0).unsqueeze(2).expand_as(logits), -1e4)
    rcm = F.cross_entropy(logits, flat, ignore_index=IGNORE)
    # MAM
    mn = max_norm(grid_cam) * yy
    diff = fused - mn
    wgt = diff.detach().abs().amax(1, keepdim=True)
    mam = (F.relu(diff) * wgt).mean()
    total = loss + l_rcm * rcm + l_mam * mam
    return total, {'seam': loss.detach(), 'rcm': rcm.detach(), 'mam': mam.detach(), 'total': total.detach()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument('threads', type=int, nargs='?', default=1)
    p.add_argument('batch', type=int, nargs='?', default=16)
    p.add_argument('crop', type=int, nargs='?', default=224)
    p.add_argument('--channels-last', action='store_true')
    p.add_argument('--batch-file')
    p.add_argument('--weights')
    p.add_argument('--crosscheck', metavar='DIR')
    p.add_argument('--loss-only', action='store_true', help='print the loss terms of one step on the batch and exit')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.crosscheck:
        crosscheck(a.crosscheck)
        return
    torch.manual_seed(0)
    net = MainNet().train()
    support = SEAMNet().eval()
    for q in support.parameters():
        q.requires_grad_(False)
    if a.weights:
        sd, _ = read_safetensors(a.weights)
        sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
        for prefix, module in (('main.', net), ('support.', support)):
            part = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            r = module.load_state_dict(part, strict=False)
            missing = [k for k in r.missing_keys if not k.endswith('num_batches_tracked')]
            if missing or r.unexpected_keys:
                raise SystemExit(f'{a.weights} ({prefix}): missing {missing[:5]}, unexpected {r.unexpected_keys[:5]}')

    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    net = net.to(memory_format=mf)
    support = support.to(memory_format=mf)
    new = set(id(q) for q in list(net.base.new_parameters()) + list(net.proj.parameters()))
    backbone = [q for q in net.parameters() if q.requires_grad and id(q) not in new]
    news = [q for q in net.parameters() if id(q) in new]
    opt = torch.optim.SGD([{'params': backbone, 'lr': 0.01}, {'params': news, 'lr': 0.1}],
                          lr=0.01, momentum=0.9, weight_decay=1e-4)
    x, y = load_batch(a.batch_file, a.batch, a.crop, mf)
    if a.loss_only:
        _, parts = pixelss_loss(net, support, x, y)
        print(json.dumps({k: float(v) for k, v in parts.items()}), flush=True)
        return
    serve_training(net, opt, x, lambda net, x: pixelss_loss(net, support, x, y)[0])


if __name__ == '__main__':
    main()
