"""Names in the benchmark report: file-name slugs, the natural sort of dataset names, and the
short names of long model and generator labels in plots.

Shared by :mod:`swifthydra.bench.report` and :mod:`swifthydra.bench.gains` (the report imports
the gains section; the gains section imports only this module, so the two do not import each
other).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

PLOT_NAME_MAX = 24  # labels longer than this get a short name in plots


def slug(*parts: Any) -> str:
    """A file-name part: ``("standard", "adbench", "la0.1")`` -> ``standard_adbench_la0.1``
    with every run of other characters than letters, digits and ``.`` turned into ``-``."""
    text = "_".join(str(p) for p in parts)
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def natural_key(name: str):
    """Sort ``2_annthyroid`` before ``10_cover`` (ADBench's numbering)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(name))]


def plot_names(labels: Iterable[str], max_len: int = PLOT_NAME_MAX) -> dict[str, str]:
    """The name of each label in plots: the label itself when it has at most ``max_len``
    characters, else a short name, the label without its bracketed settings (cut to 20
    characters) and a number counting the long labels of that stem in natural order:
    ``swifthydra[generator=none,prior_weight=0.5]`` -> ``swifthydra #1``,
    ``catboost[depth=8]+nngmix[n_neighbors=5]`` -> ``catboost+nngmix #1``,
    ``mixup[alpha=0.4,n_samples=1000]`` -> ``mixup #1``. Short names are unique and differ from
    every label kept as it is."""
    labels = sorted(dict.fromkeys(str(v) for v in labels), key=natural_key)
    out = {lab: lab for lab in labels if len(lab) <= max_len}
    taken = set(out)
    counts: dict[str, int] = {}
    for lab in labels:
        if lab in out:
            continue
        stem = re.sub(r"\[[^\]]*\]|\{[^}]*\}", "", lab).strip() or lab.split("[")[0] or "model"
        if len(stem) > 20:
            stem = stem[:19] + "…"
        while True:
            counts[stem] = counts.get(stem, 0) + 1
            name = f"{stem} #{counts[stem]}"
            if name not in taken:
                break
        out[lab] = name
        taken.add(name)
    return out


def plot_name(names: dict[str, str] | None, label: str) -> str:
    """A label's name in plots (:func:`plot_names`); the label itself without a mapping."""
    return (names or {}).get(label, label)


def wrap_label(text: str, width: int) -> str:
    """``text`` on lines of at most ``width`` characters where it can be: lines break after
    ``[``, ``,``, ``+`` and spaces (a label is never cut; a piece longer than ``width`` keeps
    its own line)."""
    if len(text) <= width:
        return text
    pieces = re.findall(r"[^\[,+ ]*(?:[\[,+ ]|$)", text)
    lines: list[str] = []
    line = ""
    for piece in filter(None, pieces):
        if line and len(line) + len(piece.rstrip()) > width:
            lines.append(line.rstrip())
            line = ""
        line += piece
    if line.strip():
        lines.append(line.rstrip())
    return "\n".join(lines)
