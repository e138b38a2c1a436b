// Python bindings for jojogan's CUDA operators. The kernels and their argument checks live in the .cu
// files; autograd is wired up in op/_cuda_autograd.py.

#include <torch/extension.h>

#include <optional>
#include <tuple>

at::Tensor upfirdn2d_forward(const at::Tensor& x, const at::Tensor& kernel, int64_t up_x, int64_t up_y,
                             int64_t down_x, int64_t down_y, int64_t pad_x0, int64_t pad_x1, int64_t pad_y0,
                             int64_t pad_y1, bool allow_small);

std::tuple<at::Tensor, at::Tensor> fused_bias_leaky_relu_forward(const at::Tensor& x,
                                                                 const std::optional<at::Tensor>& bias,
                                                                 double negative_slope, double scale,
                                                                 bool return_mask);

at::Tensor leaky_relu_grad(const at::Tensor& grad_out, const at::Tensor& mask, double negative_slope,
                           double scale);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "jojogan CUDA operators: upfirdn2d and fused bias + leaky ReLU";
  m.def("upfirdn2d", &upfirdn2d_forward, "upfirdn2d forward, [batch, channels, h, w] -> [batch, channels, oh, ow]",
        py::arg("x"), py::arg("kernel"), py::arg("up_x"), py::arg("up_y"), py::arg("down_x"), py::arg("down_y"),
        py::arg("pad_x0"), py::arg("pad_x1"), py::arg("pad_y0"), py::arg("pad_y1"), py::arg("allow_small") = true);
  m.def("fused_bias_leaky_relu", &fused_bias_leaky_relu_forward,
        "leaky_relu(x + bias[c]) * scale; returns (out, mask of x + bias > 0 or None)", py::arg("x"),
        py::arg("bias"), py::arg("negative_slope"), py::arg("scale"), py::arg("return_mask"));
  m.def("leaky_relu_grad", &leaky_relu_grad, "grad_out * scale * (mask ? 1 : negative_slope)",
        py::arg("grad_out"), py::arg("mask"), py::arg("negative_slope"), py::arg("scale"));
}
