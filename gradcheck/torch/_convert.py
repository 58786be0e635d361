"""Tensors to arrays and back, and which inputs of a torch function are checked.

The numerical side evaluates the user's function as it is: an array from the checker
becomes a tensor of the *original* input's dtype on the *original* input's device
(``tensor.device``: CUDA where the input lives there), and each output comes back to the
host as an array of its own dtype. float32 stays float32, and float16 stays float16:
torch computes in it on the CPU too (PyTorch 2.x has CPU kernels for float16 and bfloat16
in its convolutions, linear layers, activations and reductions). NumPy has no bfloat16;
a bfloat16 tensor becomes an array of ``ml_dtypes.bfloat16`` (the optional ml_dtypes
package, the type the NumPy path of the checker takes), its bits copied unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from gradcheck._errors import ConfigurationError, UserCodeError

__all__ = ["SUPPORTED", "to_array", "to_tensor", "from_array", "select_inputs",
           "differentiable_outputs", "as_tuple", "numpy_dtype"]

#: Floating dtypes whose gradients the checker can judge (its tolerance table).
SUPPORTED = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_NUMPY = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}


def as_tuple(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _bfloat16(what="a bfloat16 tensor"):
    """``ml_dtypes.bfloat16``, or a :class:`ConfigurationError` saying it is needed."""
    try:
        import ml_dtypes
    except ImportError:
        raise ConfigurationError(
            f"{what} is checked through NumPy arrays of ml_dtypes.bfloat16, and the optional "
            f"ml_dtypes package is not installed: pip install -e '.[bfloat16]', or cast the "
            f"input with x.float()") from None
    return np.dtype(ml_dtypes.bfloat16)


def numpy_dtype(t: torch.Tensor) -> np.dtype:
    """The NumPy dtype of a floating tensor (bfloat16: ``ml_dtypes.bfloat16``)."""
    if t.dtype == torch.bfloat16:
        return _bfloat16()
    return np.dtype(_NUMPY.get(t.dtype, np.float64))


def to_array(t: torch.Tensor) -> np.ndarray:
    """A host copy of ``t`` as a NumPy array of the same dtype."""
    t = t.detach().to("cpu").resolve_conj().resolve_neg()
    if t.dtype == torch.bfloat16:       # NumPy has no bfloat16: the same bits, reinterpreted
        return t.contiguous().view(torch.int16).numpy().view(_bfloat16()).copy()
    return t.numpy().copy()


def to_tensor(array, like: torch.Tensor, *, requires_grad=False) -> torch.Tensor:
    """``array`` as a tensor with ``like``'s dtype and device.

    Complex arrays are refused: the checker may try a complex step, which would push
    complex numbers through code written for real ones (torch's own semantics for complex
    inputs differ); refusing makes it difference with real steps.
    """
    array = np.asarray(array)
    if array.dtype.kind == "c":
        raise TypeError("gradcheck.torch evaluates the function in its own real dtype; "
                        "complex input is not passed through")
    out = from_array(array).to(device=like.device, dtype=like.dtype)
    return out.requires_grad_(requires_grad)


def from_array(array) -> torch.Tensor:
    """A CPU tensor holding a copy of ``array``, in its dtype (bfloat16 included)."""
    array = np.array(array, copy=True, order="C")
    if array.dtype.name == "bfloat16":     # ml_dtypes' type: torch reads its bits as int16
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array) if array.ndim else torch.as_tensor(array)


def _describe(i, names):
    return repr(names[i]) if names else f"input {i}"


def select_inputs(inputs, names, *, what="inputs"):
    """Indices of the inputs to check: the floating tensors with ``requires_grad``, or
    every floating tensor when none is marked.

    Everything else (integers, non-tensors, unmarked tensors beside marked ones) passes
    through unchanged. Floating tensors of a dtype the checker cannot judge (float8) and
    complex tensors are refused; bfloat16 needs the optional ml_dtypes package.
    """
    floating = []
    for i, t in enumerate(inputs):
        if not isinstance(t, torch.Tensor):
            continue
        if t.is_complex():
            raise ConfigurationError(
                f"{_describe(i, names)} is a complex tensor ({t.dtype}); gradcheck.torch "
                f"checks real inputs: pass the real and imaginary parts as two real tensors")
        if t.is_floating_point():
            if t.dtype not in SUPPORTED:
                raise ConfigurationError(
                    f"{_describe(i, names)} has dtype {t.dtype}; gradients are checked in "
                    f"float16, bfloat16, float32 or float64 (cast the input, e.g. x.float())")
            if t.dtype == torch.bfloat16:
                _bfloat16(f"{_describe(i, names)} (bfloat16)")
            if t.is_sparse or t.layout != torch.strided:
                raise ConfigurationError(
                    f"{_describe(i, names)} has layout {t.layout}; only dense (strided) "
                    f"tensors are checked: pass t.to_dense()")
            floating.append(i)
    marked = [i for i in floating if inputs[i].requires_grad]
    chosen = marked or floating
    if not chosen:
        raise ConfigurationError(f"no floating-point tensor among the {what} to check; got "
                                 f"{', '.join(type(t).__name__ for t in inputs) or 'nothing'}")
    for i in chosen:
        t = inputs[i]
        if not torch.isfinite(t.detach()).all():
            raise ConfigurationError(f"{_describe(i, names)} contains NaN or infinity; a "
                                     f"gradient check needs finite inputs")
    return chosen


def differentiable_outputs(outputs, label):
    """Indices of the outputs that are checked: floating tensors that require grad.

    Raises :class:`~gradcheck.UserCodeError` when the function returns something that is
    not a tensor or a tuple of tensors, or no output that depends on the inputs.
    """
    outs = as_tuple(outputs)
    bad = [type(o).__name__ for o in outs if not isinstance(o, torch.Tensor)]
    if bad:
        raise UserCodeError(f"{label} must return a tensor or a tuple of tensors; got "
                            f"{', '.join(bad)}")
    chosen = [i for i, o in enumerate(outs) if o.is_floating_point() and o.requires_grad]
    if not chosen:
        raise UserCodeError(
            f"{label} returned no output that requires grad: none depends on the checked "
            f"inputs in torch's graph (does it detach, use .numpy(), or run under no_grad?)")
    for i in chosen:
        if outs[i].dtype not in SUPPORTED:
            raise UserCodeError(f"{label}'s output {i} has dtype {outs[i].dtype}; outputs are "
                                f"checked in float16, bfloat16, float32 or float64")
    return chosen
