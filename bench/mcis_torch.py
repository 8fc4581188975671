"""MCIS in PyTorch: a transcription of the official code (GuoleiSun/MCIS_wsss, Classifier/models/vgg.py and the loss
of Classifier/scripts/train.py), the reference for src/methods/mcis.ts (bench/mcis-crosscheck.ts drives it).

vgg.py as released, with two changes that do not touch the computation: VGG_coattention takes the backbone's output
channels (`in_channels`, 512 on VGG-16 D1; 1280 when `features` is bench/cam_torch.py's MobileNetV2) for its first
extra conv and `num_classes` instead of the literal 20 in `.view(-1, 20)`; and its online attention accumulation
(run only when `index` is given, never in train.py's loop) is left out. make_layers and cfg['D1'] are verbatim.
train.py's loop body is `mcis_loss` below, verbatim but for the `.cuda()` calls.

Modes:
  --serve BATCH SIZE [--weights F] [--batch-file F] [--channels-last]   bench/common.ts's TorchPeer protocol: workload
                'step' is one train.py step (mcis_loss at epoch 2, then the code's nesterov SGD with its four groups:
                lr 0.001 backbone weights, 0.002 biases, 0.01 / 0.02 the extra layers) on MobileNetV2; --weights is our
                McisNet's state (safetensors), --batch-file the pair batch bench/mcis.ts writes (safetensors input1,
                input2, label1, label2), both random without.
  --make-vgg16 PATH... [--features-only]   writes torchvision.models.vgg16()'s state dict (random weights, seed 0) with
                torch.save (safetensors when PATH ends so): the fixture the VGG-16 D1 backbone loads by name (--features-only drops classifier.0/.3,
                the two big fully connected layers, keeping classifier.6 so that "ignore the classifier" is exercised).
  --forward-d1 PTH INPUT OUT            runs make_layers(cfg['D1']) loaded from PTH (strict=False, as the code
                loads torchvision's weights) on INPUT (safetensors `x`) and writes OUT (safetensors `y`), after
                --make-vgg16 when both are given.
  --crosscheck DIR --backbone vgg16|mobilenet_v2 [--epoch E] [--torchvision PTH]
                reads DIR/model.safetensors (our McisNet's state) and DIR/batch.safetensors (input1, input2, the
                three self-pair views t0 t1 t2, label1, label2), runs one train.py loss + backward and writes
                DIR/torch.safetensors: every loss term (`loss.<name>`, the code's variable names), the four model
                calls' outputs (`out.<pair>.logits`, `out.<pair>.co_logits`) and the gradient of every parameter
                under our names (`grad.<name>`). On VGG-16 with --torchvision the backbone comes from that file (the
                code's load_state_dict(..., strict=False)), not from ours.
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
from cam_torch import MobileNetV2  # noqa: E402
from seam_torch import read_safetensors, write_safetensors  # noqa: E402

# ------------------------------------------------------------------------------------------------ models/vgg.py


class VGG_coattention(nn.Module):

    def __init__(self, features, num_classes=20, init_weights=True, in_channels=512):
        super(VGG_coattention, self).__init__()
        self.features = features
        self.num_classes = num_classes
        self.extra_convs = nn.Sequential(
            nn.Conv2d(in_channels, 512, kernel_size=3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(512, 512, kernel_size=3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(512, 512, kernel_size=3, padding=1),
            nn.ReLU(True)
        )
        self.extra_last_conv = nn.Conv2d(512, num_classes, 1)
        self._initialize_weights()

    def forward(self, x, epoch=1, label=None, index=None):
        x = self.features(x)
        x = self.extra_convs(x)
        self.map1 = x.clone()

        x = self.extra_last_conv(x)

        self.map2 = x.clone()

        x = F.avg_pool2d(x, kernel_size=(x.size(2), x.size(3)), padding=0)
        x = x.view(-1, self.num_classes)
        return self.map1, self.map2, x

    def _initialize_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2. / n))
                if m.bias is not None:
                    m.bias.data.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.weight.data.normal_(0, 0.01)
                m.bias.data.zero_()


def make_layers(cfg, batch_norm=False):
    layers = []
    in_channels = 3
    for i, v in enumerate(cfg):
        if v == 'M':
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        elif v == 'N':
            layers += [nn.MaxPool2d(kernel_size=3, stride=1, padding=1)]
        else:
            if i > 13:
                conv2d = nn.Conv2d(in_channels, v, kernel_size=3, dilation=2, padding=2)
            else:
                conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
            if batch_norm:
                layers += [conv2d, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            else:
                layers += [conv2d, nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


cfg = {
    'D1': [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'N', 512, 512, 512],
}


class CoattentionModel(nn.Module):
    def __init__(self, features=None, in_channels=512, num_classes=20):
        super(CoattentionModel, self).__init__()
        self.vgg = VGG_coattention(features if features is not None else make_layers(cfg['D1']),
                                   num_classes=num_classes, in_channels=in_channels)
        self.extra_linear_e = nn.Linear(cfg['D1'][-1], cfg['D1'][-1], bias=False)
        self.channel = cfg['D1'][-1]
        self.num_classes = num_classes
        self.extra_gate = nn.Conv2d(self.channel, num_classes, kernel_size=1, bias=False)
        self.extra_gate_merge = nn.Conv2d(self.channel, 1, kernel_size=1, bias=False)

    def forward(self, input, epoch=1, label=None, index=None):
        input1, input2 = input[0], input[1]

        feature1, cam1, score1 = self.vgg(input1)
        feature2, cam2, score2 = self.vgg(input2)

        fea_size1 = feature1.size()[2:]
        all_dim1 = fea_size1[0] * fea_size1[1]

        fea_size2 = feature2.size()[2:]
        all_dim2 = fea_size2[0] * fea_size2[1]

        feature1_flat = feature1.view(-1, feature2.size()[1], all_dim1)
        feature2_flat = feature2.view(-1, feature2.size()[1], all_dim2)

        feature1_t = torch.transpose(feature1_flat, 1, 2).contiguous()
        feature1_corr = self.extra_linear_e(feature1_t)

        A2 = torch.bmm(feature1_corr, feature2_flat)

        A = F.softmax(A2, dim=1)
        B = F.softmax(torch.transpose(A2, 1, 2), dim=1)
        feature2_att = torch.bmm(feature1_flat, A).contiguous()
        feature1_att = torch.bmm(feature2_flat, B).contiguous()
        input1_att = feature1_att.view(-1, feature2.size()[1], fea_size1[0], fea_size1[1])
        input2_att = feature2_att.view(-1, feature2.size()[1], fea_size2[0], fea_size2[1])

        input1_att_gate = torch.sigmoid(self.extra_gate_merge(input1_att))
        input2_att_gate = torch.sigmoid(self.extra_gate_merge(input2_att))

        co_map1 = self.extra_gate(input1_att)
        co_score1 = F.avg_pool2d(co_map1, kernel_size=(co_map1.size(2), co_map1.size(3)), padding=0)
        co_score1 = co_score1.view(-1, self.num_classes)

        co_map2 = self.extra_gate(input2_att)
        co_score2 = F.avg_pool2d(co_map2, kernel_size=(co_map2.size(2), co_map2.size(3)), padding=0)
        co_score2 = co_score2.view(-1, self.num_classes)

        # complementary co-attention
        input1_att_comple = feature1 * (1 - input1_att_gate)
        input2_att_comple = feature2 * (1 - input2_att_gate)
        co_comple_map1 = self.extra_gate(input1_att_comple)
        co_comple_score1 = F.avg_pool2d(co_comple_map1, kernel_size=(co_comple_map1.size(2), co_comple_map1.size(3)), padding=0)
        co_comple_score1 = co_comple_score1.view(-1, self.num_classes)

        co_comple_map2 = self.extra_gate(input2_att_comple)
        co_comple_score2 = F.avg_pool2d(co_comple_map2, kernel_size=(co_comple_map2.size(2), co_comple_map2.size(3)), padding=0)
        co_comple_score2 = co_comple_score2.view(-1, self.num_classes)

        self.maps = (cam1, cam2, co_map1, co_map2, co_comple_map1, co_comple_map2)

        return (torch.cat([score1, score2]), torch.cat([co_score1, co_score2, co_comple_score1, co_comple_score2]))

# ------------------------------------------------------------------------------------------ scripts/train.py loss


def mcis_loss(model, input1, input2, input1_transforms, label1, label2, current_epoch, outputs=None):
    """The body of train.py's loop up to loss_val (no optimizer step). Returns (loss_val, terms)."""
    img = [input1, input2]
    label = torch.cat([label1, label2])

    img2 = [input1, input1_transforms[0]]
    img3 = [input1, input1_transforms[1]]
    img4 = [input1, input1_transforms[2]]

    label_new = label1 + label2
    label_new[label_new != 2] = 0
    label_new[label_new == 2] = 1

    label1_comple = label1 - label_new
    label2_comple = label2 - label_new

    assert (label1_comple >= 0).all() and (label2_comple >= 0).all()

    label_new = torch.cat([label_new, label_new])

    logits, co_logits = model(img, current_epoch, label, None)
    logits2, co_logits2 = model(img2, current_epoch, label, None)
    logits3, co_logits3 = model(img3, current_epoch, label, None)
    logits4, co_logits4 = model(img4, current_epoch, label, None)
    if outputs is not None:
        for name, (lo, co) in {'pair': (logits, co_logits), 'flip': (logits2, co_logits2),
                               'small': (logits3, co_logits3), 'large': (logits4, co_logits4)}.items():
            outputs[f'{name}.logits'] = lo.detach().clone()
            outputs[f'{name}.co_logits'] = co.detach().clone()

    loss_val1 = F.multilabel_soft_margin_loss(logits, label)
    loss_val2 = F.multilabel_soft_margin_loss(co_logits[:2 * input1.size(0)], label_new)

    loss_val1_comple = F.multilabel_soft_margin_loss(co_logits[2 * input1.size(0):3 * input1.size(0)], label1_comple)
    loss_val2_comple = F.multilabel_soft_margin_loss(co_logits[3 * input1.size(0):], label2_comple)

    loss_val2_1 = F.multilabel_soft_margin_loss(logits2, torch.cat([label1, label1]))
    loss_val2_2 = F.multilabel_soft_margin_loss(co_logits2[:2 * input1.size(0)], torch.cat([label1, label1]))
    loss_val3_1 = F.multilabel_soft_margin_loss(logits3, torch.cat([label1, label1]))
    loss_val3_2 = F.multilabel_soft_margin_loss(co_logits3[:2 * input1.size(0)], torch.cat([label1, label1]))
    loss_val4_1 = F.multilabel_soft_margin_loss(logits4, torch.cat([label1, label1]))
    loss_val4_2 = F.multilabel_soft_margin_loss(co_logits4[:2 * input1.size(0)], torch.cat([label1, label1]))

    # use co-attention
    loss_val = loss_val1 + loss_val2 + loss_val2_1 + loss_val2_2 + loss_val3_1 + loss_val3_2 + loss_val4_1 + loss_val4_2

    terms = {'loss1': loss_val1, 'loss2': loss_val2, 'loss2_1': loss_val2_1, 'loss2_2': loss_val2_2,
             'loss3_1': loss_val3_1, 'loss3_2': loss_val3_2, 'loss4_1': loss_val4_1, 'loss4_2': loss_val4_2}
    if current_epoch >= 2:
        if (label1_comple > 0).any():
            loss_val = loss_val + loss_val1_comple
            terms['loss1_comple'] = loss_val1_comple
        if (label2_comple > 0).any():
            loss_val = loss_val + loss_val2_comple
            terms['loss2_comple'] = loss_val2_comple
    terms['total'] = loss_val
    return loss_val, terms

# ------------------------------------------------------------------------------------------------------- driver


def our_name(name, backbone):
    """The official parameter name -> our McisNet's (our VGG-16 keeps torchvision's `features.` prefix; on MobileNetV2
    the official `vgg.features` is the whole backbone module, whose own keys start with `features.`)."""
    if name.startswith('vgg.features.'):
        return ('backbone.features.' if backbone == 'vgg16' else 'backbone.') + name[len('vgg.features.'):]
    if name.startswith('vgg.'):
        return name[len('vgg.'):]
    return name


def build(backbone):
    if backbone == 'vgg16':
        return CoattentionModel()
    return CoattentionModel(features=MobileNetV2(8), in_channels=1280)


def crosscheck(a):
    model = build(a.backbone)
    ours, _ = read_safetensors(os.path.join(a.crosscheck, 'model.safetensors'))
    ours = {k: v.float() if v.is_floating_point() else v for k, v in ours.items()}
    theirs = {}
    for name in model.state_dict():
        key = our_name(name, a.backbone)
        if a.torchvision and key.startswith('backbone.'):
            continue
        if key not in ours:
            if name.endswith('num_batches_tracked'):
                continue
            raise SystemExit(f'model.safetensors lacks {key} (official {name})')
        theirs[name] = ours[key]
    r = model.load_state_dict(theirs, strict=False)
    if a.torchvision:
        # models/vgg.py: self.vgg.load_state_dict(model_zoo.load_url(model_urls['vgg16']), strict=False)
        tv = torch.load(a.torchvision, map_location='cpu')
        r2 = model.vgg.load_state_dict(tv, strict=False)
        loaded = [k for k in tv if k.startswith('features.')]
        if len(loaded) != 26 or any(k.startswith('features.') for k in r2.missing_keys):
            raise SystemExit(f'{a.torchvision}: features not all loaded ({len(loaded)} keys)')
    else:
        missing = [k for k in r.missing_keys if not k.endswith('num_batches_tracked')]
        if missing:
            raise SystemExit(f'missing {missing[:5]}')
    batch, _ = read_safetensors(os.path.join(a.crosscheck, 'batch.safetensors'))
    b = {k: v.float() for k, v in batch.items()}
    model.train()
    model.zero_grad(set_to_none=True)
    outputs = {}
    loss, terms = mcis_loss(model, b['input1'], b['input2'], [b['t0'], b['t1'], b['t2']], b['label1'], b['label2'],
                            a.epoch, outputs)
    loss.backward()
    out = {f'loss.{k}': v.detach().reshape(()) for k, v in terms.items()}
    out.update({f'out.{k}': v for k, v in outputs.items()})
    for name, p in model.named_parameters():
        if p.grad is not None:
            out[f'grad.{our_name(name, a.backbone)}'] = p.grad
    write_safetensors(os.path.join(a.crosscheck, 'torch.safetensors'), out)
    print(json.dumps({k: float(v) for k, v in terms.items()}), flush=True)


def serve(a):
    from torch_peer import serve_training
    torch.manual_seed(0)
    model = build('mobilenet_v2')
    if a.weights:
        ours, _ = read_safetensors(a.weights)
        model.load_state_dict({n: ours[our_name(n, 'mobilenet_v2')].float() for n in model.state_dict()
                               if our_name(n, 'mobilenet_v2') in ours}, strict=False)
    n, size = a.serve
    if a.batch_file:
        b = {k: v.float() for k, v in read_safetensors(a.batch_file)[0].items()}
    else:
        b = {'input1': torch.randn(n, 3, size, size), 'input2': torch.randn(n, 3, size, size),
             'label1': (torch.rand(n, 20) > 0.8).float(), 'label2': (torch.rand(n, 20) > 0.8).float()}
    mf = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=mf).train()
    x1, x2 = b['input1'].contiguous(memory_format=mf), b['input2'].contiguous(memory_format=mf)
    # LoadData's more_transform views (flip, 0.75x, 2x), made from the batch here
    views = [x1.flip(3), F.interpolate(x1, size=(int(size * 0.75),) * 2, mode='bilinear', align_corners=False),
             F.interpolate(x1, size=(size * 2,) * 2, mode='bilinear', align_corners=False)]
    views = [v.contiguous(memory_format=mf) for v in views]
    groups = ([], [], [], [])
    for name, value in model.named_parameters():  # get_parameter_groups
        if not value.requires_grad:
            continue
        groups[(2 if 'extra' in name else 0) + (0 if 'weight' in name else 1)].append(value)
    lr = 0.001  # the code's rate, as bench/mcis.ts
    opt = torch.optim.SGD([{'params': groups[0], 'lr': lr}, {'params': groups[1], 'lr': 2 * lr},
                           {'params': groups[2], 'lr': 10 * lr}, {'params': groups[3], 'lr': 20 * lr}],
                          momentum=0.9, weight_decay=1e-4, nesterov=True)
    serve_training(model, opt, None, lambda m, _: mcis_loss(m, x1, x2, views, b['label1'], b['label2'], 2)[0])


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--make-vgg16', metavar='PTH', nargs='+')
    p.add_argument('--features-only', action='store_true')
    p.add_argument('--forward-d1', nargs=3, metavar=('PTH', 'INPUT', 'OUT'))
    p.add_argument('--crosscheck', metavar='DIR')
    p.add_argument('--backbone', default='mobilenet_v2', choices=['vgg16', 'mobilenet_v2'])
    p.add_argument('--epoch', type=int, default=2)
    p.add_argument('--torchvision', metavar='PTH')
    p.add_argument('--serve', nargs=2, type=int, metavar=('BATCH', 'SIZE'))
    p.add_argument('--weights')
    p.add_argument('--batch-file')
    p.add_argument('--channels-last', action='store_true')
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.make_vgg16:
        import torchvision
        torch.manual_seed(0)
        sd = torchvision.models.vgg16().state_dict()
        if a.features_only:
            sd = {k: v for k, v in sd.items() if not k.startswith(('classifier.0', 'classifier.3'))}
        for path in a.make_vgg16:
            if path.endswith('.safetensors'):
                write_safetensors(path, sd)
            else:
                torch.save(sd, path)
    if a.forward_d1:
        pth, inp, outp = a.forward_d1
        net = make_layers(cfg['D1'])
        wrapper = nn.Module()
        wrapper.features = net
        sd = read_safetensors(pth)[0] if pth.endswith('.safetensors') else torch.load(pth, map_location='cpu')
        r = wrapper.load_state_dict(sd, strict=False)
        if r.missing_keys:
            raise SystemExit(f'missing {r.missing_keys[:5]}')
        x = read_safetensors(inp)[0]['x'].float()
        with torch.no_grad():
            write_safetensors(outp, {'y': net(x)})
    if a.crosscheck:
        crosscheck(a)
    if a.serve:
        serve(a)
    if not (a.make_vgg16 or a.forward_d1 or a.crosscheck or a.serve):
        p.error('give --make-vgg16, --forward-d1, --crosscheck or --serve')


if __name__ == '__main__':
    main()
