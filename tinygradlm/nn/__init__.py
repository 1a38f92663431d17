"""Neural-network building blocks: ``Module``, ``Parameter``, layers and the functional API."""
from . import functional
from .layers import (GELU, Dropout, Embedding, LayerNorm, Linear, ModuleDict, ModuleList, ReLU,
                     Sequential, Sigmoid, Tanh)
from .module import Module, Parameter

__all__ = ["functional", "Module", "Parameter", "Linear", "Embedding", "LayerNorm", "Dropout",
           "GELU", "ReLU", "Tanh", "Sigmoid", "Sequential", "ModuleList", "ModuleDict"]
