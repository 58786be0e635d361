r"""Convolution configurations that are always valid and always small.

How a configuration is drawn
----------------------------
Everything is drawn in an order in which each choice can only narrow the next ones, so
no draw is ever rejected: spatial rank, groups, channels, batch, the padding form, the
strides, the spatial sizes, explicit paddings, then kernel sizes and dilations. With
``max_size`` elements allowed for each of ``x``, ``w`` and ``y``, the per-dimension caps
are integer roots: ``n <= cx = floor((max_size / (N C_in))^(1/nd))`` for the input,
``out <= cy`` likewise for the output, ``k <= ck`` for the kernel. Per spatial dim, with
stride ``s``, size ``n <= s cy``, padding ``lo + hi <= s cy - n`` and reach
``r = d (k - 1) + 1``:

* the kernel fits: ``r <= n + lo + hi`` (``"valid"``: ``r <= n``; ``"same"`` and
  ``"full"`` pad by ``r - 1`` and ``2 (r - 1)``, so any kernel fits);
* the output is bounded: ``out = (n + lo + hi - r) // s + 1 <= cy`` follows from the
  padding bound (and, for ``"full"``, from drawing ``r <= s cy - n + 1``).

So :func:`gradcheck.ops._geometry.conv_geometry` accepts every drawn configuration and its
output is never empty. When the input shape is given (``x_shape``) it is kept as is and
the output cap becomes ``max(cy, n)`` per dim, so the output is never forced below the
input's size.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from gradcheck._errors import ConfigurationError
from gradcheck._plain import plain
from gradcheck._record import NamedTuple
from gradcheck._validate import is_int
from gradcheck.ops._geometry import conv_geometry
from gradcheck.ops.conv import conv_backward, conv_forward
from gradcheck.strategies._validate import (
    check_dtype,
    check_int,
    check_optional_bool,
    check_optional_shape,
    check_order,
    check_real,
    check_strategy,
    check_subset,
)

__all__ = ["ConvConfig", "ConvCase", "conv_configs", "conv_cases", "PADDINGS", "CONVENTIONS"]

#: Padding forms: one int for every dim, an int per dim, (low, high) per dim, or a word.
PADDINGS = ("int", "tuple", "pairs", "valid", "same", "full")
CONVENTIONS = ("correlation", "convolution")


class ConvConfig(NamedTuple):
    """One convolution layer's shapes and options, valid by construction.

    ``stride``, ``padding`` and ``dilation`` are kept in the form they were drawn in (an
    int, a tuple per spatial dim, ``(low, high)`` pairs, or a padding word), exactly as
    they are passed to :func:`gradcheck.conv_forward`.
    """

    x_shape: tuple
    w_shape: tuple
    stride: int | tuple
    padding: int | tuple | str
    dilation: int | tuple
    groups: int
    convention: str
    bias: bool

    @property
    def nd(self) -> int:
        """Number of spatial dims."""
        return len(self.x_shape) - 2

    @property
    def b_shape(self) -> tuple | None:
        return (self.w_shape[0],) if self.bias else None

    @property
    def geometry(self):
        """:func:`~gradcheck.ops._geometry.conv_geometry` of this configuration."""
        return conv_geometry(self.x_shape, self.w_shape, stride=self.stride,
                             padding=self.padding, dilation=self.dilation, groups=self.groups)

    @property
    def y_shape(self) -> tuple:
        g = self.geometry
        return (g.batch, g.out_channels, *g.out_shape)

    def options(self) -> dict:
        """Keyword arguments for :func:`gradcheck.conv_forward` / ``conv_backward``."""
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                "groups": self.groups, "convention": self.convention}

    def forward(self, x, w, b=None):
        """``conv_forward(x, w, b, **options())``."""
        return conv_forward(x, w, b, **self.options())

    def backward(self, grad_y, x, w, **options):
        """``conv_backward(grad_y, x, w, bias=self.bias, **options())``: (gx, gw, gb)."""
        return conv_backward(grad_y, x, w, bias=self.bias, **self.options(), **options)

    def as_function(self):
        """``(f, f_vjp, names)`` for :func:`gradcheck.check_vjp`.

        ``f(x, w[, b])`` is the forward pass, ``f_vjp(cotangent, x, w[, b])`` the library's
        backward; ``b`` is an argument only when ``bias`` is True.
        """
        if self.bias:
            def f(x, w, b):
                return self.forward(x, w, b)

            def f_vjp(g, x, w, b):
                return self.backward(g, x, w)

            return f, f_vjp, ("x", "w", "b")

        def f(x, w):
            return self.forward(x, w)

        def f_vjp(g, x, w):
            return self.backward(g, x, w)[:2]

        return f, f_vjp, ("x", "w")

    def layer_dict(self) -> dict:
        """The ``[[layer]]`` table of a spec document (and of ``layer_from_dict``)."""
        return {"type": "conv", "out_channels": self.w_shape[0],
                "kernel": list(self.w_shape[2:]), "stride": plain(self.stride),
                "padding": plain(self.padding), "dilation": plain(self.dilation),
                "groups": self.groups, "bias": self.bias, "convention": self.convention}

    def spec_document(self, *, activation=None, dtype="float64", loss="weighted_sum",
                      seed: int = 0) -> dict:
        """A spec document with this convolution (and an activation after it) as layers.

        ``activation`` is an :class:`~gradcheck.ops.activations.ActivationSpec`, its
        ``to_dict()`` form, or a name. The document is what ``gradcheck check`` reads
        (write it with ``gradcheck.spec.parse_spec(doc).to_toml()``); the CLI draws its own
        values from ``seed``.
        """
        layers = [self.layer_dict()]
        if activation is not None:
            if isinstance(activation, str):
                activation = {"type": activation}
            elif hasattr(activation, "to_dict"):
                activation = activation.to_dict()
            layers.append(dict(activation))
        doc = {"input": {"shape": list(self.x_shape), "dtype": np.dtype(dtype).name},
               "layer": layers, "check": {"seed": int(seed), "mode": "full"}}
        if loss is not None:
            doc["loss"] = {"type": loss}
        return doc

    def to_dict(self) -> dict:
        """JSON-ready: every field, tuples as lists."""
        return {k: plain(v) for k, v in self._asdict().items()}

    def make_case(self, seed: int, *, dtype="float64", magnitude: float = 1.0) -> ConvCase:
        """The arrays :func:`conv_cases` draws for this configuration from ``seed``.

        A failing example names its configuration and seed, so
        ``ConvConfig(...).make_case(seed, dtype=...)`` rebuilds it outside hypothesis.

        Examples
        --------
        >>> from gradcheck.strategies import ConvConfig
        >>> config = ConvConfig((1, 1, 3, 3), (1, 1, 2, 2), 1, 0, 1, 1, "correlation", True)
        >>> case = config.make_case(7, dtype="float32")
        >>> case.x.dtype, case.grad_y.shape, case.b.shape
        (dtype('float32'), (1, 1, 2, 2), (1,))
        """
        if not is_int(seed) or not 0 <= seed < 2**32:
            raise ConfigurationError(f"seed must be an int from 0 to 2**32 - 1; got {seed!r}")
        dt = check_dtype(dtype)
        if isinstance(dt, st.SearchStrategy):
            raise ConfigurationError(f"dtype must be float64 or float32 here; got {dtype!r}")
        return make_case(self, dt, seed, check_real(magnitude, "magnitude", positive=True))


class ConvCase(NamedTuple):
    """A configuration with arrays: ``x``, ``w``, ``b`` (None without bias), ``grad_y``.

    ``seed`` regenerates the arrays: see :func:`conv_cases`.
    """

    config: ConvConfig
    x: np.ndarray
    w: np.ndarray
    b: np.ndarray | None
    grad_y: np.ndarray
    seed: int

    @property
    def args(self) -> tuple:
        """``(x, w, b)`` with bias, else ``(x, w)``: the arguments of ``config.as_function()``."""
        return (self.x, self.w, self.b) if self.config.bias else (self.x, self.w)


# --------------------------------------------------------------------------- drawing


class ConvBounds(NamedTuple):
    min_dims: int
    max_dims: int
    min_batch: int
    max_batch: int
    min_channels: int
    max_channels: int
    max_groups: int
    max_kernel: int
    max_stride: int
    max_dilation: int
    max_padding: int
    max_side: int
    max_size: int
    paddings: tuple
    conventions: tuple
    bias: bool | None


def _iroot(n: int, k: int) -> int:
    """Largest ``r >= 0`` with ``r**k <= n``."""
    r = round(n ** (1.0 / k)) if n > 0 else 0
    while r > 0 and r ** k > n:
        r -= 1
    while (r + 1) ** k <= n:
        r += 1
    return r


def _group_choices(c_in: int | None, min_c: int, max_c: int, max_g: int) -> list[int]:
    """Groups that divide ``c_in`` (when fixed) and have a multiple in [min_c, max_c]."""
    top = min(max_g, max_c if c_in is None else c_in)
    return [g for g in range(1, top + 1)
            if (c_in is None or c_in % g == 0) and -(-min_c // g) * g <= max_c]


def _multiple(draw, g: int, min_c: int, max_c: int) -> int:
    return g * draw(st.integers(-(-min_c // g), max_c // g))


def _int_or_tuple(draw, nd, lo, hi):
    """One int used in every dim (kept as an int) or one per dim (a tuple)."""
    if draw(st.booleans()):
        v = draw(st.integers(lo, hi))
        return v, (v,) * nd
    values = tuple(draw(st.integers(lo, hi)) for _ in range(nd))
    return values, values


def draw_conv(draw, b: ConvBounds, x_shape=None) -> ConvConfig:
    """Draw one configuration (see the module notes); ``x_shape`` fixes the input."""
    if x_shape is None:
        nd = draw(st.integers(b.min_dims, b.max_dims))
        groups = draw(st.sampled_from(_group_choices(None, b.min_channels, b.max_channels,
                                                     b.max_groups)))
        c_in = _multiple(draw, groups, b.min_channels, b.max_channels)
        batch = draw(st.integers(b.min_batch, b.max_batch))
        fixed = None
    else:
        batch, c_in, *fixed = (int(v) for v in x_shape)
        nd = len(fixed)
        groups = draw(st.sampled_from(_group_choices(c_in, b.min_channels, b.max_channels,
                                                     b.max_groups)))
    c_out = _multiple(draw, groups, b.min_channels, b.max_channels)
    cx = max(1, _iroot(b.max_size // (batch * c_in), nd))
    cy = max(1, _iroot(b.max_size // (batch * c_out), nd))
    ck = max(1, _iroot(b.max_size // (c_out * (c_in // groups)), nd))

    form = draw(st.sampled_from(b.paddings))
    if form == "same":
        stride, strides = 1, (1,) * nd
    else:
        stride, strides = _int_or_tuple(draw, nd, 1, b.max_stride)
    if fixed is None:
        sizes = tuple(draw(st.integers(1, max(1, min(b.max_side, cx, s * cy))))
                      for s in strides)
        caps = (cy,) * nd
    else:
        sizes = tuple(fixed)
        caps = tuple(max(cy, n) for n in sizes)
    room = [s * c - n for s, c, n in zip(strides, caps, sizes)]  # lo + hi may use this

    lo = hi = (0,) * nd
    padding = form
    if form == "int":
        p = draw(st.integers(0, min(b.max_padding, min(room) // 2)))
        padding, lo, hi = p, (p,) * nd, (p,) * nd
    elif form == "tuple":
        lo = hi = tuple(draw(st.integers(0, min(b.max_padding, r // 2))) for r in room)
        padding = lo
    elif form == "pairs":
        lo = tuple(draw(st.integers(0, min(b.max_padding, r))) for r in room)
        hi = tuple(draw(st.integers(0, min(b.max_padding, r - l))) for r, l in zip(room, lo))
        padding = tuple(zip(lo, hi))

    # largest reach d*(k-1)+1 allowed per dim
    if form == "full":
        reach = [s * c - n + 1 for s, c, n in zip(strides, caps, sizes)]
    elif form == "same":
        reach = [b.max_kernel * b.max_dilation] * nd
    else:
        reach = [n + l + h for n, l, h in zip(sizes, lo, hi)]
    kernel = tuple(draw(st.integers(1, max(1, min(b.max_kernel, ck, r)))) for r in reach)
    limits = [b.max_dilation if k == 1 else min(b.max_dilation, (r - 1) // (k - 1))
              for k, r in zip(kernel, reach)]
    if draw(st.booleans()):
        dilation = draw(st.integers(1, min(limits)))
    else:
        dilation = tuple(draw(st.integers(1, m)) for m in limits)
    convention = draw(st.sampled_from(b.conventions))
    bias = draw(st.booleans()) if b.bias is None else b.bias
    return ConvConfig((batch, c_in, *sizes), (c_out, c_in // groups, *kernel), stride,
                      padding, dilation, groups, convention, bias)


# --------------------------------------------------------------------------- public


def conv_bounds(*, min_dims=1, max_dims=3, min_batch=1, max_batch=None, min_channels=1,
                max_channels=4, max_groups=None, max_kernel=3, max_stride=2, max_dilation=2,
                max_padding=2, max_side=8, max_size=256, paddings=PADDINGS,
                conventions=CONVENTIONS, bias=None) -> ConvBounds:
    """Validate :func:`conv_configs`' bounds and fill the defaults from the other bounds."""
    min_dims = check_int(min_dims, "min_dims", minimum=1, maximum=3)
    max_dims = check_int(max_dims, "max_dims", minimum=1, maximum=3)
    check_order("min_dims", min_dims, "max_dims", max_dims)
    min_batch = check_int(min_batch, "min_batch", minimum=1)
    max_batch = max(min_batch, 2) if max_batch is None else check_int(max_batch, "max_batch",
                                                                      minimum=1)
    check_order("min_batch", min_batch, "max_batch", max_batch)
    min_channels = check_int(min_channels, "min_channels", minimum=1)
    max_channels = check_int(max_channels, "max_channels", minimum=1)
    check_order("min_channels", min_channels, "max_channels", max_channels)
    max_groups = max_channels if max_groups is None else check_int(max_groups, "max_groups",
                                                                   minimum=1)
    max_kernel = check_int(max_kernel, "max_kernel", minimum=1)
    max_stride = check_int(max_stride, "max_stride", minimum=1)
    max_dilation = check_int(max_dilation, "max_dilation", minimum=1)
    max_padding = check_int(max_padding, "max_padding", minimum=0)
    max_side = check_int(max_side, "max_side", minimum=1)
    max_size = check_int(max_size, "max_size", minimum=1)
    need = max(max_batch, max_channels) * max_channels
    if max_size < need:
        raise ConfigurationError(
            f"max_size={max_size!r} is too small for max_batch={max_batch} and "
            f"max_channels={max_channels}: the smallest arrays drawn may have "
            f"{need} elements; use max_size >= {need} or lower those bounds")
    paddings = check_subset(paddings, "paddings", PADDINGS)
    conventions = check_subset(conventions, "conventions", CONVENTIONS)
    bias = check_optional_bool(bias, "bias")
    return ConvBounds(min_dims, max_dims, min_batch, max_batch, min_channels, max_channels,
                      max_groups, max_kernel, max_stride, max_dilation, max_padding, max_side,
                      max_size, paddings, conventions, bias)


def conv_configs(*, min_dims: int = 1, max_dims: int = 3, min_batch: int = 1,
                 max_batch: int | None = None, min_channels: int = 1, max_channels: int = 4,
                 max_groups: int | None = None, max_kernel: int = 3, max_stride: int = 2,
                 max_dilation: int = 2, max_padding: int = 2, max_side: int = 8,
                 max_size: int = 256, paddings=PADDINGS, conventions=CONVENTIONS,
                 bias: bool | None = None, x_shape=None) -> st.SearchStrategy[ConvConfig]:
    r"""Valid convolution configurations with bounded sizes.

    Every drawn :class:`ConvConfig` is accepted by :func:`gradcheck.conv_forward` and gives
    a non-empty output; ``x``, ``w`` and ``y`` each have at most ``max_size`` elements
    (unless ``x_shape`` fixes a larger input). Draws shrink towards one spatial dim,
    one group, one channel, stride 1, no padding and a 1-wide kernel.

    Parameters
    ----------
    min_dims, max_dims : int
        Spatial rank, 1 to 3.
    min_batch, max_batch : int
        Batch size ``N``; ``max_batch`` defaults to ``max(min_batch, 2)``.
    min_channels, max_channels : int
        Bounds of ``C_in`` and ``C_out``, both multiples of ``groups``.
    max_groups : int, optional
        Defaults to ``max_channels``; groups always divide both channel counts.
    max_kernel, max_stride, max_dilation, max_padding : int
        Per spatial dim; padding counts each side.
    max_side : int
        Largest input spatial size.
    max_size : int
        Largest number of elements of ``x``, of ``w`` and of ``y``; at least
        ``max(max_batch, max_channels) * max_channels``.
    paddings : sequence of str
        Forms of ``padding`` to draw from :data:`PADDINGS`: ``"int"`` (one int),
        ``"tuple"`` (one per dim), ``"pairs"`` ((low, high) per dim), ``"valid"``,
        ``"same"`` (drawn with stride 1) and ``"full"``.
    conventions : sequence of str
        ``"correlation"`` and/or ``"convolution"``.
    bias : bool, optional
        Fix ``bias``; None draws both.
    x_shape : tuple of int, optional
        Fix the input shape ``(N, C_in, *spatial)``; the rank, batch and ``C_in`` bounds
        are then not used.

    Returns
    -------
    SearchStrategy of ConvConfig

    Raises
    ------
    ConfigurationError
        When called with a bad bound (the message names it and repeats its value).

    Examples
    --------
    >>> import numpy as np
    >>> from hypothesis import given, settings
    >>> from gradcheck import conv_forward
    >>> from gradcheck.strategies import conv_configs
    >>> @settings(max_examples=25, deadline=None, database=None)
    ... @given(conv_configs(max_dims=2))
    ... def test_output_is_never_empty(config):
    ...     y = conv_forward(np.ones(config.x_shape), np.ones(config.w_shape),
    ...                      **config.options())
    ...     assert y.shape == config.y_shape and y.size >= 1
    >>> test_output_is_never_empty()
    """
    bounds = conv_bounds(min_dims=min_dims, max_dims=max_dims, min_batch=min_batch,
                         max_batch=max_batch, min_channels=min_channels,
                         max_channels=max_channels, max_groups=max_groups,
                         max_kernel=max_kernel, max_stride=max_stride,
                         max_dilation=max_dilation, max_padding=max_padding,
                         max_side=max_side, max_size=max_size, paddings=paddings,
                         conventions=conventions, bias=bias)
    fixed = check_optional_shape(x_shape, "x_shape", min_ndim=3, max_ndim=5,
                                 what="(N, C_in, *spatial)")

    @st.composite
    def configs(draw):
        return draw_conv(draw, bounds, fixed)

    return configs()


def _dtype_strategy(dtype):
    dtype = check_dtype(dtype)
    if isinstance(dtype, st.SearchStrategy):
        return dtype.map(lambda d: check_dtype(d, "a dtype drawn from dtype"))
    return st.just(dtype)


def conv_cases(*, configs=None, dtype="float64", magnitude: float = 1.0
               ) -> st.SearchStrategy[ConvCase]:
    r"""A convolution configuration with arrays to run it on.

    Drawn from one integer ``seed`` (shown when a test fails, and shrinking to 0):
    ``rng = numpy.random.default_rng(seed)``, then ``x = magnitude * rng.uniform(-1, 1,
    x_shape)``, ``w = rng.uniform(-1, 1, w_shape)``, ``b`` (with bias) ``=
    rng.uniform(-1, 1, (C_out,))`` and ``grad_y = rng.standard_normal(y_shape)``, each
    cast to ``dtype``.

    Parameters
    ----------
    configs : SearchStrategy of ConvConfig, optional
        Defaults to :func:`conv_configs` with its defaults.
    dtype : "float64", "float32", a NumPy dtype, or a strategy of those
    magnitude : float
        Largest ``|x|``, > 0.

    Examples
    --------
    >>> from hypothesis import given, settings
    >>> from gradcheck import check_vjp
    >>> from gradcheck.strategies import conv_cases, conv_configs
    >>> @settings(max_examples=5, deadline=None, database=None)
    ... @given(conv_cases(configs=conv_configs(max_dims=2, max_size=64)))
    ... def test_conv_backward(case):
    ...     f, f_vjp, names = case.config.as_function()
    ...     assert check_vjp(f, f_vjp, case.args, argnames=names).passed
    >>> test_conv_backward()
    """
    configs = check_strategy(configs, "configs", of="ConvConfig such as conv_configs()",
                             default=conv_configs)
    dtypes = _dtype_strategy(dtype)
    magnitude = check_real(magnitude, "magnitude", positive=True)

    @st.composite
    def cases(draw):
        config = draw(configs)
        if not isinstance(config, ConvConfig):
            raise ConfigurationError(
                f"configs must draw ConvConfig values; it drew {config!r}")
        dt = draw(dtypes)
        seed = draw(st.integers(0, 2**32 - 1))
        return make_case(config, dt, seed, magnitude)

    return cases()


def make_case(config: ConvConfig, dtype, seed: int, magnitude: float = 1.0) -> ConvCase:
    """The arrays :func:`conv_cases` draws for ``config`` from ``seed`` (see there)."""
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    x = (magnitude * rng.uniform(-1.0, 1.0, config.x_shape)).astype(dt)
    w = rng.uniform(-1.0, 1.0, config.w_shape).astype(dt)
    b = rng.uniform(-1.0, 1.0, (config.w_shape[0],)).astype(dt) if config.bias else None
    grad_y = rng.standard_normal(config.y_shape).astype(dt)
    return ConvCase(config, x, w, b, grad_y, int(seed))
