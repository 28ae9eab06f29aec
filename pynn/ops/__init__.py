"""The one door into C: every call into the kernels goes through here, and so does every check.

A pointer only crosses into C after its array has been checked: a numpy array, float32,
C-contiguous (so rows are where C thinks they are), the shape the operation needs, writable
when C writes to it. A wrong argument raises TypeError (wrong type or dtype) or ValueError
(wrong shape, layout, empty where data is needed) naming it. Nothing is converted silently:
a float64 array passed where float32 is expected is an error, not a hidden copy.

The functions return new arrays; ``out=`` writes into a buffer the caller owns instead, which
the training loop uses so that no batch allocates.

The parts, each a C file's wrappers: checks (what every call checks, and the pointers),
runtime (threads, kernel sets, memory), matrix, activations, losses, optim, convert, image,
dropout, conv (convolution and pooling), and fast (a whole network, or one sample, in one C
call).
"""
from .._pynn import lib      # the C library itself, for tests that ask it directly
from .runtime import (CACHE_LINE, KERNEL_SETS, MAX_LAYERS, MAX_WIDTH, aligned_copy, cpu_features,
                      get_num_threads, physical_memory, select_kernels, set_num_threads,
                      share_every_job)
from .checks import hyperparameter
from .matrix import GemmCall, bias_backward, bias_forward, gemm, matmul
from .activations import (ACTIVATIONS, LINEAR, RELU, SIGMOID, SOFTMAX, TANH, activation_backward,
                          activation_forward, relu, sigmoid, softmax, tanh)
from .losses import (quadratic_loss, quadratic_loss_backward, sigmoid_cross_entropy,
                     sigmoid_cross_entropy_backward, softmax_cross_entropy,
                     softmax_cross_entropy_backward)
from .optim import (OPTIMIZER_KINDS, STATE_ARRAYS, OptimizerStep, adam_update, momentum_update,
                    optimizer_step, sgd_update)
from .convert import argmax_rows, scale_u8
from .image import (DISTORT_MAX, distort, gaussian_blur, ink_bbox, ink_moments, raster_strokes,
                    resample_area, stroke_width, warp)
from .dropout import dropout_backward, dropout_forward
from .conv import (conv2d_backward, conv2d_forward, conv2d_output_shape, conv2d_relu_pool_backward_weights,
                   conv2d_relu_pool_forward,
                   conv2d_relu_pool_workspace, conv2d_workspace, maxpool2d_backward,
                   maxpool2d_forward, relu_maxpool2d_backward)
from .fast import LOSS_KINDS, FusedNet, OneImage, OneSample

__all__ = ["lib", "conv2d_backward", "conv2d_forward", "conv2d_output_shape",
           "conv2d_workspace", "maxpool2d_backward", "maxpool2d_forward",
           "conv2d_relu_pool_backward_weights", "conv2d_relu_pool_forward", "conv2d_relu_pool_workspace", "relu_maxpool2d_backward", "CACHE_LINE", "KERNEL_SETS", "MAX_LAYERS", "MAX_WIDTH", "aligned_copy",
           "cpu_features", "get_num_threads", "physical_memory", "select_kernels",
           "set_num_threads", "share_every_job", "hyperparameter", "GemmCall", "bias_backward", "bias_forward",
           "gemm", "matmul", "ACTIVATIONS", "LINEAR", "RELU", "SIGMOID", "SOFTMAX", "TANH",
           "activation_backward", "activation_forward", "relu", "sigmoid", "softmax", "tanh",
           "quadratic_loss", "quadratic_loss_backward", "sigmoid_cross_entropy",
           "sigmoid_cross_entropy_backward", "softmax_cross_entropy",
           "softmax_cross_entropy_backward", "adam_update", "momentum_update", "optimizer_step", "OptimizerStep", "STATE_ARRAYS", "sgd_update",
           "argmax_rows", "scale_u8", "DISTORT_MAX", "distort", "gaussian_blur", "ink_bbox",
           "ink_moments", "raster_strokes", "resample_area", "stroke_width", "warp",
           "dropout_backward", "dropout_forward", "LOSS_KINDS", "OPTIMIZER_KINDS", "FusedNet",
           "OneImage", "OneSample"]
