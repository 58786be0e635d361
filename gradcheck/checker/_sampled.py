"""What a sampled check knows, put back in the argument's shape.

A sampled check judges some elements of an argument (:mod:`gradcheck.checker._sample`);
its :class:`~gradcheck.checker._judge.Judgement` is over those elements, in the order of
their flat indices. The diagnosis and the report speak of the argument: here the sample
is merged (:func:`merge_samples`, when bisection adds elements) and embedded into the
argument's shape (:func:`embed`), and the diagnosis is run on the sampled elements only
(:func:`diagnose_sample`): the numerical gradient is NaN where no element was sampled,
and every comparison of the catalogue is restricted to the sampled elements.

What that means for each cause:

- tested on the sample as in full mode: the layer's known mistakes (their predicted
  gradients compared on the sampled elements), sign, scale, a factor per slice, the
  missing terms, element-wise relations, value and position masks, regions, the probes
  that call the backward or ``f`` again (linearity, ``R`` passed through, the derivative
  at the output), a kink's limits;
- tested only where an element and the one it would come from were both sampled
  (:data:`PARTLY_TESTED`: flips, transposes, shifts, permuted axes, reversals): the
  corners of every sampled channel are closed under flips and transposes, the patch of
  :mod:`._sample` under small shifts, a weight's sampled filters under all of them;
- not tested (:data:`UNTESTED`): values permuted within a slice and a missing rank-one
  term need every element; a single wrong element, or a region holding every mismatch,
  cannot be told from a sample (the other elements are not all known, and a few sampled
  mismatches fall in one batch item or channel by chance); a position mask, which asks
  whether the mismatches could fall in its set by chance, is tested instead, and when
  nothing fits the mismatch is described with its worst element.

Every diagnosis on a sample says so; when no cause fits it also says which causes could
not be tested there.
"""

from __future__ import annotations

import numpy as np

from gradcheck.checker._diagnose import Evidence, Known, diagnose_evidence
from gradcheck.checker._judge import Judgement
from gradcheck.checker._report import Diagnosis

__all__ = ["merge_samples", "embed", "diagnose_sample", "UNTESTED", "PARTLY_TESTED"]

#: Causes a sample cannot test (they need every element).
UNTESTED = ("permuted_within", "missing_term_rank_one", "single_element", "region")
#: Causes tested only where an element and the one it would come from were both sampled.
PARTLY_TESTED = ("kernel_not_rotated", "transposed", "shifted", "axes_permuted", "reversed")


def merge_samples(index, judged: Judgement, more, extra: Judgement):
    """``(index, judged)`` with the elements ``more`` (judged as ``extra``) added, sorted
    by flat index; an element in both keeps its first judgement."""
    index, more = np.asarray(index, np.int64), np.asarray(more, np.int64)
    new = ~np.isin(more, index)
    all_index = np.concatenate([index, more[new]])
    order = np.argsort(all_index, kind="stable")

    def join(a, b):
        if isinstance(a, tuple):        # Judgement.ties: groups, not elements
            return a + b
        if a is None or b is None:
            if a is None and b is None:
                return None
            a = np.full(index.size, np.nan) if a is None else a
            b = np.full(more.size, np.nan) if b is None else b
        return np.concatenate([np.asarray(a), np.asarray(b)[new]])[order]

    return all_index[order], Judgement(*(join(x, y) for x, y in zip(judged, extra)))


def embed(values, index, shape, fill) -> np.ndarray:
    """An array of ``shape`` holding ``values`` at the flat ``index`` and ``fill`` elsewhere."""
    values = np.asarray(values)
    out = np.full(int(np.prod(shape)), fill, dtype=np.result_type(values.dtype, type(fill)))
    out[np.asarray(index, np.int64)] = values.reshape(-1)
    return out.reshape(shape)


def _embedded_judgement(judged: Judgement, index, analytic) -> Judgement:
    """The sample's judgement in the argument's shape: an element outside the sample
    agrees with itself (no difference, nothing failed, no kink)."""
    shape = analytic.shape
    a = np.asarray(analytic, np.float64)
    at = lambda values, fill: embed(values, index, shape, fill)  # noqa: E731
    numeric = a.copy()
    numeric.reshape(-1)[index] = judged.numeric
    return Judgement(
        analytic=a, numeric=numeric, error=at(judged.error, 0.0),
        tolerance=at(judged.tolerance, np.inf), diff=at(judged.diff, 0.0),
        failed=at(judged.failed, False), nondiff=at(judged.nondiff, False),
        outside=at(judged.outside, False), shared=at(judged.shared, False),
        left=None if judged.left is None else at(judged.left, np.nan),
        right=None if judged.right is None else at(judged.right, np.nan),
        ties=tuple((np.asarray(index)[np.asarray(members)], *rest)
                   for members, *rest in judged.ties))


def _on_the_sample(diagnosis: Diagnosis, index, shape) -> Diagnosis:
    """A diagnosis found on the sample says so; when no cause fits, it also names the
    causes the sample could not test."""
    size = int(np.prod(shape))
    seen = f"{index.size} of {size} elements were sampled"
    evidence = {**diagnosis.evidence, "sampled": int(index.size), "n_elements": size,
                "untested_on_sample": list(UNTESTED),
                "partly_tested_on_sample": list(PARTLY_TESTED)}
    message = f"{diagnosis.message} (Judged on the sample: {seen}.)"
    if diagnosis.cause == "no_known_pattern":
        message += (f" A sample cannot test {', '.join(UNTESTED[:-1])} or {UNTESTED[-1]}, "
                    f"and tests {', '.join(PARTLY_TESTED)} only where an element and the "
                    f"one it would come from were both sampled; a full check (mode='full') "
                    f"tests them all.")
    return Diagnosis(diagnosis.cause, message, evidence)


def diagnose_sample(judged: Judgement, index, analytic, *, role, suspects, known=Known()):
    """The cause of the sampled elements' failures (None when none failed).

    ``judged`` is over the sampled elements (flat ``index``), ``analytic`` the whole
    analytic gradient; ``suspects`` and ``known`` as for
    :func:`._diagnose.diagnose_judgement` (predictions are compared on the sampled
    elements). A sample that holds every element is diagnosed as a full check is, every
    cause tried.
    """
    if not judged.failed.any():
        return None
    shape = analytic.shape
    embedded = _embedded_judgement(judged, index, analytic)
    left_out = np.ones(shape, bool)
    left_out.reshape(-1)[index] = judged.nondiff
    evidence = Evidence(embedded.analytic, embed(judged.numeric, index, shape, np.nan),
                        embed(judged.tolerance, index, shape, np.nan), role=role,
                        suspects=suspects, exclude=left_out, judged=embedded, known=known)
    whole = np.unique(np.asarray(index)).size == analytic.size
    with np.errstate(invalid="ignore"):     # a sample of every element tests every cause
        found = diagnose_evidence(evidence, skip=() if whole else UNTESTED)
    if whole:
        return Diagnosis(found.cause, f"{found.message} (Judged on the sample, which holds "
                         f"all {analytic.size} elements.)",
                         {**found.evidence, "sampled": int(analytic.size),
                          "n_elements": int(analytic.size)})
    return _on_the_sample(found, np.asarray(index), shape)
