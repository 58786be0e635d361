r"""``gradcheck explain``: the seed's 3×3 input / 2×2 kernel example, each δ two ways.

The seed's picture: a 3×3 input, a 2×2 kernel, a 2×2 output. The error of an input pixel
is computed

1. as the **perceptron with shared weights** sees it -- the sum, over the output nodes
   the pixel feeds, of that node's error times the shared weight on the connection
   (:func:`gradcheck.ops.reference.perceptron_deltas`, one connection at a time);
2. as the seed's formula -- the **full convolution of the output error with the kernel
   rotated by 180°** (:func:`gradcheck.conv_backward` with ``method="rot180"``, the
   library's own fast path).

With integer-valued errors and weights both sums are exact, so the two routes agree to
the last bit. The output errors default to 1, 10, 100, 1000, so each decimal digit of a
pixel's error is one connection.
"""

from __future__ import annotations

import numpy as np

from gradcheck._record import NamedTuple

__all__ = ["Explanation", "explain", "render_explanation"]

_X_SHAPE = (1, 1, 3, 3)
WEIGHTS = ((1.0, 2.0), (3.0, 4.0))
DELTAS = ((1.0, 10.0), (100.0, 1000.0))


class Explanation(NamedTuple):
    convention: str
    w: np.ndarray             # (2, 2)
    delta: np.ndarray         # (2, 2), the output error
    pixels: list              # PixelDelta per input pixel (the perceptron route)
    perceptron: np.ndarray    # (3, 3)
    rot180: np.ndarray        # (3, 3), conv_backward's rot180 route
    padded_delta: np.ndarray  # (4, 4), delta padded for the full convolution

    @property
    def equal(self) -> bool:
        """Bit for bit: every pixel's two values have the same float64 representation."""
        return bool(np.array_equal(self.perceptron.view(np.int64), self.rot180.view(np.int64)))

    def to_dict(self) -> dict:
        return {"convention": self.convention, "w": self.w.tolist(),
                "delta": self.delta.tolist(), "perceptron": self.perceptron.tolist(),
                "rot180": self.rot180.tolist(), "equal": self.equal,
                "pixels": [p.to_dict() for p in self.pixels]}


def explain(*, convention: str = "convolution", w=WEIGHTS, delta=DELTAS) -> Explanation:
    """Compute the seed's example both ways (see the module docstring)."""
    from gradcheck import conv_backward
    from gradcheck.ops.reference import perceptron_deltas

    w4 = np.asarray(w, dtype=np.float64).reshape(1, 1, 2, 2)
    d4 = np.asarray(delta, dtype=np.float64).reshape(1, 1, 2, 2)
    pixels = perceptron_deltas(d4, w4, _X_SHAPE, convention=convention)
    perceptron = np.array([float(np.real(p.delta)) for p in pixels]).reshape(3, 3)
    grad_x, _, _ = conv_backward(d4, np.zeros(_X_SHAPE), w4, convention=convention,
                                 method="rot180")
    return Explanation(convention, w4[0, 0], d4[0, 0], pixels, perceptron, grad_x[0, 0],
                       np.pad(d4[0, 0], 1))


def _num(v) -> str:
    v = float(np.real(v))
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def _matrix(a: np.ndarray, indent: str) -> list[str]:
    cells = [[_num(v) for v in row] for row in a]
    width = max(len(c) for row in cells for c in row)
    return [indent + "[" + "  ".join(c.rjust(width) for c in row) + "]" for row in cells]


def _side_by_side(blocks, gap="      ") -> list[str]:
    """Lay out (title, lines) blocks next to each other."""
    widths = [max(len(t), *(len(l) for l in lines)) for t, lines in blocks]
    height = max(len(lines) for _, lines in blocks)
    out = [gap.join(t.ljust(w) for (t, _), w in zip(blocks, widths)).rstrip()]
    for r in range(height):
        out.append(gap.join((lines[r] if r < len(lines) else "").ljust(w)
                            for (_, lines), w in zip(blocks, widths)).rstrip())
    return out


def render_explanation(e: Explanation) -> str:
    seed_conv = e.convention == "convolution"
    rot = e.w[::-1, ::-1]
    # A full convolution with rot180(w) flips the kernel back: slide w itself over the
    # padded error. A full correlation with rot180(w) slides rot180(w).
    kernel = e.w if seed_conv else rot
    kname = ("w (convolving with rot180(w) flips it back)" if seed_conv
             else "rot180(w)")
    win = e.padded_delta[1:3, 1:3]
    window = " + ".join(f"{_num(d)}*{_num(k)}" for d, k in zip(win.ravel(), kernel.ravel()))
    if seed_conv:
        forward = "z[x,y] = sum_ab w[a,b] x[x-a, y-b]  (true convolution, as the seed writes it)"
        formula = "delta_x = delta * rot180(w), a FULL convolution"
    else:
        forward = "y[i,j] = sum_ab w[a,b] x[i+a, j+b]  (cross-correlation, as frameworks compute)"
        formula = ("delta_x = full convolution of delta with w = FULL correlation of delta "
                   "with rot180(w)")
    lines = [
        "The seed's example: a 3x3 input, a 2x2 kernel, a 2x2 output.",
        f"Forward: {forward}.",
        "",
        *_side_by_side([("kernel w", _matrix(e.w, "  ")),
                        ("rot180(w)", _matrix(rot, "  ")),
                        ("output error delta = dC/dy", _matrix(e.delta, "  "))]),
        "",
        "Route 1 - the perceptron with shared weights: a pixel's error is the sum, over the",
        "output nodes it feeds, of that node's error times the shared weight on the connection.",
        "A corner pixel feeds one output node; the centre pixel feeds all four.",
        "",
    ]
    rows = []
    for p, value, other in zip(e.pixels, e.perceptron.ravel(), e.rot180.ravel()):
        nums = " + ".join(f"{_num(c.delta)}*{_num(c.weight_value)}" for c in p.connections)
        same = np.float64(value).tobytes() == np.float64(other).tobytes()
        rows.append((f"({p.pixel[2]},{p.pixel[3]})", str(len(p.connections)), nums or "0",
                     "= " + _num(value), _num(other), "yes" if same else "NO"))
    head = ("pixel", "links", "sum of delta*w over its connections", "= delta_x",
            "rot180 route", "equal")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    lines.append("  " + fmt(head))
    lines += ["  " + fmt(r) for r in rows]
    centre = e.pixels[4]
    terms = " + ".join(f"delta{c.output[2:]}*w{c.weight[2:]}".replace(" ", "")
                       for c in centre.connections)
    lines += ["", f"  e.g. the centre pixel (1,1): {terms}"]
    lines += [
        "",
        f"Route 2 - the seed's formula: {formula}.",
        "Pad delta by k-1 = 1 on every side and slide a 2x2 window over it:",
        f"delta_x[i,j] = sum_ab delta_padded[i+a, j+b] * K[a,b] with K = {kname}.",
        "The padded zeros are the connections a pixel does not have.",
        f"  e.g. the centre pixel (1,1): {window} = {_num(e.rot180[1, 1])}",
        "",
        *_side_by_side([("delta padded (full)", _matrix(e.padded_delta, "  ")),
                        ("delta_x (rot180 route, gradcheck.conv_backward)",
                         _matrix(e.rot180, "  "))]),
        "",
        *_side_by_side([("delta_x (perceptron route)", _matrix(e.perceptron, "  ")),
                        ("difference", _matrix(e.perceptron - e.rot180, "  "))]),
        "",
    ]
    if e.equal:
        lines.append("Equal to the last bit: the rot180 full convolution IS the perceptron's "
                     "sum over shared-weight connections.")
    else:
        diff = float(np.max(np.abs(e.perceptron - e.rot180)))
        lines.append(f"NOT EQUAL: the routes differ by up to {diff:.3g}.")
    lines.append("In a network the seed then multiplies by sigma'(z) of the layer below: "
                 "delta^l = (delta^(l+1) * rot180(w^(l+1))) . sigma'(z^l).")
    return "\n".join(lines)
