"""``import tinygradlm.nn.functional as F``.

The functions live in ``tinygradlm/functional.py``; this module is the PyTorch-style address.
"""
from ..functional import (cross_entropy, dropout, embedding, gelu, layer_norm, linear,  # noqa: F401
                          log_softmax, nll_loss, relu, scaled_dot_product_attention, sigmoid,
                          softmax, tanh)
