# Temporary: the engine moved to autograd.py (removed once every import is switched).
from .autograd import Function, enable_grad, is_grad_enabled, no_grad, reduce_to_shape, _check_devices  # noqa
