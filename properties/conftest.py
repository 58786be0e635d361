"""Hypothesis profiles for the property suite, chosen by ``HYPOTHESIS_PROFILE``.

* ``dev`` (the default): a few examples per property, random each run -- quick feedback.
* ``ci``: derandomized (the same examples on every run, so CI is deterministic), a bounded
  example count and a per-example deadline; the whole suite runs in about two minutes on
  two cores. ``.ci/run`` selects it.
* ``thorough``: many examples, no deadline, for nightly runs.

Every profile prints the ``@reproduce_failure`` blob of a failing example, and each
property notes how to rerun its example (the array seed, and the configuration as a spec
that ``gradcheck check`` accepts).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

PROFILE_VARIABLE = "HYPOTHESIS_PROFILE"
PROFILES = ("dev", "ci", "thorough")

settings.register_profile("dev", max_examples=10, deadline=2000, print_blob=True)
settings.register_profile(
    "ci", max_examples=150, derandomize=True, database=None, deadline=5000, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])

_profile = os.environ.get(PROFILE_VARIABLE, "dev")
if _profile not in PROFILES:
    raise pytest.UsageError(
        f"{PROFILE_VARIABLE}={_profile!r} is not a profile of the property suite; use one of "
        f"{', '.join(PROFILES)}")
settings.load_profile(_profile)


def pytest_report_header(config):
    return f"hypothesis profile of properties/: {_profile!r} (set {PROFILE_VARIABLE})"
