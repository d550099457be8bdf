// Row-wise and elementwise CUDA kernels: embedding, RMSNorm, SiLU gating, residual add, zero,
// gather/scatter for MoE. Contracts: kernels/cuda/cuda_kernels.h and kernels/backend.h.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_kernels.h"

namespace jamba::cuda {
namespace {

__device__ inline float Silu(float v) { return v / (1.0f + expf(-v)); }

template <typename TableT>
__global__ void EmbedKernel(const TableT* table, int64_t table_rows, int64_t table_ld,
                            const int32_t* ids, MatF32 out, int* error_word) {
  for (int64_t i = blockIdx.y; i < out.rows; i += gridDim.y) {
    const int32_t id = ids[i];
    if (id < 0 || id >= table_rows) {
      if (blockIdx.x == 0 && threadIdx.x == 0) RecordError(error_word, kEmbedIdOutOfRange);
      continue;
    }
    const TableT* src = table + id * table_ld;
    float* dst = out.row(i);
    for (int64_t j = blockIdx.x * blockDim.x + threadIdx.x; j < out.cols;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      if constexpr (sizeof(TableT) == 2) {
        dst[j] = Bf16BitsToF32(src[j]);
      } else {
        dst[j] = src[j];
      }
    }
  }
}

// One row of `cols` values by one block; yi may alias xi.
__device__ void RmsNormRow(const float* xi, float* yi, int64_t cols, const float* weight,
                           float eps) {
  float ss = 0.0f;
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) ss += xi[j] * xi[j];
  ss = BlockSum(ss);  // all reads of the row precede any write (out may alias x)
  const float r = 1.0f / sqrtf(ss / static_cast<float>(cols) + eps);
  for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
    yi[j] = weight != nullptr ? xi[j] * r * weight[j] : xi[j] * r;
  }
}

// One block per row.
__global__ void RmsNormKernel(MatF32 x, const float* weight, float eps, MatF32 out) {
  const int64_t i = blockIdx.x;
  RmsNormRow(x.row(i), out.row(i), x.cols, weight, eps);
}

// Grid (row, group): one block per row and column group, in place.
__global__ void RmsNormGroupsKernel(MatF32 x, NormGroups groups, float eps) {
  const int g = blockIdx.y;
  float* row = x.row(blockIdx.x) + groups.offset[g];
  RmsNormRow(row, row, groups.width[g], groups.weight[g], eps);
}

__global__ void SiluMulKernel(MatF32 gate, MatF32 up, MatF32 out) {
  for (int64_t i = blockIdx.y; i < out.rows; i += gridDim.y) {
    const float* g = gate.row(i);
    const float* u = up.row(i);
    float* o = out.row(i);
    for (int64_t j = blockIdx.x * blockDim.x + threadIdx.x; j < out.cols;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      o[j] = Silu(g[j]) * u[j];
    }
  }
}

__global__ void AddKernel(MatF32 a, MatF32 acc) {
  for (int64_t i = blockIdx.y; i < acc.rows; i += gridDim.y) {
    const float* s = a.row(i);
    float* o = acc.row(i);
    for (int64_t j = blockIdx.x * blockDim.x + threadIdx.x; j < acc.cols;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      o[j] += s[j];
    }
  }
}

__global__ void ZeroKernel(MatF32 t) {
  for (int64_t i = blockIdx.y; i < t.rows; i += gridDim.y) {
    float* o = t.row(i);
    for (int64_t j = blockIdx.x * blockDim.x + threadIdx.x; j < t.cols;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      o[j] = 0.0f;
    }
  }
}

__global__ void GatherRowsKernel(MatF32 x, const int32_t* idx, MatF32 out, int* error_word) {
  for (int64_t i = blockIdx.y; i < out.rows; i += gridDim.y) {
    const int32_t id = idx[i];
    if (id < 0 || id >= x.rows) {
      if (blockIdx.x == 0 && threadIdx.x == 0) RecordError(error_word, kGatherIndexOutOfRange);
      continue;
    }
    const float* src = x.row(id);
    float* dst = out.row(i);
    for (int64_t j = blockIdx.x * blockDim.x + threadIdx.x; j < out.cols;
         j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      dst[j] = src[j];
    }
  }
}

// One thread per output column walks the rows in order: a fixed summation order and no races
// when an index repeats.
__global__ void ScatterAddScaledKernel(MatF32 rows, const int32_t* idx, const float* scale,
                                       MatF32 out, int* error_word) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= rows.cols) return;
  for (int64_t i = 0; i < rows.rows; ++i) {
    const int32_t id = idx[i];
    if (id < 0 || id >= out.rows) {
      if (j == 0) RecordError(error_word, kScatterIndexOutOfRange);
      continue;
    }
    out.row(id)[j] += scale[i] * rows.row(i)[j];
  }
}

cudaError_t LastLaunchError() { return cudaGetLastError(); }

}  // namespace

const char* KernelErrorName(int code) {
  switch (code) {
    case kKernelOk:
      return "ok";
    case kEmbedIdOutOfRange:
      return "Embed: token id out of range";
    case kGatherIndexOutOfRange:
      return "GatherRows: row index out of range";
    case kMoeExpertOutOfRange:
      return "MoeGroup: expert id out of range";
    case kScatterIndexOutOfRange:
      return "ScatterAddScaled: row index out of range";
    case kGroupCountsOverrun:
      return "MatMulGrouped: group sizes negative or beyond the rows of x";
  }
  return "unknown kernel error";
}

cudaError_t LaunchEmbed(const Tensor& table, const Tensor& ids, const Tensor& out, int* error_word,
                        cudaStream_t stream) {
  const MatF32 o = AsMatF32(out);
  const int32_t* id = AsIndexVector(ids, o.rows);
  JAMBA_CHECK(table.device == Device::kCuda && table.ndim == 2 && table.stride[1] == 1);
  JAMBA_CHECK(table.shape[1] == o.cols);
  if (o.rows == 0 || o.cols == 0) return cudaSuccess;
  const dim3 grid = RowColGrid(o.rows, o.cols);
  if (table.dtype == DType::kF32) {
    Launch(EmbedKernel<float>, grid, kThreads, 0, stream, table.ptr<float>(), table.shape[0],
           table.stride[0], id, o, error_word);
  } else {
    JAMBA_CHECK(table.dtype == DType::kBF16);
    Launch(EmbedKernel<uint16_t>, grid, kThreads, 0, stream, table.ptr<uint16_t>(), table.shape[0],
           table.stride[0], id, o, error_word);
  }
  return LastLaunchError();
}

cudaError_t LaunchRmsNorm(const Tensor& x, const float* weight, float eps, const Tensor& out,
                          cudaStream_t stream) {
  const MatF32 xs = AsMatF32(x), o = AsMatF32(out);
  JAMBA_CHECK(o.rows == xs.rows && o.cols == xs.cols);
  if (xs.rows == 0 || xs.cols == 0) return cudaSuccess;
  JAMBA_CHECK(xs.rows <= 0x7fffffff);
  const int threads = xs.cols >= 4096 ? 1024 : kThreads;
  Launch(RmsNormKernel, static_cast<unsigned>(xs.rows), threads, 0, stream, xs, weight, eps, o);
  return LastLaunchError();
}

cudaError_t LaunchRmsNormGroups(const Tensor& x, const NormGroups& groups, float eps,
                                cudaStream_t stream) {
  const MatF32 xs = AsMatF32(x);
  JAMBA_CHECK(groups.count >= 1 && groups.count <= NormGroups::kMaxGroups);
  int64_t cols = 0;
  for (int g = 0; g < groups.count; ++g) {
    JAMBA_CHECK(groups.offset[g] == cols && groups.width[g] >= 1);
    cols += groups.width[g];
  }
  JAMBA_CHECK(cols == xs.cols);
  if (xs.rows == 0) return cudaSuccess;
  JAMBA_CHECK(xs.rows <= 0x7fffffff);
  Launch(RmsNormGroupsKernel,
         dim3(static_cast<unsigned>(xs.rows), static_cast<unsigned>(groups.count)), kThreads, 0,
         stream, xs, groups, eps);
  return LastLaunchError();
}

cudaError_t LaunchSiluMul(const Tensor& gate, const Tensor& up, const Tensor& out,
                          cudaStream_t stream) {
  const MatF32 g = AsMatF32(gate), u = AsMatF32(up), o = AsMatF32(out);
  JAMBA_CHECK(u.rows == g.rows && u.cols == g.cols && o.rows == g.rows && o.cols == g.cols);
  if (o.rows == 0 || o.cols == 0) return cudaSuccess;
  Launch(SiluMulKernel, RowColGrid(o.rows, o.cols), kThreads, 0, stream, g, u, o);
  return LastLaunchError();
}

cudaError_t LaunchAdd(const Tensor& a, const Tensor& acc, cudaStream_t stream) {
  const MatF32 s = AsMatF32(a), o = AsMatF32(acc);
  JAMBA_CHECK(s.rows == o.rows && s.cols == o.cols);
  if (o.rows == 0 || o.cols == 0) return cudaSuccess;
  Launch(AddKernel, RowColGrid(o.rows, o.cols), kThreads, 0, stream, s, o);
  return LastLaunchError();
}

cudaError_t LaunchZero(const Tensor& t, cudaStream_t stream) {
  const MatF32 o = AsMatF32(t);
  if (o.rows == 0 || o.cols == 0) return cudaSuccess;
  if (o.ld == o.cols) return cudaMemsetAsync(o.data, 0, o.rows * o.cols * sizeof(float), stream);
  Launch(ZeroKernel, RowColGrid(o.rows, o.cols), kThreads, 0, stream, o);
  return LastLaunchError();
}

cudaError_t LaunchGatherRows(const Tensor& x, const Tensor& idx, const Tensor& out, int* error_word,
                             cudaStream_t stream) {
  const MatF32 xs = AsMatF32(x), o = AsMatF32(out);
  const int32_t* id = AsIndexVector(idx, o.rows);
  JAMBA_CHECK(o.cols == xs.cols);
  if (o.rows == 0 || o.cols == 0) return cudaSuccess;
  Launch(GatherRowsKernel, RowColGrid(o.rows, o.cols), kThreads, 0, stream, xs, id, o, error_word);
  return LastLaunchError();
}

cudaError_t LaunchScatterAddScaled(const Tensor& rows, const Tensor& idx, const Tensor& scale,
                                   const Tensor& out, int* error_word, cudaStream_t stream) {
  const MatF32 r = AsMatF32(rows), o = AsMatF32(out);
  const int32_t* id = AsIndexVector(idx, r.rows);
  JAMBA_CHECK(scale.device == Device::kCuda && scale.dtype == DType::kF32);
  JAMBA_CHECK(scale.ndim == 1 && scale.shape[0] == r.rows && scale.contiguous());
  JAMBA_CHECK(o.cols == r.cols);
  if (r.rows == 0 || r.cols == 0) return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>((r.cols + kThreads - 1) / kThreads);
  Launch(ScatterAddScaledKernel, blocks, kThreads, 0, stream, r, id, scale.ptr<float>(), o,
         error_word);
  return LastLaunchError();
}

}  // namespace jamba::cuda
