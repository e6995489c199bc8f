"""Zip archives of folder submissions: built deterministically, extracted defensively.

A folder format (`SubmissionFormat.is_folder`: a folder of GLUE server files, of KITTI
label files) is uploaded to the leaderboard as one zip of the folder. `zip_folder` builds
it reproducibly (sorted names, fixed timestamps), so the same folder always gives the same
bytes and the same sha256. `safe_extract` runs on the server, on bytes a stranger sent:
every member name is checked before anything is written (no absolute names, no `..`, no
backslashes or drive letters, no control characters, no symlinks, no duplicates, no
encryption), declared sizes and compression ratios are capped, and the size cap is
enforced again while reading, since a zip's headers can lie about what it holds.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import zipfile
from pathlib import Path

from refbench.errors import RefbenchError

MAX_MEMBERS = 200_000
MAX_TOTAL_BYTES = 512 * 1024 * 1024
MAX_RATIO = 200.0
#: members smaller than this are not checked for their compression ratio (a short,
#: repetitive text file legitimately compresses well and cannot expand to much)
RATIO_FLOOR_BYTES = 1024 * 1024
#: macOS's Finder adds resource forks under this folder; they are never predictions
_MACOS_FOLDER = "__MACOSX"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1 << 16
_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def zip_folder(folder: Path) -> bytes:
    """The zip of a submission folder: every regular file below it, named relative to it
    with '/' separators, sorted, with fixed timestamps and permissions, so the bytes (and
    the upload's sha256) depend on the files' names and contents only.

    A symlink or another non-regular entry is an error rather than silently skipped or
    followed: the upload must be exactly what the folder holds."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RefbenchError("not a folder; a folder submission is zipped from its folder",
                            path=folder)
    files: list[tuple[str, Path]] = []
    for root, dirs, names in os.walk(folder):
        base = Path(root)
        for name in dirs + names:
            entry = base / name
            if entry.is_symlink():
                raise RefbenchError(f"contains a symlink ({entry.relative_to(folder).as_posix()}"
                                    f"); copy the file it points to instead", path=folder)
        for name in names:
            entry = base / name
            if not stat.S_ISREG(entry.stat().st_mode):
                raise RefbenchError(f"{entry.relative_to(folder).as_posix()} is not a regular "
                                    f"file", path=folder)
            files.append((entry.relative_to(folder).as_posix(), entry))
    if not files:
        raise RefbenchError("the folder holds no files", path=folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, whatever system builds it
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.file_size = path.stat().st_size  # lets zipfile choose zip64 only if needed
            with open(path, "rb") as source, archive.open(info, "w") as sink:
                shutil.copyfileobj(source, sink, _CHUNK)
    return buffer.getvalue()


def _fail(message: str, shown: str) -> RefbenchError:
    return RefbenchError(" ".join(message.split()), path=shown)


def _member(name: str) -> str:
    """A member name as shown in an error: quoted and escaped, never more than 80 chars."""
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_name(info: zipfile.ZipInfo, shown: str) -> tuple[str, ...]:
    """The member's path components, or an error when its name could escape `dest` or
    mean different things on different systems."""
    raw = info.orig_filename  # zipfile cuts the name at a NUL; the original keeps it
    name = _member(raw)
    if not raw or raw in ("/", "."):
        raise _fail(f"member {name} has an empty name", shown)
    if _CONTROL.search(raw):
        raise _fail(f"member {name} has a control character in its name", shown)
    if "\\" in raw:
        raise _fail(f"member {name} has a backslash in its name (use '/')", shown)
    if raw.startswith("/"):
        raise _fail(f"member {name} has an absolute name", shown)
    if _DRIVE.match(raw):
        raise _fail(f"member {name} starts with a drive letter", shown)
    parts = tuple(raw.rstrip("/").split("/"))
    if ".." in parts:
        raise _fail(f"member {name} has a '..' component", shown)
    if any(part in ("", ".") for part in parts):
        raise _fail(f"member {name} has an empty or '.' component", shown)
    return parts


def _kind(info: zipfile.ZipInfo, shown: str) -> str:
    """'dir' or 'file'; symlinks, devices and other special entries are errors."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise _fail(f"member {_member(info.filename)} is a symlink", shown)
    if kind == stat.S_IFDIR or (kind == 0 and info.filename.endswith("/")):
        return "dir"
    if kind in (0, stat.S_IFREG) and not info.filename.endswith("/"):
        return "file"
    raise _fail(f"member {_member(info.filename)} is not a regular file", shown)


def _open(data_or_path: bytes | str | os.PathLike[str], shown: str) -> zipfile.ZipFile:
    source = io.BytesIO(data_or_path) if isinstance(data_or_path, (bytes, bytearray)) \
        else data_or_path
    try:
        return zipfile.ZipFile(source)
    except MemoryError:
        raise
    except OSError:
        if source is data_or_path:  # a stored upload the server cannot read: not theirs
            raise
        raise _fail("not a zip archive", shown) from None
    except Exception:  # noqa: BLE001 - a crafted central directory fails in many ways
        raise _fail("not a zip archive", shown) from None


def _plan(archive: zipfile.ZipFile, shown: str, max_members: int, max_total_bytes: int,
          max_ratio: float) -> list[tuple[zipfile.ZipInfo, tuple[str, ...], str]]:
    """Validate every member before anything is written: (info, parts, kind) to extract."""
    infos = archive.infolist()
    if len(infos) > max_members:
        raise _fail(f"the archive has {len(infos)} members, the limit is {max_members}", shown)
    plan: list[tuple[zipfile.ZipInfo, tuple[str, ...], str]] = []
    kinds: dict[tuple[str, ...], str] = {}
    declared = 0
    for info in infos:
        parts = _check_name(info, shown)
        if parts[0] == _MACOS_FOLDER:
            continue
        name = _member(info.filename)
        kind = _kind(info, shown)
        if parts in kinds:
            raise _fail(f"member {name} appears twice", shown)
        if info.flag_bits & 0x1:
            raise _fail(f"member {name} is encrypted", shown)
        if kind == "file":
            declared += info.file_size
            if declared > max_total_bytes:
                raise _fail(f"the archive expands to more than {max_total_bytes} bytes "
                            f"(at member {name})", shown)
            if info.file_size > RATIO_FLOOR_BYTES and \
                    info.file_size > max_ratio * max(info.compress_size, 1):
                raise _fail(f"member {name} is compressed more than {max_ratio:g}:1 "
                            f"(a zip bomb?)", shown)
        kinds[parts] = kind
        plan.append((info, parts, kind))
    for parts, kind in kinds.items():  # "a" a file and "a/b" a member: "a" is both
        for i in range(1, len(parts)):
            if kinds.get(parts[:i]) == "file":
                raise _fail(f"member {_member('/'.join(parts))} lies inside the file "
                            f"{_member('/'.join(parts[:i]))}", shown)
    if not any(kind == "file" for _info, _parts, kind in plan):
        raise _fail("the archive holds no files", shown)
    return plan


def safe_extract(data_or_path: bytes | str | os.PathLike[str], dest: Path, *,
                 max_members: int = MAX_MEMBERS, max_total_bytes: int = MAX_TOTAL_BYTES,
                 max_ratio: float = MAX_RATIO, shown: str = "submission") -> Path:
    """Extract an uploaded zip (its bytes or its path) into `dest` after validating it;
    returns the folder to read: the single top-level folder when every file lies under
    one, else `dest`.

    Only regular files are written (folders are created as needed; `__MACOSX/` entries
    are skipped). Any problem raises a one-line `RefbenchError` whose path is `shown`
    (the submitted name) and which names the offending member, never `dest`. The size
    cap holds for the bytes actually decompressed, not only for the declared sizes.
    `dest` should be a new or empty folder: an existing file is never overwritten."""
    dest = Path(dest)
    with _open(data_or_path, shown) as archive:
        plan = _plan(archive, shown, max_members, max_total_bytes, max_ratio)
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written = 0
        for info, parts, kind in plan:
            target = root.joinpath(*parts)
            if not target.resolve().is_relative_to(root):  # belt and braces
                raise _fail(f"member {_member(info.filename)} leaves the folder", shown)
            if kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written += _copy_member(archive, info, target, max_total_bytes - written, shown)
    tops = {parts[0] for _info, parts, kind in plan if kind == "file"}
    nested = all(len(parts) > 1 for _info, parts, kind in plan if kind == "file")
    if len(tops) == 1 and nested:
        return dest / tops.pop()
    return dest


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int,
                 shown: str) -> int:
    """Stream one member into a new file, counting the bytes really decompressed; returns
    them. More than its header declared, or than the remaining budget, is an error."""
    name = _member(info.filename)
    count = 0
    try:
        with archive.open(info) as source, open(target, "xb") as sink:
            while chunk := source.read(_CHUNK):
                count += len(chunk)
                if count > budget:
                    raise _fail(f"the archive expands to more than its size limit (at member "
                                f"{name})", shown)
                if count > info.file_size:
                    raise _fail(f"member {name} is larger than its header says", shown)
                sink.write(chunk)
    except (RefbenchError, MemoryError):
        raise
    except FileExistsError:
        raise _fail(f"member {name} appears twice", shown) from None
    except Exception as exc:  # noqa: BLE001 - zlib/lzma/bz2 errors, bad CRC, a short file
        raise _fail(f"member {name} cannot be read ({type(exc).__name__}: the archive is "
                    f"damaged or uses an unsupported compression)", shown) from None
    return count
