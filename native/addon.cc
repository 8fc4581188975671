// Module entry: the tensor handle, argument parsing, tensor metadata and conversion, runtime settings.
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/function.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <atomic>
#include <cstring>

#include "engine.h"

namespace weakseg {

namespace {
std::atomic<int64_t> g_live{0};

struct InstanceData {
  Napi::FunctionReference tensor_ctor;
};

int64_t host_bytes(const at::Tensor& t) {
  if (!t.defined() || !t.device().is_cpu()) return 0;
  return static_cast<int64_t>(t.nbytes());
}
}  // namespace

int64_t live_handles() { return g_live.load(); }

// ---------------------------------------------------------------------------------------------
// JsTensor

Napi::Function JsTensor::Init(Napi::Env env) {
  return DefineClass(env, "NativeTensor",
                     {InstanceMethod("dispose", &JsTensor::Dispose),
                      InstanceAccessor("isDisposed", &JsTensor::IsDisposed, nullptr)});
}

JsTensor::JsTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JsTensor>(info), env_(info.Env()) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(info.Env(), "NativeTensor cannot be constructed from JavaScript");
  }
  tensor = std::move(*info[0].As<Napi::External<at::Tensor>>().Data());
  reported_bytes_ = host_bytes(tensor);
  // Tell V8 how much native memory this small object holds, so the GC backstop runs in time.
  if (reported_bytes_) Napi::MemoryManagement::AdjustExternalMemory(env_, reported_bytes_);
  ++g_live;
}

void JsTensor::release() {
  if (disposed) return;
  disposed = true;
  tensor = at::Tensor();
  if (reported_bytes_) Napi::MemoryManagement::AdjustExternalMemory(env_, -reported_bytes_);
  reported_bytes_ = 0;
  --g_live;
}

JsTensor::~JsTensor() { release(); }

Napi::Object JsTensor::Wrap(Napi::Env env, at::Tensor t) {
  auto* data = env.GetInstanceData<InstanceData>();
  return data->tensor_ctor.New({Napi::External<at::Tensor>::New(env, &t)});
}

Napi::Value JsTensor::Dispose(const Napi::CallbackInfo& info) {
  release();
  return info.Env().Undefined();
}

Napi::Value JsTensor::IsDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed); }

Napi::Value wrap(Napi::Env env, at::Tensor t) { return JsTensor::Wrap(env, std::move(t)); }

Napi::Value wrap_list(Napi::Env env, const std::vector<at::Tensor>& ts) {
  auto arr = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); ++i) arr.Set(static_cast<uint32_t>(i), wrap(env, ts[i]));
  return arr;
}

// ---------------------------------------------------------------------------------------------
// Names

at::ScalarType parse_dtype(const std::string& n) {
  if (n == "float32") return at::kFloat;
  if (n == "float16") return at::kHalf;
  if (n == "bfloat16") return at::kBFloat16;
  if (n == "float64") return at::kDouble;
  if (n == "int64") return at::kLong;
  if (n == "int32") return at::kInt;
  if (n == "uint8") return at::kByte;
  if (n == "bool") return at::kBool;
  throw std::invalid_argument("unknown dtype '" + n +
                              "' (expected float32, float16, bfloat16, float64, int64, int32, uint8 or bool)");
}

const char* dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kHalf: return "float16";
    case at::kBFloat16: return "bfloat16";
    case at::kDouble: return "float64";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kByte: return "uint8";
    case at::kBool: return "bool";
    default: return c10::toString(t);
  }
}

at::Device parse_device(const std::string& name) {
  at::Device d(name);  // throws c10::Error with libtorch's own message for a malformed string
  if (d.is_cuda()) {
    if (!torch::cuda::is_available()) {
      throw std::invalid_argument("device '" + name +
                                  "' requested, but this libtorch build has no CUDA support or no GPU is visible");
    }
    auto n = static_cast<int64_t>(torch::cuda::device_count());
    if (d.has_index() && d.index() >= n) {
      throw std::invalid_argument("device '" + name + "' requested, but only " + std::to_string(n) +
                                  " CUDA device(s) are visible");
    }
  } else if (!d.is_cpu()) {
    throw std::invalid_argument("device '" + name + "' is not supported (use cpu, cuda or cuda:N)");
  }
  return d;
}

static std::string device_name(const at::Device& d) { return d.str(); }

// ---------------------------------------------------------------------------------------------
// Args

static std::string describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) return "number";
  if (v.IsString()) return "string";
  if (v.IsBoolean()) return "boolean";
  if (v.IsArray()) return "array";
  if (v.IsFunction()) return "function";
  return "object";
}

void Args::fail(size_t i, const std::string& what) const {
  std::string got = i < info.Length() ? describe(info[i]) : "nothing";
  throw Napi::TypeError::New(env(), std::string(op) + ": argument " + std::to_string(i + 1) + " must be " + what +
                                        ", got " + got);
}

bool Args::isTensor(size_t i) const {
  if (i >= info.Length() || !info[i].IsObject()) return false;
  auto* data = env().GetInstanceData<InstanceData>();
  return info[i].As<Napi::Object>().InstanceOf(data->tensor_ctor.Value());
}

at::Tensor& Args::t(size_t i) const {
  if (!isTensor(i)) fail(i, "a Tensor");
  auto* h = JsTensor::Unwrap(info[i].As<Napi::Object>());
  if (h->disposed) {
    throw Napi::Error::New(env(), std::string(op) + ": argument " + std::to_string(i + 1) +
                                      " is a disposed tensor (it was freed by dispose() or by the scope it was "
                                      "created in; keep() it to use it later)");
  }
  return h->tensor;
}

Opt<at::Tensor> Args::ot(size_t i) const {
  if (!has(i)) return kNone;
  return t(i);
}

std::vector<at::Tensor> Args::tensors(size_t i) const {
  if (i >= info.Length() || !info[i].IsArray()) fail(i, "an array of Tensors");
  auto arr = info[i].As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(arr.Length());
  for (uint32_t k = 0; k < arr.Length(); ++k) {
    Napi::Value v = arr.Get(k);
    auto* data = env().GetInstanceData<InstanceData>();
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(data->tensor_ctor.Value())) {
      fail(i, "an array of Tensors (element " + std::to_string(k) + " is not)");
    }
    auto* h = JsTensor::Unwrap(v.As<Napi::Object>());
    if (h->disposed) fail(i, "an array of live Tensors (element " + std::to_string(k) + " was disposed)");
    out.push_back(h->tensor);
  }
  return out;
}

c10::List<Opt<at::Tensor>> Args::optTensors(size_t i) const {
  if (i >= info.Length() || !info[i].IsArray()) fail(i, "an array of Tensors or nulls");
  auto arr = info[i].As<Napi::Array>();
  c10::List<Opt<at::Tensor>> out;
  auto* data = env().GetInstanceData<InstanceData>();
  for (uint32_t k = 0; k < arr.Length(); ++k) {
    Napi::Value v = arr.Get(k);
    if (v.IsNull() || v.IsUndefined()) {
      out.push_back(kNone);
      continue;
    }
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(data->tensor_ctor.Value())) {
      fail(i, "an array of Tensors or nulls (element " + std::to_string(k) + " is neither)");
    }
    auto* h = JsTensor::Unwrap(v.As<Napi::Object>());
    if (h->disposed) fail(i, "an array of live Tensors (element " + std::to_string(k) + " was disposed)");
    out.push_back(h->tensor);
  }
  return out;
}

static bool as_int(const Napi::Value& v, int64_t* out) {
  if (!v.IsNumber()) return false;
  double d = v.As<Napi::Number>().DoubleValue();
  // Range first: casting NaN, infinities or out-of-range doubles to int64 is undefined behaviour.
  if (!(d == d) || d > 9007199254740991.0 || d < -9007199254740991.0 ||
      d != static_cast<double>(static_cast<int64_t>(d))) {
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

std::vector<int64_t> Args::ints(size_t i) const {
  std::vector<int64_t> out;
  if (i < info.Length() && info[i].IsArray()) {
    auto arr = info[i].As<Napi::Array>();
    out.reserve(arr.Length());
    for (uint32_t k = 0; k < arr.Length(); ++k) {
      int64_t v;
      if (!as_int(arr.Get(k), &v)) fail(i, "an array of integers (element " + std::to_string(k) + " is not one)");
      out.push_back(v);
    }
    return out;
  }
  int64_t v;
  if (i < info.Length() && as_int(info[i], &v)) return {v};
  fail(i, "an integer or an array of integers");
}

Opt<std::vector<int64_t>> Args::oints(size_t i) const {
  if (!has(i)) return kNone;
  return ints(i);
}

int64_t Args::i64(size_t i) const {
  int64_t v;
  if (i >= info.Length() || !as_int(info[i], &v)) fail(i, "an integer");
  return v;
}

Opt<int64_t> Args::oi64(size_t i) const {
  if (!has(i)) return kNone;
  return i64(i);
}

double Args::f64(size_t i) const {
  if (i >= info.Length() || !info[i].IsNumber()) fail(i, "a number");
  return info[i].As<Napi::Number>().DoubleValue();
}

Opt<double> Args::of64(size_t i) const {
  if (!has(i)) return kNone;
  return f64(i);
}

bool Args::b(size_t i) const {
  if (i >= info.Length() || !info[i].IsBoolean()) fail(i, "a boolean");
  return info[i].As<Napi::Boolean>().Value();
}

std::string Args::s(size_t i) const {
  if (i >= info.Length() || !info[i].IsString()) fail(i, "a string");
  return info[i].As<Napi::String>().Utf8Value();
}

at::Scalar Args::scalar(size_t i) const {
  if (i < info.Length() && info[i].IsBoolean()) return at::Scalar(info[i].As<Napi::Boolean>().Value());
  if (i >= info.Length() || !info[i].IsNumber()) fail(i, "a number");
  int64_t v;
  // Integral JS numbers become integer scalars so that integer tensors keep their dtype.
  if (as_int(info[i], &v)) return at::Scalar(v);
  return at::Scalar(info[i].As<Napi::Number>().DoubleValue());
}

Opt<at::Scalar> Args::oscalar(size_t i) const {
  if (!has(i)) return kNone;
  return scalar(i);
}

at::ScalarType Args::dtype(size_t i) const {
  try {
    return parse_dtype(s(i));
  } catch (const std::invalid_argument& e) {
    throw Napi::TypeError::New(env(), std::string(op) + ": " + e.what());
  }
}

Opt<at::ScalarType> Args::odtype(size_t i) const {
  if (!has(i)) return kNone;
  return dtype(i);
}

at::Device Args::device(size_t i) const {
  try {
    return parse_device(s(i));
  } catch (const std::invalid_argument& e) {
    throw Napi::Error::New(env(), std::string(op) + ": " + e.what());
  }
}

at::TensorOptions Args::options(size_t di, size_t vi) const {
  at::TensorOptions o;
  o = o.dtype(has(di) ? dtype(di) : at::kFloat);
  if (has(vi)) o = o.device(device(vi));
  return o;
}

at::MemoryFormat Args::memoryFormat(size_t i) const {
  if (!has(i)) return at::MemoryFormat::Contiguous;
  auto f = s(i);
  if (f == "contiguous") return at::MemoryFormat::Contiguous;
  if (f == "channels_last") return at::MemoryFormat::ChannelsLast;
  if (f == "preserve") return at::MemoryFormat::Preserve;
  fail(i, "'contiguous', 'channels_last' or 'preserve'");
}

// ---------------------------------------------------------------------------------------------
// Metadata, conversion, autograd and runtime

static Napi::Value ints_to_js(Napi::Env env, at::IntArrayRef v) {
  auto arr = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); ++i) arr.Set(static_cast<uint32_t>(i), Napi::Number::New(env, double(v[i])));
  return arr;
}

static void register_core(Napi::Object e) {
  WS_OP(e, shape, return ints_to_js(env, a.t(0).sizes()););
  WS_OP(e, strides, return ints_to_js(env, a.t(0).strides()););
  WS_OP(e, storageOffset, return Napi::Number::New(env, double(a.t(0).storage_offset())););
  WS_OP(e, dtype, return Napi::String::New(env, dtype_name(a.t(0).scalar_type())););
  WS_OP(e, device, return Napi::String::New(env, device_name(a.t(0).device())););
  WS_OP(e, requiresGrad, return Napi::Boolean::New(env, a.t(0).requires_grad()););
  WS_OP(e, isLeaf, return Napi::Boolean::New(env, a.t(0).is_leaf()););
  WS_OP(e, gradFn, {
    auto fn = a.t(0).grad_fn();
    return fn ? Napi::Value(Napi::String::New(env, fn->name())) : env.Null();
  });
  WS_OP(e, isContiguous, return Napi::Boolean::New(env, a.t(0).is_contiguous(a.memoryFormat(1))););
  WS_OP(e, sharesStorage, return Napi::Boolean::New(env, a.t(0).is_alias_of(a.t(1))););
  WS_OP(e, liveHandles, return Napi::Number::New(env, double(live_handles())););

  // Raw little-endian bytes in, tensor out (one copy). Used for typed arrays and checkpoint loading.
  WS_OP(e, fromBytes, {
    if (!a.info[0].IsTypedArray()) a.fail(0, "a Uint8Array");
    auto arr = a.info[0].As<Napi::TypedArray>();
    auto dt = a.dtype(1);
    auto shape = a.ints(2);
    for (auto s : shape) {
      if (s < 0) throw Napi::RangeError::New(env, "fromBytes: negative dimension in shape");
    }
    auto t = at::empty(shape, at::TensorOptions().dtype(dt));
    size_t want = t.nbytes();
    if (arr.ByteLength() != want) {
      throw Napi::RangeError::New(env, "fromBytes: " + std::to_string(arr.ByteLength()) + " bytes given, but shape " +
                                           c10::str(t.sizes()) + " of " + dtype_name(dt) + " needs " +
                                           std::to_string(want));
    }
    if (want) {
      auto* src = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
      std::memcpy(t.data_ptr(), src, want);
    }
    return wrap(env, t);
  });

  WS_OP(e, toBytes, {
    auto t = a.t(0).detach().to(at::kCPU).contiguous();
    auto buf = Napi::ArrayBuffer::New(env, t.nbytes());
    if (t.nbytes()) std::memcpy(buf.Data(), t.data_ptr(), t.nbytes());
    return Napi::Uint8Array::New(env, t.nbytes(), buf, 0);
  });

  WS_OP(e, item, {
    auto& t = a.t(0);
    auto s = t.item();
    if (t.scalar_type() == at::kBool) return Napi::Boolean::New(env, s.toBool());
    return Napi::Number::New(env, s.toDouble());
  });

  // Autograd
  WS_OP(e, backward, {
    a.t(0).backward(a.ot(1).value_or(at::Tensor()), a.b(2, false), a.b(3, false));
    return env.Undefined();
  });
  WS_OP(e, grad, {
    auto g = a.t(0).grad();
    return g.defined() ? wrap(env, g) : env.Null();
  });
  WS_OP(e, setGrad, {
    a.t(0).mutable_grad() = a.ot(1).value_or(at::Tensor());
    return env.Undefined();
  });
  WS_OP(e, requiresGrad_, {
    a.t(0).requires_grad_(a.b(1));
    return env.Undefined();
  });
  WS_OP(e, retainGrad, {
    a.t(0).retain_grad();
    return env.Undefined();
  });
  WS_OP(e, setGradEnabled, {
    bool prev = at::GradMode::is_enabled();
    at::GradMode::set_enabled(a.b(0));
    return Napi::Boolean::New(env, prev);
  });
  WS_OP(e, isGradEnabled, return Napi::Boolean::New(env, at::GradMode::is_enabled()););

  // Runtime
  WS_OP(e, setNumThreads, {
    auto n = a.i64(0);
    if (n < 1) throw Napi::RangeError::New(env, "setNumThreads: need at least 1 thread");
    at::set_num_threads(static_cast<int>(n));
    return env.Undefined();
  });
  WS_OP(e, getNumThreads, return Napi::Number::New(env, at::get_num_threads()););
  WS_OP(e, manualSeed, {
    at::manual_seed(static_cast<uint64_t>(a.i64(0)));
    return env.Undefined();
  });
  // libtorch's deterministic mode (torch.use_deterministic_algorithms): the few ops with a nondeterministic kernel
  // switch to a deterministic one, and those without one throw instead of silently varying. A general runtime
  // switch, like the thread count; nothing in ATen's public API reaches it from outside C++.
  WS_OP(e, setDeterministicAlgorithms, {
    at::globalContext().setDeterministicAlgorithms(a.b(0), a.b(1, false));
    return env.Undefined();
  });
  WS_OP(e, deterministicAlgorithms, return Napi::Boolean::New(env, at::globalContext().deterministicAlgorithms()););
  WS_OP(e, cudaAvailable, return Napi::Boolean::New(env, torch::cuda::is_available()););
  WS_OP(e, cudaDeviceCount, return Napi::Number::New(env, double(torch::cuda::device_count())););
  WS_OP(e, cudaSynchronize, {
    if (torch::cuda::is_available()) torch::cuda::synchronize();
    return env.Undefined();
  });
  WS_OP(e, config, {
    auto o = Napi::Object::New(env);
    o.Set("torchVersion", TORCH_VERSION);
    o.Set("cxx11Abi", Napi::Boolean::New(env, _GLIBCXX_USE_CXX11_ABI == 1));
    o.Set("cudaAvailable", torch::cuda::is_available());
    o.Set("cudaDeviceCount", double(torch::cuda::device_count()));
    o.Set("mkldnn", at::hasMKLDNN());
    o.Set("parallelInfo", at::get_parallel_info());
    return o;
  });
}

}  // namespace weakseg

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new weakseg::InstanceData();
  auto ctor = weakseg::JsTensor::Init(env);
  data->tensor_ctor = Napi::Persistent(ctor);
  env.SetInstanceData(data);
  exports.Set("NativeTensor", ctor);
  weakseg::register_core(exports);
  weakseg::register_tensor_ops(exports);
  weakseg::register_nn_ops(exports);
  weakseg::register_optim(exports);
  weakseg::register_allocator(exports);
  weakseg::register_lattice(exports);
  weakseg::register_dist(exports);
  return exports;
}

NODE_API_MODULE(weakseg_native, Init)
