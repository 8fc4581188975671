// The run configuration: one object for every stage (train, cams, eval), validated with zod so that a bad
// value is reported with its dotted path ("train.batchSize: expected a positive integer, got "16"").
// Sources, lowest precedence first: defaults, the run directory's saved config.json, a config file, flags.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { methodConfigSchema, methodDefinitions, methodNames } from '../methods/index.js';
import { ADVCAM_DEFAULTS } from '../cams/advcam.js';
import { BACKBONE_NAMES, type BackboneName, backboneOptionKeys, isBackboneName } from '../backbones/index.js';
import { GEN_GT_RULES } from '../refine/saliency.js';

import { type Stage, findStage, kebabCase, stageNames } from './stages.js';

const positiveInt = z.number().int().positive();

/** seg.pseudoMasks of the supervised ceiling: the segmenter trains on ground-truth masks. */
export const GROUND_TRUTH = 'groundTruth';
/** IRN walk's CAM exponents tried by camExponent 'fit' when camExponents is absent: IRN's 1 and AMR's 1.5. */
export const IRN_CAM_EXPONENTS: readonly number[] = [1, 1.5];

const fraction = z.number().min(0).max(1);

/**
 * A registered stage's name, optionally of a stage that passes `accept`. Stage names are kebab-case everywhere; a
 * camelCase spelling is refused with the kebab-case one named.
 */
function stageName(accept?: (s: Stage) => boolean) {
  return z.string().superRefine((name, ctx) => {
    const stage = findStage(name);
    if (stage && (!accept || accept(stage))) return;
    // With a filter the few stages it leaves are listed with their titles ("eval (Seeds)").
    const known = stageNames().filter((n) => !accept || accept(findStage(n)!))
      .map((n) => (accept ? `${n} (${findStage(n)!.title})` : n));
    const kebab = kebabCase(name);
    const hint = kebab !== name && findStage(kebab) ? ` (stage names are kebab-case: write '${kebab}')` : '';
    ctx.addIssue({ code: 'custom', message: `expected one of ${known.join(', ')}${hint}` });
  });
}

/**
 * A further tagged source of classifier training images (data.extra): a VOC layout or a folder, read with the main
 * dataset's classes and mixed into the `train` stage's batches by weight (src/data/mix.ts). Nothing else reads it:
 * CAMs, evaluation, refinement and the segmenter stay on the main dataset.
 */
const ExtraSourceSchema = z.object({
  format: z.enum(['voc', 'folder']).default('voc'),
  root: z.string().min(1),
  /** VOC: the split list read (ImageSets/Segmentation/<split>.txt). */
  split: z.string().min(1).default('train_aug'),
  /** folder format: the labels file (CSV or JSON). */
  labels: z.string().optional(),
  /** VOC: a labels JSON (default: <root>/image_labels.json when present). */
  labelsJson: z.string().optional(),
  /** Draws per epoch relative to the main training split's size (an epoch is one pass over the main images). */
  weight: z.number().positive().default(1),
  /**
   * A tag outside the main classes: dropped with a warning ('drop', the default: noisy web tags; an image left with
   * no tag is not used) or a bad file ('bad': refused, or skipped with data.onBadFile 'skip').
   */
  unknownTags: z.enum(['drop', 'bad']).default('drop'),
}).strict().superRefine((s, ctx) => {
  if (s.format === 'folder' && !s.labels) ctx.addIssue({ code: 'custom', path: ['labels'], message: "required when format is 'folder'" });
});

const DataSchema = z.object({
  /** VOC-layout root (JPEGImages/, ImageSets/Segmentation/, SegmentationClass/, labels). */
  root: z.string().min(1),
  format: z.enum(['voc', 'folder']).default('voc'),
  /** Split (VOC) trained on. */
  trainSplit: z.string().min(1).default('train_aug'),
  /** folder format: the labels file (CSV or JSON) relative to the working directory. */
  labels: z.string().optional(),
  /** folder format: the ground-truth mask folder, for scoring. */
  masks: z.string().optional(),
  /**
   * Foreground classes in mask-id order (VOC default: the 20 VOC classes; folder default: the labels file's
   * "classes", else its tags sorted). A tag outside the list is a bad file.
   */
  classes: z.array(z.string().min(1)).min(1).optional(),
  /** Labels JSON for VOC (default: <root>/image_labels.json when present). */
  labelsJson: z.string().optional(),
  /** What to do with an unreadable image: stop ('fail') or log and skip it ('skip'). */
  onBadFile: z.enum(['fail', 'skip']).default('fail'),
  /** Images with more pixels are refused before decoding (a bad file: skipped with 'skip'). */
  maxImagePixels: z.number().int().positive().default(40_000_000),
  /** With 'skip': the share of a split's files that may be skipped before the run stops (all of them never may). */
  maxSkippedFraction: fraction.default(0.5),
  /** Further tagged sources mixed into classifier training (ExtraSourceSchema); none by default. */
  extra: z.array(ExtraSourceSchema).default([]),
}).strict();

const ModelSchema = z.object({
  backbone: z.string().min(1).default('mobilenet_v2'),
  /** Pretrained weights (.safetensors or .pth); their metadata sets the input normalisation and padding. */
  weights: z.string().optional(),
  outputStride: z.union([z.literal(8), z.literal(16), z.literal(32)]).default(8),
  /** Convolution padding: 'same' (TensorFlow) or 'symmetric'; default: what the weights' metadata says. */
  padding: z.enum(['same', 'symmetric']).optional(),
  /**
   * ResNet strides dropped for the output stride become dilations (default, torchvision's) or are only dropped
   * (false: IRN's and AMR's ResNet-50, strides (2, 2, 2, 1)).
   */
  dilate: z.boolean().optional(),
}).strict().superRefine((m, ctx) => {
  const takesDilate = (name: BackboneName) => backboneOptionKeys(name).includes('dilate');
  if (m.dilate !== undefined && isBackboneName(m.backbone) && !takesDilate(m.backbone)) {
    ctx.addIssue({ code: 'custom', path: ['dilate'],
      message: `backbone '${m.backbone}' has no such option (only ${BACKBONE_NAMES.filter(takesDilate).join(', ')})` });
  }
});

/** The method and its settings (`{ "name": "seam", "variant": "code" }`): one of the registry's (src/methods/). */
export type MethodSettings = { name: string } & Record<string, unknown>;
// Checked against the registry as it is at parse time (z.lazy would keep the first union built, without the
// methods registered after it); issues keep their paths under `method`.
const MethodSchema = z.unknown().transform((value, ctx): MethodSettings => {
  const parsed = methodConfigSchema().safeParse(value);
  if (parsed.success) return parsed.data;
  for (const issue of parsed.error.issues) ctx.issues.push({ ...issue, input: value } as (typeof ctx.issues)[number]);
  return z.NEVER;
});

const JitterSchema = z.object({
  brightness: z.number().min(0).optional(),
  contrast: z.number().min(0).optional(),
  saturation: z.number().min(0).optional(),
}).strict();

/** Random rescale range before the crop, [low, high]; null disables it. */
const scaleRange = z.tuple([z.number().positive(), z.number().positive()])
  .refine(([a, b]) => a <= b, 'must be [low, high] with low <= high');

/**
 * Random long side before the crop, [low, high] in whole pixels, drawn as an integer with both ends included (IRN's
 * `random_resize_long`, PSA/SEAM's `RandomResizeLong`); the alternative to scaleRange.
 */
const longSide = z.tuple([
  z.number().int('must be whole pixels').positive(),
  z.number().int('must be whole pixels').positive(),
]).refine(([a, b]) => a <= b, 'must be [low, high] with low <= high');

/** Cutout squares on the normalised crop (AMR's `imutils.cutout`, 3 squares in its train_cam). */
const CutoutSchema = z.object({
  size: positiveInt,
  holes: positiveInt.default(3),
}).strict();

/** The defaults that differ between the networks trained by the shared trainer (pipeline/fit.ts). */
interface FitDefaults {
  epochs: number;
  batchSize: number;
  cropSize: number;
  scaleRange: [number, number] | null;
  jitter: z.input<typeof JitterSchema> | null;
  lr: number;
  weightDecay: number;
}

/**
 * The settings of a network trained by the shared trainer: the classifier (`train`), AffinityNet
 * (`refine.affinity`) and the segmenter (`seg`). One schema, so the three cannot drift apart; each section
 * passes its own defaults and extends it with what only it has.
 */
function fitSchema(d: FitDefaults) {
  return z.object({
    epochs: positiveInt.default(d.epochs),
    batchSize: positiveInt.default(d.batchSize),
    cropSize: positiveInt.default(d.cropSize),
    scaleRange: scaleRange.nullable().default(d.scaleRange),
    // Absent or null: none. Absent ones stay out of the resolved section, so that runs from before keep their fingerprints.
    longSide: longSide.nullish(),
    cutout: CutoutSchema.nullish(),
    /** Horizontal flips and colour jitter of the crops. */
    flip: z.boolean().default(true),
    jitter: JitterSchema.nullable().default(d.jitter),
    /** Backbone learning rate; new layers get lr * headLrMult. */
    lr: z.number().positive().default(d.lr),
    headLrMult: z.number().positive().default(10),
    /** 0.9 by default; 0 reproduces the official PSA/SEAM/IRN code (its momentum quirk). */
    momentum: z.number().min(0).max(1).default(0.9),
    nesterov: z.boolean().default(false),
    weightDecay: z.number().min(0).default(d.weightDecay),
    polyPower: z.number().min(0).default(0.9),
    /** The optimizer: 'sgd' (with momentum and nesterov above) or 'adamw' (weightDecay applied to the weights directly). */
    optimizer: z.object({
      type: z.enum(['sgd', 'adamw']).default('sgd'),
      betas: z.tuple([fraction, fraction]).default([0.9, 0.999]),
      eps: z.number().positive().default(1e-8),
    }).strict().prefault({}),
    /**
     * The learning-rate schedule: 'poly' (polyPower), 'step' (times gamma at the start of each of `epochs`, 0-based)
     * or 'cosine' (down to minFactor x lr); each after `warmupSteps` steps of linear warmup from warmupFactor x lr.
     */
    schedule: z.object({
      type: z.enum(['poly', 'step', 'cosine']).default('poly'),
      epochs: z.array(z.number().int().min(0)).default([]),
      gamma: z.number().positive().default(0.1),
      minFactor: fraction.default(0),
      warmupSteps: z.number().int().min(0).default(0),
      warmupFactor: fraction.default(0.1),
    }).strict().prefault({}),
    /** Seed of the data order, augmentation and the new layers' initialisation. */
    seed: z.number().int().min(0).default(0),
    /** Stop after this many steps (smoke tests); the schedule still spans all epochs. */
    maxSteps: positiveInt.optional(),
  });
}

/** The settings every fit section has (pipeline/fit.ts trains from them). */
export type FitSettings = z.output<ReturnType<typeof fitSchema>>;

const TrainSchema = fitSchema({
  epochs: 8, batchSize: 16, cropSize: 224, scaleRange: [0.7, 1.3], jitter: null, lr: 0.01, weightDecay: 1e-4,
}).strict();

/** How a run uses the machine: none of it changes what a stage computes, so none of it is in a stage's fingerprint. */
const RuntimeSchema = z.object({
  device: z.string().regex(/^(cpu|cuda(:\d+)?)$/, "must be 'cpu', 'cuda' or 'cuda:N'").default('cpu'),
  /** Engine threads (default: all cores, or $WEAKSEG_NUM_THREADS). */
  threads: positiveInt.optional(),
  /** Run convolutions in channels-last memory order. */
  channelsLast: z.boolean().default(false),
  /** Batches prepared ahead of the engine while training. */
  prefetch: z.number().int().min(0).default(3),
  /** Training steps between log lines. */
  logEvery: positiveInt.default(10),
  /** A rolling mid-epoch checkpoint every this many steps (0: epoch checkpoints only), for resuming killed runs. */
  checkpointEverySteps: z.number().int().min(0).default(20),
  /** Checkpoints kept (newest); 0 keeps every epoch's. */
  keepCheckpoints: z.number().int().min(0).default(0),
  /**
   * libtorch's deterministic algorithms in every training stage (classifier, affinity net, segmenter): an op
   * without a deterministic kernel stops the run instead of varying. Default: on for the CPU, where it changes
   * neither the bits nor the time (bench:determinism), off on CUDA, where kernels SEAM needs (bilinear
   * upsampling's backward) have no deterministic version. The seed, thread count and mode are recorded with the
   * weights; the same command on the same machine writes the same weights (README, "Reproducibility").
   */
  deterministic: z.boolean().optional(),
}).strict();

/** Where the fields the runtime section gathered used to be, for the error an old config gets. */
const MOVED_FIELDS: Record<string, string> = {
  device: 'runtime.device',
  threads: 'runtime.threads',
  'model.channelsLast': 'runtime.channelsLast',
  'train.prefetch': 'runtime.prefetch',
  'train.logEvery': 'runtime.logEvery',
  'train.checkpointEverySteps': 'runtime.checkpointEverySteps',
  'train.keepCheckpoints': 'runtime.keepCheckpoints',
  'train.deterministic': 'runtime.deterministic',
};

const CamsSchema = z.object({
  /** Splits to make CAMs for. */
  splits: z.array(z.string().min(1)).min(1).default(['train', 'val']),
  scales: z.array(z.number().positive()).min(1).default([0.5, 1, 1.5, 2]),
  flip: z.boolean().default(true),
  /** Per-class normalisation of the fused maps: 'auto' = the method's own (SEAM: min-max, as infer_SEAM.py; else max). */
  normalization: z.enum(['auto', 'max', 'minmax']).default('auto'),
  /** Weights to use: default the run's model.safetensors (or its newest checkpoint). */
  checkpoint: z.string().optional(),
  /**
   * Working size: an image whose longer side exceeds this is downscaled to it for inference and its CAMs are
   * upscaled back (memory grows with the pixels times the largest scale squared). null: always full size.
   */
  workingSize: z.number().int().positive().nullable().default(1024),
  /**
   * AdvCAM (anti-adversarial climbing, src/cams/advcam.ts) for any method: {} for the defaults of AMR's released
   * inference. Slow: a forward and backward pass per iteration, class and scale. null: plain CAMs.
   */
  advcam: z.object({
    iterations: z.number().int().positive().default(ADVCAM_DEFAULTS.iterations),
    stepSize: z.number().positive().default(ADVCAM_DEFAULTS.stepSize),
    heldThreshold: fraction.default(ADVCAM_DEFAULTS.heldThreshold),
    heldWeight: z.number().min(0).default(ADVCAM_DEFAULTS.heldWeight),
    halfScale: z.number().positive().nullable().default(ADVCAM_DEFAULTS.halfScale),
    multiplierQuirk: z.boolean().default(ADVCAM_DEFAULTS.multiplierQuirk),
  }).strict().nullable().default(null),
}).strict();

/** Thresholds swept from `from` to `to` (section 1.3: 0.05 to 0.60); a CRF per threshold calls for a coarser step. */
const thresholdRange = (step: number) => z.object({
  from: fraction.default(0.05),
  to: fraction.default(0.6),
  step: z.number().positive().max(1).default(step),
}).strict().refine((r) => r.from <= r.to, 'from must be <= to');

const EvalSchema = z.object({
  /** The split reported (its ground truth is used only for scoring). */
  split: z.string().min(1).default('train'),
  /** Leak-free mode: choose t on this split (e.g. 'val') and report on `split`. null: no fit split. */
  fitSplit: z.string().min(1).nullable().default('val'),
  /** Fixed mode: report at this t (overrides fitSplit). */
  threshold: fraction.nullable().default(null),
  thresholds: thresholdRange(0.01).prefault({}),
  /** Write seed PNGs of `split` at the chosen threshold. */
  writeSeeds: z.boolean().default(true),
}).strict();

/** Refinement of CAMs into pseudo-masks (methods-reference.md sections 2.5, 2.6); defaults are PSA/SEAM's. */
const RefineSchema = z.object({
  /** Dense CRF settings: 'psa' (PSA/SEAM) or 'deeplab' (deeplab-pytorch); iterations override the preset's. */
  crf: z.object({
    preset: z.enum(['psa', 'deeplab']).default('psa'),
    iterations: z.number().int().min(0).optional(),
    /**
     * The image size (longer side) the preset's spatial widths are for: they are scaled by each image's longer
     * side / referenceSize (500: VOC's, where the presets come from). null: the preset's pixel widths as they are.
     */
    referenceSize: z.number().positive().nullable().default(500),
    /** Working size (longer side): larger images are downscaled for the CRF and its result upscaled. null: full size. */
    workingSize: z.number().int().positive().nullable().default(1024),
    /**
     * The CRF'd seeds' background threshold: 'fit' sweeps `thresholds` through the CRF on eval.fitSplit (on
     * eval.split itself, an oracle figure, when fitSplit is null), since the CRF moves the best threshold;
     * 'seed' reuses the eval stage's threshold.
     */
    threshold: z.enum(['fit', 'seed']).default('fit'),
    thresholds: thresholdRange(0.05).prefault({}),
  }).strict().prefault({}),
  /**
   * Background exponents of the affinity labels. 'fixed' uses alphaLow and alphaHigh as given (PSA/SEAM's 4 and
   * 24, set for their CAMs, whose CRF'd maps are best near t = 0.22, i.e. exponent 6). 'fromThreshold' (default)
   * scales both by alpha(t) / 6, t the crf stage's threshold (the eval stage's without one) and
   * alpha(t) = ln t / ln(1 - t) the exponent whose background crosses the foreground at t: the two maps then
   * straddle the best background score, as the SEAM author advises (YudeWang/SEAM#25).
   */
  alphas: z.enum(['fromThreshold', 'fixed']).default('fromThreshold'),
  /** Affinity labels: background score (1 - max fg)^alpha; 'low' gives reliable foreground, 'high' background. */
  alphaLow: z.number().positive().default(4),
  alphaHigh: z.number().positive().default(24),
  /** AffinityNet training (PSA/SEAM: crop 448, batch 8, 8 epochs, lr 0.01, wd 5e-4). */
  affinity: fitSchema({
    epochs: 8, batchSize: 8, cropSize: 448, scaleRange: [0.9, 1.1],
    // train_aff.py: flips and ColorJitter 0.3/0.3/0.3
    jitter: { brightness: 0.3, contrast: 0.3, saturation: 0.3 }, lr: 0.01, weightDecay: 5e-4,
  }).extend({
    /** Pair radius on the feature grid (PSA: 5, 34 pairs per pixel). */
    radius: z.number().int().min(2).default(5),
    /**
     * Affinity-net taps feeding the 1x1 reductions, "name" or "name:width"; 'output' is the backbone's last map
     * (default per backbone: src/refine/affinity-net.ts).
     */
    taps: z.array(z.string().min(1)).optional(),
  }).strict().prefault({}),
  /**
   * Random walk (PSA/SEAM infer_aff.py): A^beta, T^(2^logt), background (1 - max fg)^bgAlpha. Each of the three
   * may be 'fit': every combination of the candidates (`betas`, `logts`, `bgAlphas`) is walked on eval.fitSplit
   * (on eval.split itself, an oracle figure, without one) and the best kept; one walk per beta serves every
   * exponent and every shorter step count.
   */
  randomWalk: z.object({
    beta: z.union([z.number().positive(), z.literal('fit')]).default(8),
    betas: z.array(z.number().positive()).min(1).default([4, 8, 16]),
    logt: z.union([z.number().int().min(0).max(12), z.literal('fit')]).default(6),
    logts: z.array(z.number().int().min(0).max(12)).min(1).default([1, 2, 3, 4, 5, 6]),
    /** Background exponent of the walk's input: a number (PSA/SEAM: 6), or 'fit' (default) among `bgAlphas`. */
    bgAlpha: z.union([z.number().positive(), z.literal('fit')]).default('fit'),
    bgAlphas: z.array(z.number().positive()).min(1).default([0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24]),
    /** Labels whose refined score is below this fraction of the pixel's best are left; 255 marks pixels no label claims. */
    uncertainBelow: fraction.default(0),
    /**
     * Dense CRF on the walked scores before the argmax (PSA's "rw + dCRF"; null, the default, as infer_aff.py).
     * Kernel widths scale with refine.crf.referenceSize. The 'fit' settings are chosen through it.
     */
    crf: z.enum(['psa', 'deeplab']).nullable().default(null),
  }).strict().prefault({}),
  /**
   * Pseudo-masks from the CAMs and saliency maps by the rules of MCIS's gen_gt.py (stage 'saliency',
   * src/refine/saliency.ts). weakseg makes no saliency maps: `dir` is a folder of the user's, one PNG per image id
   * (0..255); the stage runs by default only when it is set.
   */
  saliency: z.object({
    dir: z.string().min(1).nullable().default(null),
    /** Cues (background 1 - s/255, min-max normalised maps) below it are zeroed. */
    fgThreshold: fraction.default(GEN_GT_RULES.fgThreshold),
    /** A pixel with more than one cue above it is ignored. */
    conflict: fraction.default(GEN_GT_RULES.conflict),
    /** Background pixels whose saliency (merged with the maps' peaks) reaches it are ignored (0..255). */
    bgThreshold: z.number().min(0).max(255).default(GEN_GT_RULES.bgThreshold),
    /** A map above it counts as salient in that merge. */
    attThreshold: fraction.default(GEN_GT_RULES.attThreshold),
    /** Below this share of foreground pixels the whole image is ignored. */
    minForeground: fraction.default(GEN_GT_RULES.minForeground),
  }).strict().prefault({}),
  /** IRN (methods-reference.md section 2.7): its labels and network (stage 'irn') and its walk (stage 'irn-walk'). */
  irn: fitSchema({
    epochs: 3, batchSize: 32, cropSize: 512, scaleRange: [0.5, 1.5], jitter: null, lr: 0.1, weightDecay: 1e-4,
  }).extend({
    /** IR labels: confident foreground where a CAM exceeds confFg, confident background where none exceeds confBg (IRN: 0.30/0.05; AMR: 0.60/0.33). */
    confFg: fraction.default(0.3),
    confBg: fraction.default(0.05),
    /** The frozen backbone's weights (default model.weights; e.g. the run's model.safetensors, the classifier's). */
    weights: z.string().optional(),
    /** Pair radius of training on the boundary grid (IRN: 10). The displacement branch trains at lr * headLrMult. */
    radius: z.number().int().min(2).default(10),
    walk: z.object({
      radius: z.number().int().min(2).default(5),
      beta: z.number().positive().default(10),
      /**
       * The walk runs 2^expTimes steps: a number (IRN: 8), or 'fit', which tries every one of `expTimesCandidates`
       * with the background scores on eval.fitSplit (one walk per image passes through every shorter one).
       */
      expTimes: z.union([z.number().int().min(0).max(12), z.literal('fit')]).default(8),
      expTimesCandidates: z.array(z.number().int().min(0).max(12)).min(1).default([1, 2, 3, 4, 5, 6, 7, 8]),
      /**
       * Power of the CAMs before the walk: a number (absent: IRN's 1; AMR's code: 1.5), or 'fit', which tries every
       * one of `camExponents` (absent: 1 and 1.5) with the other settings on eval.fitSplit (one walk per exponent
       * and image). Both stay out of the resolved section when absent, so that runs from before keep their fingerprints.
       */
      camExponent: z.union([z.number().positive().max(10), z.literal('fit')]).optional(),
      camExponents: z.array(z.number().positive().max(10)).min(1).optional(),
      /**
       * Background score of the walked (max-normalised) scores: a number (IRN: 0.25), or 'fit' (default), which
       * tries every one of `bgThresholds` on eval.fitSplit (on eval.split itself, an oracle figure, without one).
       */
      bgThreshold: z.union([fraction, z.literal('fit')]).default('fit'),
      bgThresholds: z.array(fraction).min(1).default([0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6]),
    }).strict().prefault({}),
  }).strict().prefault({}),
}).strict();

/** The segmentation network retrained on pseudo-masks (methods-reference.md section 2.8). */
const SegSchema = fitSchema({
  epochs: 10, batchSize: 8, cropSize: 321, scaleRange: [0.5, 1.5], jitter: null, lr: 0.001, weightDecay: 5e-4,
}).extend({
  /**
   * The stage whose masks of data.trainSplit the segmenter trains on (a stage that yields pseudo-masks), or
   * 'groundTruth': the supervised ceiling, the same segmenter on the ground-truth masks of the images that have them.
   */
  pseudoMasks: z.union([z.literal(GROUND_TRUTH), stageName((s) => Boolean(s.pseudoMasks))]).default('random-walk'),
  /**
   * The training images: 'all' of data.trainSplit, or 'withGroundTruth', only those with a ground-truth mask (the
   * ceiling's images, so a weak segmenter and the ceiling differ in their labels alone). 'groundTruth' implies it.
   */
  trainImages: z.enum(['all', 'withGroundTruth']).default('all'),
  // 'aspp' has no BatchNorm: deeplab-pytorch trains it at lr 2.5e-4; at the voc-mini presets' 0.001 it diverged.
  head: z.enum(['largefov', 'aspp']).default('largefov'),
  /** Backbone and weights: default the classifier's (model.backbone, model.weights). */
  backbone: z.string().min(1).optional(),
  weights: z.string().optional(),
  /**
   * Where the backbone starts: 'weights' (seg.weights, default model.weights: ImageNet) or 'classifier', the run's
   * trained classifier's backbone (the weights the CAM stage reads: cams.checkpoint, else the run's model); it
   * needs seg.backbone to be model.backbone.
   */
  backboneInit: z.enum(['weights', 'classifier']).default('weights'),
  /**
   * PSA's uncertain band [low, high]: pseudo-mask pixels whose highest CAM score (of the image's classes) lies in
   * [low, high) are ignored (255) in the targets (written to seg/targets/<split>); needs the training split's CAMs.
   * The pseudo-mask stages keep labels only, no scores, hence the CAMs. null: none (default).
   */
  ignoreBand: z.tuple([fraction, fraction]).refine(([lo, hi]) => lo <= hi, 'low must not exceed high').nullable().default(null),
  /**
   * The training images' order: 'uniform' (each once per epoch) or 'repeatFactor' (LVIS's class-balanced
   * sampling: an image containing a class present in a share f < repeatThreshold of the images is drawn about
   * sqrt(repeatThreshold / f) times as often; epochs keep their length). Classes from the image-level labels.
   */
  sampling: z.enum(['uniform', 'repeatFactor']).default('uniform'),
  repeatThreshold: z.number().positive().max(1).default(0.1),
  outputStride: z.union([z.literal(8), z.literal(16)]).default(8),
  dropout: fraction.default(0.5),
  /** LargeFOV's classifier start: N(0, 0.01) ('normal', DeepLab-v1's) or the SEAM codebase's Kaiming ('kaiming'). */
  classifierInit: z.enum(['normal', 'kaiming']).default('normal'),
  /**
   * The head's BatchNorm layers (LargeFOV's; the backbone's stay frozen) in training: batch statistics, in a
   * distributed run those of the whole global batch over all ranks ('sync', SyncBatchNorm: the same as one process
   * with the whole batch) or of each rank's own share ('batch'; one process: the same as 'sync'); or 'frozen' at
   * their initial state (running mean 0, variance 1, scale 1, shift 0: the identity), so that training and
   * inference compute the same function however small the batch.
   */
  batchNorm: z.enum(['sync', 'batch', 'frozen']).default('sync'),
  /** Split scored after training (its ground truth is used only for scoring). */
  evalSplit: z.string().min(1).default('val'),
  /** Test-time scales and flip; probabilities are averaged over the passes. */
  scales: z.array(z.number().positive()).min(1).default([0.5, 0.75, 1, 1.25, 1.5]),
  testFlip: z.boolean().default(true),
  /** Working size (longer side) of prediction: larger images are predicted downscaled and the labels upscaled. */
  workingSize: z.number().int().positive().nullable().default(1024),
  /** Dense CRF on the predictions (null: none). */
  crf: z.enum(['psa', 'deeplab']).nullable().default(null),
}).strict();

/** What `weakseg run` does and the report it writes. */
const RunSchema = z.object({
  /**
   * Stages run, in the registry's order (each skipped when its outputs are complete and its inputs unchanged).
   * Default: every stage but those that need something the user provides and was not given ('saliency' without
   * refine.saliency.dir).
   */
  stages: z.array(stageName()).min(1).default(() => stageNames()),
  /** Images in the report's gallery. */
  galleryImages: z.number().int().min(0).default(12),
  /**
   * The run directory of the supervised ceiling (seg.pseudoMasks 'groundTruth'): the report shows every weak
   * figure as a fraction of its segmenter's mIoU. null: none.
   */
  ceiling: z.string().min(1).nullable().default(null),
}).strict();

export const ConfigSchema = z.object({
  /** Everything a run writes goes here (config.json, logs, checkpoints, CAMs, seeds, metrics.json). */
  runDir: z.string().min(1),
  runtime: RuntimeSchema.prefault({}),
  data: DataSchema,
  method: MethodSchema.prefault(() => ({ name: methodNames()[0]! })),
  model: ModelSchema.prefault({}),
  train: TrainSchema.prefault({}),
  cams: CamsSchema.prefault({}),
  eval: EvalSchema.prefault({}),
  refine: RefineSchema.prefault({}),
  seg: SegSchema.prefault({}),
  run: RunSchema.prefault({}),
}).strict();

export type WeaksegConfig = z.output<typeof ConfigSchema>;
export type WeaksegConfigInput = z.input<typeof ConfigSchema>;

export class ConfigError extends Error {
  constructor(message: string, readonly issues: string[] = []) {
    super(message);
    this.name = 'ConfigError';
  }
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s && s.length > 60 ? `${s.slice(0, 57)}...` : String(s);
}

function at(obj: unknown, path: readonly PropertyKey[]): unknown {
  let cur = obj;
  for (const k of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[k];
  }
  return cur;
}

function keysOf(path: readonly PropertyKey[], input: unknown): string[] {
  if (path.length === 1 && path[0] === 'method') {
    const named = at(input, ['method', 'name']);
    const d = methodDefinitions().find((m) => m.name === named);
    return d ? ['name', ...Object.keys(d.settings.shape)] : ['name'];
  }
  let cur: z.ZodType = ConfigSchema;
  for (const k of path) {
    if (typeof k === 'number') {
      // data.extra.0: the array's element schema
      const element = elementOf(cur);
      if (!element) return [];
      cur = element;
      continue;
    }
    const shape = shapeOf(cur);
    if (!shape || !(String(k) in shape)) return [];
    cur = shape[String(k)]!;
  }
  return Object.keys(shapeOf(cur) ?? {});
}

function shapeOf(s: z.ZodType): Record<string, z.ZodType> | null {
  // Unwrap defaults/optionals/pipes/refinements to reach an object's shape.
  let cur: unknown = s;
  for (let i = 0; i < 8 && cur; i++) {
    const def = (cur as { def?: { type?: string; innerType?: unknown; in?: unknown; shape?: Record<string, z.ZodType> } }).def;
    if (!def) return null;
    if (def.type === 'object') return def.shape ?? null;
    cur = def.innerType ?? def.in ?? null;
  }
  return null;
}

function elementOf(s: z.ZodType): z.ZodType | null {
  let cur: unknown = s;
  for (let i = 0; i < 8 && cur; i++) {
    const def = (cur as { def?: { type?: string; innerType?: unknown; element?: z.ZodType } }).def;
    if (!def) return null;
    if (def.type === 'array') return def.element ?? null;
    cur = def.innerType ?? null;
  }
  return null;
}

function closest(name: string, options: string[]): string | null {
  const lower = name.toLowerCase();
  const hit = options.find((o) => o.toLowerCase() === lower);
  if (hit) return hit;
  let best: string | null = null;
  let bestD = 3;
  for (const o of options) {
    const d = editDistance(lower, o.toLowerCase());
    if (d < bestD) { best = o; bestD = d; }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}

/** One line per problem, each starting with the field's dotted path. */
export function formatIssues(error: z.ZodError, input: unknown): string[] {
  const lines: string[] = [];
  for (const issue of error.issues) {
    const path = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      const known = keysOf(issue.path, input);
      for (const key of issue.keys) {
        const full = path ? `${path}.${key}` : key;
        if (MOVED_FIELDS[full]) {
          lines.push(`${full}: moved to ${MOVED_FIELDS[full]}`);
          continue;
        }
        const guess = closest(key, known);
        lines.push(`${full}: unknown setting${guess ? ` (did you mean '${path ? `${path}.` : ''}${guess}'?)` : ''}; ` +
          `known here: ${known.join(', ')}`);
      }
      continue;
    }
    const got = at(input, issue.path);
    if (issue.code === 'invalid_type' && got === undefined) {
      lines.push(`${path}: missing (expected ${issue.expected})`);
      continue;
    }
    const message = issue.message.replace(/^Invalid input: /, '').replace(/, received \w+$/, '');
    lines.push(`${path || '(config)'}: ${message}${issue.code === 'invalid_type' || issue.code === 'too_small' ||
      issue.code === 'too_big' || issue.code === 'invalid_value' || issue.code === 'custom' || issue.code === 'invalid_union' ? `, got ${describeValue(got)}` : ''}`);
  }
  return lines;
}

/**
 * Configs written before the method registry named the method in `model.method` and held SEAM's settings in a
 * top-level `seam` section; the error says how to write the same thing now.
 */
function refuseOldMethodShape(input: unknown, source: string): void {
  if (!isPlainObject(input)) return;
  const model = isPlainObject(input.model) ? input.model : {};
  if (!('method' in model) && !('seam' in input)) return;
  const name = typeof model.method === 'string' ? model.method : isPlainObject(input.method) && typeof input.method.name === 'string'
    ? input.method.name : 'seam' in input ? 'seam' : methodNames()[0]!;
  const settings = name === 'seam' && isPlainObject(input.seam) ? input.seam : {};
  const now = { name, ...(isPlainObject(input.method) ? input.method : {}), ...settings };
  const found = ['method' in model ? '"model.method"' : null, 'seam' in input ? 'the top-level "seam" section' : null]
    .filter(Boolean).join(' and ');
  const message = `${source}: ${found} ${found.includes(' and ') ? 'are' : 'is'} the old config shape; the method and its settings ` +
    `now form one section, "method": ${JSON.stringify(now)} (remove ${found}` +
    `${name !== 'seam' && 'seam' in input ? '; the "seam" settings apply only with "name": "seam"' : ''}). ` +
    `Each method's settings and defaults: \`weakseg methods\`.`;
  throw new ConfigError(message, [message]);
}

/** The sections built by fitSchema. */
const FIT_SECTIONS = [['train'], ['refine', 'affinity'], ['refine', 'irn'], ['seg']] as const;

/**
 * longSide and scaleRange both resize before the crop: with longSide the section's default scale range is dropped,
 * and one the config writes is refused (the issues returned).
 */
function resolveResize(c: WeaksegConfig, input: unknown): string[] {
  const issues: string[] = [];
  for (const path of FIT_SECTIONS) {
    const s = at(c, path) as FitSettings;
    if (!s.longSide) continue;
    if (at(input, [...path, 'scaleRange']) === undefined) {
      s.scaleRange = null;
    } else if (s.scaleRange) {
      const name = path.join('.');
      issues.push(`${name}.longSide and ${name}.scaleRange: both resize before the crop, give one (set the other to null), ` +
        `got ${describeValue(s.longSide)} and ${describeValue(s.scaleRange)}`);
    }
  }
  return issues;
}

/** Validates and fills in defaults; throws ConfigError naming every bad field. */
export function resolveConfig(input: unknown, source = 'config'): WeaksegConfig {
  refuseOldMethodShape(input, source);
  const parsed = ConfigSchema.safeParse(input);
  if (!parsed.success) {
    const issues = formatIssues(parsed.error, input);
    throw new ConfigError(`invalid ${source}:\n  ${issues.join('\n  ')}`, issues);
  }
  const c = parsed.data;
  if (c.data.format === 'folder' && !c.data.labels) {
    throw new ConfigError(`invalid ${source}:\n  data.labels: required when data.format is 'folder'`, ['data.labels: required']);
  }
  const resizeIssues = resolveResize(c, input);
  if (resizeIssues.length) throw new ConfigError(`invalid ${source}:\n  ${resizeIssues.join('\n  ')}`, resizeIssues);
  if (at(input, ['run', 'stages']) === undefined) c.run.stages = c.run.stages.filter((n) => findStage(n)!.runsByDefault?.(c) ?? true);
  return c;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Path segments that would reach Object.prototype (or a constructor) instead of a setting. */
const FORBIDDEN_SEGMENTS = new Set(['__proto__', 'constructor', 'prototype']);

/**
 * Deep merge of plain objects (arrays and scalars from `over` replace). A section tagged by `name` (the method)
 * is replaced, not merged, when `over` names another: the settings of one method mean nothing to another.
 */
export function mergeConfig(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over === undefined ? base : over;
  if (typeof over.name === 'string' && typeof base.name === 'string' && over.name !== base.name) return over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    // JSON.parse keeps "__proto__" as an own key; assigning it would replace this object's prototype.
    if (FORBIDDEN_SEGMENTS.has(k)) throw new ConfigError(`'${k}' is not a setting name`);
    out[k] = mergeConfig(base[k], v);
  }
  return out;
}

/** Reads a JSON config file; a syntax error names the file and position. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (!isPlainObject(parsed)) throw new ConfigError(`config file ${path} must hold a JSON object`);
  return parsed;
}

/** The run directory's saved (resolved) config, if the run exists. */
export function readRunConfig(runDir: string): Record<string, unknown> | null {
  const p = resolve(runDir, 'config.json');
  return existsSync(p) ? readConfigFile(p) : null;
}

/** Sets a dotted key ("train.lr") in a plain object, creating the intermediate objects. */
export function setPath(obj: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  const bad = keys.find((k) => FORBIDDEN_SEGMENTS.has(k) || k === '');
  if (bad !== undefined) throw new ConfigError(`'${dotted}': ${bad === '' ? 'empty path segment' : `'${bad}' is not a setting name`}`);
  let cur = obj;
  for (const k of keys.slice(0, -1)) {
    if (!isPlainObject(cur[k])) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]!] = value;
}

/** The thresholds of a range, rounded to the step's decimals (0.05, 0.06, ... 0.60). */
export function thresholdList(r: { from: number; to: number; step: number }): number[] {
  const decimals = Math.max(0, Math.ceil(-Math.log10(r.step)) + 1);
  const f = 10 ** decimals;
  const out: number[] = [];
  for (let i = 0; ; i++) {
    const t = Math.round((r.from + i * r.step) * f) / f;
    if (t > r.to + 1e-9) break;
    out.push(t);
  }
  return out;
}
