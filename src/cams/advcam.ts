// AdvCAM: anti-adversarial climbing (Lee et al., CVPR 2021), as AMR's released inference runs it (jieqin-ai/AMR
// step/make_cam.py; methods-reference.md section 6(d)), for any CAM source (a method's `cams`, or one branch).
//
// For each scale s and each class c of the image, starting from x_0 = the resized image (with its flip as a batch
// of 2), T times:
//   M_t   = map_c(x_t), flip-combined (M[0] + flip(M[1]))            ReLU(CAM_c), or the source's own map (Grad-CAM)
//   A_c  += m M_t                                                    maps accumulate over the iterations
//   z     = GAP(ReLU(CAM(x_t)))                                      N x C
//   R     = [M_t / max M_t > tau]                                    the already-high region (no gradient)
//   L     = 2 sum_n z_nc - sum_n,k z_nk - lambda sum |M_t - M_0| R    (the target up, the other classes down, R held)
//   x_t+1 = clamp(x_t + xi grad_x L / max|grad_x L|, min x_t, max x_t)
// then A_c is upsampled to the image's size and summed over the scales. Defaults (the code): T = 27, xi = 0.08,
// tau = 0.5, lambda = 7. The half scale (0.5) runs first with T/2 iterations and m = 2. The code never resets m, so
// every later scale also gets m = 2 (`multiplierQuirk`, on by default as released): after max normalisation the
// half scale then counts half as much as AdvCAM intends (m = 1 elsewhere, with the quirk off).
//
// Cost: one forward and one backward pass (a batch of 2 with the flip) per iteration, per class, per scale, per
// branch: with the defaults and the code's 7 scales, 13 + 6 x 27 = 175 passes per class where plain CAM inference
// makes 7 forwards for all classes. AMR runs it for both branches.
import { F, type Tensor, cat, enableGrad, noGrad, tidy, zeros } from '../engine/index.js';
import type { CamSource } from '../methods/method.js';

export interface AdvCamOptions {
  /** Climbing steps per class and scale (code: 27). */
  iterations: number;
  /** Step size xi of the max-abs normalised gradient (code: 0.08). */
  stepSize: number;
  /** Pixels above this share of the map's max are held (code: 0.5). */
  heldThreshold: number;
  /** Weight lambda of the held-region term (code: 7). */
  heldWeight: number;
  /** The scale climbed first with half the iterations and weight 2 (code: 0.5); null: none. */
  halfScale: number | null;
  /** The code's never-reset weight: every scale after the half scale is weighted 2 as well (code: true). */
  multiplierQuirk: boolean;
}

export const ADVCAM_DEFAULTS: AdvCamOptions = {
  iterations: 27, stepSize: 0.08, heldThreshold: 0.5, heldWeight: 7, halfScale: 0.5, multiplierQuirk: true,
};

/** One iteration's figures, for tests and logs: the target class's GAP score and the held region's L1 change. */
export interface ClimbStep {
  score: number;
  heldChange: number;
  heldPixels: number;
}

/**
 * Climbs one class on one batch (the image, and its flip when `flip`): returns the maps accumulated over the
 * iterations (h x w at the CAM grid, weighted by `multiplier`). `onStep` sees every iteration's figures.
 */
export function climbClass(
  batch: Tensor, classIndex: number, source: CamSource,
  o: { iterations: number; stepSize: number; heldThreshold: number; heldWeight: number; multiplier: number; flip: boolean },
  onStep?: (step: ClimbStep) => void,
): Tensor {
  const combine = (m: Tensor) => (o.flip ? m.select(0, 0).add(m.select(0, 1).flip(1)) : m.select(0, 0));
  let x = batch;
  let acc: Tensor | null = null;
  let init: Tensor | null = null;
  try {
    for (let it = 0; it < o.iterations; it++) {
      const start: Tensor | null = init;
      const { next, r } = enableGrad(() => tidy(() => {
        const xg = x.detach().requiresGrad_(true);
        const out = source.maps ? source.maps(xg) : (() => { const cams = source.cams(xg); return { cams, maps: cams.relu() }; })();
        const region = combine(out.maps.select(1, classIndex));
        const r = region.detach();
        const z = F.globalAvgPool(out.cams.relu());
        const held = r.div(r.max().clampMin(1e-12)).gt(o.heldThreshold).float();
        const heldTerm = region.sub(start ?? r).abs().mul(held).sum();
        const objective = z.select(1, classIndex).sum().mul(2).sub(z.sum());
        objective.sub(heldTerm.mul(o.heldWeight)).backward();
        if (onStep) onStep({ score: z.select(1, classIndex).sum().item(), heldChange: heldTerm.item(), heldPixels: held.sum().item() });
        const g = xg.grad!;
        const step = g.div(g.abs().max().add(1e-12)).mul(o.stepSize);
        return { next: noGrad(() => x.add(step).clamp(x.min(), x.max())), r: r.mul(o.multiplier) };
      }));
      if (it === 0) init = noGrad(() => r.div(o.multiplier));
      if (acc) {
        acc.add_(r);
        r.dispose();
      } else {
        acc = r;
      }
      if (x !== batch) x.dispose();
      x = next;
    }
  } finally {
    if (x !== batch) x.dispose();
    (init as Tensor | null)?.dispose();
  }
  return acc!;
}

/**
 * AdvCAM's map of one image (1 x 3 x H x W) for its classes: numClasses x H x W (zero planes for other classes),
 * the sum over the scales of each class's accumulated climbing maps, upsampled bilinearly. Gradients flow to the
 * network's parameters too: run it with them frozen (see withoutParameterGrads).
 */
export function advCamMap(
  image: Tensor, labels: readonly number[], source: CamSource,
  o: AdvCamOptions & { scales: readonly number[]; flip: boolean; numClasses: number; channelsLast?: boolean },
): Tensor {
  if (image.ndim !== 4 || image.size(0) !== 1) throw new RangeError(`AdvCAM: expected a 1 x 3 x H x W image, got [${image.shape}]`);
  if (!Number.isInteger(o.iterations) || !(o.iterations >= 1) || !(o.stepSize > 0)) throw new RangeError(`AdvCAM: iterations must be >= 1 and stepSize > 0, got ${o.iterations}, ${o.stepSize}`);
  const [H, W] = [image.size(2), image.size(3)];
  const order = o.halfScale !== null && o.scales.includes(o.halfScale)
    ? [o.halfScale, ...o.scales.filter((s) => s !== o.halfScale)] : [...o.scales];
  let multiplier = 1;
  let sum: Tensor | null = null;
  for (const s of order) {
    let iterations = o.iterations;
    if (s === o.halfScale) {
      // make_cam.py: adv_iter > 10 -> half the iterations at x2; < 6 -> all at x1; else 5 at x1
      if (o.iterations > 10) [iterations, multiplier] = [Math.floor(o.iterations / 2), 2];
      else if (o.iterations < 6) multiplier = 1;
      else [iterations, multiplier] = [5, 1];
    } else if (!o.multiplierQuirk) {
      multiplier = 1;
    }
    const batch = noGrad(() => tidy(() => {
      const h = Math.max(1, Math.round(H * s));
      const w = Math.max(1, Math.round(W * s));
      const xs = h === H && w === W ? image.clone() : F.interpolate(image, { size: [h, w], mode: 'bicubic', alignCorners: false });
      const b = o.flip ? cat([xs, xs.flip(3)]) : xs;
      return o.channelsLast ? b.channelsLast() : b;
    }));
    try {
      for (const c of labels) {
        const acc = climbClass(batch, c, source, { ...o, iterations, multiplier, flip: o.flip });
        sum ??= zeros([o.numClasses, H, W], { device: image.device });
        const into = sum;
        noGrad(() => tidy(() => {
          into.select(0, c).add_(F.interpolate(acc.view(1, 1, acc.size(0), acc.size(1)), { size: [H, W], mode: 'bilinear', alignCorners: false }).view(H, W));
        }));
        acc.dispose();
      }
    } finally {
      batch.dispose();
    }
  }
  return sum ?? zeros([o.numClasses, H, W], { device: image.device });
}

/** Runs fn with every parameter of `params` that requires grad switched off (AdvCAM needs input gradients only). */
export async function withoutParameterGrads<T>(params: Tensor[], fn: () => Promise<T>): Promise<T> {
  const on = params.filter((p) => p.requiresGrad);
  for (const p of on) p.requiresGrad_(false);
  try {
    return await fn();
  } finally {
    for (const p of on) p.requiresGrad_(true);
  }
}
