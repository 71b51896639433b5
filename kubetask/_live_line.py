"""The live progress line of `kubetask watch`, laid out for a terminal width (pure).

What a line must always show fits first: the marker (spinner, or the outcome at the end),
the stage, the bar, the percentage and the count. The ETA comes next if there is room, and
the message and metrics get whatever width is left, cut with "…", never squeezing the rest.
Field widths are padded to the widest seen (the caller passes them), so nothing moves from
one frame to the next.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.text import Text

BAR_WIDTH = 24  # the bar's width when there is room
MIN_BAR_WIDTH = 6  # never narrower, however narrow the terminal
MIN_LABEL_WIDTH = 6  # a stage is cut to this before the bar shrinks below its minimum
MIN_DETAIL_WIDTH = 4  # below this the detail is left out rather than shown as "x…"
ELLIPSIS = "…"


@dataclass(frozen=True)
class LineParts:
    """One bar's content; `share` None is an unknown fraction (an empty bar, no %)."""

    marker: str
    label: str
    share: float | None
    count: str
    eta: str = ""
    detail: str = ""
    style: str = "blue"  # the bar's filled part and the marker


@dataclass(frozen=True)
class Widths:
    """Widths to pad to, so that fields keep their place from frame to frame."""

    label: int = 0
    count: int = 0
    eta: int = 0


def _number(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{value:.4g}"


def count_text(current: float, total: float | None) -> str:
    """`14/30`: whole units done of the total (an epoch 78% through is not yet done);
    fractional only where the total itself is fractional."""
    if total is not None and total > 0 and not float(total).is_integer():
        return f"{_number(current)}/{_number(total)}"
    done = max(0, math.floor(current + 1e-9))
    if total is not None and total > 0:
        return f"{min(done, int(total))}/{int(total)}"
    return str(done)


def percent_text(share: float | None) -> str:
    """`  7%`, ` 42%`, `100%`: right-aligned to four, so the count after it never moves."""
    if share is None:
        return "    "
    return f"{math.floor(max(0.0, min(1.0, share)) * 100 + 1e-9):>3d}%"


def cut(text: str, width: int) -> str:
    """`text` in at most `width` cells, its end replaced by "…" when it is longer."""
    text = " ".join(text.split())  # one line: newlines and tabs would break the layout
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    return text[: width - 1].rstrip() + ELLIPSIS


def bar_cells(share: float | None, width: int) -> tuple[int, int]:
    """(filled, empty) cells of a bar `width` wide."""
    filled = 0 if share is None else round(max(0.0, min(1.0, share)) * width)
    return filled, width - filled


def layout(parts: LineParts, width: int, widths: Widths = Widths()) -> Text:
    """The line for a terminal `width` cells wide: `⠋ train ██████░░░░  42% 14/30  eta 1m05s
    loss=0.31 …`."""
    label_w = max(len(parts.label), widths.label)
    count = parts.count.rjust(widths.count)
    percent = percent_text(parts.share)
    # marker, label, bar, percentage and count with one space between each
    fixed = len(parts.marker) + 1 + 1 + 1 + len(percent) + 1 + len(count)
    room = width - fixed - label_w
    if room < MIN_BAR_WIDTH:  # narrow: the stage gives way (to its minimum) before the bar
        label_w = max(min(len(parts.label), MIN_LABEL_WIDTH), label_w - (MIN_BAR_WIDTH - room))
        room = width - fixed - label_w
    eta = parts.eta.ljust(widths.eta)  # blank but kept in place while it is unknown
    eta_room = len(eta) + 2 if eta else 0
    bar_w = max(MIN_BAR_WIDTH, min(BAR_WIDTH, room - eta_room))  # the ETA before a long bar
    left = width - fixed - label_w - bar_w
    show_eta = bool(eta) and left >= eta_room
    if show_eta:
        left -= len(eta) + 2
    detail = cut(parts.detail, left - 2) if left - 2 >= MIN_DETAIL_WIDTH else ""

    line = Text(no_wrap=True, overflow="crop")
    line.append(parts.marker, style=parts.style)
    line.append(" ")
    line.append(cut(parts.label, label_w).ljust(label_w), style="bold")
    line.append(" ")
    filled, empty = bar_cells(parts.share, bar_w)
    line.append("█" * filled, style=parts.style)
    line.append("░" * empty, style="grey37")
    line.append(" ")
    line.append(percent)
    line.append(" ")
    line.append(count)
    if show_eta:
        line.append("  ")
        line.append(eta, style="cyan")
    if detail:
        line.append("  ")
        line.append(detail, style="dim")
    line.rstrip()
    return line
