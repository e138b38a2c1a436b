// Fused bias + leaky ReLU + gain on the GPU, and its gradient.
//
// Forward:  out = leaky_relu(x + bias[c], slope) * scale, with c the index along dimension 1.
// Gradient: grad_x = grad_out * scale * (pre > 0 ? 1 : slope), pre = x + bias[c]; as in PyTorch's
//           leaky_relu, an input of exactly zero takes the negative-side slope.
//
// The forward can also return the sign of the pre-activation as a bool mask, which is all the gradient
// needs: one byte per element instead of keeping the input or output alive, and exact for any slope or
// scale (the sign of the output alone is ambiguous when slope <= 0 or when a product underflows).

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <optional>
#include <tuple>

namespace {

constexpr int kThreads = 256;

int64_t grid_size(int64_t total) {
  return std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t{1} << 20);
}

// index_t is int when every index fits in 32 bits: the channel of each element costs a division and a
// modulo, which are several times cheaper in 32-bit arithmetic.
template <typename scalar_t, typename index_t>
__global__ void fused_bias_leaky_relu_kernel(scalar_t* __restrict__ out, bool* __restrict__ mask,
                                             const scalar_t* __restrict__ x,
                                             const scalar_t* __restrict__ bias, index_t total,
                                             index_t channels, index_t inner,
                                             at::acc_type<scalar_t, true> slope,
                                             at::acc_type<scalar_t, true> scale) {
  using acc_t = at::acc_type<scalar_t, true>;
  const index_t stride = static_cast<index_t>(blockDim.x) * gridDim.x;
  for (index_t index = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; index < total;
       index += stride) {
    acc_t value = static_cast<acc_t>(x[index]);
    if (bias != nullptr) {
      value += static_cast<acc_t>(bias[(index / inner) % channels]);
    }
    const bool positive = value > acc_t(0);
    if (!positive) {
      value *= slope;
    }
    out[index] = static_cast<scalar_t>(value * scale);
    if (mask != nullptr) {
      mask[index] = positive;
    }
  }
}

template <typename scalar_t>
__global__ void leaky_relu_grad_kernel(scalar_t* __restrict__ grad_in, const scalar_t* __restrict__ grad_out,
                                       const bool* __restrict__ mask, int64_t total,
                                       at::acc_type<scalar_t, true> slope,
                                       at::acc_type<scalar_t, true> scale) {
  using acc_t = at::acc_type<scalar_t, true>;
  const int64_t stride = static_cast<int64_t>(blockDim.x) * gridDim.x;
  for (int64_t index = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; index < total;
       index += stride) {
    // Same order of operations as autograd through the reference: the gain first, then the slope.
    acc_t value = static_cast<acc_t>(grad_out[index]) * scale;
    if (!mask[index]) {
      value *= slope;
    }
    grad_in[index] = static_cast<scalar_t>(value);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> fused_bias_leaky_relu_forward(const at::Tensor& x,
                                                                 const std::optional<at::Tensor>& bias,
                                                                 double negative_slope, double scale,
                                                                 bool return_mask) {
  TORCH_CHECK(x.is_cuda(), "fused_bias_leaky_relu: x must be a CUDA tensor, got one on ", x.device());
  const bool has_bias = bias.has_value() && bias->defined();
  int64_t channels = 1;
  int64_t inner = 1;
  if (has_bias) {
    TORCH_CHECK(x.dim() >= 2, "fused_bias_leaky_relu: a bias needs x with a channel dimension, got ",
                x.sizes());
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == x.size(1), "fused_bias_leaky_relu: bias must be [",
                x.size(1), "], got ", bias->sizes());
    TORCH_CHECK(bias->device() == x.device(), "fused_bias_leaky_relu: bias is on ", bias->device(),
                " but x is on ", x.device());
    TORCH_CHECK(bias->scalar_type() == x.scalar_type(), "fused_bias_leaky_relu: bias dtype ",
                bias->scalar_type(), " differs from x dtype ", x.scalar_type());
    channels = x.size(1);
    for (int64_t dim = 2; dim < x.dim(); ++dim) {
      inner *= x.size(dim);
    }
  }

  const c10::cuda::CUDAGuard device_guard(x.device());
  const at::Tensor input = x.contiguous();
  const at::Tensor bias_c = has_bias ? bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty_like(input);
  at::Tensor mask = return_mask ? at::empty(input.sizes(), input.options().dtype(at::kBool)) : at::Tensor();
  const int64_t total = input.numel();
  if (total == 0) {
    return std::make_tuple(out, mask);
  }
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "fused_bias_leaky_relu_forward", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    const auto blocks = static_cast<unsigned int>(grid_size(total));
    // The grid-stride loop may step one stride past total before it stops: keep that in range too.
    const int64_t reach = total + static_cast<int64_t>(blocks) * kThreads;
    if (reach < (int64_t{1} << 31)) {
      fused_bias_leaky_relu_kernel<scalar_t, int><<<blocks, kThreads, 0, stream>>>(
          out.data_ptr<scalar_t>(), return_mask ? mask.data_ptr<bool>() : nullptr, input.data_ptr<scalar_t>(),
          has_bias ? bias_c.data_ptr<scalar_t>() : nullptr, static_cast<int>(total), static_cast<int>(channels),
          static_cast<int>(inner), static_cast<acc_t>(negative_slope), static_cast<acc_t>(scale));
    } else {
      fused_bias_leaky_relu_kernel<scalar_t, int64_t><<<blocks, kThreads, 0, stream>>>(
          out.data_ptr<scalar_t>(), return_mask ? mask.data_ptr<bool>() : nullptr, input.data_ptr<scalar_t>(),
          has_bias ? bias_c.data_ptr<scalar_t>() : nullptr, total, channels, inner,
          static_cast<acc_t>(negative_slope), static_cast<acc_t>(scale));
    }
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return std::make_tuple(out, mask);
}

at::Tensor leaky_relu_grad(const at::Tensor& grad_out, const at::Tensor& mask, double negative_slope,
                           double scale) {
  TORCH_CHECK(grad_out.is_cuda(), "leaky_relu_grad: grad_out must be a CUDA tensor, got one on ",
              grad_out.device());
  TORCH_CHECK(mask.scalar_type() == at::kBool, "leaky_relu_grad: mask must be bool, got ", mask.scalar_type());
  TORCH_CHECK(mask.sizes() == grad_out.sizes(), "leaky_relu_grad: mask shape ", mask.sizes(),
              " differs from grad_out shape ", grad_out.sizes());
  TORCH_CHECK(mask.device() == grad_out.device(), "leaky_relu_grad: mask is on ", mask.device(),
              " but grad_out is on ", grad_out.device());

  const c10::cuda::CUDAGuard device_guard(grad_out.device());
  const at::Tensor grad = grad_out.contiguous();
  const at::Tensor mask_c = mask.contiguous();
  at::Tensor grad_in = at::empty_like(grad);
  const int64_t total = grad.numel();
  if (total == 0) {
    return grad_in;
  }
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "leaky_relu_grad", [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    leaky_relu_grad_kernel<scalar_t><<<static_cast<unsigned int>(grid_size(total)), kThreads, 0, stream>>>(
        grad_in.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(), mask_c.data_ptr<bool>(), total,
        static_cast<acc_t>(negative_slope), static_cast<acc_t>(scale));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_in;
}
