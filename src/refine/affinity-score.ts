// How far pair affinities agree with the ground truth's pairs on the feature grid: PSA's three pair groups (both
// ends background, both the same foreground class, different labels), each with its mean affinity and the share
// of its pairs on the right side of 0.5. It measures AffinityNet's field (does it leak across boundaries?) and the
// affinity labels it was trained on (how many of their pairs are right?), so that a weak random walk can be traced
// to one or the other.
import { type Tensor, tensor, tidy } from '../engine/index.js';
import type { LabelMap } from '../data/index.js';
import { type PairLabels, affinityPairLabels, labelsOnFeatureGrid } from './affinity-labels.js';

export interface PairGroupScore {
  /** Ground-truth pairs of the group that were scored. */
  pairs: number;
  /** Mean affinity over them (null without pairs). */
  meanAffinity: number | null;
  /** Share of them on the right side of 0.5: above for the positive groups, at or below for `neg`. */
  agree: number | null;
}

export interface AffinityAgreementResult {
  bgPos: PairGroupScore;
  fgPos: PairGroupScore;
  neg: PairGroupScore;
  /** Mean of the three groups' `agree` (PSA balances its loss the same way), over the groups with pairs. */
  balanced: number | null;
}

const GROUPS = ['bgPos', 'fgPos', 'neg'] as const;

export class AffinityAgreement {
  /** Per group: pairs, sum of affinities, agreeing pairs (one array, so that several processes' sums add up). */
  readonly sums = new Float64Array(3 * GROUPS.length);

  /**
   * Adds one image: `affinity` and the ground truth's pair groups share the shape [1, P, rows, cols] (P offsets);
   * `considered` (same shape, 0/1) restricts the pairs scored, e.g. to those an affinity label map is sure of.
   */
  add(affinity: Tensor, truth: PairLabels, considered?: Tensor): void {
    if (affinity.shape.join() !== truth.neg.shape.join()) {
      throw new RangeError(`affinity agreement: affinities of shape [${affinity.shape}] against pair labels of shape [${truth.neg.shape}]`);
    }
    tidy(() => {
      const above = affinity.gt(0.5);
      GROUPS.forEach((g, i) => {
        const mask = considered ? truth[g].mul(considered) : truth[g];
        const right = (g === 'neg' ? above.logicalNot() : above).float();
        this.sums[3 * i] += mask.sum().item();
        this.sums[3 * i + 1] += affinity.mul(mask).sum().item();
        this.sums[3 * i + 2] += right.mul(mask).sum().item();
      });
    });
  }

  /** Adds one image's field, given as AffinityNet's flat weights (offset-major, as in AffinityField). */
  addWeights(weights: Float32Array, truth: PairLabels, considered?: Tensor): void {
    const n = truth.neg.shape.reduce((a, b) => a * b, 1);
    if (weights.length !== n) throw new RangeError(`affinity agreement: ${weights.length} affinities for pair labels of shape [${truth.neg.shape}]`);
    tidy(() => this.add(tensor(weights, { shape: truth.neg.shape }), truth, considered));
  }

  result(): AffinityAgreementResult {
    const [bgPos, fgPos, neg] = GROUPS.map((_, i) => {
      const pairs = this.sums[3 * i]!;
      return { pairs, meanAffinity: pairs ? this.sums[3 * i + 1]! / pairs : null, agree: pairs ? this.sums[3 * i + 2]! / pairs : null };
    }) as [PairGroupScore, PairGroupScore, PairGroupScore];
    const agrees = [bgPos, fgPos, neg].map((g) => g.agree).filter((a): a is number => a !== null);
    return { bgPos, fgPos, neg, balanced: agrees.length ? agrees.reduce((s, a) => s + a, 0) / agrees.length : null };
  }
}

/**
 * The pair groups of a label map (mask ids, 255 uncertain) on an h x w feature grid at `stride`: each cell takes
 * its pixels' majority label as in training (labelsOnFeatureGrid), cells past the image are uncertain.
 */
export function gridPairLabels(
  mask: LabelMap, grid: { height: number; width: number }, o: { stride: number; radius: number; numClasses: number },
): PairLabels {
  const labels = labelsOnFeatureGrid(tensor(mask.data, { shape: [1, mask.height, mask.width] }), undefined,
    { stride: o.stride, height: grid.height, width: grid.width, numClasses: o.numClasses });
  return affinityPairLabels(labels, o.radius);
}
