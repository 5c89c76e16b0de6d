"""Write one table three ways: CSV for re-analysis, Markdown for the README, LaTeX for a paper.

The CSV holds numbers (blank where a value does not exist) so it round-trips through pandas; Markdown and
LaTeX hold formatted strings plus the caption and footnotes, which a CSV cannot carry. Both formatted forms are
rendered here by hand rather than with `DataFrame.to_markdown`/`to_latex`, which need optional packages
(tabulate, jinja2) and give no control over footnotes or escaping.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .atomic import write_text

# Single characters, so that two marks side by side stay legible; "*" and "#" would be Markdown syntax.
FOOTNOTE_MARKS = ("†", "‡", "§", "¶", "‖", "♯", "△", "◇")


@dataclass
class Table:
    """A table as written to disk: numeric `data` (CSV) and formatted `display` blocks (Markdown, LaTeX)."""

    name: str                     # file stem, e.g. "table3"
    title: str                    # one line, e.g. "Table III. Denoising quality, 1 GPU runs"
    data: pd.DataFrame            # numbers and labels; one row per table row
    display: list[tuple[str, pd.DataFrame]]  # (sub-heading or "", string frame) blocks, rendered in order
    caption: list[str] = field(default_factory=list)    # sentences that explain every column
    footnotes: list[tuple[str, str]] = field(default_factory=list)  # (mark, text), marks used in cells


class Footnotes:
    """Hands out one mark per distinct footnote text, so a cell can point at it and the text appears once."""

    def __init__(self) -> None:
        self._marks: dict[str, str] = {}

    def mark(self, text: str) -> str:
        if text not in self._marks:
            n = len(self._marks)
            self._marks[text] = FOOTNOTE_MARKS[n] if n < len(FOOTNOTE_MARKS) else f"[{n + 1}]"
        return self._marks[text]

    def items(self) -> list[tuple[str, str]]:
        return [(mark, text) for text, mark in self._marks.items()]


# ---------------------------------------------------------------------------------------------- numbers

def is_missing(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA


def fmt(x: float | None, dp: int) -> str:
    return "" if is_missing(x) else f"{x:.{dp}f}"


def fmt_pm(mean: float | None, ci: float | None, dp: int) -> str:
    """`mean ± half-width`; the half-width alone is dropped when it is missing."""
    if is_missing(mean):
        return ""
    return f"{mean:.{dp}f}" if is_missing(ci) else f"{mean:.{dp}f} ± {ci:.{dp}f}"


def fmt_paper(mean: float | None, ci: float | None, dp: int) -> str:
    """The study's value with its ± exactly as printed (its CIs carry fewer digits than its means)."""
    if is_missing(mean):
        return ""
    return f"{mean:.{dp}f}" if is_missing(ci) else f"{mean:.{dp}f} ± {ci:g}"


def fmt_diff(x: float | None, dp: int) -> str:
    return "" if is_missing(x) else f"{x:+.{dp}f}"


def fmt_p(p: float | None) -> str:
    """p-values: two significant digits; exact zeros from floating-point underflow shown as a bound."""
    if is_missing(p):
        return ""
    if p == 0:
        return "<1e-300"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


# ---------------------------------------------------------------------------------------------- Markdown

_NUMERIC = re.compile(r"^[+\-<]?\d[\d.,]*(e[+\-]?\d+)?( ± [\d.e+\-]+)?\s*\S{0,2}$")


def _md_cell(text: str) -> str:
    return str(text).replace("|", r"\|").replace("\n", " ")


def _md_block(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    rows = [[_md_cell(v) for v in row] for row in frame.astype(str).itertuples(index=False)]
    right = [bool(rows) and all(not r[i] or _NUMERIC.match(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["| " + " | ".join(_md_cell(c) for c in cols) + " |",
             "|" + "|".join("---:" if r else ":---" for r in right) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def to_markdown(table: Table) -> str:
    parts = [f"**{table.title}**", ""]
    for heading, frame in table.display:
        if heading:
            parts += [f"*{heading}*", ""]
        parts += [_md_block(frame), ""]
    parts += [" ".join(table.caption), ""] if table.caption else []
    parts += [f"{mark} {text}  " for mark, text in table.footnotes]
    return "\n".join(parts).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------- LaTeX

_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_TEX_UNICODE = {"±": r"$\pm$", "Δ": r"$\Delta$", "σ": r"$\sigma$", "−": r"$-$", "—": "---", "–": "--",
                "†": r"\dag{}", "‡": r"\ddag{}", "§": r"\S{}", "¶": r"\P{}", "×": r"$\times$", "≥": r"$\geq$",
                "≤": r"$\leq$", "<": r"$<$", ">": r"$>$", "·": r"$\cdot$", "µ": r"$\mu$", "…": r"\ldots{}",
                "‖": r"$\|$", "♯": r"$\sharp$", "△": r"$\triangle$", "◇": r"$\diamond$"}


def tex_escape(text: str) -> str:
    out = "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))
    return "".join(_TEX_UNICODE.get(ch, ch) for ch in out)


def _tex_cell(text: str) -> str:
    """Escape a cell; a leading minus sign of a number becomes a math minus, not a hyphen."""
    if re.match(r"^-\d", text):
        return r"$-$" + tex_escape(text[1:])
    return tex_escape(text)


def _tex_block(frame: pd.DataFrame) -> list[str]:
    cols = [str(c) for c in frame.columns]
    rows = [[str(v) for v in row] for row in frame.astype(str).itertuples(index=False)]
    align = "".join("r" if rows and all(not r[i] or _NUMERIC.match(r[i]) for r in rows) else "l"
                    for i in range(len(cols)))
    lines = [r"\resizebox{\textwidth}{!}{%", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(tex_escape(c) for c in cols) + r" \\", r"\midrule"]
    lines += [" & ".join(_tex_cell(v) for v in r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}}"]
    return lines


def to_latex(table: Table) -> str:
    """A `table` float for booktabs + graphicx; caption and footnotes go below the tabulars."""
    lines = [f"% {table.name}: generated by cxrdenoise (needs \\usepackage{{booktabs,graphicx}})",
             r"\begin{table}[htbp]", r"\centering", rf"\caption{{{tex_escape(table.title)}}}",
             rf"\label{{tab:{table.name}}}", r"\small"]
    for heading, frame in table.display:
        if heading:
            lines += [rf"\par\medskip\textit{{{tex_escape(heading)}}}\par\smallskip"]
        lines += _tex_block(frame)
    notes = ([" ".join(table.caption)] if table.caption else []) + [f"{m} {t}" for m, t in table.footnotes]
    if notes:
        lines += [r"\par\smallskip\footnotesize"] + [tex_escape(n) + r"\par" for n in notes]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- HTML

_HTML_STYLE = ("table{border-collapse:collapse;font:13px sans-serif;margin:0.5em 0}"
               "th,td{border:1px solid #ccc;padding:2px 6px}th{background:#f3f3f3}td.r{text-align:right}"
               "p{font:13px sans-serif;max-width:60em}")


def _html_block(frame: pd.DataFrame) -> list[str]:
    rows = [[str(v) for v in row] for row in frame.astype(str).itertuples(index=False)]
    right = [bool(rows) and all(not r[i] or _NUMERIC.match(r[i]) for r in rows) for i in range(frame.shape[1])]
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns) + "</tr>"]
    out += ["<tr>" + "".join(f'<td{" class=r" if right[i] else ""}>{html.escape(v)}</td>' for i, v in enumerate(r))
            + "</tr>" for r in rows]
    return out + ["</table>"]


def to_html(table: Table) -> str:
    """A standalone page: what Snakemake's report shows inline (it only downloads CSV and Markdown)."""
    lines = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">', f"<title>{html.escape(table.title)}</title>",
             f"<style>{_HTML_STYLE}</style></head><body>", f"<p><b>{html.escape(table.title)}</b></p>"]
    for heading, frame in table.display:
        if heading:
            lines.append(f"<p><i>{html.escape(heading)}</i></p>")
        lines += _html_block(frame)
    if table.caption:
        lines.append(f"<p>{html.escape(' '.join(table.caption))}</p>")
    lines += [f"<p>{html.escape(mark)} {html.escape(text)}</p>" for mark, text in table.footnotes]
    return "\n".join(lines + ["</body></html>"]) + "\n"


# ---------------------------------------------------------------------------------------------- files

TABLE_SUFFIXES = (".csv", ".md", ".tex", ".html")

def write_table(table: Table, out_prefix: str | Path) -> list[Path]:
    """Write `<prefix>.csv`, `.md`, `.tex` and `.html`, each atomically; return the paths."""
    prefix = Path(out_prefix)
    paths = [prefix.with_name(prefix.name + ext) for ext in TABLE_SUFFIXES]
    texts = (table.data.to_csv(index=False, lineterminator="\n"), to_markdown(table), to_latex(table), to_html(table))
    for path, text in zip(paths, texts):
        write_text(path, text)
    return paths
