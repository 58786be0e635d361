"""What a sampled check knows, put back in the argument's shape.

A sampled check judges some elements of an argument (:mod:`gradcheck.checker._sample`);
its :class:`~gradcheck.checker._judge.Judgement` is over those elements, in the order of
their flat indices. The diagnosis and the report speak of the argument: here the sample
is merged (:func:`merge_samples`, when bisection adds elements) and embedded into the
argument's shape (:func:`embed`), and the diagnosis is run on the sampled elements only
(:func:`diagnose_sample`): every comparison of the catalogue is restricted to them, so
a cause that needs the numerical gradient where no element was sampled (a flip, a
shift) does not fit, and what is said of "every other element" is said of the sample.
"""

from __future__ import annotations

import numpy as np

from gradcheck.checker._diagnose import Evidence, diagnose_evidence
from gradcheck.checker._judge import Judgement
from gradcheck.checker._report import Diagnosis

__all__ = ["merge_samples", "embed", "diagnose_sample"]


def merge_samples(index, judged: Judgement, more, extra: Judgement):
    """``(index, judged)`` with the elements ``more`` (judged as ``extra``) added, sorted
    by flat index; an element in both keeps its first judgement."""
    index, more = np.asarray(index, np.int64), np.asarray(more, np.int64)
    new = ~np.isin(more, index)
    all_index = np.concatenate([index, more[new]])
    order = np.argsort(all_index, kind="stable")

    def join(a, b):
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
        right=None if judged.right is None else at(judged.right, np.nan))


def _on_the_sample(diagnosis: Diagnosis, index, judged: Judgement, size) -> Diagnosis:
    """A diagnosis found on the sample says so; a claim about one element cannot be made
    from a sample and is restated as what was seen."""
    seen = f"{index.size} of {size} elements were sampled"
    if diagnosis.cause == "single_element":
        k = int(np.flatnonzero(judged.failed)[0])
        return Diagnosis(
            "single_element",
            f"Of the sampled elements only one is wrong (flat index {int(index[k])}: "
            f"analytic {judged.analytic[k]:.9g}, numeric {judged.numeric[k]:.9g}); "
            f"{seen}, so other unsampled elements may be wrong too: a full check "
            f"(mode='full') tells.",
            {**diagnosis.evidence, "sampled": int(index.size), "n_elements": int(size)})
    return Diagnosis(diagnosis.cause,
                     f"{diagnosis.message} (Judged on the sample: {seen}.)",
                     {**diagnosis.evidence, "sampled": int(index.size),
                      "n_elements": int(size)})


def diagnose_sample(judged: Judgement, index, analytic, *, role, suspects):
    """The cause of the sampled elements' failures (None when none failed).

    ``judged`` is over the sampled elements (flat ``index``), ``analytic`` the whole
    analytic gradient; ``suspects`` as for :func:`._diagnose.diagnose_judgement` (their
    predictions are compared on the sampled elements).
    """
    if not judged.failed.any():
        return None
    shape = analytic.shape
    embedded = _embedded_judgement(judged, index, analytic)
    left_out = np.ones(shape, bool)
    left_out.reshape(-1)[index] = judged.nondiff
    evidence = Evidence(embedded.analytic, embed(judged.numeric, index, shape, np.nan),
                        embed(judged.tolerance, index, shape, np.nan), role=role,
                        suspects=suspects, exclude=left_out, judged=embedded)
    return _on_the_sample(diagnose_evidence(evidence), np.asarray(index), judged,
                          analytic.size)
