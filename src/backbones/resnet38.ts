// ResNet-38 "d" (Wu, Shen & van den Hengel's wide ResNet-38, as used by PSA and SEAM), following the
// official `network/resnet38d.py` structure and parameter names, so its converted weights load by name:
//   conv1a                  3x3 conv 3 -> 64, stride 1
//   b2, b2_1, b2_2          ResBlock 128,  b2 with stride 2                      (stride 2)
//   b3, b3_1, b3_2          ResBlock 256,  b3 with stride 2                      (stride 4)
//   b4, b4_1 .. b4_5        ResBlock 512,  b4 with stride 2                      (stride 8)
//   b5, b5_1, b5_2          ResBlock 512 -> 1024, dilation 2 (b5's first conv undilated)
//   b6                      bottleneck ResBlock_bot 1024 -> 2048, dilation 4, Dropout2d 0.3
//   b7                      bottleneck ResBlock_bot 2048 -> 4096, dilation 4, Dropout2d 0.5
//   bn7                     final BN; the output is ReLU(bn7(x)) ("conv6"), 4096 channels at stride 8
// Blocks are pre-activation: bn_branch2a + ReLU on the input feeds both the branch convolutions and,
// where the shape changes, the 1x1 projection conv_branch1. The official taps are those pre-activations:
// conv3 (input of b4), conv4 (input of b5) and conv5 (input of b6); SEAM's PCM reads conv4 and conv5.
import { type Tensor, tidy } from '../engine/index.js';
import { BatchNorm2d, Conv2d, Dropout2d, Layer, type LoadReport, Module } from '../nn/index.js';
import { type Backbone, type BackboneOutput, IMAGENET_NORM, type InputNorm } from './backbone.js';
import { checkOutputStride, checkTaps, freezeModules } from './common.js';
import { buildWithWeights } from './weights.js';

/** A basic pre-activation block: BN-ReLU, 3x3 conv, BN-ReLU, 3x3 conv, plus the (projected) input. */
export class ResBlock extends Layer {
  readonly sameShape: boolean;
  readonly bn_branch2a: BatchNorm2d;
  readonly conv_branch2a: Conv2d;
  readonly bn_branch2b1: BatchNorm2d;
  readonly conv_branch2b1: Conv2d;
  readonly conv_branch1: Conv2d | null;

  constructor(inC: number, midC: number, outC: number,
    o: { stride?: number; firstDilation?: number; dilation?: number; frozen: boolean }) {
    super();
    const stride = o.stride ?? 1;
    const dilation = o.dilation ?? 1;
    const firstDilation = o.firstDilation ?? dilation;
    this.sameShape = inC === outC && stride === 1;
    this.bn_branch2a = this.registerModule('bn_branch2a', new BatchNorm2d(inC, { frozen: o.frozen }));
    this.conv_branch2a = this.registerModule('conv_branch2a', new Conv2d(inC, midC, 3, {
      stride, padding: firstDilation, dilation: firstDilation, bias: false,
    }));
    this.bn_branch2b1 = this.registerModule('bn_branch2b1', new BatchNorm2d(midC, { frozen: o.frozen }));
    this.conv_branch2b1 = this.registerModule('conv_branch2b1', new Conv2d(midC, outC, 3, {
      padding: dilation, dilation, bias: false,
    }));
    this.conv_branch1 = this.sameShape
      ? null
      : this.registerModule('conv_branch1', new Conv2d(inC, outC, 1, { stride, bias: false }));
  }

  /** Returns the block output and the BN-ReLU of its input (the official get_x_bn_relu). */
  forwardWithPreact(x: Tensor): { out: Tensor; preact: Tensor } {
    return tidy(() => {
      const preact = this.bn_branch2a.forward(x).relu();
      const branch1 = this.conv_branch1 ? this.conv_branch1.forward(preact) : x;
      let branch2 = this.conv_branch2a.forward(preact);
      branch2 = this.bn_branch2b1.forward(branch2).relu();
      branch2 = this.conv_branch2b1.forward(branch2);
      return { out: branch1.add(branch2), preact };
    });
  }

  forward(x: Tensor): Tensor {
    return tidy(() => this.forwardWithPreact(x).out);
  }
}

/** The bottleneck pre-activation block of b6/b7: 1x1 (C/4), 3x3 dilated (C/2), 1x1 (C), with Dropout2d. */
export class ResBlockBot extends Layer {
  readonly bn_branch2a: BatchNorm2d;
  readonly conv_branch2a: Conv2d;
  readonly bn_branch2b1: BatchNorm2d;
  readonly dropout_2b1: Dropout2d;
  readonly conv_branch2b1: Conv2d;
  readonly bn_branch2b2: BatchNorm2d;
  readonly dropout_2b2: Dropout2d;
  readonly conv_branch2b2: Conv2d;
  readonly conv_branch1: Conv2d;

  constructor(inC: number, outC: number, o: { stride?: number; dilation?: number; dropout?: number; frozen: boolean }) {
    super();
    const stride = o.stride ?? 1;
    const dilation = o.dilation ?? 1;
    const frozen = { frozen: o.frozen };
    this.bn_branch2a = this.registerModule('bn_branch2a', new BatchNorm2d(inC, frozen));
    this.conv_branch2a = this.registerModule('conv_branch2a', new Conv2d(inC, outC / 4, 1, { stride, bias: false }));
    this.bn_branch2b1 = this.registerModule('bn_branch2b1', new BatchNorm2d(outC / 4, frozen));
    this.dropout_2b1 = this.registerModule('dropout_2b1', new Dropout2d(o.dropout ?? 0));
    this.conv_branch2b1 = this.registerModule('conv_branch2b1', new Conv2d(outC / 4, outC / 2, 3, {
      padding: dilation, dilation, bias: false,
    }));
    this.bn_branch2b2 = this.registerModule('bn_branch2b2', new BatchNorm2d(outC / 2, frozen));
    this.dropout_2b2 = this.registerModule('dropout_2b2', new Dropout2d(o.dropout ?? 0));
    this.conv_branch2b2 = this.registerModule('conv_branch2b2', new Conv2d(outC / 2, outC, 1, { bias: false }));
    // The official block always projects (b6 and b7 both change the channel count).
    this.conv_branch1 = this.registerModule('conv_branch1', new Conv2d(inC, outC, 1, { stride, bias: false }));
  }

  forwardWithPreact(x: Tensor): { out: Tensor; preact: Tensor } {
    return tidy(() => {
      const preact = this.bn_branch2a.forward(x).relu();
      const branch1 = this.conv_branch1.forward(preact);
      let branch2 = this.conv_branch2a.forward(preact);
      branch2 = this.dropout_2b1.forward(this.bn_branch2b1.forward(branch2).relu());
      branch2 = this.conv_branch2b1.forward(branch2);
      branch2 = this.dropout_2b2.forward(this.bn_branch2b2.forward(branch2).relu());
      branch2 = this.conv_branch2b2.forward(branch2);
      return { out: branch1.add(branch2), preact };
    });
  }

  forward(x: Tensor): Tensor {
    return tidy(() => this.forwardWithPreact(x).out);
  }
}

/** Top-level modules in forward order (what freezeUpTo can name). */
export const RESNET38_STAGES = [
  'conv1a', 'b2', 'b2_1', 'b2_2', 'b3', 'b3_1', 'b3_2', 'b4', 'b4_1', 'b4_2', 'b4_3', 'b4_4', 'b4_5',
  'b5', 'b5_1', 'b5_2', 'b6', 'b7', 'bn7',
] as const;
export type ResNet38Stage = (typeof RESNET38_STAGES)[number];

export interface ResNet38Options {
  /** Only 8: the architecture is built at output stride 8. */
  outputStride?: 8;
  /** BatchNorm uses its running statistics and is not trained (default true, as PSA/SEAM). */
  frozenBatchNorm?: boolean;
  /** Stop gradients up to this module: 'conv1a' (PSA), 'b2_2' (SEAM freezes conv1a, b2, b2_1, b2_2). */
  freezeUpTo?: ResNet38Stage;
  inputNorm?: InputNorm;
}

export class ResNet38 extends Module implements Backbone {
  readonly name = 'resnet38';
  readonly outChannels = 4096;
  readonly outputStride = 8;
  readonly taps = [
    { name: 'conv3', channels: 256, stride: 4 },
    { name: 'conv4', channels: 512, stride: 8 },
    { name: 'conv5', channels: 1024, stride: 8 },
  ];
  inputNorm: InputNorm;
  loadReport: LoadReport | null = null;
  readonly conv1a: Conv2d;
  /** b2 .. b5_2 (ResBlock), then b6, b7 (ResBlockBot), by name. */
  readonly blocks: [string, ResBlock | ResBlockBot][];
  readonly bn7: BatchNorm2d;

  constructor(o: ResNet38Options = {}) {
    super();
    checkOutputStride(this.name, o.outputStride ?? 8, [8]);
    this.inputNorm = o.inputNorm ?? IMAGENET_NORM;
    const frozen = o.frozenBatchNorm ?? true;
    const upTo = o.freezeUpTo === undefined ? -1 : RESNET38_STAGES.indexOf(o.freezeUpTo);
    if (o.freezeUpTo !== undefined && upTo < 0) {
      throw new RangeError(`resnet38: freezeUpTo must be one of ${RESNET38_STAGES.join(', ')}, got '${o.freezeUpTo}'`);
    }
    this.conv1a = this.registerModule('conv1a', new Conv2d(3, 64, 3, { padding: 1, bias: false }));
    const spec: [string, ResBlock | ResBlockBot][] = [
      ['b2', new ResBlock(64, 128, 128, { stride: 2, frozen })],
      ['b2_1', new ResBlock(128, 128, 128, { frozen })],
      ['b2_2', new ResBlock(128, 128, 128, { frozen })],
      ['b3', new ResBlock(128, 256, 256, { stride: 2, frozen })],
      ['b3_1', new ResBlock(256, 256, 256, { frozen })],
      ['b3_2', new ResBlock(256, 256, 256, { frozen })],
      ['b4', new ResBlock(256, 512, 512, { stride: 2, frozen })],
      ['b4_1', new ResBlock(512, 512, 512, { frozen })],
      ['b4_2', new ResBlock(512, 512, 512, { frozen })],
      ['b4_3', new ResBlock(512, 512, 512, { frozen })],
      ['b4_4', new ResBlock(512, 512, 512, { frozen })],
      ['b4_5', new ResBlock(512, 512, 512, { frozen })],
      ['b5', new ResBlock(512, 512, 1024, { stride: 1, firstDilation: 1, dilation: 2, frozen })],
      ['b5_1', new ResBlock(1024, 512, 1024, { dilation: 2, frozen })],
      ['b5_2', new ResBlock(1024, 512, 1024, { dilation: 2, frozen })],
      ['b6', new ResBlockBot(1024, 2048, { stride: 1, dilation: 4, dropout: 0.3, frozen })],
      ['b7', new ResBlockBot(2048, 4096, { dilation: 4, dropout: 0.5, frozen })],
    ];
    for (const [n, b] of spec) this.registerModule(n, b);
    this.blocks = spec;
    this.bn7 = this.registerModule('bn7', new BatchNorm2d(4096, { frozen }));

    if (upTo >= 0) {
      const byName = new Map<string, Module>([['conv1a', this.conv1a], ...spec, ['bn7', this.bn7]]);
      freezeModules(RESNET38_STAGES.slice(0, upTo + 1).map((n) => byName.get(n)!));
    }
  }

  /** Returns conv6 = ReLU(bn7(b7(...))) (4096 channels, stride 8) and the requested taps. */
  forward(x: Tensor, taps?: string[]): BackboneOutput {
    const want = checkTaps(this, taps);
    // The block whose input pre-activation is each tap, as in the official forward_as_dict.
    const tapAt: Record<string, string> = { b4: 'conv3', b5: 'conv4', b6: 'conv5' };
    return tidy(() => {
      const out = new Map<string, Tensor>();
      let cur = this.conv1a.forward(x);
      for (const [name, block] of this.blocks) {
        const tap = tapAt[name];
        let next: Tensor;
        if (tap && want.has(tap)) {
          const r = block.forwardWithPreact(cur);
          out.set(tap, r.preact);
          next = r.out;
        } else {
          next = block.forward(cur);
        }
        cur.dispose(); // x is never cur: conv1a made the first one
        cur = next;
      }
      return { features: this.bn7.forward(cur).relu(), taps: out };
    });
  }
}

export interface ResNet38LoadOptions extends ResNet38Options {
  /** A state dict with the official names (e.g. converted from the MXNet ImageNet weights), .pth or .safetensors. */
  weights?: string;
  /** Default true: any missing or unexpected key is an error. */
  strict?: boolean;
}

export function resnet38(o: ResNet38LoadOptions = {}): ResNet38 {
  return buildWithWeights(o.weights, () => new ResNet38(o), () => ({ strict: o.strict ?? true }));
}
