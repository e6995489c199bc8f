"""Submission formats, one module per family; `base` holds the contract."""

from refbench.benchmarks.formats.base import FORMATS, SubmissionFormat

__all__ = ["FORMATS", "SubmissionFormat"]
