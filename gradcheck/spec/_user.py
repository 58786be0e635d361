"""``type = "python"`` layers: a user's own layer object behind the layer protocol.

The target (``"package.module:Object"``, ``"package.module"``, ``"path/to/file.py:Object"``;
found by :mod:`gradcheck.spec._target`) names an object with

* ``forward(x, *params) -> y`` and
* ``backward(grad_y, x, *params) -> (grad_x, *grad_params)``

-- the contract of :func:`gradcheck.check_vjp` and the shape of a
``torch.autograd.Function``. A class is instantiated with the layer's ``kwargs``; any
other object (a module, an instance) is used as it is; a PyTorch Function or Module is
adapted to the contract by :mod:`gradcheck.torch`.

Failures are told apart:

* the target cannot be imported, has no such object, or lacks ``forward``/``backward``:
  :class:`~gradcheck.SpecError` (bad input, exit status 2);
* the user's code raises, returns something that is not an array of numbers, an array of
  the wrong shape, the wrong number of gradients, or NaN/inf:
  :class:`~gradcheck.UserCodeError` (the code under test is broken, exit status 1), naming
  the method and what it returned.

A gradient ``backward`` returns as ``None`` is passed on as ``None``: a zero gradient, as
in PyTorch, which the checker checks as zeros and reports as not returned.
"""

from __future__ import annotations

import math

import numpy as np

from gradcheck._errors import UserCodeError
from gradcheck.ops._patterns import LayerBase
from gradcheck.spec._target import check_target_syntax, resolve_target

__all__ = ["UserLayer", "resolve_target", "check_target_syntax", "INIT_WORDS", "draw_param"]

#: The named ways to draw a parameter (besides a ``{loc, scale}`` table).
INIT_WORDS = ("default", "zeros", "ones")


def draw_param(rule, shape, z) -> np.ndarray:
    """A parameter of ``shape`` from the standard normal draw ``z`` by ``rule``.

    ``"default"``: ``N(0, 1/fan_in)``, ``fan_in = prod(shape[1:])``, for 2+ dims, else
    ``N(0, 1/4)`` -- a weight's scale; ``"zeros"`` / ``"ones"``: constant (a shift, a
    scale such as a batch norm's beta / gamma); ``{"loc": m, "scale": s}``: ``m + s z``.

    >>> draw_param({"loc": 1.0, "scale": 0.1}, (2,), np.array([1.0, -2.0]))
    array([1.1, 0.8])
    >>> draw_param("default", (2, 4), np.ones((2, 4)))[0, 0]
    np.float64(0.5)
    """
    if rule == "zeros":
        return np.zeros(shape)
    if rule == "ones":
        return np.ones(shape)
    if isinstance(rule, dict):
        return rule.get("loc", 0.0) + rule.get("scale", 1.0) * z
    scale = 1.0 / math.sqrt(math.prod(shape[1:])) if len(shape) >= 2 else 0.5
    return z * scale


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "(no message)"


class UserLayer(LayerBase):
    """A user's layer object adapted to the layer protocol of :mod:`gradcheck.ops.layers`.

    Parameters
    ----------
    target : str
        ``"package.module:Object"``, for messages and ``to_dict``.
    obj : object
        What :func:`resolve_target` returned.
    params : dict
        Parameter name -> shape, in the order ``forward``/``backward`` take them.
    options : dict
        The constructor's keyword arguments, the spec's ``kwargs`` (kept for ``to_dict``).
    output_shape : tuple, optional
        The output shape for the spec's input (the batch axis follows the input's); if not
        given, it is found by calling ``forward`` once on a seeded random input.
    """

    kind = "python"
    #: The numerical differentiator may not push complex numbers through user code.
    complex_safe = False

    def __init__(self, target, obj, params, *, options=None, output_shape=None,
                 dtype="float64", init=None, batched=False):
        self.target = target
        self.batched = bool(batched)
        self.obj = obj
        self.params = {k: tuple(v) for k, v in dict(params or {}).items()}
        declared = getattr(obj, "param_init", None)
        self.init = {**(declared if isinstance(declared, dict) else {}), **dict(init or {})}
        self.options = dict(options or {})
        self.fixed_output_shape = None if output_shape is None else tuple(output_shape)
        self.dtype = np.dtype(dtype)
        self._probed = {}

    @property
    def name(self) -> str:
        return self.target

    def _label(self) -> str:
        return self.target

    def to_dict(self) -> dict:
        d = {"type": "python", "target": self.target,
             "params": {k: list(v) for k, v in self.params.items()}, "kwargs": self.options}
        if self.init:
            d["init"] = dict(self.init)
        if self.fixed_output_shape is not None:
            d["output_shape"] = list(self.fixed_output_shape)
        if self.batched:
            d["batched"] = True
        return d

    # ------------------------------------------------------------------ shapes

    def param_shapes(self, input_shape) -> dict:
        return dict(self.params)

    def output_shape(self, input_shape) -> tuple:
        input_shape = tuple(int(n) for n in input_shape)
        if self.fixed_output_shape is not None:
            # the batch axis follows the input (a checker may stack perturbed copies)
            return (input_shape[0],) + self.fixed_output_shape[1:]
        return self.probed_output_shape(input_shape)

    def probed_output_shape(self, input_shape) -> tuple:
        """The shape ``forward`` returns for a seeded random input of ``input_shape``."""
        input_shape = tuple(int(n) for n in input_shape)
        if input_shape not in self._probed:
            rng = np.random.default_rng(0)
            x = rng.standard_normal(input_shape).astype(self.dtype)
            params = self.init_params(input_shape, rng=rng, dtype=self.dtype).values()
            self._probed[input_shape] = self._call_forward(x, tuple(params), None).shape
        return self._probed[input_shape]

    def init_params(self, input_shape, *, rng, dtype=np.float64) -> dict:
        """Each parameter by its rule (:func:`draw_param`): the spec's ``init``, else the
        layer's own ``param_init`` (a dict on the class), else ``"default"`` -- a weight's
        ``N(0, 1/fan_in)``, ``fan_in = prod(shape[1:])``, for 2+ dims; else ``N(0, 1/4)``.
        Every parameter takes its normal draw whatever its rule, so changing one rule
        leaves the others' values as they were."""
        out = {}
        for pname, shape in self.params.items():
            z = rng.standard_normal(shape)
            out[pname] = draw_param(self.init.get(pname, "default"), shape, z).astype(dtype)
        return out

    def pattern(self, input_shape, wrt="x"):
        """Unknown: a user's layer may connect anything to anything."""
        return None

    # ------------------------------------------------------------------ calls

    def _call(self, method, *args):
        """``method`` called with copies of ``args``; an argument it modified in place
        (other than ``backward``'s ``grad_y``, whose copy is its own) is
        :class:`~gradcheck.UserCodeError`: the layer would be checked at another point
        than the one given, and a network's saved activations would change under it."""
        copies = tuple(np.array(a, copy=True) if isinstance(a, np.ndarray) else a
                       for a in args)
        try:
            out = getattr(self.obj, method)(*copies)
        except Exception as exc:
            raise UserCodeError(f"{self.target}.{method} raised {type(exc).__name__}: "
                                f"{_first_line(exc)}") from exc
        names = ("x", *self.params) if method == "forward" else ("grad_y", "x", *self.params)
        for i, (a, c) in enumerate(zip(args, copies)):
            if names[i:i + 1] == ("grad_y",) or not isinstance(a, np.ndarray):
                continue
            if c.shape != a.shape or not np.array_equal(a, c, equal_nan=a.dtype.kind in "fc"):
                name = names[i] if i < len(names) else f"argument {i}"
                raise UserCodeError(
                    f"{self.target}.{method} modifies its argument {name!r} in place, so the "
                    f"layer would be checked at another point than the one given: it must "
                    f"leave its arguments as it found them (write to a copy, e.g. "
                    f"x = x.copy(), or use out-of-place operations)")
        return out

    def _array(self, value, method, what) -> np.ndarray:
        if isinstance(value, tuple) or (isinstance(value, list) and any(
                isinstance(v, (np.ndarray, tuple, list)) for v in value)):
            # NumPy would stack it into one array with an extra axis: a forward's tuple
            # would surface at the gradients' shapes, as the backward's fault
            hint = ("" if what != "y" else " ('return y', not 'return y,' nor 'return y, "
                    "extra')" if isinstance(value, tuple) else " (np.asarray of it, if the "
                    "list holds the output's values)")
            raise UserCodeError(f"{self.target}.{method} returned {what} as a "
                                f"{type(value).__name__} of {len(value)} item(s); expected "
                                f"one NumPy array{hint}")
        try:
            arr = np.asarray(value)
        except Exception:
            arr = None
        if arr is None or arr.dtype.kind not in "biufc" and arr.dtype.name != "bfloat16":
            raise UserCodeError(f"{self.target}.{method} returned {what} that is not an array "
                                f"of numbers (got {type(value).__name__}); expected a NumPy "
                                f"array")
        return arr

    def _finite(self, arr, method, what, inputs):
        if not all(np.all(np.isfinite(a)) for a in inputs):
            return  # the caller passed non-finite values; no claim about the output
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.unravel_index(np.flatnonzero(bad)[0], arr.shape))
            value = arr[where] if arr.ndim else arr
            raise UserCodeError(f"{self.target}.{method} returned {value} in {what} at index "
                                f"{where} ({int(bad.sum())} non-finite of {arr.size}) for "
                                f"finite inputs")

    def _call_forward(self, x, params, expected):
        y = self._array(self._call("forward", x, *params), "forward", "y")
        if expected is not None and y.shape != tuple(expected):
            raise UserCodeError(f"{self.target}.forward returned y of shape {y.shape}; "
                                f"expected {tuple(expected)}")
        self._finite(y, "forward", "y", (x, *params))
        return y

    def forward_batch(self, h, *params, out_shape) -> np.ndarray:
        """``forward`` on a leading batch of inputs ``h`` ``(B, *input)``, returning
        ``(B, *out_shape)`` (a layer with ``batched = true``)."""
        y = self._array(self._call("forward", h, *params), "forward", "y")
        expected = (np.shape(h)[0],) + tuple(out_shape)
        if y.shape != expected:
            raise UserCodeError(
                f"{self.target}.forward is said to take a leading batch (batched = true), "
                f"but given inputs of shape {np.shape(h)} it returned shape {y.shape}; "
                f"expected {expected}")
        self._finite(y, "forward", "y", (h, *params))
        return y

    def check_batch(self, input_shape) -> None:
        """Raise ValueError (one sentence) unless ``forward`` on two seeded inputs at once
        returns ``(2, *output)`` equal, to rounding, to one call per input."""
        input_shape = tuple(int(n) for n in input_shape)
        rng = np.random.default_rng(1)
        h = rng.standard_normal((2,) + input_shape).astype(self.dtype)
        params = tuple(self.init_params(input_shape, rng=rng, dtype=self.dtype).values())
        alone = [self._call_forward(x, params, None) for x in h]
        try:
            y = self._array(self._call("forward", h, *params), "forward", "y")
        except UserCodeError as exc:
            raise ValueError(f"given a leading batch of 2 inputs of shape {input_shape}, "
                             f"{exc}") from None
        expected = (2,) + alone[0].shape
        if y.shape != expected:
            raise ValueError(f"{self.target}.forward, given a leading batch of 2 inputs of "
                             f"shape {input_shape}, returned shape {y.shape}; expected "
                             f"{expected}")
        scale = max(1.0, float(np.max(np.abs(alone))))
        off = max(float(np.max(np.abs(y[k] - alone[k]))) for k in range(2)) / scale
        if not off <= 1e3 * np.finfo(np.result_type(self.dtype, np.float32)).eps:
            raise ValueError(f"{self.target}.forward, given a leading batch of 2 inputs, "
                             f"returned outputs that differ from one call per input by "
                             f"{off:.2g} of their scale")

    def forward(self, x, *params) -> np.ndarray:
        x = np.asarray(x)
        self._check_params(x.shape, params, "forward")
        return self._call_forward(x, params, self.output_shape(x.shape))

    def backward(self, grad_y, x, *params) -> tuple:
        x = np.asarray(x)
        self._check_params(x.shape, params, "backward")
        out = self._call("backward", grad_y, x, *params)
        names = ["x", *self.params]
        if isinstance(out, np.ndarray) and len(names) == 1:
            out = (out,)
        if not isinstance(out, (tuple, list)) or len(out) != len(names):
            got = (f"{len(out)} values" if isinstance(out, (tuple, list))
                   else f"a {type(out).__name__}")
            raise UserCodeError(f"{self.target}.backward returned {got}; expected a tuple of "
                                f"{len(names)} arrays ({', '.join('grad_' + n for n in names)})")
        grads = []
        for pname, value, ref in zip(names, out, (x, *params)):
            if value is None:   # no gradient: a zero gradient, checked and said so
                grads.append(None)
                continue
            g = self._array(value, "backward", f"grad_{pname}")
            if g.shape != np.shape(ref):
                raise UserCodeError(f"{self.target}.backward returned grad_{pname} of shape "
                                    f"{g.shape}; expected {np.shape(ref)}, the shape of {pname}")
            self._finite(g, "backward", f"grad_{pname}", (grad_y, x, *params))
            grads.append(g)
        return tuple(grads)
