// Optimizer updates and gradient utilities, run natively and in place over a whole parameter group,
// with the same arithmetic (and order of operations) as torch.optim's single-tensor implementations.
#include <cmath>

#include "engine.h"

namespace weakseg {

namespace {
// Optional per-parameter state tensors arrive as an array aligned with the parameters.
std::vector<at::Tensor> state_list(const Args& a, size_t i, size_t n) {
  auto ts = a.tensors(i);
  if (ts.size() != n) a.fail(i, "an array with one state tensor per parameter");
  return ts;
}
}  // namespace

void register_optim(Napi::Object e) {
  // sgdStep(params, momentumBuffers | null, firstStep, lr, momentum, dampening, weightDecay, nesterov, maximize)
  // firstStep: torch initialises each buffer to the first gradient rather than decaying a zero buffer.
  WS_OP(e, sgdStep, {
    at::NoGradGuard no_grad;
    auto params = a.tensors(0);
    bool has_buf = a.has(1);
    std::vector<at::Tensor> bufs = has_buf ? state_list(a, 1, params.size()) : std::vector<at::Tensor>{};
    bool first = a.b(2);
    double lr = a.f64(3), momentum = a.f64(4), dampening = a.f64(5), wd = a.f64(6);
    bool nesterov = a.b(7), maximize = a.b(8, false);
    for (size_t i = 0; i < params.size(); ++i) {
      auto& p = params[i];
      at::Tensor g = p.grad();
      if (!g.defined()) continue;
      if (maximize) g = -g;
      if (wd != 0) g = g.add(p, wd);
      if (momentum != 0) {
        if (!has_buf) a.fail(1, "momentum buffers when momentum is not 0");
        auto& buf = bufs[i];
        if (first) buf.copy_(g); else buf.mul_(momentum).add_(g, 1 - dampening);
        g = nesterov ? g.add(buf, momentum) : buf;
      }
      p.add_(g, -lr);
    }
    return env.Undefined();
  });

  // adamStep(params, expAvg, expAvgSq, step, lr, beta1, beta2, eps, weightDecay, decoupled)
  // decoupled = AdamW (decay applied to the weights, not added to the gradient).
  WS_OP(e, adamStep, {
    at::NoGradGuard no_grad;
    auto params = a.tensors(0);
    auto m = state_list(a, 1, params.size());
    auto v = state_list(a, 2, params.size());
    double step = a.f64(3), lr = a.f64(4), b1 = a.f64(5), b2 = a.f64(6), eps = a.f64(7), wd = a.f64(8);
    bool decoupled = a.b(9);
    double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
    double step_size = lr / bc1, bc2_sqrt = std::sqrt(bc2);
    for (size_t i = 0; i < params.size(); ++i) {
      auto& p = params[i];
      at::Tensor g = p.grad();
      if (!g.defined()) continue;
      if (wd != 0) {
        if (decoupled) p.mul_(1 - lr * wd); else g = g.add(p, wd);
      }
      m[i].mul_(b1).add_(g, 1 - b1);
      v[i].mul_(b2).addcmul_(g, g, 1 - b2);
      auto denom = (v[i].sqrt() / bc2_sqrt).add_(eps);
      p.addcdiv_(m[i], denom, -step_size);
    }
    return env.Undefined();
  });

  // zeroGrad(params, setToNone)
  WS_OP(e, zeroGrad, {
    auto params = a.tensors(0);
    bool none = a.b(1, true);
    for (auto& p : params) {
      auto& g = p.mutable_grad();
      if (!g.defined()) continue;
      if (none) {
        g = at::Tensor();
      } else {
        if (g.grad_fn()) g = g.detach(); else g.requires_grad_(false);
        g.zero_();
      }
    }
    return env.Undefined();
  });

  // clipGradNorm(params, maxNorm, normType) -> total norm before clipping (torch.nn.utils.clip_grad_norm_)
  WS_OP(e, clipGradNorm, {
    at::NoGradGuard no_grad;
    auto params = a.tensors(0);
    double max_norm = a.f64(1), p = a.f64(2);
    std::vector<at::Tensor> grads;
    for (auto& t : params) {
      if (t.grad().defined()) grads.push_back(t.grad());
    }
    if (grads.empty()) return Napi::Number::New(env, 0.0);
    at::Tensor total;
    if (std::isinf(p)) {
      std::vector<at::Tensor> norms;
      for (auto& g : grads) norms.push_back(g.detach().abs().max());
      total = norms.size() == 1 ? norms[0] : at::stack(norms).max();
    } else {
      std::vector<at::Tensor> norms;
      for (auto& g : grads) norms.push_back(at::linalg_vector_norm(g.detach(), p));
      total = at::linalg_vector_norm(at::stack(norms), p);
    }
    auto coef = (max_norm / (total + 1e-6)).clamp_max(1.0);
    for (auto& g : grads) g.mul_(coef.to(g.device()));
    return Napi::Number::New(env, total.item<double>());
  });
}

}  // namespace weakseg
