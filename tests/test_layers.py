"""Layers import only downward: the table in docs/architecture.md is the rule."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from layers import check, read_layers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "noisescope"
TABLE = ROOT / "docs" / "architecture.md"


def test_every_module_imports_only_from_its_layer_or_below_and_nothing_is_circular():
    problems = check(PACKAGE, read_layers(TABLE))
    assert problems == [], "\n".join(problems)


def test_the_check_fails_on_a_planted_upward_import_inside_a_function(tmp_path):
    copy = tmp_path / "noisescope"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.parquet", "*.gz"))
    rank = copy / "spectral" / "rank.py"
    rank.write_text(rank.read_text() + "\n\ndef _planted():\n    from noisescope.cli import app\n    return app\n")
    problems = check(copy, read_layers(TABLE))
    assert any("upward import: noisescope.spectral.rank (math) imports noisescope.cli" in p for p in problems)


def test_the_check_fails_on_a_planted_cycle_between_two_modules(tmp_path):
    copy = tmp_path / "noisescope"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.parquet", "*.gz"))
    for here, there in (("rank", "stats"), ("stats", "rank")):
        f = copy / "spectral" / f"{here}.py"
        planted = f"\n\ndef _planted():\n    from noisescope.spectral import {there}\n    return {there}\n"
        f.write_text(f.read_text() + planted)
    problems = check(copy, read_layers(TABLE))
    assert any(p.startswith("import cycle:") and "noisescope.spectral.rank" in p for p in problems)


def test_the_layer_table_names_every_top_level_module_once():
    layers = read_layers(TABLE)
    names = [n for _layer, mods in layers for n in mods]
    assert len(names) == len(set(names))
    top = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
           if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}
    listed = {n.removeprefix("noisescope.") for n in names if n != "noisescope"}
    assert top <= listed, f"not in the table: {sorted(top - listed)}"
