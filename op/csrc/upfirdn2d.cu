// upfirdn2d forward on the GPU: zero-insertion up-sampling, padding, 2-D FIR filtering and
// down-sampling, computed directly from the definition in op/upfirdn2d.py:
//
//     y[j] = sum_t u[j * down + t - pad0] * kernel[k - 1 - t]
//
// where u is the input with up - 1 zeros after every sample (and zero outside the signal). One thread
// computes one output pixel and visits only the taps that land on real input samples (the polyphase
// component of the kernel), so inserted zeros and discarded samples cost nothing.
//
// Two kernels compute that definition:
// * upfirdn2d_small_kernel, for what StyleGAN2 runs: a 4x4 FIR kernel with up, down in {1, 2} on both axes.
//   The factors and the kernel size are template constants, so the tap loops unroll, the polyphase tests
//   become parity checks, and all index arithmetic is 32-bit (the generic kernel's 64-bit division and
//   modulo per output and per tap bound it, not memory). A 2-D grid gives each thread its output
//   position directly; gridDim.z walks the planes. The taps sit in shared memory.
// * upfirdn2d_kernel, the generic one: any kernel size and factors, one flat 64-bit index per output.

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>

namespace {

struct UpFirDnShape {
  int64_t planes;  // batch * channels
  int64_t in_h, in_w;
  int64_t out_h, out_w;
  int64_t up_x, up_y;
  int64_t down_x, down_y;
  int64_t pad_x0, pad_y0;  // pad1 only sets the output length, which the caller already derived
  int64_t kernel_h, kernel_w;
};

// Smallest tap t >= 0 such that position start + t of the zero-stuffed signal is a real sample:
// non-negative and a multiple of up.
__device__ __forceinline__ int64_t first_real_tap(int64_t start, int64_t up) {
  const int64_t t = start < 0 ? -start : 0;
  const int64_t rem = (start + t) % up;  // start + t >= 0, so rem is in [0, up)
  return rem == 0 ? t : t + up - rem;
}

__device__ __forceinline__ int64_t smaller(int64_t a, int64_t b) { return a < b ? a : b; }

template <typename scalar_t>
__global__ void upfirdn2d_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ x,
                                 const scalar_t* __restrict__ kernel, const UpFirDnShape s) {
  using acc_t = at::acc_type<scalar_t, /*is_cuda=*/true>;
  const int64_t total = s.planes * s.out_h * s.out_w;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; index < total;
       index += stride) {
    const int64_t ox = index % s.out_w;
    const int64_t oy = (index / s.out_w) % s.out_h;
    const int64_t plane = index / (s.out_w * s.out_h);

    // Where tap 0 falls in the zero-stuffed signal; taps past the end of the signal read zeros.
    const int64_t start_y = oy * s.down_y - s.pad_y0;
    const int64_t start_x = ox * s.down_x - s.pad_x0;
    const int64_t end_y = smaller(s.kernel_h, s.in_h * s.up_y - start_y);
    const int64_t end_x = smaller(s.kernel_w, s.in_w * s.up_x - start_x);
    const int64_t begin_x = first_real_tap(start_x, s.up_x);

    const scalar_t* src = x + plane * s.in_h * s.in_w;
    acc_t sum = 0;
    for (int64_t ty = first_real_tap(start_y, s.up_y); ty < end_y; ty += s.up_y) {
      const scalar_t* src_row = src + ((start_y + ty) / s.up_y) * s.in_w;
      // A true convolution: tap t multiplies kernel[k - 1 - t].
      const scalar_t* kernel_row = kernel + (s.kernel_h - 1 - ty) * s.kernel_w;
      for (int64_t tx = begin_x; tx < end_x; tx += s.up_x) {
        sum += static_cast<acc_t>(src_row[(start_x + tx) / s.up_x]) *
               static_cast<acc_t>(kernel_row[s.kernel_w - 1 - tx]);
      }
    }
    out[index] = static_cast<scalar_t>(sum);
  }
}

template <typename scalar_t, int K, int UP, int DOWN>
__global__ void upfirdn2d_small_kernel(scalar_t* __restrict__ out, const scalar_t* __restrict__ x,
                                       const scalar_t* __restrict__ kernel, int planes, int in_h, int in_w,
                                       int out_h, int out_w, int pad_x0, int pad_y0) {
  using acc_t = at::acc_type<scalar_t, /*is_cuda=*/true>;
  __shared__ acc_t taps[K * K];
  const int thread = threadIdx.y * blockDim.x + threadIdx.x;
  if (thread < K * K) {
    // Stored flipped, so tap (ty, tx) of the loop below multiplies taps[ty * K + tx] (a true convolution).
    taps[thread] = static_cast<acc_t>(kernel[K * K - 1 - thread]);
  }
  __syncthreads();
  const int ox = blockIdx.x * blockDim.x + threadIdx.x;
  const int oy = blockIdx.y * blockDim.y + threadIdx.y;
  if (ox >= out_w || oy >= out_h) {
    return;
  }
  // Position of tap 0 in the zero-stuffed signal. A position is a real sample when it is a multiple of
  // UP (C++'s % keeps the sign, so negative positions fail either this test or the bounds test).
  const int start_x = ox * DOWN - pad_x0;
  const int start_y = oy * DOWN - pad_y0;
  for (int plane = blockIdx.z; plane < planes; plane += gridDim.z) {
    const scalar_t* src = x + static_cast<int64_t>(plane) * in_h * in_w;
    acc_t sum = 0;
#pragma unroll
    for (int ty = 0; ty < K; ++ty) {
      const int uy = start_y + ty;
      const int iy = uy / UP;
      if ((UP > 1 && uy % UP != 0) || iy < 0 || iy >= in_h || uy < 0) {
        continue;
      }
      const scalar_t* row = src + iy * in_w;
#pragma unroll
      for (int tx = 0; tx < K; ++tx) {
        const int ux = start_x + tx;
        const int ix = ux / UP;
        if ((UP > 1 && ux % UP != 0) || ix < 0 || ix >= in_w || ux < 0) {
          continue;
        }
        sum += static_cast<acc_t>(row[ix]) * taps[ty * K + tx];
      }
    }
    out[(static_cast<int64_t>(plane) * out_h + oy) * out_w + ox] = static_cast<scalar_t>(sum);
  }
}

constexpr int kSmallTaps = 4;

// The small kernel serves the case when its template covers the parameters and every offset fits in 32 bits.
bool small_kernel_applies(const UpFirDnShape& s) {
  const int64_t limit = int64_t{1} << 30;
  return s.planes < limit && s.kernel_h == kSmallTaps && s.kernel_w == kSmallTaps && s.up_x == s.up_y && s.down_x == s.down_y &&
         (s.up_x == 1 || s.up_x == 2) && (s.down_x == 1 || s.down_x == 2) && s.in_h * s.in_w < limit &&
         s.out_h * s.out_w < limit && s.in_h * s.up_y < limit && s.in_w * s.up_x < limit &&
         s.out_h * s.down_y < limit && s.out_w * s.down_x < limit && s.pad_x0 > -limit && s.pad_x0 < limit &&
         s.pad_y0 > -limit && s.pad_y0 < limit;
}

template <typename scalar_t, int UP, int DOWN>
void launch_small(at::Tensor& out, const at::Tensor& input, const at::Tensor& taps, const UpFirDnShape& s,
                  cudaStream_t stream) {
  const dim3 threads(32, 8);
  const dim3 blocks(static_cast<unsigned int>((s.out_w + threads.x - 1) / threads.x),
                    static_cast<unsigned int>((s.out_h + threads.y - 1) / threads.y),
                    static_cast<unsigned int>(std::min<int64_t>(s.planes, 65535)));
  upfirdn2d_small_kernel<scalar_t, kSmallTaps, UP, DOWN><<<blocks, threads, 0, stream>>>(
      out.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), taps.data_ptr<scalar_t>(),
      static_cast<int>(s.planes), static_cast<int>(s.in_h), static_cast<int>(s.in_w), static_cast<int>(s.out_h),
      static_cast<int>(s.out_w), static_cast<int>(s.pad_x0), static_cast<int>(s.pad_y0));
}

}  // namespace

at::Tensor upfirdn2d_forward(const at::Tensor& x, const at::Tensor& kernel, int64_t up_x, int64_t up_y,
                             int64_t down_x, int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0,
                             int64_t pad_y1, bool allow_small) {
  TORCH_CHECK(x.is_cuda(), "upfirdn2d: x must be a CUDA tensor, got one on ", x.device());
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be [batch, channels, height, width], got ", x.sizes());
  TORCH_CHECK(kernel.dim() == 2, "upfirdn2d: kernel must be [kh, kw], got ", kernel.sizes());
  TORCH_CHECK(kernel.device() == x.device(), "upfirdn2d: kernel is on ", kernel.device(), " but x is on ",
              x.device());
  TORCH_CHECK(kernel.scalar_type() == x.scalar_type(), "upfirdn2d: kernel dtype ", kernel.scalar_type(),
              " differs from x dtype ", x.scalar_type());
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1,
              "upfirdn2d: up and down factors must be >= 1, got up=(", up_x, ", ", up_y, ") down=(", down_x,
              ", ", down_y, ")");

  UpFirDnShape s;
  s.planes = x.size(0) * x.size(1);
  s.in_h = x.size(2);
  s.in_w = x.size(3);
  s.kernel_h = kernel.size(0);
  s.kernel_w = kernel.size(1);
  s.up_x = up_x;
  s.up_y = up_y;
  s.down_x = down_x;
  s.down_y = down_y;
  s.pad_x0 = pad_x0;
  s.pad_y0 = pad_y0;
  // Floor division (the numerator may be negative for heavy cropping; then the output is empty).
  const int64_t num_h = s.in_h * up_y + pad_y0 + pad_y1 - s.kernel_h;
  const int64_t num_w = s.in_w * up_x + pad_x0 + pad_x1 - s.kernel_w;
  s.out_h = (num_h >= 0 ? num_h / down_y : -((-num_h + down_y - 1) / down_y)) + 1;
  s.out_w = (num_w >= 0 ? num_w / down_x : -((-num_w + down_x - 1) / down_x)) + 1;
  TORCH_CHECK(s.out_h >= 1 && s.out_w >= 1, "upfirdn2d: output would be empty (", s.out_h, "x", s.out_w,
              ")");

  const c10::cuda::CUDAGuard device_guard(x.device());
  const at::Tensor input = x.contiguous();
  const at::Tensor taps = kernel.contiguous();
  at::Tensor out = at::empty({x.size(0), x.size(1), s.out_h, s.out_w}, x.options());
  const int64_t total = out.numel();
  if (total == 0) {
    return out;
  }
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (allow_small && small_kernel_applies(s)) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d_small", [&] {
      if (s.up_x == 2 && s.down_x == 2) {
        launch_small<scalar_t, 2, 2>(out, input, taps, s, stream);
      } else if (s.up_x == 2) {
        launch_small<scalar_t, 2, 1>(out, input, taps, s, stream);
      } else if (s.down_x == 2) {
        launch_small<scalar_t, 1, 2>(out, input, taps, s, stream);
      } else {
        launch_small<scalar_t, 1, 1>(out, input, taps, s, stream);
      }
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return out;
  }
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((total + threads - 1) / threads, int64_t{1} << 20);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "upfirdn2d_forward", [&] {
    upfirdn2d_kernel<scalar_t><<<static_cast<unsigned int>(blocks), threads, 0, stream>>>(
        out.data_ptr<scalar_t>(), input.data_ptr<scalar_t>(), taps.data_ptr<scalar_t>(), s);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}
