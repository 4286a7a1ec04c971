// Dilated 2-D neighborhood attention on CPU: a fused forward that touches exactly the k*k
// neighbours of each query, and a backward from the saved attention weights. Exact (no tiling
// waste, no masking); the pure-PyTorch path in na2d.py is the reference it is tested against.
//
// Layouts: query/key/value [B, heads, H, W, D] with any strides but a unit stride along D;
// out, grad_query, grad_key, grad_value [B, H, W, heads, D] contiguous (the layout the projection after the
// attention reads); attn and grad_logits [B, heads, H, W, kh*kw].
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

// natten's rule along one axis; neighborhood.py states it: a query at position p of dilation
// group g (length lg) has its window start at s = max(p - k/2, 0) + (p + k/2 >= lg) * (lg - p - k/2 - 1).
struct Axis {
  int64_t length, kernel, dilation;
  std::vector<int64_t> first_key;   // absolute index of the window's first key, per query index
  std::vector<int64_t> first_bias;  // k - 1 + (s - p): rpb index of that key, per query index
  std::vector<int64_t> query_lo, query_hi;  // per key index: queries (absolute) whose window holds it
  std::vector<int64_t> order;  // indices group by group: neighbours in this order share keys (cache reuse)

  Axis(int64_t length_, int64_t kernel_, int64_t dilation_)
      : length(length_), kernel(kernel_), dilation(dilation_),
        first_key(length_), first_bias(length_), query_lo(length_), query_hi(length_) {
    order.reserve(length);
    for (int64_t g = 0; g < dilation; ++g)
      for (int64_t i = g; i < length; i += dilation) order.push_back(i);
    const int64_t ns = kernel / 2;
    for (int64_t i = 0; i < length; ++i) {
      const int64_t g = i % dilation, p = i / dilation;
      const int64_t lg = (length - g + dilation - 1) / dilation;
      int64_t s = std::max<int64_t>(p - ns, 0);
      if (p + ns >= lg) s += lg - p - ns - 1;
      first_key[i] = s * dilation + g;
      first_bias[i] = kernel - 1 + s - p;
    }
    // Windows start at non-decreasing positions within a group, so the queries that see a key
    // form one run of the group: walking each group in order, the first and last that see it.
    std::fill(query_lo.begin(), query_lo.end(), -1);
    for (int64_t i : order)
      for (int64_t t = 0; t < kernel; ++t) {
        const int64_t r = first_key[i] + t * dilation;
        if (query_lo[r] < 0) query_lo[r] = i;
        query_hi[r] = i;
      }
  }
};

struct Strides5 {  // element strides of a [B, heads, H, W, D] tensor
  int64_t b, h, i, j;
  explicit Strides5(const at::Tensor& t) : b(t.stride(0)), h(t.stride(1)), i(t.stride(2)), j(t.stride(3)) {}
};

// The sizes of one call, and flat offsets into its two contiguous layouts.
struct Geometry {
  int64_t batch, heads, height, width, dim, kk;
  Geometry(const at::Tensor& query, const Axis& rows, const Axis& cols)
      : batch(query.size(0)), heads(query.size(1)), height(query.size(2)), width(query.size(3)),
        dim(query.size(4)), kk(rows.kernel * cols.kernel) {}
  int64_t tasks() const { return batch * heads * height; }  // one (batch, head, row) each
  void task(int64_t index, const Axis& rows, int64_t& b, int64_t& h, int64_t& i) const {
    i = rows.order[index % height];
    h = (index / height) % heads;
    b = index / (height * heads);
  }
  // [B, H, W, heads, D]: out and the gradients of query, key, value
  int64_t token(int64_t b, int64_t i, int64_t j, int64_t h) const {
    return (((b * height + i) * width + j) * heads + h) * dim;
  }
  // [B, heads, H, W, kh*kw]: the attention weights and their gradients
  int64_t weights(int64_t b, int64_t h, int64_t i, int64_t j) const {
    return (((b * heads + h) * height + i) * width + j) * kk;
  }
};

template <typename T, int DC>
inline T dot(const T* __restrict a, const T* __restrict b, int64_t dim) {
  const int64_t n = DC ? DC : dim;
  T acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t c = 0; c < n; ++c) acc += a[c] * b[c];
  return acc;
}

// A head_dim-long sum; with the size known at compile time it lives in registers, so the k*k
// updates of one query do not round-trip through memory.
template <typename T, int DC>
struct Accumulator {
  T value[DC];
  explicit Accumulator(int64_t) {
    for (int c = 0; c < DC; ++c) value[c] = 0;
  }
  inline void add(T alpha, const T* __restrict x) {
#pragma omp simd
    for (int c = 0; c < DC; ++c) value[c] += alpha * x[c];
  }
  inline void store(T* __restrict dst) const {
    for (int c = 0; c < DC; ++c) dst[c] = value[c];
  }
};

template <typename T>
struct Accumulator<T, 0> {
  std::vector<T> value;
  explicit Accumulator(int64_t dim) : value(dim, T(0)) {}
  inline void add(T alpha, const T* __restrict x) {
    T* __restrict y = value.data();
    const int64_t n = static_cast<int64_t>(value.size());
#pragma omp simd
    for (int64_t c = 0; c < n; ++c) y[c] += alpha * x[c];
  }
  inline void store(T* __restrict dst) const { std::copy(value.begin(), value.end(), dst); }
};

template <typename T, int DC>
void forward_kernel(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                    const at::Tensor& rpb, double scale_, const Axis& rows, const Axis& cols,
                    at::Tensor& out, at::Tensor& attn) {
  const Geometry geo(query, rows, cols);
  const int64_t dim = geo.dim, kk = geo.kk;
  const int64_t kh = rows.kernel, kw = cols.kernel, dh = rows.dilation, dw = cols.dilation;
  const int64_t bias_w = 2 * kw - 1, bias_hw = (2 * kh - 1) * bias_w;
  const Strides5 sq(query), sk(key), sv(value);
  const T* q_ptr = query.data_ptr<T>();
  const T* k_ptr = key.data_ptr<T>();
  const T* v_ptr = value.data_ptr<T>();
  const T* rpb_ptr = rpb.defined() ? rpb.data_ptr<T>() : nullptr;
  T* out_ptr = out.data_ptr<T>();
  T* attn_ptr = attn.defined() ? attn.data_ptr<T>() : nullptr;
  const T scale = static_cast<T>(scale_);

  at::parallel_for(0, geo.tasks(), 1, [&](int64_t begin, int64_t end) {
    std::vector<T> local(kk);
    for (int64_t index = begin; index < end; ++index) {
      int64_t b, h, i;
      geo.task(index, rows, b, h, i);
      const T* qrow = q_ptr + b * sq.b + h * sq.h + i * sq.i;
      const T* kbase = k_ptr + b * sk.b + h * sk.h + rows.first_key[i] * sk.i;
      const T* vbase = v_ptr + b * sv.b + h * sv.h + rows.first_key[i] * sv.i;
      const T* bias_rows = rpb_ptr ? rpb_ptr + h * bias_hw + rows.first_bias[i] * bias_w : nullptr;
      for (int64_t j : cols.order) {
        const T* qp = qrow + j * sq.j;
        T* scores = attn_ptr ? attn_ptr + geo.weights(b, h, i, j) : local.data();
        const int64_t key_col = cols.first_key[j], bias_col = cols.first_bias[j];
        for (int64_t a = 0; a < kh; ++a) {
          const T* krow = kbase + a * dh * sk.i + key_col * sk.j;
          for (int64_t t = 0; t < kw; ++t) {
            scores[a * kw + t] = dot<T, DC>(qp, krow + t * dw * sk.j, dim) * scale;
          }
          if (bias_rows) {
            const T* brow = bias_rows + a * bias_w + bias_col;
            for (int64_t t = 0; t < kw; ++t) scores[a * kw + t] += brow[t];
          }
        }
        T top = scores[0];
        for (int64_t n = 1; n < kk; ++n) top = std::max(top, scores[n]);
        T total = 0;
#pragma omp simd reduction(+ : total)
        for (int64_t n = 0; n < kk; ++n) {
          scores[n] = std::exp(scores[n] - top);
          total += scores[n];
        }
        const T inv = T(1) / total;
        Accumulator<T, DC> acc(dim);
        for (int64_t a = 0; a < kh; ++a) {
          const T* vrow = vbase + a * dh * sv.i + key_col * sv.j;
          for (int64_t t = 0; t < kw; ++t) {
            const T p = scores[a * kw + t] * inv;
            scores[a * kw + t] = p;
            acc.add(p, vrow + t * dw * sv.j);
          }
        }
        acc.store(out_ptr + geo.token(b, i, j, h));
      }
    }
  });
}

// Pass 1, per query: dP = dO . v_n, dS = P * (dP - sum(P * dP)), dQ = scale * sum dS_n k_n.
// Pass 2, per key: dV = sum P dO, dK = scale * sum dS q over the queries whose windows hold it.
// Pass 3, per head: d rpb = sum of dS at each relative offset. No pass writes shared memory.
template <typename T, int DC>
void backward_kernel(const at::Tensor& grad_out, const at::Tensor& query, const at::Tensor& key,
                     const at::Tensor& value, const at::Tensor& attn, double scale_, const Axis& rows,
                     const Axis& cols, at::Tensor& grad_query, at::Tensor& grad_key,
                     at::Tensor& grad_value, at::Tensor& grad_rpb) {
  const Geometry geo(query, rows, cols);
  const int64_t dim = geo.dim, kk = geo.kk;
  const int64_t kh = rows.kernel, kw = cols.kernel, dh = rows.dilation, dw = cols.dilation;
  const Strides5 sq(query), sk(key), sv(value);
  const T* q_ptr = query.data_ptr<T>();
  const T* k_ptr = key.data_ptr<T>();
  const T* v_ptr = value.data_ptr<T>();
  const T* go_ptr = grad_out.data_ptr<T>();  // [B, H, W, heads, D] contiguous
  const T* p_ptr = attn.data_ptr<T>();
  const T scale = static_cast<T>(scale_);
  at::Tensor grad_logits = at::empty_like(attn);
  T* ds_ptr = grad_logits.data_ptr<T>();
  T* gq_ptr = grad_query.data_ptr<T>();  // [B, H, W, heads, D] contiguous, like the others
  T* gk_ptr = grad_key.data_ptr<T>();
  T* gv_ptr = grad_value.data_ptr<T>();

  at::parallel_for(0, geo.tasks(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t index = begin; index < end; ++index) {
      int64_t b, h, i;
      geo.task(index, rows, b, h, i);
      const T* kbase = k_ptr + b * sk.b + h * sk.h + rows.first_key[i] * sk.i;
      const T* vbase = v_ptr + b * sv.b + h * sv.h + rows.first_key[i] * sv.i;
      for (int64_t j : cols.order) {
        const int64_t offset = geo.weights(b, h, i, j);
        const T* p = p_ptr + offset;
        T* ds = ds_ptr + offset;
        const T* go = go_ptr + geo.token(b, i, j, h);
        const int64_t key_col = cols.first_key[j];
        T weighted = 0;
        for (int64_t a = 0; a < kh; ++a) {
          const T* vrow = vbase + a * dh * sv.i + key_col * sv.j;
          for (int64_t t = 0; t < kw; ++t) {
            const T dp = dot<T, DC>(go, vrow + t * dw * sv.j, dim);
            ds[a * kw + t] = dp;
            weighted += p[a * kw + t] * dp;
          }
        }
#pragma omp simd
        for (int64_t n = 0; n < kk; ++n) ds[n] = p[n] * (ds[n] - weighted) * scale;
        Accumulator<T, DC> acc(dim);
        for (int64_t a = 0; a < kh; ++a) {
          const T* krow = kbase + a * dh * sk.i + key_col * sk.j;
          for (int64_t t = 0; t < kw; ++t) acc.add(ds[a * kw + t], krow + t * dw * sk.j);
        }
        acc.store(gq_ptr + geo.token(b, i, j, h));
      }
    }
  });

  at::parallel_for(0, geo.tasks(), 1, [&](int64_t begin, int64_t end) {
    for (int64_t index = begin; index < end; ++index) {
      int64_t b, h, r;
      geo.task(index, rows, b, h, r);
      const T* qbase = q_ptr + b * sq.b + h * sq.h;
      for (int64_t c : cols.order) {
        Accumulator<T, DC> acc_k(dim), acc_v(dim);
        for (int64_t i = rows.query_lo[r]; i <= rows.query_hi[r]; i += dh) {
          const int64_t a = (r - rows.first_key[i]) / dh;
          for (int64_t j = cols.query_lo[c]; j <= cols.query_hi[c]; j += dw) {
            const int64_t n = a * kw + (c - cols.first_key[j]) / dw;
            const int64_t offset = geo.weights(b, h, i, j) + n;
            acc_v.add(p_ptr[offset], go_ptr + geo.token(b, i, j, h));
            acc_k.add(ds_ptr[offset], qbase + i * sq.i + j * sq.j);
          }
        }
        acc_k.store(gk_ptr + geo.token(b, r, c, h));
        acc_v.store(gv_ptr + geo.token(b, r, c, h));
      }
    }
  });

  if (grad_rpb.defined()) {
    const int64_t bias_w = 2 * kw - 1, bias_hw = (2 * kh - 1) * bias_w;
    T* gb_ptr = grad_rpb.data_ptr<T>();  // [heads, 2kh-1, 2kw-1], zeroed
    at::parallel_for(0, geo.heads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t h = begin; h < end; ++h) {
        T* table = gb_ptr + h * bias_hw;
        for (int64_t b = 0; b < geo.batch; ++b)
          for (int64_t i = 0; i < geo.height; ++i)
            for (int64_t j = 0; j < geo.width; ++j) {
              const T* ds = ds_ptr + geo.weights(b, h, i, j);
              T* corner = table + rows.first_bias[i] * bias_w + cols.first_bias[j];
              for (int64_t a = 0; a < kh; ++a)
                for (int64_t t = 0; t < kw; ++t) corner[a * bias_w + t] += ds[a * kw + t];
            }
      }
    });
    grad_rpb.div_(scale_);  // dS carries the scale for dQ/dK; the bias is added after scaling
  }
}

#define DINAT_MM_DISPATCH_DIM(DIM, ...)                 \
  switch (DIM) {                                         \
    case 16: { constexpr int DC = 16; __VA_ARGS__(); break; } \
    case 32: { constexpr int DC = 32; __VA_ARGS__(); break; } \
    case 64: { constexpr int DC = 64; __VA_ARGS__(); break; } \
    default: { constexpr int DC = 0; __VA_ARGS__(); break; }  \
  }

void check_inputs(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value) {
  for (const at::Tensor* t : {&query, &key, &value}) {
    TORCH_CHECK(t->device().is_cpu(), "na2d cpu kernel: tensors must be on the CPU");
    TORCH_CHECK(t->dim() == 5 && t->stride(4) == 1, "na2d cpu kernel: [B, heads, H, W, D] with unit stride along D");
    TORCH_CHECK(t->sizes() == query.sizes() && t->scalar_type() == query.scalar_type(), "na2d cpu kernel: q/k/v mismatch");
  }
}

}  // namespace

std::vector<at::Tensor> na2d_forward(const at::Tensor& query, const at::Tensor& key, const at::Tensor& value,
                                     const c10::optional<at::Tensor>& rpb, int64_t kh, int64_t kw, int64_t dh,
                                     int64_t dw, double scale, bool keep_attn) {
  check_inputs(query, key, value);
  const Axis rows(query.size(2), kh, dh), cols(query.size(3), kw, dw);
  at::Tensor bias = rpb.has_value() ? rpb->contiguous() : at::Tensor();
  at::Tensor out = at::empty({query.size(0), query.size(2), query.size(3), query.size(1), query.size(4)},
                             query.options());
  at::Tensor attn = keep_attn ? at::empty({query.size(0), query.size(1), query.size(2), query.size(3), kh * kw},
                                          query.options())
                              : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "na2d_forward", [&] {
    DINAT_MM_DISPATCH_DIM(query.size(4), [&] {
      forward_kernel<scalar_t, DC>(query, key, value, bias, scale, rows, cols, out, attn);
    });
  });
  return {out, attn};
}

std::vector<at::Tensor> na2d_backward(const at::Tensor& grad_out, const at::Tensor& query, const at::Tensor& key,
                                      const at::Tensor& value, const at::Tensor& attn, bool has_rpb, int64_t kh,
                                      int64_t kw, int64_t dh, int64_t dw, double scale) {
  check_inputs(query, key, value);
  TORCH_CHECK(grad_out.is_contiguous() && attn.is_contiguous(), "na2d cpu kernel: grad_out/attn must be contiguous");
  const Axis rows(query.size(2), kh, dh), cols(query.size(3), kw, dw);
  at::Tensor grad_query = at::empty_like(grad_out), grad_key = at::empty_like(grad_out),
             grad_value = at::empty_like(grad_out);
  at::Tensor grad_rpb = has_rpb ? at::zeros({query.size(1), 2 * kh - 1, 2 * kw - 1}, query.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "na2d_backward", [&] {
    DINAT_MM_DISPATCH_DIM(query.size(4), [&] {
      backward_kernel<scalar_t, DC>(grad_out, query, key, value, attn, scale, rows, cols, grad_query, grad_key,
                                    grad_value, grad_rpb);
    });
  });
  return {grad_query, grad_key, grad_value, grad_rpb};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &na2d_forward, "dilated 2-D neighborhood attention, forward (CPU)");
  m.def("backward", &na2d_backward, "dilated 2-D neighborhood attention, backward (CPU)");
}
