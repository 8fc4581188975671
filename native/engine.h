// Shared pieces of the weakseg native engine: the JS tensor handle, argument parsing and the error guard.
// The addon stays thin: every op is a direct call into ATen (except the permutohedral lattice, lattice.cc,
// which ATen lacks); all policy lives in TypeScript.
#pragma once

#include <ATen/ATen.h>
#include <napi.h>
#include <torch/version.h>

#include <optional>

#include <string>
#include <vector>

namespace weakseg {

// libtorch 2.4+ spells optionals std::optional (c10::optional became an alias, later deprecated); 1.13 has
// only its own c10::optional. One name for both keeps the addon building against either.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
template <class T>
using Opt = std::optional<T>;
inline constexpr auto kNone = std::nullopt;
#else
template <class T>
using Opt = c10::optional<T>;
inline constexpr auto kNone = c10::nullopt;
#endif

// A JS handle owning one at::Tensor. dispose() frees it at once; the GC finalizer is only a backstop.
class JsTensor : public Napi::ObjectWrap<JsTensor> {
 public:
  static Napi::Function Init(Napi::Env env);
  static Napi::Object Wrap(Napi::Env env, at::Tensor t);
  explicit JsTensor(const Napi::CallbackInfo& info);
  ~JsTensor() override;

  at::Tensor tensor;
  bool disposed = false;

  void release();

 private:
  int64_t reported_bytes_ = 0;
  Napi::Env env_;

  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value IsDisposed(const Napi::CallbackInfo& info);
};

// Live handle count (created minus released), for leak tests.
int64_t live_handles();

// Reads op arguments by position; every failure names the op and the argument.
struct Args {
  const Napi::CallbackInfo& info;
  const char* op;

  Args(const Napi::CallbackInfo& i, const char* o) : info(i), op(o) {}

  Napi::Env env() const { return info.Env(); }
  bool has(size_t i) const { return i < info.Length() && !info[i].IsUndefined() && !info[i].IsNull(); }
  bool isNumber(size_t i) const { return i < info.Length() && (info[i].IsNumber() || info[i].IsBoolean()); }
  bool isTensor(size_t i) const;

  [[noreturn]] void fail(size_t i, const std::string& what) const;

  at::Tensor& t(size_t i) const;
  Opt<at::Tensor> ot(size_t i) const;
  std::vector<at::Tensor> tensors(size_t i) const;
  c10::List<Opt<at::Tensor>> optTensors(size_t i) const;
  std::vector<int64_t> ints(size_t i) const;  // an array of integers, or one integer
  Opt<std::vector<int64_t>> oints(size_t i) const;
  int64_t i64(size_t i) const;
  Opt<int64_t> oi64(size_t i) const;
  double f64(size_t i) const;
  Opt<double> of64(size_t i) const;
  bool b(size_t i) const;
  bool b(size_t i, bool dflt) const { return has(i) ? b(i) : dflt; }
  std::string s(size_t i) const;
  at::Scalar scalar(size_t i) const;
  Opt<at::Scalar> oscalar(size_t i) const;
  at::ScalarType dtype(size_t i) const;
  Opt<at::ScalarType> odtype(size_t i) const;
  at::Device device(size_t i) const;
  at::TensorOptions options(size_t dtypeIndex, size_t deviceIndex) const;
  at::MemoryFormat memoryFormat(size_t i) const;
};

at::ScalarType parse_dtype(const std::string& name);
const char* dtype_name(at::ScalarType t);
at::Device parse_device(const std::string& name);

Napi::Value wrap(Napi::Env env, at::Tensor t);
Napi::Value wrap_list(Napi::Env env, const std::vector<at::Tensor>& ts);

// Runs an op body, turning every C++ exception into a JS Error that names the op and carries
// libtorch's message without its C++ backtrace.
template <class F>
Napi::Value guard(const Napi::CallbackInfo& info, const char* op, F&& body) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Napi::Error::New(info.Env(), std::string(op) + ": " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string(op) + ": " + e.what());
  }
}

// Registers `name` on `exports`; the body sees `a` (Args) and `env`, and returns a Napi::Value.
#define WS_OP(exports, name, ...)                                                              \
  (exports).Set(#name, Napi::Function::New(                                                    \
                           (exports).Env(),                                                    \
                           [](const Napi::CallbackInfo& info) -> Napi::Value {                 \
                             return ::weakseg::guard(info, #name, [&]() -> Napi::Value {       \
                               ::weakseg::Args a(info, #name);                                 \
                               Napi::Env env = info.Env();                                     \
                               (void)env;                                                      \
                               __VA_ARGS__                                                     \
                             });                                                               \
                           },                                                                  \
                           #name))

void register_tensor_ops(Napi::Object exports);  // ops.cc
void register_nn_ops(Napi::Object exports);      // nn_ops.cc
void register_optim(Napi::Object exports);       // optim.cc
void register_allocator(Napi::Object exports);   // alloc.cc
void register_lattice(Napi::Object exports);     // lattice.cc
void register_dist(Napi::Object exports);        // dist.cc

}  // namespace weakseg
