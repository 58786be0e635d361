"""The checker: analytic gradients held against numerical ones, with a verdict and a diagnosis."""

from gradcheck.checker._report import REPORT_FORMAT, ArgumentReport, CheckReport, Diagnosis

__all__ = ["REPORT_FORMAT", "ArgumentReport", "CheckReport", "Diagnosis"]
