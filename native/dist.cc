// Collectives for data-parallel training: c10d's process groups (Gloo on CPU; NCCL where libtorch has CUDA and
// the build found its headers), rendezvous through c10d's TCPStore. Native because c10d is C++ only. What is ours:
// flattening tensor lists into buckets (Gloo reduces one buffer per call), a timeout on every wait, a heartbeat
// per rank in the store so that a failed collective can name the rank that was lost, and errors that name the
// op and the rank. Calls block the JS thread, like every other op: a training step waits for its gradients anyway.
#include "engine.h"

#ifdef WS_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef WS_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

namespace weakseg {

namespace {

using ms = std::chrono::milliseconds;

// libtorch 2.x split the backends (Gloo, NCCL) from the ProcessGroup front; 1.13's backends are ProcessGroups.
#if TORCH_VERSION_MAJOR >= 2
using Backend = c10d::Backend;
#else
using Backend = c10d::ProcessGroup;
#endif

constexpr int kHeartbeatMs = 500;

struct Group {
  std::string backend, host;
  int port = 0, rank = 0, size = 1;
  ms timeout{0};
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<Backend> pg;
  // The heartbeat has its own store client: the main one is busy inside a failing collective when it matters.
  c10::intrusive_ptr<c10d::Store> beatStore;
  std::thread beat;
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;

  std::string who() const { return "rank " + std::to_string(rank) + " of " + std::to_string(size) + ", " + backend; }

  void startHeartbeat() {
    beat = std::thread([this] {
      const std::string key = "weakseg/heartbeat/" + std::to_string(rank);
      std::unique_lock<std::mutex> lock(mu);
      while (!stop) {
        lock.unlock();
        try {
          beatStore->add(key, 1);
        } catch (...) {
          return;  // the store is gone (rank 0 exited): nothing left to tell
        }
        lock.lock();
        cv.wait_for(lock, ms(kHeartbeatMs), [this] { return stop; });
      }
    });
  }

  void stopHeartbeat() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stop = true;
    }
    cv.notify_all();
    if (beat.joinable()) beat.join();
  }

  // Which ranks stopped beating (sampled twice, a few beats apart). Empty when all are alive; rank 0 when the
  // store it hosts cannot be reached.
  std::string lostRanks() {
    auto sample = [&]() {
      std::vector<int64_t> v(size);
      for (int r = 0; r < size; ++r) v[r] = store->add("weakseg/heartbeat/" + std::to_string(r), 0);
      return v;
    };
    try {
      auto a = sample();
      std::this_thread::sleep_for(ms(kHeartbeatMs * 4));
      auto b = sample();
      std::vector<int> lost;
      for (int r = 0; r < size; ++r) {
        if (r != rank && a[r] == b[r]) lost.push_back(r);
      }
      if (lost.empty()) return "";
      std::string s = lost.size() == 1 ? "rank " : "ranks ";
      for (size_t i = 0; i < lost.size(); ++i) s += (i ? ", " : "") + std::to_string(lost[i]);
      return s + " stopped responding (lost)";
    } catch (...) {
      return rank == 0 ? "" : "rank 0 (which hosts the rendezvous store at " + host + ":" + std::to_string(port) +
                                  ") is unreachable (lost)";
    }
  }
};

// Groups live until destroyed or the process ends. The table is never freed: destroying a group at exit would join
// Gloo's threads while the runtime is being torn down.
std::map<int64_t, Group*>& groups() {
  static auto* table = new std::map<int64_t, Group*>();
  return *table;
}
int64_t g_next_id = 1;

Group& groupOf(const Args& a, size_t i) {
  auto id = a.i64(i);
  auto it = groups().find(id);
  if (it == groups().end()) {
    throw std::invalid_argument("process group " + std::to_string(id) + " does not exist (destroyed, or never made)");
  }
  return *it->second;
}

std::string oneLine(std::string s) {
  auto nl = s.find('\n');
  if (nl != std::string::npos) s = s.substr(0, nl);
  return s;
}

// Runs a collective; a failure becomes "<op> (rank r of n, backend): <cause>; <lost ranks>".
template <class F>
void collective(Group& g, const char* op, F&& body) {
  try {
    body();
  } catch (const std::exception& e) {
    std::string cause = oneLine(dynamic_cast<const c10::Error*>(&e)
                                    ? static_cast<const c10::Error&>(e).what_without_backtrace()
                                    : e.what());
    std::string lost = g.lostRanks();
    throw std::runtime_error(std::string(op) + " (" + g.who() + ") failed: " + cause + (lost.empty() ? "" : "; " + lost));
  }
}

void waitFor(Group& g, const c10::intrusive_ptr<c10d::Work>& work, ms timeout) {
  if (!work->wait(timeout)) throw std::runtime_error("timed out after " + std::to_string(timeout.count()) + " ms");
}

ms timeoutArg(const Args& a, size_t i, const Group& g) {
  if (!a.has(i)) return g.timeout;
  auto t = a.i64(i);
  if (t < 1) throw std::invalid_argument("timeout must be at least 1 ms, got " + std::to_string(t));
  return ms(t);
}

// Consecutive tensors of one dtype and device, up to `cap` bytes each (a larger tensor is a bucket of its own).
std::vector<std::vector<at::Tensor>> buckets(const std::vector<at::Tensor>& ts, int64_t cap) {
  std::vector<std::vector<at::Tensor>> out;
  int64_t bytes = 0;
  for (const auto& t : ts) {
    bool fits = !out.empty() && out.back().front().scalar_type() == t.scalar_type() &&
                out.back().front().device() == t.device() && bytes + int64_t(t.nbytes()) <= cap;
    if (!fits) {
      out.emplace_back();
      bytes = 0;
    }
    out.back().push_back(t);
    bytes += int64_t(t.nbytes());
  }
  return out;
}

at::Tensor flatten(const std::vector<at::Tensor>& ts) {
  std::vector<at::Tensor> flat;
  flat.reserve(ts.size());
  for (const auto& t : ts) flat.push_back(t.detach().reshape({-1}));
  return at::cat(flat);
}

void unflatten(const at::Tensor& flat, const std::vector<at::Tensor>& ts) {
  at::NoGradGuard no_grad;  // parameters are leaves that require grad
  int64_t off = 0;
  for (const auto& t : ts) {
    auto n = t.numel();
    t.detach().copy_(flat.narrow(0, off, n).view(t.sizes()));
    off += n;
  }
}

void checkTensors(const Group& g, const std::vector<at::Tensor>& ts, const char* op) {
  for (size_t i = 0; i < ts.size(); ++i) {
    const auto& t = ts[i];
    bool cuda = g.backend == "nccl";
    if (t.device().is_cuda() != cuda) {
      throw std::invalid_argument(std::string(op) + ": tensor " + std::to_string(i) + " is on " + t.device().str() +
                                  ", but the " + g.backend + " group needs " + (cuda ? "CUDA" : "CPU") + " tensors");
    }
  }
}

// Flattens the tensors into buckets, starts `start` on every bucket, then waits for each in turn, applies `done` to
// its buffer and copies the buffer back into the tensors.
template <class Start, class Done>
void inBuckets(Group& g, const std::vector<at::Tensor>& ts, int64_t cap, ms timeout, Start&& start, Done&& done) {
  auto bs = buckets(ts, cap);
  std::vector<at::Tensor> flats;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  for (auto& b : bs) {
    std::vector<at::Tensor> one{flatten(b)};
    works.push_back(start(one));
    flats.push_back(one[0]);
  }
  for (size_t i = 0; i < bs.size(); ++i) {
    waitFor(g, works[i], timeout);
    done(flats[i]);
    unflatten(flats[i], bs[i]);
  }
}

c10d::ReduceOp reduceOp(const std::string& name) {
  if (name == "sum" || name == "avg") return c10d::ReduceOp::SUM;  // Gloo has no AVG: sum, then divide
  if (name == "max") return c10d::ReduceOp::MAX;
  if (name == "min") return c10d::ReduceOp::MIN;
  throw std::invalid_argument("unknown reduction '" + name + "' (expected sum, avg, max or min)");
}

// A sum over the ranks that autograd records (torch.distributed.nn.functional.all_reduce): its backward is the sum
// over the ranks of the incoming gradients, since every rank's loss depends on every rank's input. SyncBatchNorm
// needs it (each rank's loss depends on all ranks' activations through the shared mean and variance). Native
// because a custom backward can only be written as a C++ autograd Function; this one op covers every cross-rank
// quantity a model can compute, so no layer-specific native code is needed. Each rank's backward must reach these
// nodes in the same order, which identical graphs give (the engine orders ready nodes by creation).
void allreduceSumInPlace(Group& g, at::Tensor& t, ms timeout, const char* op) {
  collective(g, op, [&] {
    std::vector<at::Tensor> one{t};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    o.timeout = timeout;
    waitFor(g, g.pg->allreduce(one, o), timeout);
  });
}

struct AllreduceSumFn : public torch::autograd::Function<AllreduceSumFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, int64_t id, int64_t timeoutMs) {
    ctx->saved_data["group"] = id;
    ctx->saved_data["timeout"] = timeoutMs;
    ctx->saved_data["sizes"] = x.sizes();
    ctx->saved_data["like"] = at::empty({0}, x.options());
    auto out = x.detach().clone(at::MemoryFormat::Contiguous);
    allreduceSumInPlace(*groups().at(id), out, ms(timeoutMs), "allreduce (autograd)");
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto id = ctx->saved_data["group"].toInt();
    auto it = groups().find(id);
    if (it == groups().end()) throw std::runtime_error("allreduce backward: the process group was destroyed before backward");
    // An unused output still takes part (with zeros): every rank must join the collective.
    auto g = grads[0].defined() ? grads[0].detach().clone(at::MemoryFormat::Contiguous)
                                : at::zeros(ctx->saved_data["sizes"].toIntVector(), ctx->saved_data["like"].toTensor().options());
    allreduceSumInPlace(*it->second, g, ms(ctx->saved_data["timeout"].toInt()), "allreduce backward (autograd)");
    return {g, at::Tensor(), at::Tensor()};
  }
};

bool isLoopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1"; }

}  // namespace

void register_dist(Napi::Object e) {
  WS_OP(e, distBackends, {
    auto arr = Napi::Array::New(env);
    uint32_t n = 0;
#ifdef WS_WITH_GLOO
    arr.Set(n++, "gloo");
#endif
#ifdef WS_WITH_NCCL
    arr.Set(n++, "nccl");
#endif
    (void)n;
    return arr;
  });

  // distInit(backend, host, port, rank, size, timeoutMs, deviceIndex?) -> group id. Rank 0 hosts the store and
  // waits for the others; every rank gives up after the timeout with an error naming the address and what is missing.
  WS_OP(e, distInit, {
    auto backend = a.s(0), host = a.s(1);
    auto port = a.i64(2), rank = a.i64(3), size = a.i64(4), timeoutMs = a.i64(5);
    if (port < 1 || port > 65535) throw std::invalid_argument("port must be 1..65535, got " + std::to_string(port));
    if (size < 1) throw std::invalid_argument("world size must be at least 1, got " + std::to_string(size));
    if (rank < 0 || rank >= size) {
      throw std::invalid_argument("rank " + std::to_string(rank) + " is outside 0.." + std::to_string(size - 1));
    }
    if (timeoutMs < 1) throw std::invalid_argument("timeout must be at least 1 ms");
    auto g = std::make_unique<Group>();
    g->backend = backend;
    g->host = host;
    g->port = int(port);
    g->rank = int(rank);
    g->size = int(size);
    g->timeout = ms(timeoutMs);
    std::string where = host + ":" + std::to_string(port);
    try {
      c10d::TCPStoreOptions so;
      so.port = uint16_t(port);
      so.isServer = rank == 0;
      so.waitWorkers = false;  // the join check below names the ranks that are missing
      so.timeout = g->timeout;
      g->store = c10::make_intrusive<c10d::TCPStore>(host, so);
      so.isServer = false;
      g->beatStore = c10::make_intrusive<c10d::TCPStore>(host, so);
    } catch (const std::exception& ex) {
      std::string cause = oneLine(dynamic_cast<const c10::Error*>(&ex)
                                      ? static_cast<const c10::Error&>(ex).what_without_backtrace()
                                      : ex.what());
      throw std::runtime_error(
          "rendezvous (rank " + std::to_string(rank) + " of " + std::to_string(size) + ") at " + where + " failed: " +
          cause + (rank == 0 ? " (is MASTER_PORT free on MASTER_ADDR, an address of this machine?)"
                             : " (is rank 0 running, and are MASTER_ADDR/MASTER_PORT the ones it uses?)"));
    }
    // Every rank checks in under its own key, so that one that never came can be named (c10d would only time out
    // inside the backend's connect).
    try {
      g->store->set("weakseg/joined/" + std::to_string(rank), std::vector<uint8_t>{1});
      std::vector<std::string> keys;
      for (int r = 0; r < g->size; ++r) keys.push_back("weakseg/joined/" + std::to_string(r));
      g->store->wait(keys, g->timeout);
    } catch (const std::exception& ex) {
      std::string missing;
      int count = 0;
      try {
        for (int r = 0; r < g->size; ++r) {
          if (!g->store->check({"weakseg/joined/" + std::to_string(r)})) {
            missing += (count++ ? ", " : "") + std::to_string(r);
          }
        }
      } catch (...) {
        missing = "unknown (the store stopped answering)";
      }
      throw std::runtime_error("rendezvous (rank " + std::to_string(rank) + " of " + std::to_string(size) + ") at " +
                               where + " failed: rank" + (count == 1 ? " " : "s ") + missing + " did not join within " +
                               std::to_string(timeoutMs) + " ms (were all WORLD_SIZE ranks started, with this "
                               "MASTER_ADDR/MASTER_PORT?)");
    }
    try {
      if (backend == "gloo") {
#ifdef WS_WITH_GLOO
        auto opts = c10d::ProcessGroupGloo::Options::create(g->timeout);
        const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
        if (ifname && *ifname) {
          opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
        } else if (isLoopback(host)) {
          opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
        } else {
          opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        }
        opts->threads = 2;
        g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, g->rank, g->size, opts);
#else
        throw std::invalid_argument("this build of the native engine has no Gloo (libgloo-dev was missing when it was built)");
#endif
      } else if (backend == "nccl") {
#ifdef WS_WITH_NCCL
        auto opts = c10d::ProcessGroupNCCL::Options::create();
        opts->timeout = g->timeout;
        g->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(g->store, g->rank, g->size, opts);
#else
        throw std::invalid_argument("this build of the native engine has no NCCL (it needs a CUDA libtorch with c10d's NCCL headers)");
#endif
      } else {
        throw std::invalid_argument("unknown backend '" + backend + "' (expected gloo or nccl)");
      }
    } catch (const std::invalid_argument&) {
      throw;
    } catch (const std::exception& ex) {
      std::string cause = oneLine(dynamic_cast<const c10::Error*>(&ex)
                                      ? static_cast<const c10::Error&>(ex).what_without_backtrace()
                                      : ex.what());
      throw std::runtime_error("connecting the " + backend + " process group (rank " + std::to_string(rank) + " of " +
                               std::to_string(size) + ", store " + where + ") failed: " + cause);
    }
    g->startHeartbeat();
    auto id = g_next_id++;
    groups()[id] = g.release();
    return Napi::Number::New(env, double(id));
  });

  WS_OP(e, distDestroy, {
    auto id = a.i64(0);
    auto it = groups().find(id);
    if (it == groups().end()) return env.Undefined();
    Group* g = it->second;
    groups().erase(it);
    g->stopHeartbeat();
    delete g;
    return env.Undefined();
  });

  // distAllreduce(group, tensors, op, bucketBytes, timeoutMs?): in place, in buckets of up to bucketBytes, every
  // bucket's reduction in flight before the first is awaited.
  WS_OP(e, distAllreduce, {
    auto& g = groupOf(a, 0);
    auto ts = a.tensors(1);
    auto opName = a.s(2);
    auto op = reduceOp(opName);
    auto cap = a.i64(3);
    auto timeout = timeoutArg(a, 4, g);
    checkTensors(g, ts, "allreduce");
    collective(g, "allreduce", [&] {
      inBuckets(g, ts, cap, timeout, [&](std::vector<at::Tensor>& one) {
        c10d::AllreduceOptions o;
        o.reduceOp = op;
        o.timeout = timeout;
        return g.pg->allreduce(one, o);
      }, [&](at::Tensor& flat) { if (opName == "avg") flat.div_(g.size); });
    });
    return env.Undefined();
  });

  // distBroadcast(group, tensors, root, bucketBytes, timeoutMs?): every rank's tensors become root's.
  WS_OP(e, distBroadcast, {
    auto& g = groupOf(a, 0);
    auto ts = a.tensors(1);
    auto root = a.i64(2);
    auto cap = a.i64(3);
    auto timeout = timeoutArg(a, 4, g);
    if (root < 0 || root >= g.size) throw std::invalid_argument("root rank " + std::to_string(root) + " is outside the group");
    checkTensors(g, ts, "broadcast");
    collective(g, "broadcast", [&] {
      inBuckets(g, ts, cap, timeout, [&](std::vector<at::Tensor>& one) {
        c10d::BroadcastOptions o;
        o.rootRank = root;
        o.timeout = timeout;
        return g.pg->broadcast(one, o);
      }, [](at::Tensor&) {});
    });
    return env.Undefined();
  });

  // distAllgather(group, tensor, timeoutMs?) -> one tensor per rank (same shape on every rank).
  WS_OP(e, distAllgather, {
    auto& g = groupOf(a, 0);
    auto t = a.t(1).detach().contiguous();
    auto timeout = timeoutArg(a, 2, g);
    checkTensors(g, {t}, "allgather");
    std::vector<std::vector<at::Tensor>> out(1);
    collective(g, "allgather", [&] {
      for (int r = 0; r < g.size; ++r) out[0].push_back(at::empty_like(t));
      std::vector<at::Tensor> in{t};
      c10d::AllgatherOptions o;
      o.timeout = timeout;
      waitFor(g, g.pg->allgather(out, in, o), timeout);
    });
    return wrap_list(env, out[0]);
  });

  // distAllreduceSumGrad(group, tensor, timeoutMs?) -> a new tensor, the sum over ranks, recorded by autograd
  // (AllreduceSumFn above).
  WS_OP(e, distAllreduceSumGrad, {
    auto& g = groupOf(a, 0);
    const auto& t = a.t(1);
    auto timeout = timeoutArg(a, 2, g);
    checkTensors(g, {t}, "allreduce (autograd)");
    return wrap(env, AllreduceSumFn::apply(t, a.i64(0), int64_t(timeout.count())));
  });

  WS_OP(e, distBarrier, {
    auto& g = groupOf(a, 0);
    auto timeout = timeoutArg(a, 1, g);
    collective(g, "barrier", [&] {
      c10d::BarrierOptions o;
      o.timeout = timeout;
      waitFor(g, g.pg->barrier(o), timeout);
    });
    return env.Undefined();
  });
}

}  // namespace weakseg
