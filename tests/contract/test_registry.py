"""The lazy registry index and the decorators must agree; names are unique."""

from __future__ import annotations

import subprocess
import sys

import pytest

from refbench import registry
from refbench.errors import RefbenchError
from refbench.registry import BASELINES, BENCHMARKS, DATASETS, METRICS, Registry


def test_index_file_matches_decorators_in_source() -> None:
    from refbench._index import INDEX

    assert registry.scan_decorators() == INDEX, "run `python -m refbench.registry` to regenerate"


@pytest.mark.parametrize("reg", [DATASETS, METRICS, BASELINES], ids=lambda r: r.kind)
def test_every_indexed_name_registers_itself_on_import(reg: Registry) -> None:
    for name, target in reg.index.items():
        entry = reg.entry(name)
        module, _, attr = target.partition(":")
        assert entry.obj.__module__ == module and entry.obj.__name__ == attr


def test_formats_index_matches_too() -> None:
    from refbench.benchmarks.formats import FORMATS

    for name, target in FORMATS.index.items():
        assert FORMATS.get(name).__name__ == target.partition(":")[2]


def test_duplicate_registration_is_an_error() -> None:
    reg: Registry[object] = Registry("thing", lambda: {})

    @reg.register("a")
    class A:  # noqa: D401
        pass

    with pytest.raises(RefbenchError, match="duplicate thing name 'a'"):
        @reg.register("a")
        class B:
            pass


def test_unknown_name_suggests_close_match() -> None:
    reg: Registry[object] = Registry("thing", lambda: {"glue-sst2": "x:y", "glue-cola": "x:z"})
    with pytest.raises(RefbenchError, match="did you mean 'glue-sst2'"):
        reg.get("glue-sst")


def test_list_pattern() -> None:
    reg: Registry[object] = Registry("thing", lambda: {"glue-sst2": "x:y", "kitti": "x:z"})
    assert reg.list("glue-*") == ["glue-sst2"]
    assert reg.list() == ["glue-sst2", "kitti"]


def test_benchmarks_come_from_spec_files() -> None:
    names = BENCHMARKS.names()
    assert names, "no benchmark specs found"
    for name in names:
        assert BENCHMARKS.get(name).name == name


def test_import_refbench_and_help_stay_light() -> None:
    code = ("import sys, refbench, refbench.cli, refbench.registry;"
            "from refbench.registry import BENCHMARKS; BENCHMARKS.names();"
            "heavy=[m for m in ('torch','transformers','datasets') if m in sys.modules];"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    code = ("import sys; sys.argv=['refbench','--help'];\nfrom refbench.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('torch','transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout
