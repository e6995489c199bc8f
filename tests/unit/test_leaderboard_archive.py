"""Folder submissions as zips: deterministic zipping, defensive extraction (every way a
hostile archive can escape, lie or explode), end-to-end scoring of a zipped GLUE folder,
and the removal of orphaned uploads."""

from __future__ import annotations

import io
import os
import stat
import struct
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from refbench.benchmarks.formats import FORMATS
from refbench.benchmarks.scoring import evaluate_file
from refbench.registry import get_spec
from refbench.errors import RefbenchError
from refbench.leaderboard.archive import safe_extract, zip_folder
from refbench.leaderboard.db import LeaderboardDB, Quotas
from refbench.leaderboard.maintenance import remove_orphan_uploads
from refbench.leaderboard.split import partition
from refbench.leaderboard.worker import Worker

N_REFS = 40


# -- building archives by hand ----------------------------------------------------------
def make_zip(*members: tuple[str | zipfile.ZipInfo, bytes], method: int = zipfile.ZIP_DEFLATED
             ) -> bytes:
    """A zip of (name or ZipInfo, data) members written exactly as given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members:
            info = name if isinstance(name, zipfile.ZipInfo) else zipfile.ZipInfo(name)
            info.compress_type = method
            archive.writestr(info, data)
    return buffer.getvalue()


def with_mode(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


def extract_error(data: bytes, tmp_path: Path, **limits: object) -> str:
    dest = tmp_path / "out"
    with pytest.raises(RefbenchError) as caught:
        safe_extract(data, dest, shown="upload.zip", **limits)
    message = str(caught.value)
    assert message.startswith("upload.zip: ") and "\n" not in message
    assert str(tmp_path) not in message
    return message


# -- zip_folder ---------------------------------------------------------------------------
def test_zip_folder_round_trips_and_is_deterministic(tmp_path: Path) -> None:
    folder = tmp_path / "preds"
    (folder / "sub" / "deeper").mkdir(parents=True)
    files = {"b.txt": b"second\n", "a.txt": b"first\n" * 1000, "sub/c.txt": b"",
             "sub/deeper/d.bin": bytes(range(256))}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    first = zip_folder(folder)
    os.utime(folder / "a.txt", (1e9, 1e9))  # timestamps must not matter
    (folder / "b.txt").chmod(0o600)  # nor permissions
    assert zip_folder(folder) == first
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        infos = archive.infolist()
        assert [i.filename for i in infos] == sorted(files)
        assert {i.compress_type for i in infos} == {zipfile.ZIP_DEFLATED}
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    out = safe_extract(first, tmp_path / "out")
    assert out == tmp_path / "out"  # files at the top level: dest itself
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*")
            if p.is_file()} == files
    (folder / "b.txt").write_bytes(b"changed\n")
    assert zip_folder(folder) != first


def test_zip_folder_refuses_what_it_cannot_zip_faithfully(tmp_path: Path) -> None:
    with pytest.raises(RefbenchError, match="not a folder"):
        zip_folder(tmp_path / "missing")
    empty = tmp_path / "empty"
    (empty / "only-dirs").mkdir(parents=True)
    with pytest.raises(RefbenchError, match="no files") as caught:
        zip_folder(empty)
    assert caught.value.path == str(empty)
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "real.txt").write_text("x")
    (linked / "alias.txt").symlink_to(linked / "real.txt")
    with pytest.raises(RefbenchError, match="symlink"):
        zip_folder(linked)


# -- safe_extract: what is accepted -------------------------------------------------------
def test_single_top_level_folder_is_returned_and_macos_extras_skipped(tmp_path: Path) -> None:
    data = make_zip(("preds/", b""), ("preds/a.txt", b"a"), ("preds/x/b.txt", b"b"),
                    ("__MACOSX/preds/._a.txt", b"junk"))
    out = safe_extract(data, tmp_path / "out")
    assert out == tmp_path / "out" / "preds"
    assert sorted(p.relative_to(tmp_path / "out").as_posix()
                  for p in (tmp_path / "out").rglob("*")) == \
        ["preds", "preds/a.txt", "preds/x", "preds/x/b.txt"]
    archive = tmp_path / "upload.zip"
    archive.write_bytes(make_zip(("one/a.txt", b"a"), ("two/b.txt", b"b")))
    assert safe_extract(archive, tmp_path / "out2") == tmp_path / "out2"  # a path works too


# -- safe_extract: every rejection ----------------------------------------------------------
@pytest.mark.parametrize(("name", "expected"), [
    ("../evil.txt", "'..' component"),
    ("ok/../../evil.txt", "'..' component"),
    ("/etc/evil.txt", "absolute name"),
    ("dir\\evil.txt", "backslash"),
    ("C:/evil.txt", "drive letter"),
    ("c:evil.txt", "drive letter"),
    ("bad\x01name.txt", "control character"),
    ("bad\nname.txt", "control character"),
    ("nul\x00.txt", "control character"),
])
def test_names_that_could_escape_are_rejected(tmp_path: Path, name: str, expected: str) -> None:
    # zipfile cuts a name at NUL when writing: write a stand-in, then patch the bytes
    stand_in = name.replace("\x00", "\x02")
    data = make_zip(("fine.txt", b"ok"), (stand_in, b"evil"))
    data = data.replace(stand_in.encode(), name.encode())
    message = extract_error(data, tmp_path)
    assert expected in message and "member '" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "evil.txt").exists()


def test_symlinks_and_special_members_are_rejected(tmp_path: Path) -> None:
    link = make_zip((with_mode("link.txt", stat.S_IFLNK | 0o777), b"/etc/passwd"))
    assert "member 'link.txt' is a symlink" in extract_error(link, tmp_path)
    fifo = make_zip((with_mode("pipe", stat.S_IFIFO | 0o644), b""))
    assert "not a regular file" in extract_error(fifo, tmp_path)


def test_duplicates_and_file_directory_clashes_are_rejected(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        dup = make_zip(("a.txt", b"1"), ("a.txt", b"2"))
    assert "member 'a.txt' appears twice" in extract_error(dup, tmp_path)
    clash = make_zip(("a", b"file"), ("a/b.txt", b"inside a file"))
    assert "lies inside the file 'a'" in extract_error(clash, tmp_path)


def test_encrypted_members_are_rejected(tmp_path: Path) -> None:
    data = bytearray(make_zip(("secret.txt", b"x" * 100)))
    # set the 'encrypted' general purpose flag in the local and the central header
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + offset
        data[at:at + 2] = struct.pack("<H", struct.unpack("<H", data[at:at + 2])[0] | 1)
    assert "member 'secret.txt' is encrypted" in extract_error(bytes(data), tmp_path)


def test_not_a_zip_and_empty_zips_are_rejected(tmp_path: Path) -> None:
    assert extract_error(b"index\tprediction\n0\t1\n", tmp_path) == \
        "upload.zip: not a zip archive"
    assert extract_error(make_zip(("dir/", b"")), tmp_path).endswith("holds no files")


def test_member_count_declared_size_and_ratio_caps(tmp_path: Path) -> None:
    many = make_zip(*[(f"f{i}.txt", b"x") for i in range(11)])
    assert "11 members, the limit is 10" in extract_error(many, tmp_path, max_members=10)
    zeros = make_zip(("zeros.bin", bytes(50 * 1024 * 1024)))  # 50 MB -> ~50 kB
    assert len(zeros) < 200_000
    message = extract_error(zeros, tmp_path, max_total_bytes=1024 * 1024)
    assert "expands to more than 1048576 bytes (at member 'zeros.bin')" in message
    message = extract_error(zeros, tmp_path)  # under the size cap, but a bomb's ratio
    assert "member 'zeros.bin' is compressed more than 200:1" in message
    assert not (tmp_path / "out" / "zeros.bin").exists()


def test_lying_headers_are_caught_while_reading(tmp_path: Path) -> None:
    """The central directory and the local header claim 10 bytes; the member holds 1 MiB.
    The declared total passes the cap, the bytes actually read must not."""
    payload = bytes(range(256)) * 4096
    data = bytearray(make_zip(("liar.bin", payload), method=zipfile.ZIP_STORED))
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.index(signature) + offset
        assert struct.unpack("<I", data[at:at + 4])[0] == len(payload)
        data[at:at + 4] = struct.pack("<I", 10)
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        assert archive.getinfo("liar.bin").file_size == 10
    message = extract_error(bytes(data), tmp_path, max_total_bytes=1000)
    assert "member 'liar.bin'" in message
    written = tmp_path / "out" / "liar.bin"
    assert not written.exists() or written.stat().st_size <= 1000


def test_bytes_are_counted_while_streaming_whatever_the_library_trusts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """zipfile stops at the declared size by itself; a reader that did not must still be
    stopped by the count of the bytes it really produced."""
    data = make_zip(("a.txt", b"0123456789"), ("b.txt", b"0123456789"))
    real_open = zipfile.ZipFile.open

    def generous(self: zipfile.ZipFile, name: object, mode: str = "r", **kw: object) -> object:
        if mode == "r":
            return io.BytesIO(b"x" * 5000)
        return real_open(self, name, mode, **kw)

    monkeypatch.setattr(zipfile.ZipFile, "open", generous)
    message = extract_error(data, tmp_path)
    assert "member 'a.txt' is larger than its header says" in message
    message = extract_error(data, tmp_path / "again", max_total_bytes=25)
    assert "expands to more than its size limit (at member 'a.txt')" in message


# -- end to end: a zipped GLUE folder on the leaderboard ---------------------------------
def labels() -> list[int]:
    return [(i * 5 + i // 4) % 2 for i in range(N_REFS)]


def make_glue_board(tmp_path: Path) -> LeaderboardDB:
    """The whole-GLUE benchmark scored against a hidden GLUE root holding SST-2 only."""
    refs = tmp_path / "hidden" / "GLUE" / "SST-2"
    refs.mkdir(parents=True)
    rows = "".join(f"hidden sentence {i}\t{y}\n" for i, y in enumerate(labels()))
    (refs / "dev.tsv").write_text("sentence\tlabel\n" + rows)
    board = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data", Quotas(daily=20))
    board.set_references_dir(tmp_path / "hidden")
    board.add_benchmark("glue", "GLUE", seed=3)
    return board


def write_glue_folder(folder: Path, wrong: set[int]) -> Path:
    preds = {i: 1 - y if i in wrong else y for i, y in enumerate(labels())}
    FORMATS.get("glue_tsv")().write(folder / "SST-2.tsv", preds, get_spec("glue-sst2"))
    return folder


def test_a_zipped_folder_is_scored_like_the_folder_and_bad_zips_fail_safely(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"  # where the worker's temporary folders go
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    assert FORMATS.get("glue_dir").is_folder and FORMATS.get("kitti_label_dir").is_folder
    assert not FORMATS.get("glue_tsv").is_folder
    board = make_glue_board(tmp_path)
    team = board.add_team("alpha")
    folder = write_glue_folder(tmp_path / "submission", wrong={2, 7, 11, 30})
    good = board.submit(team, "glue", "glue.zip", zip_folder(folder))
    nested = board.submit(team, "glue", "nested.zip",  # one top-level folder is read
                          make_zip(("preds/SST-2.tsv", (folder / "SST-2.tsv").read_bytes())))
    evil = board.submit(team, "glue", "evil.zip",
                        make_zip(("SST-2.tsv", b"index\tprediction\n"), ("../evil", b"x")))
    plain = board.submit(team, "glue", "SST-2.tsv", (folder / "SST-2.tsv").read_bytes())
    broken = board.submit(team, "glue", "broken.zip",
                          make_zip(("SST-2.tsv", b"index\tprediction\n0\tmaybe\n")))
    assert Worker(board, context="fork").run(until_idle=True) == 5
    assert list(scratch.iterdir()) == []  # every extracted upload was removed
    for sub in (good, nested):
        assert board.submission(sub)["status"] == "scored", board.submission(sub)["error"]
    rows = board.leaderboard("glue", decimals=9)
    assert {r.submission_id for r in rows} == {good, nested} and rows[0].value == rows[1].value
    # the public and private parts together are exactly `refbench evaluate` on the folder
    whole = evaluate_file("glue", folder, tmp_path / "hidden" / "GLUE").metrics["score"]
    ref_ids = list(FORMATS.get("glue_dir")().read_references(tmp_path / "hidden" / "GLUE",
                                                             get_spec("glue")))
    public_ids, private_ids = partition(ref_ids, seed=3)
    public = rows[0].value
    private = board.leaderboard("glue", part="private", decimals=9, reveal=True)[0].value
    combined = (public * len(public_ids) + private * len(private_ids)) / N_REFS
    assert combined == pytest.approx(whole, abs=1e-6) and 0 < whole < 100
    errors = {sub: board.submission(sub) for sub in (evil, plain, broken)}
    for sub, row in errors.items():
        assert row["status"] == "failed"
        assert "\n" not in row["error"] and str(tmp_path) not in row["error"]
        assert "data" + os.sep + "submissions" not in row["error"]
    assert errors[evil]["error"] == "evil.zip: member '../evil' has a '..' component"
    assert errors[plain]["error"] == "SST-2.tsv: not a zip archive"
    assert errors[broken]["error"].startswith("broken.zip/SST-2.tsv:2: unknown SST-2 label")
    assert not (tmp_path / "data" / "evil").exists() and not (tmp_path / "evil").exists()


# -- orphaned uploads ---------------------------------------------------------------------
def test_orphan_uploads_are_removed_after_the_grace_period_only(tmp_path: Path) -> None:
    board = LeaderboardDB(tmp_path / "lb.sqlite", tmp_path / "data")
    refs = tmp_path / "hidden" / "SST-2"
    refs.mkdir(parents=True)
    (refs / "dev.tsv").write_text("sentence\tlabel\na\t1\nb\t0\n")
    board.set_references_dir(tmp_path / "hidden")
    board.add_benchmark("glue-sst2", "SST-2/dev.tsv")
    sub = board.submit(board.add_team("alpha"), "glue-sst2", "SST-2.tsv",
                       b"index\tprediction\n0\t1\n1\t0\n")
    uploads = tmp_path / "data" / "submissions"
    referenced = uploads / Path(board.submission(sub)["stored_path"]).name
    orphan = uploads / "0123abcd.upload"
    fresh = uploads / "4567ef01.upload"
    temp = uploads / ".89ab.upload.x1y2z3.tmp"
    unrelated = uploads / "README.txt"
    for path in (orphan, fresh, temp, unrelated):
        path.write_bytes(b"data")
    old = time.time() - 7200
    for path in (referenced, orphan, temp, unrelated):
        os.utime(path, (old, old))
    assert remove_orphan_uploads(board) == [temp.name, orphan.name]
    assert referenced.exists() and fresh.exists() and unrelated.exists()
    assert not orphan.exists() and not temp.exists()
    assert remove_orphan_uploads(board) == []
    assert remove_orphan_uploads(board, grace_s=0) == [fresh.name]
    assert referenced.exists()
