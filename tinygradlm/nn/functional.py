"""``import tinygradlm.nn.functional as F``.

The functions live in ``tinygradlm/functional.py`` (and convolution, pooling and resizing in
``tinygradlm/conv.py``); this module is the PyTorch-style address.
"""
from ..functional import (  # noqa: F401
    binary_cross_entropy, binary_cross_entropy_with_logits, celu, cross_entropy, dropout, elu,
    embedding, gelu, hardsigmoid, hardswish, hardtanh, l1_loss, layer_norm, leaky_relu, linear,
    log_softmax, logsigmoid, mish, mse_loss, nll_loss, normalize, one_hot, pad, relu, relu6,
    scaled_dot_product_attention, selu, sigmoid, silu, smooth_l1_loss, softmax, softmin,
    softplus, softsign, tanh)
from ..conv import (  # noqa: F401
    adaptive_avg_pool1d, adaptive_avg_pool2d, avg_pool1d, avg_pool2d, conv1d, conv2d,
    conv_transpose1d, conv_transpose2d, fold, interpolate, max_pool1d, max_pool2d, unfold)
