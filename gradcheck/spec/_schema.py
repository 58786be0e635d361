"""Validating a spec document: every key, its type and range, and the shapes it implies.

:func:`parse_spec` walks the document once, fills in defaults, and follows the tensor
shape through the layers so that shape errors (a kernel larger than the padded input,
channels not divisible by groups, a dense layer on an image-shaped input) name the layer
key at fault. Every error is one :class:`~gradcheck.SpecError` line:
``FILE: KEY: what was found; what would be valid``.
"""

from __future__ import annotations

import re

from gradcheck._validate import is_int
from gradcheck.spec._model import CheckSpec, InputSpec, LayerSpec, LossSpec, Spec
from gradcheck.spec._shapes import checked_output_shape, divisors
from gradcheck.spec._values import Ctx, show, suggest

__all__ = ["parse_spec", "TOP_KEYS", "LAYER_KEYS", "DTYPES", "MODES", "layer_types"]

TOP_KEYS = ("name", "description", "input", "layer", "loss", "check", "train")
INPUT_KEYS = ("shape", "dtype", "distribution", "loc", "scale", "seed", "away_from_kinks")
LOSS_KEYS = ("type", "seed")
CHECK_KEYS = ("seed", "mode", "budget", "time_budget", "rtol", "atol", "wrt", "max_memory", "tolerance",
              "order")
TOLERANCE_KEYS = ("rtol", "atol")
DTYPES = ("float16", "bfloat16", "float32", "float64")
DISTRIBUTIONS = ("normal", "uniform")
MODES = ("full", "sampled", "fast", "auto")
CONVENTIONS = ("correlation", "convolution")
PADDING_WORDS = ("valid", "same", "full")
#: Largest |loc|, scale and away_from_kinks of the drawn input, per dtype: about the fourth
#: root of the dtype's largest number, so that the input (at most a few times this), a
#: loss's square of it and the products the checker forms from those stay finite
#: (float16, whose largest number is 65504: 4, so that a 3x3 convolution's output still
#: squares to a finite number).
INPUT_VALUE_LIMITS = {"float64": 1e77, "float32": 1e9, "bfloat16": 1e9, "float16": 4.0}

#: Keys of each structural layer type besides ``type`` (activations: their parameters).
LAYER_KEYS = {
    "conv": ("out_channels", "kernel", "stride", "padding", "dilation", "groups", "bias",
             "convention"),
    "maxpool": ("kernel", "stride", "padding"),
    "avgpool": ("kernel", "stride", "padding"),
    "flatten": (),
    "dense": ("out_features", "bias"),
    "python": ("target", "params", "init", "kwargs", "options", "output_shape",
               "batched"),
}
#: A python layer's parameter name (compiled by re on first use).
_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"


def layer_types() -> tuple[str, ...]:
    """Every valid ``type`` of a ``[[layer]]``: the structural ones, then the activations."""
    from gradcheck.ops.activations import ACTIVATIONS

    return (*LAYER_KEYS, *ACTIVATIONS)


def parse_spec(document, *, source: str = "<spec>", name: str = "") -> Spec:
    """Validate a spec document (a dict as read from TOML, JSON or YAML) into a :class:`Spec`.

    Parameters
    ----------
    document : dict
        The parsed document.
    source : str
        What to call it in messages (the file path).
    name : str
        The spec's name when the document has no ``name`` key (e.g. the file stem).

    Raises
    ------
    SpecError
        One line naming ``source`` and the key at fault, what was found and what would be
        valid.

    Examples
    --------
    >>> from gradcheck.spec import parse_spec
    >>> spec = parse_spec({"input": {"shape": [1, 1, 3, 3]},
    ...                    "layer": [{"type": "conv", "out_channels": 1, "kernel": 2}]})
    >>> spec.layers[0].options["stride"], spec.argument_names
    (1, ('input', 'layer0.conv.w', 'layer0.conv.b'))
    >>> parse_spec({"input": {"shape": [1, 1, 3, 3]}, "layer": [{"type": "tnah"}]},
    ...            source="demo.toml")
    Traceback (most recent call last):
    ...
    gradcheck._errors.SpecError: demo.toml: layer[0].type: unknown layer type "tnah"; did you mean "tanh"? ...
    """
    ctx = Ctx(source)
    doc = ctx.table("", document, "keys such as input, layer, loss and check")
    ctx.keys("", doc, TOP_KEYS, "the top level")
    spec_name = ctx.string("name", doc["name"]) if "name" in doc else name
    description = ctx.string("description", doc["description"]) if "description" in doc else ""
    if "input" not in doc:
        raise ctx.fail("input", "missing; a spec needs an [input] table with at least "
                                "shape = [N, C, *spatial]")
    check = _check(ctx, doc.get("check", {}))
    inp = _input(ctx, doc["input"])
    layers, shapes = _layers(ctx, doc.get("layer"), inp.shape)
    loss = _loss(ctx, doc["loss"], shapes[-1]) if "loss" in doc else None
    train = None
    if "train" in doc:
        from gradcheck.spec._train import read_train

        train = read_train(ctx, doc["train"])
    spec = Spec(input=inp, layers=tuple(layers), loss=loss, check=check, name=spec_name,
                description=description, source=source, shapes=tuple(shapes), train=train)
    names = spec.argument_names
    named = [(f"check.wrt[{i}]", arg) for i, arg in enumerate(check.wrt or ())]
    named += [(f"check.tolerance.{arg}", arg) for arg in (check.tolerance or {})]
    for key, arg in named:
        if arg not in names:
            raise ctx.fail(key, f"{show(arg)} is not a tensor of this spec; "
                                f"{suggest(arg, names)}valid names: {', '.join(names)}")
    return spec


# --------------------------------------------------------------------------- tables


def _input(ctx: Ctx, raw) -> InputSpec:
    t = ctx.table("input", raw, "shape, dtype and how the values are drawn")
    ctx.keys("input.", t, INPUT_KEYS, "[input]")
    shape = ctx.shape("input.shape",
                      ctx.required("input.shape", t, "shape", "a list of positive ints, "
                                   "e.g. [2, 3, 8, 8] for N, C, H, W", "[input]"),
                      min_ndim=2, max_ndim=5, what="N, C, *spatial with 0 to 3 spatial dims")
    dtype = t.get("dtype", "float64")
    if dtype not in DTYPES:
        hint = "" if not isinstance(dtype, str) else suggest(dtype, DTYPES)
        raise ctx.fail("input.dtype", f"expected one of {', '.join(map(show, DTYPES))}, got "
                                      f"{show(dtype)}" + (f"; {hint.rstrip()}" if hint else
                                                         "; other dtypes are not supported"))
    if dtype == "bfloat16":
        try:
            import ml_dtypes  # noqa: F401 -- registers bfloat16 with NumPy
        except ImportError:
            raise ctx.fail("input.dtype", "\"bfloat16\" needs the optional ml_dtypes package "
                                          "(pip install -e '.[bfloat16]'); without it use "
                                          "\"float16\", \"float32\" or \"float64\"") from None
    return InputSpec(
        shape=shape,
        dtype=dtype,
        distribution=ctx.choice("input.distribution", t.get("distribution", "normal"),
                                DISTRIBUTIONS),
        loc=_input_value(ctx, "loc", t.get("loc", 0.0), dtype),
        scale=_input_value(ctx, "scale", t.get("scale", 1.0), dtype, minimum=0, strict=True),
        seed=ctx.integer("input.seed", t["seed"], minimum=0) if "seed" in t else None,
        away_from_kinks=_input_value(ctx, "away_from_kinks", t.get("away_from_kinks", 0.0),
                                     dtype, minimum=0),
    )


def _input_value(ctx: Ctx, name: str, value, dtype: str, *, minimum=None, strict=False):
    """A finite number of ``[input]`` whose size keeps the drawn input finite."""
    key = f"input.{name}"
    value = ctx.real(key, value, minimum=minimum, strict=strict)
    limit = INPUT_VALUE_LIMITS[dtype]
    if abs(value) > limit:
        def short(v):
            return f"{v:g}".replace("e+0", "e").replace("e+", "e")
        peers = ("float16", "bfloat16") if dtype in ("float16", "bfloat16") else \
            ("float32", "float64")
        other = ", ".join(f"{short(v)} for {d}" for d, v in INPUT_VALUE_LIMITS.items()
                          if d != dtype and d in peers)
        size = f"|{name}|" if minimum is None else name
        raise ctx.fail(key, f"{show(value)} is too large: {size} must be at most "
                            f"{short(limit)} for {dtype} inputs ({other}), so that the drawn "
                            f"input and the squares and products the check forms from it "
                            f"stay finite")
    return value


def _check(ctx: Ctx, raw) -> CheckSpec:
    t = ctx.table("check", raw, "checker settings")
    ctx.keys("check.", t, CHECK_KEYS, "[check]")
    wrt = None
    if "wrt" in t:
        value = t["wrt"]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ctx.expected("check.wrt", 'a non-empty list of tensor names such as '
                               '["input", "layer0.conv.w"]', value)
        wrt = tuple(value)
    tolerance = None
    if "tolerance" in t:
        table = ctx.table("check.tolerance", t["tolerance"],
                          'tensor names -> {rtol = ..., atol = ...}')
        tolerance = {}
        for arg, tol in table.items():
            key = f"check.tolerance.{arg}"
            tol = ctx.table(key, tol, "rtol and atol")
            ctx.keys(f"{key}.", tol, TOLERANCE_KEYS, "a tolerance")
            tolerance[arg] = {k: ctx.real(f"{key}.{k}", tol[k], minimum=0)
                              for k in TOLERANCE_KEYS if k in tol}
    return CheckSpec(
        tolerance=tolerance,
        seed=ctx.integer("check.seed", t.get("seed", 0), minimum=0),
        mode=ctx.choice("check.mode", t["mode"], MODES) if "mode" in t else None,
        budget=ctx.integer("check.budget", t["budget"], minimum=1) if "budget" in t else None,
        time_budget=(ctx.real("check.time_budget", t["time_budget"], minimum=0, strict=True)
                     if "time_budget" in t else None),
        rtol=ctx.real("check.rtol", t["rtol"], minimum=0) if "rtol" in t else None,
        atol=ctx.real("check.atol", t["atol"], minimum=0) if "atol" in t else None,
        wrt=wrt,
        max_memory=ctx.memory("check.max_memory", t["max_memory"]) if "max_memory" in t else None,
        order=_order(ctx, t["order"]) if "order" in t else None,
    )


def _order(ctx: Ctx, value) -> int:
    if isinstance(value, bool) or value not in (1, 2):
        raise ctx.expected("check.order", "1 (the backward) or 2 (also the backward's own "
                                          "derivatives, for PyTorch layers)", value)
    return int(value)


def _loss(ctx: Ctx, raw, out_shape) -> LossSpec:
    from gradcheck.ops.losses import LOSSES

    t = ctx.table("loss", raw, "type and seed")
    ctx.keys("loss.", t, LOSS_KEYS, "[loss]")
    kind = ctx.required("loss.type", t, "type", f"one of {', '.join(LOSSES)}", "[loss]")
    kind = ctx.choice("loss.type", kind, tuple(LOSSES))
    if out_shape is not None and len(out_shape) < LOSSES[kind].min_ndim:
        raise ctx.fail("loss.type", f"\"{kind}\" needs an output of shape (N, classes, ...), "
                                    f"but the last layer gives shape {out_shape}; use "
                                    f"\"weighted_sum\" or \"mse\", or end with a dense layer")
    seed = ctx.integer("loss.seed", t["seed"], minimum=0) if "seed" in t else None
    return LossSpec(type=kind, seed=seed)


# --------------------------------------------------------------------------- layers


def _layers(ctx: Ctx, raw, in_shape):
    if raw is None:
        raise ctx.fail("layer", "missing; a spec needs at least one [[layer]] table, e.g. "
                                "[[layer]] type = \"conv\" ...")
    if isinstance(raw, dict):
        raw = [raw]  # a single [layer] table (TOML) or mapping (JSON/YAML)
    if not isinstance(raw, list) or not raw:
        raise ctx.expected("layer", "a non-empty list of layer tables ([[layer]] in TOML)", raw)
    layers, shapes = [], [in_shape]
    for i, item in enumerate(raw):
        layer = _layer(ctx, i, item, shapes[-1])
        layers.append(layer)
        shapes.append(checked_output_shape(ctx, i, layer, shapes[-1]))
    return layers, shapes


def _layer(ctx: Ctx, i: int, raw, shape) -> LayerSpec:
    from gradcheck.ops.activations import ACTIVATION_PARAMS, ACTIVATIONS

    key = f"layer[{i}]"
    t = ctx.table(key, raw, "a layer's type and options")
    kinds = layer_types()
    valid_types = ("conv, maxpool, avgpool, flatten, dense, python or an activation name "
                   "such as tanh")
    for k in t:   # "Type", "TYPE", or the type under another key: name that key
        if k == "type" or not isinstance(k, str):
            continue
        if k.lower() == "type" and "type" in t:
            raise ctx.fail(f"{key}.{k}", f"unknown key (keys are case-sensitive); this layer's "
                                         f"type is given by type = {show(t['type'])}")
        if "type" not in t and (k.lower() == "type" or t[k] in kinds):
            why = ("keys are case-sensitive" if k.lower() == "type" else
                   f"{show(t[k])} is a layer type")
            raise ctx.fail(f"{key}.{k}", f"unknown key; did you mean \"type\"? ({why}); every "
                                         f"[[layer]] needs type ({valid_types})")
    kind = ctx.required(f"{key}.type", t, "type", valid_types, "every [[layer]]")
    if not isinstance(kind, str) or kind not in kinds:
        close = suggest(kind, kinds)
        other = "" if close else (
            "; a layer of another kind (a batch norm, say) is a python layer: type = "
            "\"python\" with target = \"module:Class\" (your own forward and backward) or a "
            "PyTorch class such as target = \"torch.nn:BatchNorm2d\" with kwargs = "
            "{num_features = C} (see docs/spec-format.md, Your own layer)")
        raise ctx.fail(f"{key}.type", f"unknown layer type {show(kind)}; "
                                      f"{close}valid types: {', '.join(kinds)}{other}")
    nd = len(shape) - 2 if shape is not None and 3 <= len(shape) <= 5 else None
    options = {k: v for k, v in t.items() if k != "type"}
    if kind in ACTIVATIONS:
        params = ACTIVATION_PARAMS.get(kind, {})
        ctx.keys(f"{key}.", options, tuple(params), f"a {kind} layer")
        values = {}
        for pname, param in params.items():
            values[pname] = ctx.real(f"{key}.{pname}", options.get(pname, param.default),
                                     valid=f"a number {param.valid}")
            if not param.check(values[pname]):
                raise ctx.expected(f"{key}.{pname}", f"a number {param.valid}", options[pname])
        if kind == "hard_tanh" and not values["min_val"] < values["max_val"]:
            raise ctx.fail(f"{key}.min_val", f"{values['min_val']!r} must be less than max_val "
                                             f"= {values['max_val']!r}")
        return LayerSpec(kind, values)
    ctx.keys(f"{key}.", options, LAYER_KEYS[kind], f"a {kind} layer")
    return LayerSpec(kind, _READERS[kind](ctx, key, options, nd))


def _conv_options(ctx, key, t, nd):
    need = lambda name, valid: ctx.required(f"{key}.{name}", t, name, valid, "a conv layer")  # noqa: E731
    o = {"out_channels": ctx.integer(f"{key}.out_channels",
                                     need("out_channels", "a positive int"), minimum=1),
         "kernel": ctx.int_or_list(f"{key}.kernel", need("kernel", "a positive int"), nd,
                                   minimum=1)}
    o["stride"] = ctx.int_or_list(f"{key}.stride", t.get("stride", 1), nd, minimum=1)
    o["padding"] = _padding(ctx, f"{key}.padding", t.get("padding", 0), nd)
    o["dilation"] = ctx.int_or_list(f"{key}.dilation", t.get("dilation", 1), nd, minimum=1)
    o["groups"] = ctx.integer(f"{key}.groups", t.get("groups", 1), minimum=1)
    o["bias"] = ctx.boolean(f"{key}.bias", t.get("bias", True))
    o["convention"] = ctx.choice(f"{key}.convention", t.get("convention", "correlation"),
                                 CONVENTIONS)
    if o["out_channels"] % o["groups"]:
        raise ctx.fail(f"{key}.groups", f"{o['groups']} does not divide out_channels = "
                                        f"{o['out_channels']}; valid: "
                                        f"{divisors(o['out_channels'])}")
    return o


def _padding(ctx, key, value, nd):
    if isinstance(value, str):
        return ctx.choice(key, value, PADDING_WORDS,
                          what="an int >= 0, a list of them, or one of")
    if (isinstance(value, list) and value and all(isinstance(p, list) for p in value)):
        count = "1 to 3" if nd is None else str(nd)
        ok = (nd is None or len(value) == nd) and len(value) <= 3 and all(
            len(p) == 2 and all(is_int(v) and v >= 0 for v in p) for p in value)
        if not ok:
            raise ctx.expected(key, f"a list of {count} [low, high] pairs of ints >= 0", value)
        return [[int(a), int(b)] for a, b in value]
    return ctx.int_or_list(key, value, nd, minimum=0)


def _pool_options(ctx, key, t, nd):
    kernel = ctx.int_or_list(f"{key}.kernel",
                             ctx.required(f"{key}.kernel", t, "kernel", "a positive int",
                                          "a pooling layer"), nd, minimum=1)
    stride = ctx.int_or_list(f"{key}.stride", t["stride"], nd, minimum=1) if "stride" in t \
        else kernel
    padding = ctx.int_or_list(f"{key}.padding", t.get("padding", 0), nd, minimum=0)
    return {"kernel": kernel, "stride": stride, "padding": padding}


def _dense_options(ctx, key, t, nd):
    return {"out_features": ctx.integer(
                f"{key}.out_features",
                ctx.required(f"{key}.out_features", t, "out_features", "a positive int",
                             "a dense layer"), minimum=1),
            "bias": ctx.boolean(f"{key}.bias", t.get("bias", True))}


def _python_options(ctx, key, t, nd):
    from gradcheck.spec._user import check_target_syntax

    from gradcheck.spec._target import FORMS

    target = ctx.required(f"{key}.target", t, "target", FORMS, "a python layer")
    if not isinstance(target, str):
        raise ctx.expected(f"{key}.target", f"a string: {FORMS}", target)
    check_target_syntax(ctx, f"{key}.target", target)
    params = ctx.table(f"{key}.params", t.get("params", {}), "parameter names -> shapes")
    shapes = {}
    for pname, pshape in params.items():
        if not isinstance(pname, str) or not re.match(_IDENTIFIER, pname):
            raise ctx.fail(f"{key}.params.{pname}", f"parameter name {show(pname)} is not a "
                                                    f"valid identifier (letters, digits, _)")
        shapes[pname] = list(ctx.shape(f"{key}.params.{pname}", pshape,
                                       what="the parameter's shape"))
    if "kwargs" in t and "options" in t:
        raise ctx.fail(f"{key}.options", "the older name of kwargs, given beside kwargs; keep "
                                         "one: kwargs = {...}")
    kw_key = "options" if "options" in t else "kwargs"   # "options": the older name
    kwargs = ctx.table(f"{key}.{kw_key}", t.get(kw_key, {}),
                       "keyword arguments for the target's constructor")
    o = {"target": target, "params": shapes, "kwargs": dict(kwargs)}
    if "init" in t:
        o["init"] = _python_init(ctx, f"{key}.init", t["init"], shapes)
    if "output_shape" in t:
        o["output_shape"] = list(ctx.shape(f"{key}.output_shape", t["output_shape"],
                                           min_ndim=1, what="the layer's output shape"))
    if "batched" in t:
        o["batched"] = ctx.boolean(f"{key}.batched", t["batched"])
    return o


def _python_init(ctx, key, value, shapes):
    """``init``: parameter name -> ``"default"``, ``"zeros"``, ``"ones"`` or ``{ loc, scale }``
    (``loc + scale * N(0, 1)``). Names are checked against ``params`` when it is given (an
    nn.Module's own parameters are known only when it is built)."""
    from gradcheck.spec._user import INIT_WORDS

    table = ctx.table(key, value, "parameter names -> how to draw them")
    out = {}
    for pname, rule in table.items():
        if shapes and pname not in shapes:
            raise ctx.fail(f"{key}.{pname}", f"not a parameter of this layer; "
                                             f"{suggest(pname, shapes)}params are: "
                                             f"{', '.join(shapes)}")
        if isinstance(rule, str):
            out[pname] = ctx.choice(f"{key}.{pname}", rule, INIT_WORDS)
            continue
        valid = ('"default", "zeros", "ones" or a table { loc = number, scale = number >= 0 } '
                 '(loc + scale * N(0, 1))')
        if not isinstance(rule, dict):
            raise ctx.expected(f"{key}.{pname}", valid, rule)
        ctx.keys(f"{key}.{pname}.", rule, ("loc", "scale"), "an init table")
        out[pname] = {"loc": ctx.real(f"{key}.{pname}.loc", rule.get("loc", 0.0)),
                      "scale": ctx.real(f"{key}.{pname}.scale", rule.get("scale", 1.0),
                                        minimum=0)}
    return out


def _flatten_options(ctx, key, t, nd):
    return {}


_READERS = {"conv": _conv_options, "maxpool": _pool_options, "avgpool": _pool_options,
            "dense": _dense_options, "python": _python_options, "flatten": _flatten_options}
