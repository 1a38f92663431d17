"""``import tinygradlm.nn.functional as F`` -- the functional API lives in ``tinygradlm/functional.py``."""
from ..functional import (cross_entropy, dropout, embedding, gelu, layer_norm, linear,  # noqa: F401
                          log_softmax, nll_loss, relu, scaled_dot_product_attention, sigmoid,
                          softmax, tanh)
