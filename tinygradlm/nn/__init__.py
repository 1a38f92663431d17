"""Neural-network building blocks: ``Module``, ``Parameter``, layers, attention, GPT, BERT,
classifiers and the functional API."""
from . import functional
from .attention import MLP, KVCache, MultiHeadAttention, TransformerBlock
from .bert import BERT, BERTConfig
from .classifier import ClassifierConfig, SequenceClassifier
from .gpt import GPT, GPTConfig
from .layers import (GELU, Dropout, Embedding, LayerNorm, Linear, ModuleDict, ModuleList, ReLU,
                     Sequential, Sigmoid, Tanh)
from .module import Module, Parameter

__all__ = ["functional", "Module", "Parameter", "Linear", "Embedding", "LayerNorm", "Dropout",
           "GELU", "ReLU", "Tanh", "Sigmoid", "Sequential", "ModuleList", "ModuleDict",
           "MultiHeadAttention", "TransformerBlock", "MLP", "KVCache", "GPT", "GPTConfig", "BERT",
           "BERTConfig", "SequenceClassifier", "ClassifierConfig"]
