// pool_hidden on CUDA: gather the last real token or average the real tokens of each
// sequence in float32 (pool_accumulate), then optionally L2-normalise each row and round it
// to the hidden dtype (pool_finalize). The float32 workspace is allocated by torch.
#include <climits>

#include "common.cuh"
#include "codes.h"
#include "pool_hidden.h"

namespace pyl2d {
namespace cuda {
namespace {

constexpr int kPoolThreads = 256;
constexpr float kNormalizeEps = codes::kNormEps;

// grid.x covers columns, grid.y strides over rows; one thread per (row, column).
template <typename T>
__global__ void pool_accumulate(const T* __restrict__ hidden, int64_t batch, int64_t tokens, int64_t dim,
                                int64_t stride0, int64_t stride1, int mode, const int64_t* __restrict__ last_index,
                                const uint8_t* __restrict__ real, float* __restrict__ pooled) {
  const int64_t d = static_cast<int64_t>(blockIdx.x) * kPoolThreads + threadIdx.x;
  if (d >= dim) return;
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const T* row = hidden + b * stride0 + d;
    float value;
    if (mode == codes::kPoolLast) {
      value = to_float(row[last_index[b] * stride1]);
    } else {
      float sum = 0.0f;
      int64_t count = 0;
      const uint8_t* mask = real + b * tokens;
      for (int64_t t = 0; t < tokens; ++t) {
        if (mask[t] != 0) {
          sum += to_float(row[t * stride1]);
          ++count;
        }
      }
      value = sum / static_cast<float>(count);  // count >= 1: checked by the op
    }
    pooled[b * dim + d] = value;
  }
}

// One block per row: optional division by max(norm, eps), then rounding to T.
template <typename T>
__global__ void pool_finalize(const float* __restrict__ pooled, int64_t batch, int64_t dim, bool normalize,
                              T* __restrict__ out) {
  __shared__ float partial[kPoolThreads / 32];
  __shared__ float denom_s;
  for (int64_t b = blockIdx.x; b < batch; b += gridDim.x) {
    const float* src = pooled + b * dim;
    T* dst = out + b * dim;
    float denom = 1.0f;
    if (normalize) {
      float ss = 0.0f;
      for (int64_t d = threadIdx.x; d < dim; d += kPoolThreads) ss += src[d] * src[d];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
      if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = ss;
      __syncthreads();
      if (threadIdx.x == 0) {
        float total = 0.0f;
        for (int w = 0; w < kPoolThreads / 32; ++w) total += partial[w];
        denom_s = fmaxf(sqrtf(total), kNormalizeEps);
      }
      __syncthreads();
      denom = denom_s;
    }
    for (int64_t d = threadIdx.x; d < dim; d += kPoolThreads) {
      dst[d] = from_float<T>(normalize ? src[d] / denom : src[d]);
    }
    __syncthreads();  // partial / denom_s are reused by the next row
  }
}

template <typename T>
void launch_pool(uintptr_t hidden, int64_t batch, int64_t tokens, int64_t dim, int64_t stride0, int64_t stride1,
                 int mode, uintptr_t last_index, uintptr_t real, bool normalize, uintptr_t pooled, uintptr_t out,
                 cudaStream_t stream) {
  const int64_t col_blocks = (dim + kPoolThreads - 1) / kPoolThreads;
  const dim3 grid_acc(static_cast<unsigned>(col_blocks), static_cast<unsigned>(batch < 65535 ? batch : 65535));
  pool_accumulate<T><<<grid_acc, kPoolThreads, 0, stream>>>(
      reinterpret_cast<const T*>(hidden), batch, tokens, dim, stride0, stride1, mode,
      reinterpret_cast<const int64_t*>(last_index), reinterpret_cast<const uint8_t*>(real),
      reinterpret_cast<float*>(pooled));
  check_launch("pool_hidden accumulate launch");
  const unsigned rows = static_cast<unsigned>(batch < (1 << 30) ? batch : (1 << 30));
  pool_finalize<T><<<rows, kPoolThreads, 0, stream>>>(reinterpret_cast<const float*>(pooled), batch, dim, normalize,
                                                       reinterpret_cast<T*>(out));
  check_launch("pool_hidden finalize launch");
}

}  // namespace

void pool_hidden(const PoolHiddenCudaParams& p) {
  expect(p.hidden, "hidden", 3, {DType::kFloat32, DType::kFloat16, DType::kBFloat16});
  const int64_t batch = p.hidden.size(0), tokens = p.hidden.size(1), dim = p.hidden.size(2);
  const int64_t stride0 = p.hidden.stride(0), stride1 = p.hidden.stride(1);
  require(dim <= 1 || p.hidden.stride(2) == 1, "hidden: inner stride must be 1");
  require(batch >= 1 && tokens >= 1 && dim >= 1, "hidden must be non-empty");
  require(dim / kPoolThreads < INT_MAX, "dim too large");
  const DType dtype = p.hidden.type();
  expect_contiguous(p.pooled, "pooled", {batch, dim}, {DType::kFloat32});
  expect_contiguous(p.out, "out", {batch, dim}, {dtype});
  require(p.hidden.ptr != 0 && p.pooled.ptr != 0 && p.out.ptr != 0, "null hidden or output pointer");
  const int mode = p.mode;
  require(mode == codes::kPoolLast || mode == codes::kPoolMean, "mode code must be 0 (last) or 1 (mean)");
  require(mode != codes::kPoolLast || p.last_index.defined, "mode last needs last_index");
  require(mode != codes::kPoolMean || p.real.defined, "mode mean needs the real-token mask");
  if (p.last_index.defined) expect_vector(p.last_index, "last_index", batch, DType::kInt64);
  if (p.real.defined) expect_contiguous(p.real, "real", {batch, tokens}, {DType::kUInt8});
  const uintptr_t hidden = p.hidden.ptr, pooled = p.pooled.ptr, out = p.out.ptr;
  const uintptr_t last_index = p.last_index.defined ? p.last_index.ptr : 0;
  const uintptr_t real = p.real.defined ? p.real.ptr : 0;
  const bool normalize = p.normalize;
  cudaStream_t s = reinterpret_cast<cudaStream_t>(p.stream);
  switch (dtype) {
    case DType::kFloat32:
      launch_pool<float>(hidden, batch, tokens, dim, stride0, stride1, mode, last_index, real, normalize, pooled, out,
                         s);
      break;
    case DType::kFloat16:
      launch_pool<__half>(hidden, batch, tokens, dim, stride0, stride1, mode, last_index, real, normalize, pooled,
                          out, s);
      break;
    case DType::kBFloat16:
      launch_pool<__nv_bfloat16>(hidden, batch, tokens, dim, stride0, stride1, mode, last_index, real, normalize,
                                 pooled, out, s);
      break;
    default:
      throw std::invalid_argument("pyl2d CUDA: pool_hidden takes float32, float16 or bfloat16");
  }
}

}  // namespace cuda
}  // namespace pyl2d
