"""Chinese radiology report datasets that cannot be downloaded: COVID-19 CT (gated) and
CX-CHR (private). One documented layout (`layout.py`), two builders (`builders.py`) and
learnable synthesizers with DICOM CT series (`synth.py`)."""

from refbench.datasets.chinese_reports.builders import CXCHRBuilder, Covid19CTBuilder

__all__ = ["CXCHRBuilder", "Covid19CTBuilder"]
