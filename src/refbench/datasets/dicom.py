"""CT / X-ray DICOM read the way a radiologist's viewer reads it (extra `medical`: pydicom).

* **Hounsfield units.** Stored values become HU through the Modality LUT: `RescaleSlope`
  and `RescaleIntercept` (PS3.3 C.11.1; slope 1 and intercept 0 when absent, as the
  standard says), or a Modality LUT Sequence where one is present. Pixels equal to
  `PixelPaddingValue` (outside the scanner's field of view) become air, -1024 HU, so they
  do not show as bone after windowing.
* **Windows.** `LUNG_WINDOW` (center -600, width 1500) and `MEDIASTINAL_WINDOW` (center
  40, width 400) map HU to uint8 with the DICOM linear VOI function (PS3.3 C.11.2.1.2),
  the function every viewer applies to a Window Center / Width pair.
* **Series order.** Slices are ordered by `ImagePositionPatient` projected on the slice
  normal (row direction x column direction of `ImageOrientationPatient`), ties and slices
  without a position by `InstanceNumber`; file names and file-system order never count.
  Slice 0 is the one lowest along the normal (for axial LPS scans the most inferior).
* **Geometry kept.** `PixelSpacing` (row, column), `SliceThickness` and the spacing
  between slice centres (median of consecutive distances) travel with the volume.
* **Reported, not hidden.** Uneven spacing, a gap (missing slices), duplicate positions
  and jumps in InstanceNumber are listed in `Series.problems`; `strict=True` makes them
  errors. Slices that cannot be stacked (other size, orientation, pixel spacing or
  series) are always errors.
* **Compressed transfer syntaxes** are decoded when an installed pydicom plugin can
  (RLE natively; JPEG baseline and JPEG 2000 through Pillow; JPEG-LS and JPEG Lossless
  need pylibjpeg or GDCM); otherwise the error names the transfer syntax and what to
  install. Truncated or non-DICOM files are one-line errors naming the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refbench.errors import RefbenchError, require

#: HU given to pixels equal to PixelPaddingValue (outside the field of view): air
PADDING_HU = -1024.0
#: relative deviation from the median slice distance above which spacing is "uneven"
SPACING_TOLERANCE = 0.05
#: a distance this many times the median is a gap: slices are missing there
GAP_FACTOR = 1.5


@dataclass(frozen=True)
class Window:
    """A display window: HU in [center - width/2, center + width/2] spread over 0..255."""

    name: str
    center: float
    width: float

    def apply(self, hu: np.ndarray) -> np.ndarray:
        """uint8 image of `hu` by the DICOM linear VOI LUT function (PS3.3 C.11.2.1.2)."""
        if self.width < 1:
            raise RefbenchError(f"window {self.name!r} has width {self.width} (must be >= 1)")
        c, w = float(self.center), float(self.width)
        values = np.asarray(hu, dtype=np.float64)
        scaled = ((values - (c - 0.5)) / max(w - 1.0, 1e-9) + 0.5) * 255.0
        out = np.clip(scaled, 0.0, 255.0)
        out[values <= c - 0.5 - (w - 1.0) / 2.0] = 0.0
        out[values > c - 0.5 + (w - 1.0) / 2.0] = 255.0
        return np.rint(out).astype(np.uint8)


#: the lung window of chest CT reading: -1350..150 HU
LUNG_WINDOW = Window("lung", center=-600.0, width=1500.0)
#: the mediastinal (soft-tissue) window: -160..240 HU
MEDIASTINAL_WINDOW = Window("mediastinal", center=40.0, width=400.0)


@dataclass
class DicomSlice:
    """One decoded image: HU (or modality values), its geometry and where it came from."""

    path: Path
    pixels: np.ndarray                    # float32 (rows, cols), HU for CT
    instance_number: int | None
    position: np.ndarray | None           # ImagePositionPatient (mm), None when absent
    orientation: np.ndarray | None        # ImageOrientationPatient, 6 direction cosines
    pixel_spacing: tuple[float, float] | None   # (row spacing, column spacing) in mm
    slice_thickness: float | None
    series_uid: str
    modality: str


@dataclass
class Series:
    """An ordered stack of slices: `volume` (slices, rows, cols) float32 HU, spacing
    `(z, row, col)` in mm (0.0 where unknown) and the problems found in its geometry."""

    slices: list[DicomSlice]
    volume: np.ndarray
    spacing: tuple[float, float, float]
    slice_thickness: float | None
    series_uid: str
    problems: list[str] = field(default_factory=list)

    def windowed(self, window: Window) -> np.ndarray:
        """The volume through `window` as uint8 (slices, rows, cols)."""
        return window.apply(self.volume)


def _pydicom() -> Any:
    require("pydicom", "medical")
    import pydicom

    return pydicom


def _floats(value: Any, n: int, path: Path, name: str) -> np.ndarray | None:
    if value is None or value == "":
        return None
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        raise RefbenchError(f"{name} is not numeric: {value!r}", path=path, key=name) from None
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        raise RefbenchError(f"{name} must hold {n} finite numbers, got {list(value)!r}",
                            path=path, key=name)
    return out


def _decode(ds: Any, path: Path, pixels: bool = True) -> np.ndarray:
    """The stored pixel array; missing decoders and truncated data become one-line errors.
    With `pixels=False` only the decoder is checked and a zero array of the image's size
    stands in (header-only checks of whole series)."""
    from pydicom.pixels import get_decoder

    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        try:
            available = get_decoder(syntax).is_available
        except NotImplementedError:
            available = False
        if not available:
            raise RefbenchError(
                f"pixel data compressed with {syntax.name} ({syntax}) and no installed "
                f"decoder reads it: install pylibjpeg with its plugins (pylibjpeg-libjpeg, "
                f"pylibjpeg-openjpeg) or python-gdcm, or convert the series to an uncompressed "
                f"transfer syntax", path=path, key="TransferSyntaxUID")
    if not pixels:
        return np.zeros((int(ds.get("Rows", 0)), int(ds.get("Columns", 0))), np.int16)
    try:
        return ds.pixel_array
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, KeyError) as exc:
        text = " ".join(str(exc).split())
        raise RefbenchError(f"cannot decode pixel data: {text[:200]}", path=path,
                            key="PixelData") from None


def to_hu(ds: Any, stored: np.ndarray) -> np.ndarray:
    """Stored values -> modality values (HU for CT) as float32, padding pixels as air."""
    from pydicom.pixels import apply_modality_lut

    if "ModalityLUTSequence" in ds:
        values = np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    else:
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        values = stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    padding = ds.get("PixelPaddingValue")
    if padding is not None:
        values[stored == padding] = PADDING_HU
    return values


def read_slice(path: str | Path, pixels: bool = True) -> DicomSlice:
    """One single-frame grayscale DICOM image; any problem is a `RefbenchError` naming it.
    `pixels=False` reads the header only (geometry, decoder availability)."""
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if path.is_dir():
        raise RefbenchError("a folder, but a DICOM file was expected here", path=path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=not pixels)
    except FileNotFoundError:
        raise RefbenchError("DICOM file not found", path=path) from None
    except InvalidDicomError as exc:
        raise RefbenchError(f"not a DICOM file ({' '.join(str(exc).split())[:120]})",
                            path=path) from None
    except (OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise RefbenchError(f"unreadable or truncated DICOM file: {str(exc)[:160]}",
                            path=path) from None
    if pixels and "PixelData" not in ds:
        raise RefbenchError("DICOM file holds no pixel data", path=path, key="PixelData")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise RefbenchError(f"multi-frame image ({frames} frames): refbench reads series of "
                            f"single-frame slices; split enhanced/multi-frame objects first",
                            path=path, key="NumberOfFrames")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise RefbenchError(f"colour image ({ds.get('PhotometricInterpretation')}): only "
                            f"grayscale CT / X-ray images are read", path=path,
                            key="SamplesPerPixel")
    stored = _decode(ds, path, pixels)
    values = to_hu(ds, stored)
    if ds.get("PhotometricInterpretation") == "MONOCHROME1" and values.size:
        values = values.max() + values.min() - values   # X-ray: white is low, flip it
    spacing = _floats(ds.get("PixelSpacing"), 2, path, "PixelSpacing")
    thickness = ds.get("SliceThickness")
    instance = ds.get("InstanceNumber")
    return DicomSlice(
        path=path, pixels=values,
        instance_number=None if instance in (None, "") else int(instance),
        position=_floats(ds.get("ImagePositionPatient"), 3, path, "ImagePositionPatient"),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6, path,
                            "ImageOrientationPatient"),
        pixel_spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
        slice_thickness=None if thickness in (None, "") else float(thickness),
        series_uid=str(ds.get("SeriesInstanceUID", "")), modality=str(ds.get("Modality", "")))


def slice_normal(orientation: np.ndarray) -> np.ndarray:
    """The unit normal of a slice: row direction x column direction."""
    normal = np.cross(orientation[:3], orientation[3:])
    norm = np.linalg.norm(normal)
    if norm < 1e-6:
        raise RefbenchError(f"ImageOrientationPatient {orientation.tolist()} has parallel "
                            f"row and column directions")
    return normal / norm


def order_slices(slices: Sequence[DicomSlice]) -> tuple[list[DicomSlice], list[float] | None]:
    """Slices sorted by position along the slice normal, then InstanceNumber; with the
    sorted positions (None when the slices carry no ImagePositionPatient)."""
    if not slices:
        raise RefbenchError("empty DICOM series")
    with_pos = [s for s in slices if s.position is not None and s.orientation is not None]
    if with_pos and len(with_pos) != len(slices):
        missing = next(s for s in slices if s.position is None or s.orientation is None)
        raise RefbenchError("ImagePositionPatient/ImageOrientationPatient missing on this "
                            "slice but present on others of the series", path=missing.path)
    if not with_pos:
        if any(s.instance_number is None for s in slices):
            bad = next(s for s in slices if s.instance_number is None)
            raise RefbenchError("slice has neither ImagePositionPatient nor InstanceNumber: "
                                "the series cannot be ordered", path=bad.path)
        return sorted(slices, key=lambda s: s.instance_number or 0), None
    normal = slice_normal(slices[0].orientation)  # type: ignore[arg-type]
    for s in slices[1:]:
        if np.abs(s.orientation - slices[0].orientation).max() > 1e-3:  # type: ignore[operator]
            raise RefbenchError(f"ImageOrientationPatient differs within the series "
                                f"({s.orientation.tolist()} vs "  # type: ignore[union-attr]
                                f"{slices[0].orientation.tolist()} in "  # type: ignore[union-attr]
                                f"{slices[0].path.name})", path=s.path)
    keyed = sorted(((float(np.dot(s.position, normal)), s.instance_number or 0, i)
                    for i, s in enumerate(slices)))
    return [slices[i] for _, _, i in keyed], [k[0] for k in keyed]


def spacing_problems(ordered: Sequence[DicomSlice], positions: Sequence[float] | None
                     ) -> tuple[float, list[str]]:
    """(slice distance in mm (median; 0.0 when unknown), problems of the geometry)."""
    problems: list[str] = []
    numbers = [s.instance_number for s in ordered]
    if positions is None or len(positions) < 2:
        distance = 0.0
    else:
        steps = np.diff(np.asarray(positions))
        distance = float(np.median(steps))
        for k, step in enumerate(steps):
            a, b = ordered[k].path.name, ordered[k + 1].path.name
            if step < 1e-3:
                problems.append(f"duplicate slice position {positions[k]:.3f} mm ({a}, {b})")
            elif distance > 0 and step > GAP_FACTOR * distance:
                lost = int(round(step / distance)) - 1
                problems.append(f"missing slices: {step:.3f} mm between {a} and {b}, about "
                                f"{lost} slice(s) of {distance:.3f} mm")
            elif distance > 0 and abs(step - distance) > SPACING_TOLERANCE * distance:
                problems.append(f"inconsistent spacing: {step:.3f} mm between {a} and {b} "
                                f"(median {distance:.3f} mm)")
    if all(n is not None for n in numbers) and len(numbers) > 1:
        jumps = [(x, y) for x, y in zip(numbers, numbers[1:]) if abs(y - x) > 1]  # type: ignore[operator]
        if jumps and not any(p.startswith("missing slices") for p in problems):
            shown = ", ".join(f"{x}->{y}" for x, y in jumps[:3])
            problems.append(f"InstanceNumber not consecutive in slice order ({shown}"
                            f"{', ...' if len(jumps) > 3 else ''}): slices may be missing")
    return distance, problems


def read_series(files: Iterable[str | Path], strict: bool = False,
                pixels: bool = True) -> Series:
    """Read, order and stack the slices of one series (see the module docstring);
    `pixels=False` checks headers and geometry only (the volume is zeros)."""
    slices = [read_slice(f, pixels) for f in files]
    if not slices:
        raise RefbenchError("no DICOM files in the series")
    uids = {s.series_uid for s in slices}
    if len(uids) > 1:
        first = slices[0]
        other = next(s for s in slices if s.series_uid != first.series_uid)
        raise RefbenchError(f"more than one series in one study folder (SeriesInstanceUID "
                            f"{first.series_uid!r} in {first.path.name}, {other.series_uid!r})",
                            path=other.path)
    ordered, positions = order_slices(slices)
    for s in ordered[1:]:
        if s.pixels.shape != ordered[0].pixels.shape:
            raise RefbenchError(f"slice size {s.pixels.shape} differs from "
                                f"{ordered[0].pixels.shape} in {ordered[0].path.name}",
                                path=s.path)
        if s.pixel_spacing != ordered[0].pixel_spacing:
            raise RefbenchError(f"PixelSpacing {s.pixel_spacing} differs from "
                                f"{ordered[0].pixel_spacing} in {ordered[0].path.name}",
                                path=s.path, key="PixelSpacing")
    distance, problems = spacing_problems(ordered, positions)
    if strict and problems:
        raise RefbenchError(f"series geometry: {problems[0]}"
                            f"{f' (+{len(problems) - 1} more)' if len(problems) > 1 else ''}",
                            path=ordered[0].path.parent)
    thickness = ordered[0].slice_thickness
    row, col = ordered[0].pixel_spacing or (0.0, 0.0)
    return Series(slices=ordered, volume=np.stack([s.pixels for s in ordered]),
                  spacing=(distance or (thickness or 0.0), row, col),
                  slice_thickness=thickness, series_uid=ordered[0].series_uid,
                  problems=problems)


def is_dicom(path: Path) -> bool:
    """Whether a file carries the DICOM preamble magic `DICM` at byte 128 (extensionless
    slices are common), or has a `.dcm` / `.dicom` suffix."""
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def sample_indices(count: int, wanted: int) -> np.ndarray:
    """`wanted` slice indices spread evenly over `count` ordered slices (repeats when the
    series is shorter), so every study yields a fixed-depth volume."""
    if count < 1:
        raise RefbenchError("cannot sample slices from an empty series")
    return np.rint(np.linspace(0, count - 1, wanted)).astype(np.int64)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """A 2-D uint8 image resized to size x size (bilinear, Pillow)."""
    from PIL import Image

    if image.shape == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
