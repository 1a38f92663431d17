"""Neural-network building blocks: ``Module``, ``Parameter``, layers, convolution and
pooling, attention, GPT, BERT, the encoder-decoder, classifiers and the functional API."""
from . import functional
from .attention import MLP, CrossAttention, KVCache, MultiHeadAttention, TransformerBlock
from .bert import BERT, BERTConfig
from .classifier import ClassifierConfig, SequenceClassifier
from .conv import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, Conv1d, Conv2d,
                   ConvTranspose1d, ConvTranspose2d, Flatten, MaxPool1d, MaxPool2d, Upsample)
from .encoder_decoder import (DecoderBlock, EncoderDecoder, EncoderDecoderCache,
                              EncoderDecoderConfig)
from .gpt import GPT, GPTConfig
from .layers import (CELU, ELU, GELU, SELU, Dropout, Embedding, Hardsigmoid, Hardswish,
                     Hardtanh, Identity, LayerNorm, LeakyReLU, Linear, LogSigmoid, LogSoftmax,
                     Mish, ModuleDict, ModuleList, ReLU, ReLU6, Sequential, Sigmoid, SiLU,
                     SinusoidalPositionalEmbedding, Softmax, Softmin, Softplus, Softsign, Tanh)
from .losses import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss,
                     SmoothL1Loss)
from .module import Module, Parameter

__all__ = ["functional", "Module", "Parameter", "Linear", "Embedding", "LayerNorm", "Dropout",
           "GELU", "ReLU", "Tanh", "Sigmoid", "SiLU", "ELU", "CELU", "SELU", "LeakyReLU",
           "Softplus", "Hardtanh", "Softmax", "Mish", "Softsign", "Hardsigmoid", "Hardswish",
           "ReLU6", "LogSigmoid", "LogSoftmax", "Softmin", "Identity", "MSELoss", "L1Loss",
           "SmoothL1Loss", "BCELoss", "BCEWithLogitsLoss", "NLLLoss", "CrossEntropyLoss",
           "Sequential", "ModuleList", "ModuleDict",
           "MultiHeadAttention", "TransformerBlock", "MLP", "KVCache", "CrossAttention",
           "DecoderBlock", "EncoderDecoder", "EncoderDecoderConfig", "EncoderDecoderCache",
           "SinusoidalPositionalEmbedding", "GPT", "GPTConfig", "BERT",
           "BERTConfig", "SequenceClassifier", "ClassifierConfig", "Conv1d", "Conv2d",
           "ConvTranspose1d", "ConvTranspose2d", "MaxPool1d", "MaxPool2d", "AvgPool1d",
           "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "Upsample", "Flatten"]
