"""The prose of the notebooks tells the truth and shows no test plumbing (docs/DESIGN.md §4, §6).

- Every number a markdown cell quotes — a decimal, a number of 100 or more, a percentage — is
  printed by a cell of the same notebook (to the prose's rounding: "about 2.45" is matched by a
  printed 2.4537, "7.3 million" by 7,312,410, "98 %" by 0.981), or written in its code (a
  hyper-parameter the prose names), or is a stated fact in the short allow-list below. A re-run
  that changes a number the prose relies on is caught; so is prose left behind by an edit.
- Every "run the cell below" has its cell.
- No markdown cell is longer than a screen (30 lines).
- nbval compares at least 75 % of the cells that print something (the rest carry the
  nbval-ignore-output tag, with a reason and a check: tests/test_notebooks.py).
"""
import json
import math
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
COURSE = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))

# Stated facts: numbers the prose may quote that no cell needs to print. Keep it short, say why.
FACTS = {
    50000, 10000, 60000, 70000,  # MNIST: Nielsen's 50k/10k/10k split of the 70,000 images
    784,                         # 28 × 28 pixels per image
    32033, 32032,                # names.txt: 32,033 lines (DESIGN §7 says 32,032)
    1986, 1998, 2003, 2012, 2014, 2015, 2016, 2017, 2019,  # years of the papers the prose cites
}
MAX_MARKDOWN_LINES = 30
COMPARED_FLOOR = 0.75

SCALES = {"thousand": 1e3, "k": 1e3, "million": 1e6, "m": 1e6, "billion": 1e9}
QUOTED = re.compile(
    r"(?<![\w.,/^_\\-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w.]\d|\w|,\d)"
    r"(\s?%|\s?percent|\s?(?:thousand|million|billion)\b|k\b)?", re.IGNORECASE)
PRINTED = re.compile(r"\d{1,3}(?:[,_]\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:e[-+]?\d+)?", re.IGNORECASE)


def strip_non_prose(markdown):
    """Markdown without what is not a quoted number: maths, code, links' targets, HTML tags."""
    for pattern in (r"```.*?```", r"\$\$.*?\$\$", r"\$[^$\n]+\$", r"`[^`\n]*`",
                    r"\]\([^)]*\)", r"<[^>]+>", r"https?://\S+"):
        markdown = re.sub(pattern, " ", markdown, flags=re.DOTALL)
    return markdown


def quoted_numbers(markdown):
    """(text, value, decimals, scale, percent) for each number the prose quotes."""
    found = []
    for m in QUOTED.finditer(strip_non_prose(markdown)):
        whole, frac, unit = m.group(1), m.group(2) or "", (m.group(3) or "").strip().lower()
        value = float(whole.replace(",", "") + frac)
        percent = unit in ("%", "percent")
        scale = SCALES.get(unit, 1.0)
        if not (frac or percent or scale > 1 or value >= 100):
            continue  # small integers: counts of things, notebook and cell numbers
        if not frac and not percent and scale == 1 and value in FACTS:
            continue
        found.append((m.group(0).strip(), value, len(frac) - 1 if frac else 0, scale, percent))
    return found


def matches(quote, printed):
    """Does the printed number, rounded as the prose rounds, read as the quoted one?"""
    _, value, decimals, scale, percent = quote
    for candidate in (printed, abs(printed)) + ((100 * printed,) if percent else ()):
        if math.isclose(round(candidate / scale, decimals), value, rel_tol=0, abs_tol=1e-9):
            return True
    return False


def numbers_in(text):
    values = []
    for m in PRINTED.finditer(text):
        token = m.group(0)
        try:
            values.append(float(token.replace(",", "").replace("_", "")))
        except ValueError:
            continue
        if "," in token:  # "3,4" in a tuple is two numbers
            values.extend(float(part) for part in token.split(",") if part.replace(".", "").isdigit())
    return values


def output_text(cell):
    texts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            texts.append("".join(out["text"]))
        for kind, data in out.get("data", {}).items():
            if kind.startswith("text/") or kind.endswith("json"):
                texts.append(data if isinstance(data, str) else
                             "".join(data) if isinstance(data, list) else json.dumps(data))
    return "\n".join(texts)


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def test_the_number_reader_sees_quotes_and_skips_maths_and_code():
    quotes = quoted_numbers("about 2.45 nats, 7.3 million steps, 98 % accuracy, 52,650 weights, "
                            "$e^{2.5}$, `lr=0.125`, notebook 07, 28×28 pixels, float32")
    assert [q[0] for q in quotes] == ["2.45", "7.3 million", "98 %", "52,650"]
    assert matches(quotes[0], 2.4537) and not matches(quotes[0], 2.4437)
    assert matches(quotes[1], 7312410) and not matches(quotes[1], 7.3e3)
    assert matches(quotes[2], 0.981) and matches(quotes[2], 98.2)
    assert matches(quotes[3], 52650) and not matches(quotes[3], 54000)
    assert 52650.0 in numbers_in("parameters: 52,650") and 3.0 in numbers_in("(3,4)")
    assert 5000.0 in numbers_in("x_train[-5_000:]")  # Python's digit separators


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_every_number_the_prose_quotes_is_printed(path):
    cells = load(path)
    printed = [v for c in cells if c["cell_type"] == "code"
               for v in numbers_in(output_text(c) + "\n" + "".join(c["source"]))]
    unbacked = []
    for i, cell in enumerate(cells):
        if cell["cell_type"] != "markdown":
            continue
        for quote in quoted_numbers("".join(cell["source"])):
            if not any(matches(quote, v) for v in printed):
                unbacked.append(f"cell [{i}] quotes {quote[0]!r}")
    assert not unbacked, (f"{path.name}: numbers in the prose that no cell prints (re-run, fix the "
                          f"prose, or print them): " + "; ".join(unbacked))


RUN_BELOW = re.compile(r"\brun (?:the|this) (?:next |code )?cell\b|\bthe cell below\b", re.IGNORECASE)


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_every_run_the_cell_below_has_its_cell(path):
    cells = load(path)
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "markdown" and RUN_BELOW.search("".join(cell["source"])):
            assert i + 1 < len(cells) and cells[i + 1]["cell_type"] == "code", (
                f"{path.name}: markdown cell [{i}] says to run the cell below, but none follows")


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_markdown_cells_fit_on_a_screen(path):
    for i, cell in enumerate(load(path)):
        if cell["cell_type"] == "markdown":
            lines = "".join(cell["source"]).strip().count("\n") + 1
            assert lines <= MAX_MARKDOWN_LINES, (
                f"{path.name}: markdown cell [{i}] has {lines} lines (at most "
                f"{MAX_MARKDOWN_LINES}): split it, or move the detail into code or a figure")


def test_nbval_compares_most_outputs():
    printed = compared = 0
    for path in COURSE:
        for cell in load(path):
            if cell["cell_type"] == "code" and cell.get("outputs"):
                printed += 1
                tags = cell["metadata"].get("tags", [])
                compared += "nbval-ignore-output" not in tags and "nbval-skip" not in tags
    assert compared / printed >= COMPARED_FLOOR, (
        f"nbval compares {compared} of {printed} cells that print ({compared / printed:.0%}); "
        f"the floor is {COMPARED_FLOOR:.0%}: check volatile results with a compared expect(...) line")
