// General tensor ops: creation, arithmetic, comparison, reductions, shape, indexing, sorting, linear algebra.
// Each entry is one ATen call; argument order follows ATen's, and TypeScript supplies every default.
#include "engine.h"

namespace weakseg {

// Binary ops accept a Tensor or a number as the second operand, like torch.
#define WS_BINARY(e, name, call)                                                        \
  WS_OP(e, name, {                                                                      \
    auto& x = a.t(0);                                                                   \
    return a.isTensor(1) ? wrap(env, at::call(x, a.t(1))) : wrap(env, at::call(x, a.scalar(1))); \
  });                                                                                   \
  WS_OP(e, name##_, {                                                                   \
    auto& x = a.t(0);                                                                   \
    if (a.isTensor(1)) x.call##_(a.t(1)); else x.call##_(a.scalar(1));                  \
    return env.Undefined();                                                             \
  })

#define WS_UNARY(e, name, call)                        \
  WS_OP(e, name, return wrap(env, at::call(a.t(0)));); \
  WS_OP(e, name##_, {                                  \
    a.t(0).call##_();                                  \
    return env.Undefined();                            \
  })

#define WS_UNARY_NOINPLACE(e, name, call) WS_OP(e, name, return wrap(env, at::call(a.t(0)));)

void register_tensor_ops(Napi::Object e) {
  // ---- creation (dtype, device come last; TypeScript always passes them) ----
  WS_OP(e, empty, return wrap(env, at::empty(a.ints(0), a.options(1, 2))););
  WS_OP(e, zeros, return wrap(env, at::zeros(a.ints(0), a.options(1, 2))););
  WS_OP(e, ones, return wrap(env, at::ones(a.ints(0), a.options(1, 2))););
  WS_OP(e, full, return wrap(env, at::full(a.ints(0), a.scalar(1), a.options(2, 3))););
  WS_OP(e, arange, return wrap(env, at::arange(a.scalar(0), a.scalar(1), a.scalar(2), a.options(3, 4))););
  WS_OP(e, linspace, return wrap(env, at::linspace(a.scalar(0), a.scalar(1), a.i64(2), a.options(3, 4))););
  WS_OP(e, rand, return wrap(env, at::rand(a.ints(0), a.options(1, 2))););
  WS_OP(e, randn, return wrap(env, at::randn(a.ints(0), a.options(1, 2))););
  WS_OP(e, randint, return wrap(env, at::randint(a.i64(0), a.i64(1), a.ints(2), a.options(3, 4))););
  WS_OP(e, randperm, return wrap(env, at::randperm(a.i64(0), a.options(1, 2))););
  WS_OP(e, eye, return wrap(env, at::eye(a.i64(0), a.i64(1), a.options(2, 3))););
  WS_OP(e, scalarTensor, return wrap(env, at::scalar_tensor(a.scalar(0), a.options(1, 2))););
  // *_like: dtype optional (null keeps the input's)
  WS_OP(e, zerosLike, {
    auto& x = a.t(0);
    return wrap(env, at::zeros_like(x, x.options().dtype(a.odtype(1).value_or(x.scalar_type()))));
  });
  WS_OP(e, onesLike, {
    auto& x = a.t(0);
    return wrap(env, at::ones_like(x, x.options().dtype(a.odtype(1).value_or(x.scalar_type()))));
  });
  WS_OP(e, fullLike, {
    auto& x = a.t(0);
    return wrap(env, at::full_like(x, a.scalar(1), x.options().dtype(a.odtype(2).value_or(x.scalar_type()))));
  });
  WS_OP(e, randLike, return wrap(env, at::rand_like(a.t(0))););
  WS_OP(e, randnLike, return wrap(env, at::randn_like(a.t(0))););
  WS_OP(e, emptyLike, return wrap(env, at::empty_like(a.t(0))););
  // In-place random fills (initializers)
  WS_OP(e, uniform_, {
    a.t(0).uniform_(a.f64(1), a.f64(2));
    return env.Undefined();
  });
  WS_OP(e, normal_, {
    a.t(0).normal_(a.f64(1), a.f64(2));
    return env.Undefined();
  });
  WS_OP(e, bernoulli, return wrap(env, at::bernoulli(a.t(0))););

  // ---- conversion ----
  WS_OP(e, to, {
    auto& x = a.t(0);
    auto dt = a.odtype(1).value_or(x.scalar_type());
    auto dev = a.has(2) ? a.device(2) : x.device();
    return wrap(env, x.to(dev, dt, /*non_blocking=*/false, /*copy=*/a.b(3, false)));
  });
  WS_OP(e, clone, return wrap(env, a.t(0).clone(a.has(1) ? a.memoryFormat(1) : at::MemoryFormat::Preserve)););
  WS_OP(e, contiguous, return wrap(env, a.t(0).contiguous(a.memoryFormat(1))););
  WS_OP(e, detach, return wrap(env, a.t(0).detach()););
  WS_OP(e, copy_, {
    a.t(0).copy_(a.t(1));
    return env.Undefined();
  });
  WS_OP(e, fill_, {
    if (a.isTensor(1)) a.t(0).fill_(a.t(1)); else a.t(0).fill_(a.scalar(1));
    return env.Undefined();
  });
  WS_OP(e, zero_, {
    a.t(0).zero_();
    return env.Undefined();
  });

  // ---- arithmetic ----
  WS_OP(e, add, {
    auto& x = a.t(0);
    auto alpha = a.has(2) ? a.scalar(2) : at::Scalar(1);
    return a.isTensor(1) ? wrap(env, at::add(x, a.t(1), alpha)) : wrap(env, at::add(x, a.scalar(1), alpha));
  });
  WS_OP(e, add_, {
    auto& x = a.t(0);
    auto alpha = a.has(2) ? a.scalar(2) : at::Scalar(1);
    if (a.isTensor(1)) x.add_(a.t(1), alpha); else x.add_(a.scalar(1), alpha);
    return env.Undefined();
  });
  WS_OP(e, sub, {
    auto& x = a.t(0);
    auto alpha = a.has(2) ? a.scalar(2) : at::Scalar(1);
    return a.isTensor(1) ? wrap(env, at::sub(x, a.t(1), alpha)) : wrap(env, at::sub(x, a.scalar(1), alpha));
  });
  WS_OP(e, sub_, {
    auto& x = a.t(0);
    auto alpha = a.has(2) ? a.scalar(2) : at::Scalar(1);
    if (a.isTensor(1)) x.sub_(a.t(1), alpha); else x.sub_(a.scalar(1), alpha);
    return env.Undefined();
  });
  WS_OP(e, rsub, return wrap(env, at::rsub(a.t(0), a.scalar(1))););  // scalar - tensor
  WS_BINARY(e, mul, mul);
  WS_BINARY(e, div, div);
  WS_OP(e, divMode, {  // rounding_mode 'trunc' | 'floor'
    auto mode = a.s(2);
    auto& x = a.t(0);
    return a.isTensor(1) ? wrap(env, at::div(x, a.t(1), mode)) : wrap(env, at::div(x, a.scalar(1), mode));
  });
  WS_BINARY(e, pow, pow);
  WS_OP(e, rpow, return wrap(env, at::pow(a.scalar(0), a.t(1))););  // scalar ** tensor
  WS_BINARY(e, remainder, remainder);
  WS_BINARY(e, fmod, fmod);
  WS_OP(e, maximum, return wrap(env, at::maximum(a.t(0), a.t(1))););
  WS_OP(e, minimum, return wrap(env, at::minimum(a.t(0), a.t(1))););
  WS_OP(e, addcmul_, {
    a.t(0).addcmul_(a.t(1), a.t(2), a.scalar(3));
    return env.Undefined();
  });
  WS_OP(e, addcdiv_, {
    a.t(0).addcdiv_(a.t(1), a.t(2), a.scalar(3));
    return env.Undefined();
  });
  WS_OP(e, lerp_, {
    a.t(0).lerp_(a.t(1), a.scalar(2));
    return env.Undefined();
  });

  // ---- comparison and logic (results are bool tensors) ----
  WS_BINARY(e, eq, eq);
  WS_BINARY(e, ne, ne);
  WS_BINARY(e, lt, lt);
  WS_BINARY(e, le, le);
  WS_BINARY(e, gt, gt);
  WS_BINARY(e, ge, ge);
  WS_OP(e, logicalAnd, return wrap(env, at::logical_and(a.t(0), a.t(1))););
  WS_OP(e, logicalOr, return wrap(env, at::logical_or(a.t(0), a.t(1))););
  WS_OP(e, logicalXor, return wrap(env, at::logical_xor(a.t(0), a.t(1))););
  WS_UNARY_NOINPLACE(e, logicalNot, logical_not);
  WS_UNARY_NOINPLACE(e, isnan, isnan);
  WS_UNARY_NOINPLACE(e, isfinite, isfinite);
  WS_OP(e, allclose, return Napi::Boolean::New(env, at::allclose(a.t(0), a.t(1), a.f64(2), a.f64(3))););
  WS_OP(e, equal, return Napi::Boolean::New(env, at::equal(a.t(0), a.t(1))););

  // ---- elementwise math ----
  WS_UNARY(e, neg, neg);
  WS_UNARY(e, abs, abs);
  WS_UNARY(e, exp, exp);
  WS_UNARY(e, log, log);
  WS_UNARY(e, log1p, log1p);
  WS_UNARY(e, expm1, expm1);
  WS_UNARY(e, sqrt, sqrt);
  WS_UNARY(e, rsqrt, rsqrt);
  WS_UNARY(e, sin, sin);
  WS_UNARY(e, cos, cos);
  WS_UNARY(e, tanh, tanh);
  WS_UNARY(e, sigmoid, sigmoid);
  WS_UNARY(e, relu, relu);
  WS_UNARY(e, sign, sign);
  WS_UNARY(e, floor, floor);
  WS_UNARY(e, ceil, ceil);
  WS_UNARY(e, round, round);
  WS_UNARY(e, trunc, trunc);
  WS_UNARY(e, reciprocal, reciprocal);
  WS_UNARY(e, square, square);
  WS_UNARY(e, erf, erf);
  WS_UNARY_NOINPLACE(e, silu, silu);
  WS_UNARY_NOINPLACE(e, logSigmoid, log_sigmoid);
  WS_OP(e, clamp, return wrap(env, at::clamp(a.t(0), a.oscalar(1), a.oscalar(2))););
  WS_OP(e, clamp_, {
    at::clamp_(a.t(0), a.oscalar(1), a.oscalar(2));
    return env.Undefined();
  });
  WS_OP(e, clampTensor, return wrap(env, at::clamp(a.t(0), a.ot(1), a.ot(2))););

  // ---- reductions ----
  WS_OP(e, sum, {
    auto& x = a.t(0);
    auto dt = a.odtype(3);
    if (!a.has(1)) return wrap(env, at::sum(x, dt));
    return wrap(env, at::sum(x, a.ints(1), a.b(2, false), dt));
  });
  WS_OP(e, mean, {
    auto& x = a.t(0);
    if (!a.has(1)) return wrap(env, at::mean(x));
    return wrap(env, at::mean(x, a.ints(1), a.b(2, false)));
  });
  WS_OP(e, prod, {
    auto& x = a.t(0);
    if (!a.has(1)) return wrap(env, at::prod(x));
    return wrap(env, at::prod(x, a.i64(1), a.b(2, false)));
  });
  WS_OP(e, amax, return wrap(env, at::amax(a.t(0), a.has(1) ? a.ints(1) : std::vector<int64_t>{}, a.b(2, false))););
  WS_OP(e, amin, return wrap(env, at::amin(a.t(0), a.has(1) ? a.ints(1) : std::vector<int64_t>{}, a.b(2, false))););
  WS_OP(e, maxAll, return wrap(env, at::max(a.t(0))););
  WS_OP(e, minAll, return wrap(env, at::min(a.t(0))););
  WS_OP(e, maxDim, {
    auto r = at::max(a.t(0), a.i64(1), a.b(2, false));
    return wrap_list(env, {std::get<0>(r), std::get<1>(r)});
  });
  WS_OP(e, minDim, {
    auto r = at::min(a.t(0), a.i64(1), a.b(2, false));
    return wrap_list(env, {std::get<0>(r), std::get<1>(r)});
  });
  WS_OP(e, argmax, return wrap(env, at::argmax(a.t(0), a.oi64(1), a.b(2, false))););
  WS_OP(e, argmin, return wrap(env, at::argmin(a.t(0), a.oi64(1), a.b(2, false))););
  WS_OP(e, std, {
    Opt<std::vector<int64_t>> d = a.oints(1);
    return wrap(env, at::std(a.t(0), d ? at::OptionalIntArrayRef(*d) : at::OptionalIntArrayRef(), a.b(2, true),
                             a.b(3, false)));
  });
  WS_OP(e, var, {
    Opt<std::vector<int64_t>> d = a.oints(1);
    return wrap(env, at::var(a.t(0), d ? at::OptionalIntArrayRef(*d) : at::OptionalIntArrayRef(), a.b(2, true),
                             a.b(3, false)));
  });
  WS_OP(e, norm, {  // vector norm of order p over dims (all when null)
    Opt<std::vector<int64_t>> d = a.oints(2);
    return wrap(env, at::linalg_vector_norm(a.t(0), a.scalar(1),
                                            d ? at::OptionalIntArrayRef(*d) : at::OptionalIntArrayRef(),
                                            a.b(3, false)));
  });
  WS_OP(e, logsumexp, return wrap(env, at::logsumexp(a.t(0), a.ints(1), a.b(2, false))););
  WS_OP(e, any, {
    auto& x = a.t(0);
    if (!a.has(1)) return wrap(env, at::any(x));
    return wrap(env, at::any(x, a.i64(1), a.b(2, false)));
  });
  WS_OP(e, all, {
    auto& x = a.t(0);
    if (!a.has(1)) return wrap(env, at::all(x));
    return wrap(env, at::all(x, a.i64(1), a.b(2, false)));
  });
  WS_OP(e, cumsum, return wrap(env, at::cumsum(a.t(0), a.i64(1))););
  WS_OP(e, countNonzero, return wrap(env, at::count_nonzero(a.t(0), a.has(1) ? a.ints(1) : std::vector<int64_t>{})););

  // ---- shape ----
  WS_OP(e, view, return wrap(env, a.t(0).view(a.ints(1))););
  WS_OP(e, reshape, return wrap(env, at::reshape(a.t(0), a.ints(1))););
  WS_OP(e, permute, return wrap(env, a.t(0).permute(a.ints(1))););
  WS_OP(e, transpose, return wrap(env, at::transpose(a.t(0), a.i64(1), a.i64(2))););
  WS_OP(e, flatten, return wrap(env, at::flatten(a.t(0), a.i64(1), a.i64(2))););
  WS_OP(e, squeeze, {
    auto& x = a.t(0);
    return a.has(1) ? wrap(env, at::squeeze(x, a.i64(1))) : wrap(env, at::squeeze(x));
  });
  WS_OP(e, unsqueeze, return wrap(env, at::unsqueeze(a.t(0), a.i64(1))););
  WS_OP(e, expand, return wrap(env, a.t(0).expand(a.ints(1))););
  WS_OP(e, repeat, return wrap(env, a.t(0).repeat(a.ints(1))););
  WS_OP(e, cat, return wrap(env, at::cat(a.tensors(0), a.i64(1))););
  WS_OP(e, stack, return wrap(env, at::stack(a.tensors(0), a.i64(1))););
  WS_OP(e, split, {  // an integer chunk size, or a list of sizes
    auto& x = a.t(0);
    if (a.info[1].IsArray()) return wrap_list(env, at::split_with_sizes(x, a.ints(1), a.i64(2)));
    return wrap_list(env, at::split(x, a.i64(1), a.i64(2)));
  });
  WS_OP(e, chunk, return wrap_list(env, at::chunk(a.t(0), a.i64(1), a.i64(2))););
  WS_OP(e, narrow, return wrap(env, at::narrow(a.t(0), a.i64(1), a.i64(2), a.i64(3))););
  WS_OP(e, slice, return wrap(env, at::slice(a.t(0), a.i64(1), a.oi64(2), a.oi64(3), a.i64(4))););
  WS_OP(e, select, return wrap(env, at::select(a.t(0), a.i64(1), a.i64(2))););
  WS_OP(e, asStrided, return wrap(env, at::as_strided(a.t(0), a.ints(1), a.ints(2), a.oi64(3))););
  WS_OP(e, unfoldDim, return wrap(env, a.t(0).unfold(a.i64(1), a.i64(2), a.i64(3))););
  WS_OP(e, flip, return wrap(env, at::flip(a.t(0), a.ints(1))););
  WS_OP(e, roll, return wrap(env, at::roll(a.t(0), a.ints(1), a.ints(2))););
  WS_OP(e, tril, return wrap(env, at::tril(a.t(0), a.i64(1))););
  WS_OP(e, triu, return wrap(env, at::triu(a.t(0), a.i64(1))););

  // ---- indexing ----
  WS_OP(e, indexSelect, return wrap(env, at::index_select(a.t(0), a.i64(1), a.t(2))););
  WS_OP(e, gather, return wrap(env, at::gather(a.t(0), a.i64(1), a.t(2))););
  WS_OP(e, scatter, {
    auto& x = a.t(0);
    if (a.isTensor(3)) return wrap(env, at::scatter(x, a.i64(1), a.t(2), a.t(3)));
    return wrap(env, at::scatter(x, a.i64(1), a.t(2), a.scalar(3)));
  });
  WS_OP(e, scatter_, {
    auto& x = a.t(0);
    if (a.isTensor(3)) x.scatter_(a.i64(1), a.t(2), a.t(3)); else x.scatter_(a.i64(1), a.t(2), a.scalar(3));
    return env.Undefined();
  });
  WS_OP(e, scatterAdd, return wrap(env, at::scatter_add(a.t(0), a.i64(1), a.t(2), a.t(3))););
  WS_OP(e, maskedFill, {
    auto& x = a.t(0);
    if (a.isTensor(2)) return wrap(env, at::masked_fill(x, a.t(1), a.t(2)));
    return wrap(env, at::masked_fill(x, a.t(1), a.scalar(2)));
  });
  WS_OP(e, maskedFill_, {
    auto& x = a.t(0);
    if (a.isTensor(2)) x.masked_fill_(a.t(1), a.t(2)); else x.masked_fill_(a.t(1), a.scalar(2));
    return env.Undefined();
  });
  WS_OP(e, maskedSelect, return wrap(env, at::masked_select(a.t(0), a.t(1))););
  WS_OP(e, where, {  // where(cond, x, y) with x / y a Tensor or a number
    auto& c = a.t(0);
    bool tx = a.isTensor(1), ty = a.isTensor(2);
    if (tx && ty) return wrap(env, at::where(c, a.t(1), a.t(2)));
    if (tx) return wrap(env, at::where(c, a.t(1), a.scalar(2)));
    if (ty) return wrap(env, at::where(c, a.scalar(1), a.t(2)));
    return wrap(env, at::where(c, a.scalar(1), a.scalar(2)));
  });
  WS_OP(e, index, return wrap(env, at::index(a.t(0), a.optTensors(1))););  // advanced indexing, null = ':'
  WS_OP(e, indexPut_, {
    a.t(0).index_put_(a.optTensors(1), a.t(2), a.b(3, false));
    return env.Undefined();
  });
  WS_OP(e, nonzero, return wrap(env, at::nonzero(a.t(0))););
  WS_OP(e, oneHot, return wrap(env, at::one_hot(a.t(0), a.i64(1))););

  // ---- sorting ----
  WS_OP(e, topk, {
    auto r = at::topk(a.t(0), a.i64(1), a.i64(2), a.b(3, true), a.b(4, true));
    return wrap_list(env, {std::get<0>(r), std::get<1>(r)});
  });
  WS_OP(e, sort, {
    auto r = at::sort(a.t(0), a.b(3, false), a.i64(1), a.b(2, false));  // (self, stable, dim, descending)
    return wrap_list(env, {std::get<0>(r), std::get<1>(r)});
  });
  WS_OP(e, argsort, return wrap(env, std::get<1>(at::sort(a.t(0), a.b(3, false), a.i64(1), a.b(2, false)))););
  WS_OP(e, unique, {  // sorted unique values, inverse indices, counts (flattened input)
    auto r = at::_unique2(a.t(0), /*sorted=*/true, /*return_inverse=*/true, /*return_counts=*/true);
    return wrap_list(env, {std::get<0>(r), std::get<1>(r), std::get<2>(r)});
  });

  // ---- linear algebra ----
  WS_OP(e, matmul, return wrap(env, at::matmul(a.t(0), a.t(1))););
  WS_OP(e, mm, return wrap(env, at::mm(a.t(0), a.t(1))););
  WS_OP(e, bmm, return wrap(env, at::bmm(a.t(0), a.t(1))););
  WS_OP(e, einsum, return wrap(env, at::einsum(a.s(0), a.tensors(1))););
  WS_OP(e, outer, return wrap(env, at::outer(a.t(0), a.t(1))););
}

}  // namespace weakseg
