"""Plain-text tables for reports (the CLI, selection results)."""

from __future__ import annotations


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Columns padded to their widest cell; the first left-aligned, the rest right."""
    widths = [max(len(str(row[j])) for row in [header, *rows]) for j in range(len(header))]

    def render(row):
        return "  ".join(cell.rjust(width) if j else cell.ljust(width)
                         for j, (cell, width) in enumerate(zip(row, widths, strict=True))
                         ).rstrip()
    return [render(header)] + [render(row) for row in rows]


def counted(n: int, noun: str) -> str:
    """``1 component``, ``2 components``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split())
