"""The 80-column checker (tests/width80.py) catches what it must: planted splits, cuts and
over-wide lines are found; a table that wraps only at spaces passes."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table
from width80 import assert_fits, problems, render, tokens

CELLS = [("a1b2c3", "complete", "double_descent 0.3686175 reached at epoch 12"),
         ("d4e5f6", "failed", "the noisy labels never did (max 0.365)")]


def table_text(width: int, overflow: str = "fold", no_wrap: bool = False) -> str:
    t = Table(title="runs")
    t.add_column("run", no_wrap=True)
    t.add_column("state", overflow=overflow, no_wrap=no_wrap)
    t.add_column("headline", overflow=overflow, no_wrap=no_wrap)
    for row in CELLS:
        t.add_row(*row)
    con = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    con.print(t)
    return con.export_text()


def test_a_table_folded_into_a_narrow_terminal_is_caught():
    narrow, wide = table_text(26), table_text(1000)
    found = problems(narrow, wide, width=26)
    # rich folded "complete" and "double_descent" and the long number into pieces
    assert any("fragment 'compl" in p for p in found), narrow
    assert any("0.3686175" in p or "fragment '0.36" in p for p in found), narrow
    assert all(len(line) <= 26 for line in narrow.splitlines())


def test_a_cell_cut_with_an_ellipsis_is_caught():
    narrow, wide = table_text(40, overflow="ellipsis", no_wrap=True), table_text(1000)
    found = problems(narrow, wide, width=40)
    assert any("ellipsis" in p for p in found), narrow


def test_a_split_whose_pieces_are_words_elsewhere_is_caught():
    # "0.3" and "65" are both words of the reference, but glued they are the number 0.365:
    # the left piece fills its cell to the edge, the right one starts at the next line's edge
    reference = "│ rate 0.3 │ x │\n│ 65 │ max 0.365 │\n"
    text = ("│ max 0.3 │ y │\n"
            "│65       │ z │\n")
    found = problems(text, reference, width=80)
    assert any("'0.365' split as '0.3' / '65'" in p for p in found), found
    # the same words wrapped at a space (the cell ends in a blank) are fine
    ok = ("│ max 0.3  │ y │\n"
          "│ 65       │ z │\n")
    assert not any("split" in p for p in problems(ok, reference, width=80))


def test_a_split_in_plain_text_at_the_terminal_edge_is_caught():
    reference = "the value is 123456 today\n"
    text = "the value is 1234\n56 today\n"
    assert any("fragment" in p for p in problems(text, reference, width=17))


def test_too_wide_lines_are_caught_and_a_clean_wrap_passes():
    wide = table_text(1000)
    assert max(len(line) for line in wide.splitlines()) > 60
    assert any("too wide" in p for p in problems(wide, wide, width=60))
    # a path to copy, whole on a line of its own, is no problem; inside a sentence it is
    path = "/tmp/" + "d" * 90 + "/report.html"
    assert problems(f"report:\n{path}\n", f"report:\n{path}\n") == []
    assert problems(f"report: {path}\n", f"report: {path}\n") != []
    t = Table(title="runs")
    t.add_column("run", no_wrap=True)
    t.add_column("state", no_wrap=True)
    t.add_column("headline")  # wraps at spaces: every word stays whole
    for row in CELLS:
        t.add_row(*row)
    con = Console(width=50, file=io.StringIO(), record=True, color_system=None)
    con.print(t)
    narrow = con.export_text()
    assert len(narrow.splitlines()) > 6  # it did wrap
    assert problems(narrow, wide, width=50) == []


def test_tokens_ignore_box_drawing_and_white_space():
    assert tokens("┃ run ┃ 0.5 │x│\n─── a-b") == {"run", "0.5", "x", "a-b"}


def test_render_sets_the_width_of_the_cli_consoles(tmp_path):
    # a real command: the error line names the target and is never wrapped by rich
    missing = tmp_path / ("a-directory-that-does-not-exist-" + "x" * 60)
    out = render(["verdict", str(missing)], width=80, exit_code=2)
    assert "is not a directory" in out
    with pytest.raises(AssertionError, match="exited 2, expected 0"):
        assert_fits(["verdict", str(missing)])
