// Mamba mixer kernels: the causal depthwise conv1d with a carried window, and the selective
// scan with a carried SSM state, over a ragged batch of prefilling and decoding sequences.
// The arithmetic follows the CPU kernels (kernels/cpu/mamba_ops.cc) operation by operation;
// the differences are expf/log1pf (within 2 ulp of glibc) and, in the scan, the order in which
// y sums over the states (a shuffle tree instead of 0..N-1).
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace jamba::cuda {
namespace {

__device__ inline float Silu(float v) { return v / (1.0f + expf(-v)); }
// PyTorch's softplus, threshold 20 (pitfall 21).
__device__ inline float Softplus(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

// One thread per (row, channel): out = silu(bias + sum_j w[d, j] * in(t - (K-1) + j)), where
// in(p) for p < 0 is the stored window (zeros for a fresh sequence).
__global__ void ConvOutKernel(DeviceLayout layout, MatF32 x, const float* w, int kw,
                              const float* bias, const float* state, int64_t state_slot_stride,
                              MatF32 out) {
  const int64_t di = out.cols;
  const int64_t hist = kw - 1;
  for (int64_t row = blockIdx.y; row < layout.n_tokens; row += gridDim.y) {
    const int32_t si = layout.row_seq[row];
    if (si < 0) continue;
    const DeviceSeq s = layout.seqs[si];
    const int64_t t = row - s.token_begin;
    const float* window = state + static_cast<int64_t>(s.mamba_slot) * state_slot_stride;
    for (int64_t d = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; d < di;
         d += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const float* wd = w + d * kw;
      float acc = bias != nullptr ? bias[d] : 0.0f;
      for (int j = 0; j < kw; ++j) {
        const int64_t p = t - hist + j;  // input position relative to the chunk's first row
        float v;
        if (p >= 0) {
          v = x.row(s.token_begin + p)[d];
        } else {
          v = s.n_past > 0 ? window[d * hist + (hist + p)] : 0.0f;
        }
        acc += wd[j] * v;
      }
      out.row(row)[d] = Silu(acc);
    }
  }
}

// One thread per (sequence, channel): the new window = the last K-1 inputs of
// [old window | this chunk]. Runs after ConvOutKernel has read the old windows.
__global__ void ConvStateKernel(DeviceLayout layout, MatF32 x, int kw, float* state,
                                int64_t state_slot_stride) {
  const int64_t hist = kw - 1;
  const int64_t di = x.cols;
  for (int32_t si = blockIdx.y; si < layout.num_seqs; si += gridDim.y) {
    const DeviceSeq s = layout.seqs[si];
    float* window = state + static_cast<int64_t>(s.mamba_slot) * state_slot_stride;
    for (int64_t d = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; d < di;
         d += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      float next[16];  // K <= 17 (checked by the launcher); K = 4 in every released model
      for (int64_t j = 0; j < hist; ++j) {
        const int64_t idx = s.n_tokens + j;  // in [old window (hist) | chunk (n)] coordinates
        if (idx < hist) {
          next[j] = s.n_past > 0 ? window[d * hist + idx] : 0.0f;
        } else {
          next[j] = x.row(s.token_begin + (idx - hist))[d];
        }
      }
      for (int64_t j = 0; j < hist; ++j) window[d * hist + j] = next[j];
    }
  }
}

constexpr int kScanThreads = 128;
constexpr int kMaxStatesPerLane = 8;  // N <= 256 with 32 lanes per channel

// Lanes per channel: L = min(32, N rounded up to a power of two); lane l holds states
// l, l + L, ... in registers. blockIdx.y strides over the sequences;
// gridDim.x * (kScanThreads / L) >= Di.
template <int L>
__global__ void ScanKernel(DeviceLayout layout, MatF32 x, MatF32 dt, const float* A, MatF32 B,
                           MatF32 C, const float* D, MatF32 z, float* state,
                           int64_t state_slot_stride, int ns, MatF32 y) {
  const int64_t di = x.cols;
  const int lane = threadIdx.x % L;
  const int64_t d = static_cast<int64_t>(blockIdx.x) * (kScanThreads / L) + threadIdx.x / L;
  const bool active = d < di;
  for (int32_t si = blockIdx.y; si < layout.num_seqs; si += gridDim.y) {
    const DeviceSeq s = layout.seqs[si];
    float* sd =
        state + static_cast<int64_t>(s.mamba_slot) * state_slot_stride + (active ? d : 0) * ns;
    float h[kMaxStatesPerLane];
    float a[kMaxStatesPerLane];
#pragma unroll
    for (int i = 0; i < kMaxStatesPerLane; ++i) {
      const int k = lane + i * L;
      const bool mine = active && k < ns;
      h[i] = mine && s.n_past > 0 ? sd[k] : 0.0f;
      a[i] = mine ? A[d * ns + k] : 0.0f;
    }
    const float dd = active ? D[d] : 0.0f;
    for (int32_t t = 0; t < s.n_tokens; ++t) {
      const int64_t row = s.token_begin + t;
      const float xv = active ? x.row(row)[d] : 0.0f;
      const float dtv = active ? Softplus(dt.row(row)[d]) : 0.0f;
      const float dtx = dtv * xv;
      const float* bt = B.row(row);
      const float* ct = C.row(row);
      float part = 0.0f;
#pragma unroll
      for (int i = 0; i < kMaxStatesPerLane; ++i) {
        const int k = lane + i * L;
        if (k < ns) {
          h[i] = expf(dtv * a[i]) * h[i] + dtx * bt[k];
          part += h[i] * ct[k];
        }
      }
      // Every lane of the warp runs the same number of steps (the block's sequence), so the
      // full-warp shuffle is safe even for inactive channels.
#pragma unroll
      for (int offset = L / 2; offset > 0; offset >>= 1) {
        part += __shfl_xor_sync(0xffffffffu, part, offset, L);
      }
      if (active && lane == 0) {
        const float yv = part + dd * xv;
        y.row(row)[d] = yv * Silu(z.row(row)[d]);
      }
    }
    if (active) {
#pragma unroll
      for (int i = 0; i < kMaxStatesPerLane; ++i) {
        const int k = lane + i * L;
        if (k < ns) sd[k] = h[i];
      }
    }
  }
}

template <int L>
cudaError_t LaunchScan(const DeviceLayout& layout, MatF32 x, MatF32 dt, const float* A, MatF32 B,
                       MatF32 C, const float* D, MatF32 z, float* state, int64_t slot_stride,
                       int ns, MatF32 y, cudaStream_t stream) {
  const int64_t channels_per_block = kScanThreads / L;
  const dim3 grid(static_cast<unsigned>((x.cols + channels_per_block - 1) / channels_per_block),
                  static_cast<unsigned>(std::min<int64_t>(layout.num_seqs, kMaxGridY)));
  Launch(ScanKernel<L>, grid, kScanThreads, 0, stream, layout, x, dt, A, B, C, D, z, state,
         slot_stride, ns, y);
  return cudaGetLastError();
}

const float* F32Vector(const Tensor& t, int64_t n) {
  JAMBA_CHECK(t.device == Device::kCuda && t.dtype == DType::kF32 && t.numel() == n);
  JAMBA_CHECK(t.contiguous());
  return t.ptr<float>();
}

}  // namespace

cudaError_t LaunchMambaConv(const DeviceLayout& layout, const Tensor& x, const Tensor& w,
                            const float* bias, const Tensor& state, const Tensor& out,
                            cudaStream_t stream) {
  const MatF32 xm = AsMatF32(x), om = AsMatF32(out);
  JAMBA_CHECK(w.device == Device::kCuda && w.dtype == DType::kF32 && w.ndim == 2 && w.contiguous());
  const int64_t di = w.dim(0), kw = w.dim(1);
  JAMBA_CHECK(kw >= 2 && kw <= 17);
  JAMBA_CHECK(xm.cols == di && om.cols == di && om.rows == xm.rows);
  JAMBA_CHECK(state.device == Device::kCuda && state.dtype == DType::kF32 && state.ndim == 3 &&
              state.dim(1) == di && state.dim(2) == kw - 1 && state.contiguous());
  // The outputs must not overwrite inputs that later rows still read.
  const float* x_end = xm.data + (xm.rows > 0 ? (xm.rows - 1) * xm.ld + xm.cols : 0);
  const float* o_end = om.data + (om.rows > 0 ? (om.rows - 1) * om.ld + om.cols : 0);
  JAMBA_CHECK_MSG(xm.rows == 0 || o_end <= xm.data || x_end <= om.data,
                  "MambaConv: out overlaps x");
  if (layout.num_seqs == 0 || layout.n_tokens == 0) return cudaSuccess;
  const dim3 out_grid(static_cast<unsigned>(std::min<int64_t>((di + kThreads - 1) / kThreads, 64)),
                      static_cast<unsigned>(std::min<int64_t>(layout.n_tokens, kMaxGridY)));
  Launch(ConvOutKernel, out_grid, kThreads, 0, stream, layout, xm, w.ptr<float>(),
         static_cast<int>(kw), bias, state.ptr<float>(), state.stride[0], om);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  const dim3 state_grid(
      static_cast<unsigned>(std::min<int64_t>((di + kThreads - 1) / kThreads, 1024)),
      static_cast<unsigned>(std::min<int64_t>(layout.num_seqs, kMaxGridY)));
  Launch(ConvStateKernel, state_grid, kThreads, 0, stream, layout, xm, static_cast<int>(kw),
         state.ptr<float>(), state.stride[0]);
  return cudaGetLastError();
}

cudaError_t LaunchMambaScan(const DeviceLayout& layout, const Tensor& x, const Tensor& dt,
                            const Tensor& A, const Tensor& B, const Tensor& C, const Tensor& D,
                            const Tensor& z, const Tensor& state, const Tensor& y,
                            cudaStream_t stream) {
  const MatF32 xm = AsMatF32(x), dtm = AsMatF32(dt), bm = AsMatF32(B), cm = AsMatF32(C),
               zm = AsMatF32(z), ym = AsMatF32(y);
  JAMBA_CHECK(A.device == Device::kCuda && A.dtype == DType::kF32 && A.ndim == 2 && A.contiguous());
  const int64_t di = A.dim(0), ns = A.dim(1);
  JAMBA_CHECK(ns >= 1 && ns <= 32 * kMaxStatesPerLane);
  JAMBA_CHECK(xm.cols == di && dtm.cols == di && zm.cols == di && ym.cols == di);
  JAMBA_CHECK(dtm.rows == xm.rows && bm.rows == xm.rows && cm.rows == xm.rows &&
              zm.rows == xm.rows && ym.rows == xm.rows);
  JAMBA_CHECK(bm.cols == ns && cm.cols == ns);
  JAMBA_CHECK(state.device == Device::kCuda && state.dtype == DType::kF32 && state.ndim == 3 &&
              state.dim(1) == di && state.dim(2) == ns && state.contiguous());
  const float* dv = F32Vector(D, di);
  if (layout.num_seqs == 0 || layout.n_tokens == 0) return cudaSuccess;
  float* st = state.ptr<float>();
  const int64_t ss = state.stride[0];
  const int n = static_cast<int>(ns);
  const float* a = A.ptr<float>();
  if (ns <= 1) return LaunchScan<1>(layout, xm, dtm, a, bm, cm, dv, zm, st, ss, n, ym, stream);
  if (ns <= 2) return LaunchScan<2>(layout, xm, dtm, a, bm, cm, dv, zm, st, ss, n, ym, stream);
  if (ns <= 4) return LaunchScan<4>(layout, xm, dtm, a, bm, cm, dv, zm, st, ss, n, ym, stream);
  if (ns <= 8) return LaunchScan<8>(layout, xm, dtm, a, bm, cm, dv, zm, st, ss, n, ym, stream);
  if (ns <= 16) return LaunchScan<16>(layout, xm, dtm, a, bm, cm, dv, zm, st, ss, n, ym, stream);
  return LaunchScan<32>(layout, xm, dtm, a, bm, cm, dv, zm, st, ss, n, ym, stream);
}

}  // namespace jamba::cuda
