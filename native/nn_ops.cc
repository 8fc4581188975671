// Neural-network ops: convolution, normalization, pooling, resampling, padding, dropout, activations, losses.
#include "engine.h"

namespace weakseg {

namespace {
int64_t reduction(const Args& a, size_t i) {
  auto r = a.s(i);
  if (r == "none") return at::Reduction::None;
  if (r == "mean") return at::Reduction::Mean;
  if (r == "sum") return at::Reduction::Sum;
  a.fail(i, "'none', 'mean' or 'sum'");
}
}  // namespace

void register_nn_ops(Napi::Object e) {
  // conv2d(x, w, b | null, stride, padding, dilation, groups)
  WS_OP(e, conv2d, return wrap(env, at::conv2d(a.t(0), a.t(1), a.ot(2), a.ints(3), a.ints(4), a.ints(5), a.i64(6))););
  // convTranspose2d(x, w, b | null, stride, padding, outputPadding, groups, dilation)
  WS_OP(e, convTranspose2d, return wrap(env, at::conv_transpose2d(a.t(0), a.t(1), a.ot(2), a.ints(3), a.ints(4),
                                                                  a.ints(5), a.i64(6), a.ints(7))););
  // batchNorm(x, weight, bias, runningMean, runningVar, training, momentum, eps)
  WS_OP(e, batchNorm, return wrap(env, at::batch_norm(a.t(0), a.ot(1), a.ot(2), a.ot(3), a.ot(4), a.b(5), a.f64(6),
                                                      a.f64(7), /*cudnn_enabled=*/true)););
  WS_OP(e, groupNorm, return wrap(env, at::group_norm(a.t(0), a.i64(1), a.ot(2), a.ot(3), a.f64(4))););
  WS_OP(e, layerNorm, return wrap(env, at::layer_norm(a.t(0), a.ints(1), a.ot(2), a.ot(3), a.f64(4))););
  WS_OP(e, linear, return wrap(env, at::linear(a.t(0), a.t(1), a.ot(2))););

  // Pooling: maxPool2d(x, kernel, stride, padding, dilation, ceilMode)
  WS_OP(e, maxPool2d, return wrap(env, at::max_pool2d(a.t(0), a.ints(1), a.ints(2), a.ints(3), a.ints(4), a.b(5))););
  WS_OP(e, maxPool2dWithIndices, {
    auto r = at::max_pool2d_with_indices(a.t(0), a.ints(1), a.ints(2), a.ints(3), a.ints(4), a.b(5));
    return wrap_list(env, {std::get<0>(r), std::get<1>(r)});
  });
  // avgPool2d(x, kernel, stride, padding, ceilMode, countIncludePad, divisorOverride | null)
  WS_OP(e, avgPool2d, return wrap(env, at::avg_pool2d(a.t(0), a.ints(1), a.ints(2), a.ints(3), a.b(4), a.b(5),
                                                      a.oi64(6))););
  WS_OP(e, adaptiveAvgPool2d, return wrap(env, at::adaptive_avg_pool2d(a.t(0), a.ints(1))););
  WS_OP(e, adaptiveMaxPool2d, {
    auto r = at::adaptive_max_pool2d(a.t(0), a.ints(1));
    return wrap_list(env, {std::get<0>(r), std::get<1>(r)});
  });

  // Resampling to an explicit output size; scaleH / scaleW (or null) are what torch passes when the
  // caller gave a scale factor, which changes the source-coordinate mapping when alignCorners is false.
  WS_OP(e, upsampleNearest2d,
        return wrap(env, at::upsample_nearest2d(a.t(0), a.ints(1), a.of64(2), a.of64(3))););
  WS_OP(e, upsampleBilinear2d,
        return wrap(env, at::upsample_bilinear2d(a.t(0), a.ints(1), a.b(2), a.of64(3), a.of64(4))););
  WS_OP(e, upsampleBicubic2d,
        return wrap(env, at::upsample_bicubic2d(a.t(0), a.ints(1), a.b(2), a.of64(3), a.of64(4))););

  // Padding: pads are [left, right, top, bottom, ...] as in torch.nn.functional.pad.
  WS_OP(e, constantPad, return wrap(env, at::constant_pad_nd(a.t(0), a.ints(1), a.scalar(2))););
  WS_OP(e, reflectionPad2d, return wrap(env, at::reflection_pad2d(a.t(0), a.ints(1))););
  WS_OP(e, replicationPad2d, return wrap(env, at::replication_pad2d(a.t(0), a.ints(1))););

  WS_OP(e, dropout, return wrap(env, at::dropout(a.t(0), a.f64(1), a.b(2))););
  WS_OP(e, featureDropout, return wrap(env, at::feature_dropout(a.t(0), a.f64(1), a.b(2))););  // dropout2d
  WS_OP(e, im2col, return wrap(env, at::im2col(a.t(0), a.ints(1), a.ints(2), a.ints(3), a.ints(4))););  // F.unfold
  WS_OP(e, pixelShuffle, return wrap(env, at::pixel_shuffle(a.t(0), a.i64(1))););

  // Activations with parameters
  WS_OP(e, softmax, return wrap(env, at::softmax(a.t(0), a.i64(1), a.odtype(2))););
  WS_OP(e, logSoftmax, return wrap(env, at::log_softmax(a.t(0), a.i64(1), a.odtype(2))););
  WS_OP(e, hardtanh, return wrap(env, at::hardtanh(a.t(0), a.scalar(1), a.scalar(2))););
  WS_OP(e, hardtanh_, {
    at::hardtanh_(a.t(0), a.scalar(1), a.scalar(2));
    return env.Undefined();
  });
  WS_OP(e, elu, return wrap(env, at::elu(a.t(0), a.scalar(1))););
  WS_OP(e, leakyRelu, return wrap(env, at::leaky_relu(a.t(0), a.scalar(1))););
  WS_OP(e, leakyRelu_, {
    at::leaky_relu_(a.t(0), a.scalar(1));
    return env.Undefined();
  });
  WS_OP(e, gelu, return wrap(env, at::gelu(a.t(0), a.s(1))););
  WS_OP(e, softplus, return wrap(env, at::softplus(a.t(0), a.scalar(1), a.scalar(2))););
  WS_OP(e, hardswish, return wrap(env, at::hardswish(a.t(0))););
  WS_OP(e, hardsigmoid, return wrap(env, at::hardsigmoid(a.t(0))););

  // Losses (reduction: 'none' | 'mean' | 'sum')
  // crossEntropy(logits, target, weight | null, reduction, ignoreIndex, labelSmoothing)
  WS_OP(e, crossEntropy, return wrap(env, at::cross_entropy_loss(a.t(0), a.t(1), a.ot(2), reduction(a, 3), a.i64(4),
                                                                 a.f64(5))););
  WS_OP(e, nllLoss, return wrap(env, at::nll_loss_nd(a.t(0), a.t(1), a.ot(2), reduction(a, 3), a.i64(4))););
  // bceWithLogits(logits, target, weight | null, posWeight | null, reduction)
  WS_OP(e, bceWithLogits, return wrap(env, at::binary_cross_entropy_with_logits(a.t(0), a.t(1), a.ot(2), a.ot(3),
                                                                                reduction(a, 4))););
  WS_OP(e, bce, return wrap(env, at::binary_cross_entropy(a.t(0), a.t(1), a.ot(2), reduction(a, 3))););
  WS_OP(e, l1Loss, return wrap(env, at::l1_loss(a.t(0), a.t(1), reduction(a, 2))););
  WS_OP(e, mseLoss, return wrap(env, at::mse_loss(a.t(0), a.t(1), reduction(a, 2))););
  WS_OP(e, smoothL1Loss, return wrap(env, at::smooth_l1_loss(a.t(0), a.t(1), reduction(a, 2), a.f64(3))););
  WS_OP(e, klDiv, return wrap(env, at::kl_div(a.t(0), a.t(1), reduction(a, 2), a.b(3))););
  WS_OP(e, cosineSimilarity, return wrap(env, at::cosine_similarity(a.t(0), a.t(1), a.i64(2), a.f64(3))););
}

}  // namespace weakseg
