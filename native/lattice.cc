// The permutohedral lattice (Adams, Baek & Davis 2010) as densecrf's permutohedral.cpp builds and filters it:
// the Gaussian filter of the fully connected CRF. It is the addon's one set of ops that are not ATen calls:
// ATen has no lattice, and a mean-field CRF spends nearly all its time here (issue 5 asks for 1 s per VOC
// image on one core, which the TypeScript port missed by 2x). The ops are stateless functions of CPU tensors,
// like the rest of the addon; the CRF itself (normalisation, messages, softmax) is TypeScript in src/refine/.
//
//   latticeBuild(features [N,d] f32) -> [offsets, barycentric, neighbors, splatOrder, splatStart]
//     offsets     [N,d+1] int32: each point's d+1 simplex corners, as vertex ids + 1 (row 0 of a value
//                 buffer is the absent vertex and stays zero)
//     barycentric [N,d+1] f32:   the corners' barycentric weights (sum to 1 per point)
//     neighbors   [d+1,M,2] int32: along each lattice axis, each vertex's two neighbours (+1, 0 if absent)
//     splatOrder  [N*(d+1)] int32 and splatStart [M+2] int32: the (point, corner) entries grouped by vertex,
//                 in point order, so a splat can gather per vertex instead of scattering per point
//   latticeSplat(input [N,V], weights [N,d+1], splatOrder, splatStart) -> [M+1,V]
//   latticeBlur(values [M+1,V], neighbors) -> [M+1,V]   ([1/2 1 1/2] along each axis in densecrf's order)
//   latticeSlice(values [M+1,V], offsets, weights [N,d+1]) -> [N,V]
//
// filter = slice(blur(splat(x, barycentric)), alpha * barycentric), alpha = 1 / (1 + 2^-d); the splat and
// slice weights are parameters so callers can fold per-point scales (densecrf's normalisation) into them.
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "engine.h"

// The inner loops run over a row of label values; GCC vectorises them at -O3, not at the addon's -O2.
#pragma GCC optimize("O3")

namespace weakseg {

namespace {

// Open-addressing table from integer keys (d coordinates) to ids in insertion order, as densecrf's
// HashTable; the hash differs, which nothing observes since ids follow insertion order either way. Each slot
// holds its id and a copy of its key, so a probe costs one cache miss, not two (the build is bound by them).
class KeyTable {
 public:
  KeyTable(int d, int64_t expected) : d_(d), stride_(d + 1) {
    int64_t capacity = 16;
    while (capacity < 2 * expected) capacity *= 2;
    slots_.assign(capacity * stride_, -1);
    keys_.reserve(static_cast<size_t>(expected) * d);
  }

  int32_t size() const { return count_; }
  const int32_t* key(int32_t id) const { return keys_.data() + static_cast<size_t>(id) * d_; }

  int32_t find(const int32_t* key, bool create) {
    if (create && 2 * static_cast<int64_t>(count_) * stride_ >= static_cast<int64_t>(slots_.size())) grow();
    const uint64_t mask = slots_.size() / stride_ - 1;
    for (uint64_t h = hash(key) & mask;; h = (h + 1) & mask) {
      int32_t* slot = slots_.data() + h * stride_;
      if (slot[0] == -1) {
        if (!create) return -1;
        keys_.insert(keys_.end(), key, key + d_);
        std::memcpy(slot + 1, key, sizeof(int32_t) * d_);
        return slot[0] = count_++;
      }
      if (std::memcmp(slot + 1, key, sizeof(int32_t) * d_) == 0) return slot[0];
    }
  }

 private:
  int d_, stride_;
  int32_t count_ = 0;
  std::vector<int32_t> keys_;   // [id][d]
  std::vector<int32_t> slots_;  // [slot][id, key...], id -1 when empty

  // Lattice keys are all congruent modulo d+1, so the low bits need mixing before the power-of-two mask.
  uint64_t hash(const int32_t* key) const {
    uint32_t h = 0;
    for (int i = 0; i < d_; i++) h = (h + static_cast<uint32_t>(key[i])) * 1664525u;
    h ^= h >> 16;
    h *= 0x45d9f3bu;
    h ^= h >> 16;
    return h;
  }

  void grow() {
    const uint64_t capacity = slots_.size() / stride_ * 2;
    std::vector<int32_t> slots(capacity * stride_, -1);
    for (int32_t id = 0; id < count_; id++) {
      uint64_t h = hash(key(id)) & (capacity - 1);
      while (slots[h * stride_] != -1) h = (h + 1) & (capacity - 1);
      slots[h * stride_] = id;
      std::memcpy(&slots[h * stride_ + 1], key(id), sizeof(int32_t) * d_);
    }
    slots_.swap(slots);
  }
};

// Calls f with the corner count d+1 as a compile-time constant for the two a 2D CRF uses (3: positions;
// 6: positions and colour), so the per-entry division becomes a multiplication and the corner loop unrolls;
// any other count is passed as a plain integer.
template <class F>
void with_corners(int64_t d1, F&& f) {
  if (d1 == 3) f(std::integral_constant<int64_t, 3>{});
  else if (d1 == 6) f(std::integral_constant<int64_t, 6>{});
  else f(d1);
}

void check_tensor(const at::Tensor& t, const char* name, at::ScalarType type, int64_t dims) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.scalar_type() == type, name, " must be ", dtype_name(type), ", got ", dtype_name(t.scalar_type()));
  TORCH_CHECK(t.dim() == dims, name, " must have ", dims, " dimensions, got ", t.dim());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
}

// Points per parallel task: a few thousand rows of ~21 floats keep a task well above the scheduling cost.
constexpr int64_t kGrain = 2048;

std::vector<at::Tensor> build(const at::Tensor& features) {
  check_tensor(features, "features", at::kFloat, 2);
  const int64_t n = features.size(0);
  const int d = static_cast<int>(features.size(1));
  TORCH_CHECK(d >= 1 && d <= 16, "features must have 1 to 16 columns, got ", d);
  TORCH_CHECK(n >= 1 && n * (d + 1) < (int64_t{1} << 31), "features must have 1 to 2^31/(d+1) rows, got ", n);
  TORCH_CHECK(at::isfinite(features).all().item<bool>(), "features must be finite");
  const int d1 = d + 1;
  const float* f = features.data_ptr<float>();

  at::Tensor offsets_t = at::empty({n, d1}, at::kInt);
  at::Tensor bary_t = at::empty({n, d1}, at::kFloat);
  int32_t* offsets = offsets_t.data_ptr<int32_t>();
  float* barycentric = bary_t.data_ptr<float>();
  KeyTable table(d, n);

  // canonical[r*(d+1) + rank]: coordinate offset of the remainder-r corner of the canonical simplex.
  std::vector<int32_t> canonical(d1 * d1);
  for (int r = 0; r <= d; r++) {
    for (int j = 0; j <= d - r; j++) canonical[r * d1 + j] = r;
    for (int j = d - r + 1; j <= d; j++) canonical[r * d1 + j] = r - d1;
  }
  // Diagonal of the elevation matrix, scaled so the blur matches a unit-std Gaussian (Adams et al. p.5-6).
  const double inv_std = std::sqrt(2.0 / 3.0) * d1;
  std::vector<double> scale(d);
  for (int i = 0; i < d; i++) scale[i] = inv_std / std::sqrt((i + 1.0) * (i + 2.0));

  std::vector<double> elevated(d1), rem0(d1), prev_rem0(d1), bary(d + 2);
  std::vector<int32_t> rank(d1), prev_rank(d1), key(d);
  const double down = 1.0 / d1;

  for (int64_t p = 0; p < n; p++) {
    const float* fp = f + p * d;
    // Elevate onto the hyperplane sum(x) = 0 in d+1 dimensions.
    double sm = 0;
    for (int j = d; j > 0; j--) {
      const double cf = fp[j - 1] * scale[j - 1];
      elevated[j] = sm - j * cf;
      sm += cf;
    }
    elevated[0] = sm;

    // Nearest remainder-0 lattice point, rounding each coordinate to a multiple of d+1.
    int sum = 0;
    for (int i = 0; i <= d; i++) {
      const double v = std::floor(elevated[i] * down + 0.5);  // Math.round: halves go up
      rem0[i] = v * d1;
      sum += static_cast<int>(v);
    }
    // rank[i]: position of coordinate i when the residuals are sorted in decreasing order.
    std::fill(rank.begin(), rank.end(), 0);
    for (int i = 0; i < d; i++) {
      const double di = elevated[i] - rem0[i];
      for (int j = i + 1; j <= d; j++) {
        if (di < elevated[j] - rem0[j]) rank[i]++;
        else rank[j]++;
      }
    }
    // The rounded point may be off the hyperplane (sum != 0): shift ranks and wrap.
    for (int i = 0; i <= d; i++) {
      rank[i] += sum;
      if (rank[i] < 0) {
        rank[i] += d1;
        rem0[i] += d1;
      } else if (rank[i] > d) {
        rank[i] -= d1;
        rem0[i] -= d1;
      }
    }
    // Barycentric coordinates of the point in its simplex (Adams et al. p.10).
    std::fill(bary.begin(), bary.end(), 0.0);
    for (int i = 0; i <= d; i++) {
      const double v = (elevated[i] - rem0[i]) * down;
      bary[d - rank[i]] += v;
      bary[d - rank[i] + 1] -= v;
    }
    bary[0] += 1 + bary[d + 1];

    // The d+1 corners; a key needs d coordinates since the last is implied by sum = 0. Raster neighbours
    // often share a simplex (same rem0 and rank), and then its vertex ids.
    int32_t* op = offsets + p * d1;
    bool same = p > 0;
    for (int i = 0; i <= d && same; i++) same = rem0[i] == prev_rem0[i] && rank[i] == prev_rank[i];
    for (int r = 0; r <= d; r++) {
      if (same) {
        op[r] = op[r - d1];
      } else {
        for (int i = 0; i < d; i++) key[i] = static_cast<int32_t>(rem0[i]) + canonical[r * d1 + rank[i]];
        op[r] = table.find(key.data(), true) + 1;
      }
      barycentric[p * d1 + r] = static_cast<float>(bary[r]);
    }
    prev_rem0 = rem0;
    prev_rank = rank;
  }

  const int32_t m = table.size();
  // Along axis j, neighbour 1 is +d in coordinate j and -1 in the others, neighbour 2 the opposite step;
  // n2(u) = v exactly when n1(v) = u, so one lookup per (vertex, axis) fills both.
  at::Tensor neighbors_t = at::zeros({d1, m, 2}, at::kInt);
  int32_t* nb = neighbors_t.data_ptr<int32_t>();
  for (int32_t v = 0; v < m; v++) {
    const int32_t* k = table.key(v);
    for (int j = 0; j <= d; j++) {
      for (int i = 0; i < d; i++) key[i] = k[i] + (i == j ? d : -1);
      const int32_t u = table.find(key.data(), false);
      if (u < 0) continue;
      nb[(static_cast<int64_t>(j) * m + v) * 2] = u + 1;
      nb[(static_cast<int64_t>(j) * m + u) * 2 + 1] = v + 1;
    }
  }

  // The entries grouped by vertex (a stable counting sort, so each vertex sums its points in point order,
  // the order a scatter would).
  const int64_t entries = n * d1;
  at::Tensor start_t = at::zeros({static_cast<int64_t>(m) + 2}, at::kInt);
  at::Tensor order_t = at::empty({entries}, at::kInt);
  int32_t* start = start_t.data_ptr<int32_t>();
  int32_t* order = order_t.data_ptr<int32_t>();
  for (int64_t e = 0; e < entries; e++) start[offsets[e] + 1]++;
  for (int32_t v = 1; v <= m + 1; v++) start[v] += start[v - 1];
  std::vector<int32_t> cursor(start, start + m + 1);
  for (int64_t e = 0; e < entries; e++) order[cursor[offsets[e]]++] = static_cast<int32_t>(e);
  return {offsets_t, bary_t, neighbors_t, order_t, start_t};
}

// A bad index would read or write out of bounds: check them all once (cheap next to the filter itself).
void check_ids(const int32_t* ids, int64_t count, int64_t limit, const char* name) {
  int32_t lo = 0, hi = 0;  // a min/max pass vectorises; searching for the first bad id does not
  for (int64_t i = 0; i < count; i++) {
    lo = std::min(lo, ids[i]);
    hi = std::max(hi, ids[i]);
  }
  TORCH_CHECK(lo >= 0 && hi < limit, name, " holds ", lo < 0 ? lo : hi, ", outside [0, ", limit, ")");
}

void check_splat_index(const at::Tensor& order, const at::Tensor& start, int64_t entries) {
  const int32_t* s = start.data_ptr<int32_t>();
  const int64_t len = start.numel();
  TORCH_CHECK(s[0] == 0 && s[1] == 0 && s[len - 1] == entries && std::is_sorted(s, s + len),
              "splatStart must rise from 0, 0 to ", entries, " (the vertex 0 row is empty)");
  check_ids(order.data_ptr<int32_t>(), entries, entries, "splatOrder");
}

at::Tensor splat(const at::Tensor& input, const at::Tensor& weights, const at::Tensor& order_t,
                 const at::Tensor& start_t) {
  check_tensor(input, "input", at::kFloat, 2);
  check_tensor(weights, "weights", at::kFloat, 2);
  const int64_t n = input.size(0), vs = input.size(1);
  TORCH_CHECK(weights.size(0) == n, "weights must have one row per input row (", n, "), got ", weights.size(0));
  check_tensor(order_t, "splatOrder", at::kInt, 1);
  check_tensor(start_t, "splatStart", at::kInt, 1);
  const int64_t d1 = weights.size(1);
  TORCH_CHECK(order_t.numel() == n * d1, "splatOrder must have ", n * d1, " entries, got ", order_t.numel());
  const int64_t m = start_t.numel() - 2;
  TORCH_CHECK(m >= 0, "splatStart must have M+2 entries");
  check_splat_index(order_t, start_t, n * d1);
  at::Tensor values_t = at::empty({m + 1, vs}, at::kFloat);
  const float* in = input.data_ptr<float>();
  const float* w = weights.data_ptr<float>();
  const int32_t* order = order_t.data_ptr<int32_t>();
  const int32_t* start = start_t.data_ptr<int32_t>();
  float* values = values_t.data_ptr<float>();
  std::fill(values, values + vs, 0.0f);
  with_corners(d1, [&](auto corners) {
    at::parallel_for(1, m + 1, kGrain, [&](int64_t b, int64_t e) {
      for (int64_t v = b; v < e; v++) {
        float* __restrict row = values + v * vs;
        std::fill(row, row + vs, 0.0f);
        for (int32_t i = start[v]; i < start[v + 1]; i++) {
          const int32_t entry = order[i];
          const float wt = w[entry];
          const float* __restrict src = in + (entry / static_cast<int64_t>(corners)) * vs;
          for (int64_t k = 0; k < vs; k++) row[k] += wt * src[k];
        }
      }
    });
  });
  return values_t;
}

at::Tensor blur(const at::Tensor& values, const at::Tensor& neighbors) {
  check_tensor(values, "values", at::kFloat, 2);
  check_tensor(neighbors, "neighbors", at::kInt, 3);
  const int64_t m = values.size(0) - 1, vs = values.size(1);
  TORCH_CHECK(neighbors.size(1) == m && neighbors.size(2) == 2, "neighbors must be [d+1, ", m, ", 2], got ",
              neighbors.sizes());
  const int64_t axes = neighbors.size(0);
  check_ids(neighbors.data_ptr<int32_t>(), neighbors.numel(), m + 1, "neighbors");
  at::Tensor a = values.clone(), b = at::empty_like(values);
  std::fill(b.data_ptr<float>(), b.data_ptr<float>() + vs, 0.0f);  // the absent vertex reads as zero in both
  const int32_t* nb = neighbors.data_ptr<int32_t>();
  for (int64_t j = 0; j < axes; j++) {
    const float* __restrict src = a.data_ptr<float>();
    float* __restrict dst = b.data_ptr<float>();
    const int32_t* nj = nb + j * m * 2;
    at::parallel_for(0, m, kGrain, [&](int64_t lo, int64_t hi) {
      for (int64_t v = lo; v < hi; v++) {
        const float* __restrict c = src + (v + 1) * vs;
        const float* __restrict n1 = src + static_cast<int64_t>(nj[2 * v]) * vs;
        const float* __restrict n2 = src + static_cast<int64_t>(nj[2 * v + 1]) * vs;
        float* __restrict out = dst + (v + 1) * vs;
        for (int64_t k = 0; k < vs; k++) out[k] = c[k] + 0.5f * (n1[k] + n2[k]);
      }
    });
    std::swap(a, b);
  }
  return a;
}

at::Tensor slice(const at::Tensor& values, const at::Tensor& offsets, const at::Tensor& weights) {
  check_tensor(values, "values", at::kFloat, 2);
  check_tensor(offsets, "offsets", at::kInt, 2);
  check_tensor(weights, "weights", at::kFloat, 2);
  TORCH_CHECK(weights.sizes() == offsets.sizes(), "offsets and weights must both be [N, d+1], got ", offsets.sizes(),
              " and ", weights.sizes());
  const int64_t n = offsets.size(0), vs = values.size(1), d1 = offsets.size(1), rows = values.size(0);
  at::Tensor out_t = at::empty({n, vs}, at::kFloat);
  const float* val = values.data_ptr<float>();
  const int32_t* off = offsets.data_ptr<int32_t>();
  const float* w = weights.data_ptr<float>();
  float* out = out_t.data_ptr<float>();
  check_ids(off, n * d1, rows, "offsets");
  with_corners(d1, [&](auto corners) {
    const int64_t c = corners;
    at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; p++) {
        float* __restrict dst = out + p * vs;
        std::fill(dst, dst + vs, 0.0f);
        for (int64_t r = 0; r < c; r++) {
          const float wt = w[p * c + r];
          const float* __restrict src = val + static_cast<int64_t>(off[p * c + r]) * vs;
          for (int64_t k = 0; k < vs; k++) dst[k] += wt * src[k];
        }
      }
    });
  });
  return out_t;
}

}  // namespace

void register_lattice(Napi::Object e) {
  WS_OP(e, latticeBuild, return wrap_list(env, build(a.t(0))););
  WS_OP(e, latticeSplat, return wrap(env, splat(a.t(0), a.t(1), a.t(2), a.t(3))););
  WS_OP(e, latticeBlur, return wrap(env, blur(a.t(0), a.t(1))););
  WS_OP(e, latticeSlice, return wrap(env, slice(a.t(0), a.t(1), a.t(2))););
}

}  // namespace weakseg
