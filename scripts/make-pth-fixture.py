#!/usr/bin/python3
"""Write the tiny PyTorch checkpoint fixtures used by test/engine/serialize.test.ts.

Run with a Python that has torch (Debian's: /usr/bin/python3 scripts/make-pth-fixture.py).
Outputs, all in test/fixtures/ and a few KB each:
  tiny_state_dict.pth      torch.save(model.state_dict())          (OrderedDict, pickle protocol 2)
  tiny_state_dict_p4.pth   the same with pickle_protocol=4         (FRAME, MEMOIZE, SHORT_BINUNICODE, ...)
  tiny_checkpoint.pth      {'model': sd, 'epoch': 3, 'optimizer': SGD state, 'meta': {...}, 'views': [3 views of one storage]}
  tiny_expected.json       names, dtypes, shapes, strides, storage offsets and exact values
  hostile_os_system.pth    torch zip layout whose data.pkl reduces os.system (must be refused)
  hostile_nested_eval.pth  a state dict hiding builtins.eval inside, pickle protocol 4 (STACK_GLOBAL)
"""
import json
import os
import pickle
import zipfile

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures')


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 3)
        # Non-contiguous view into a larger storage: stride (1, 4), storage offset 2, storage of 20 floats.
        base = torch.arange(20, dtype=torch.float32) * 0.5 - 3.0
        self.register_buffer('nc', base[2:14].view(3, 4).t())
        # One buffer per remaining storage type, so every dtype the loader supports is covered.
        self.register_buffer('f16', torch.tensor([[0.5, -1.25, 65504.0], [6.1e-05, -0.0, 3.140625]], dtype=torch.float16))
        self.register_buffer('bf16', torch.tensor([1.0, -2.5, 3.0e38, 1.0e-3], dtype=torch.bfloat16))
        self.register_buffer('f64', torch.tensor([0.1, -1e300, 2.0 ** -1074], dtype=torch.float64))
        self.register_buffer('i32', torch.tensor([[-2147483648, 7], [2147483647, 0]], dtype=torch.int32))
        self.register_buffer('u8', torch.tensor([0, 1, 128, 255], dtype=torch.uint8))
        self.register_buffer('mask', torch.tensor([True, False, True], dtype=torch.bool))
        self.register_buffer('i64', torch.tensor([2 ** 62, -(2 ** 63), 5], dtype=torch.int64))


def describe(t):
    # Exact values: float16/bfloat16/float32 widen to float64 exactly; ints are small enough for JSON,
    # except int64 extremes, which are also written as decimal strings.
    c = t.contiguous()
    raw = c.reshape(-1).view(torch.uint8) if c.numel() else torch.empty(0, dtype=torch.uint8)
    if t.dtype.is_floating_point:
        values = [float(v) for v in c.double().reshape(-1).tolist()]
    elif t.dtype == torch.bool:
        values = [bool(v) for v in c.reshape(-1).tolist()]
    else:
        values = [int(v) for v in c.reshape(-1).tolist()]
    return {
        'dtype': str(t.dtype).replace('torch.', ''),
        'shape': list(t.shape),
        'stride': list(t.stride()),
        'storage_offset': t.storage_offset(),
        'contiguous': t.is_contiguous(),
        'values': [str(v) if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2 ** 53 else v for v in values],
        'sum': float(c.double().sum()),
        'hex': bytes(raw.tolist()).hex(),
    }


def torch_layout_zip(path, pkl, archive='archive'):
    # The zip layout torch.save writes: <archive>/data.pkl, <archive>/data/<key>, <archive>/version.
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
        # Fixed timestamps keep the fixture byte-identical across runs.
        for name, data in ((f'{archive}/data.pkl', pkl), (f'{archive}/version', b'3\n')):
            z.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)


class Evil:
    def __reduce__(self):
        return (os.system, ('echo pwned',))


class EvilEval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('echo pwned')",))


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    model = Tiny()
    # One training step so BN running stats, num_batches_tracked and momentum buffers are non-trivial.
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(2, 3, 5, 5)
    y = model.fc(model.bn(model.conv(x)).mean(dim=(2, 3)))
    y.square().mean().backward()
    opt.step()

    sd = model.state_dict()
    torch.save(sd, os.path.join(OUT, 'tiny_state_dict.pth'))
    torch.save(sd, os.path.join(OUT, 'tiny_state_dict_p4.pth'), pickle_protocol=4)
    ckpt = {
        'model': sd,
        'epoch': 3,
        'optimizer': opt.state_dict(),
        'meta': {'name': 'tiny', 'huge': 2 ** 70, 'neg': -5, 'ratio': 0.25,
                 'flags': (True, False, None), 'blob': b'\x00\x01\xff', 'sizes': [1, 2, 3]},
        # Three views of one storage: torch.save writes it once, the loader must share it.
        'views': [sd['fc.weight'], sd['fc.weight'].t(), sd['fc.weight'][1]],
    }
    torch.save(ckpt, os.path.join(OUT, 'tiny_checkpoint.pth'))

    expected = {
        'torch_version': torch.__version__,
        'state_dict': {k: describe(v) for k, v in sd.items()},
        'order': list(sd.keys()),
        'checkpoint': {'epoch': 3, 'lr': 0.1, 'momentum': 0.9,
                       'momentum_buffer_0': describe(opt.state_dict()['state'][0]['momentum_buffer']),
                       'views': [describe(v) for v in ckpt['views']]},
    }
    with open(os.path.join(OUT, 'tiny_expected.json'), 'w') as f:
        json.dump(expected, f, separators=(',', ':'))
        f.write('\n')

    torch_layout_zip(os.path.join(OUT, 'hostile_os_system.pth'), pickle.dumps(Evil(), protocol=2))
    hidden = {'conv.weight': sd['conv.weight'].numpy().tolist(), 'fc.bias': EvilEval()}
    torch_layout_zip(os.path.join(OUT, 'hostile_nested_eval.pth'), pickle.dumps(hidden, protocol=4))


if __name__ == '__main__':
    main()
