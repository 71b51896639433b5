"""The CLI's pure display logic: the live line's layout at several widths, counts, the
list's plain rows, what a frame keeps between events, and "did you mean"."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import JsonValue
from rich.console import Console

from kubetask._display import plain_rows, progress_text
from kubetask._live_line import BAR_WIDTH, LineParts, Widths, count_text, cut, layout
from kubetask._suggest import did_you_mean, param_names
from kubetask._watch import LiveWatch, next_bar
from kubetask.errors import FieldError
from kubetask.models import JobState, KindInfo, ProgressEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)
METRICS = "epoch done  loss=0.3121 accuracy=0.9123 val_loss=0.4012 val_accuracy=0.8875 lr=0.001"


def _parts(detail: str = METRICS, eta: str = "eta 1m05s") -> LineParts:
    return LineParts("⠋", "train", 14.7778 / 30, count_text(14.7778, 30), eta, detail)


@pytest.mark.parametrize("width", [40, 50, 60, 80, 120, 200])
@pytest.mark.parametrize("detail", ["", METRICS])
def test_the_line_fits_and_keeps_stage_bar_percentage_and_count(width: int, detail: str) -> None:
    line = layout(_parts(detail), width).plain
    assert len(line) <= width
    assert line.startswith("⠋ train █")
    assert " 49% 14/30" in line
    assert "░" in line  # the rest of the bar
    bar = line.count("█") + line.count("░")
    assert bar >= 6
    if detail and width >= 100:
        assert bar == BAR_WIDTH  # metrics never squeeze the bar
        assert "eta 1m05s" in line


def test_metrics_get_what_is_left_cut_with_an_ellipsis() -> None:
    wide = layout(_parts(), 200).plain
    assert wide.endswith("lr=0.001")  # all of it where it fits
    narrow = layout(_parts(), 80).plain
    assert 76 <= len(narrow) <= 80  # (the cut ends at a word's end when it can)
    assert narrow.endswith("…")
    assert "epoch done" in narrow
    assert "…" not in layout(_parts(), 40).plain.split("14/30")[0]  # never before the count


def test_without_metrics_the_line_is_the_same_up_to_the_count() -> None:
    bare, full = layout(_parts(""), 100).plain, layout(_parts(), 100).plain
    assert full.startswith(bare)


def test_fields_keep_their_place_from_frame_to_frame() -> None:
    """Padded to the widest label, count and ETA seen: a new stage, a shorter ETA or a
    missing one never moves the bar or what follows."""
    widths = Widths(label=len("validate"), count=len("30/30"), eta=len("eta 00m00s"))
    frames = [
        LineParts("⠋", "train", 0.1, count_text(3, 30), "eta 1m05s", "loss=0.5"),
        LineParts("⠙", "validate", 0.5, count_text(15, 30), "", "loss=0.4"),
        LineParts("⠹", "train", 1.0, count_text(30, 30), "eta 2.0s", "loss=0.3"),
    ]
    lines = [layout(parts, 100, widths).plain for parts in frames]
    assert len({line.index("loss=") for line in lines}) == 1
    assert len({line.index("%") for line in lines}) == 1
    assert len({line.index("█") for line in lines}) == 1


@pytest.mark.parametrize(
    ("current", "total", "shown"),
    [(14.7778, 30, "14/30"), (30, 30, "30/30"), (0.2, 5, "0/5"), (3.0, None, "3"),
     (1.5, 2.5, "1.5/2.5"), (2.9999999999, 3, "3/3")],
)  # fmt: skip
def test_counts_are_whole_units(current: float, total: float | None, shown: str) -> None:
    assert count_text(current, total) == shown


def test_get_and_list_show_whole_counts() -> None:
    event = ProgressEvent(job_id="j", seq=1, timestamp=T0, current=14.7778, total=30, stage="train")
    assert progress_text(event) == "49% train 14/30"


def test_cut() -> None:
    assert cut("abc", 3) == "abc"
    assert cut("abcdef", 4) == "abc…"
    assert cut("a\nb\tc", 10) == "a b c"
    assert cut("abc", 0) == ""


def test_plain_rows_are_one_line_each_with_aligned_columns() -> None:
    rows = [["ID", "NAME", "STATE"], ["a1", "", "failed"], ["b2", "x" * 150, "running"]]
    text = plain_rows(rows)
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[1].split() == ["a1", "-", "failed"]
    assert lines[2] == "b2   " + "x" * 150 + "   running"
    assert lines[0].index("STATE") == lines[1].index("failed")


def _event(seq: int, current: float, **fields: object) -> ProgressEvent:
    return ProgressEvent.model_validate(
        {"job_id": "j", "seq": seq, "timestamp": T0 + timedelta(seconds=seq),
         "current": current, "total": 30, "stage": "train", **fields}
    )  # fmt: skip


def test_a_frame_keeps_the_last_detail_and_eta_until_new_ones() -> None:
    first = next_bar(None, _event(1, 3, metrics={"loss": 0.5}), 60.0, now=100.0)
    assert first.detail == "loss=0.5"
    assert first.eta_at == 160.0
    second = next_bar(first, _event(2, 4), None, now=101.0)  # no metrics, no new estimate
    assert second.detail == "loss=0.5"
    assert second.eta_at == 160.0
    third = next_bar(second, _event(3, 5, message="epoch 5", stage="save"), None, now=102.0)
    assert third.detail == "epoch 5"
    assert third.eta_at is None  # another stage: the old estimate says nothing about it


def _watched(width: int, outcome: JobState | None) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=False)
    with LiveWatch(console, clock=lambda: 1000.0) as live:
        for seq in range(1, 4):
            metrics = {"loss": 0.3121, "accuracy": 0.9123, "val_loss": 0.4, "val_acc": 0.88}
            live.update(_event(seq, seq * 4.9259, message="epoch done", metrics=metrics))
        if outcome is not None:
            live.finish(outcome)
    return out.getvalue()


@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_watch_line_with_metrics_keeps_stage_bar_and_count(width: int) -> None:
    """With metrics the stage and bar used to become "…" and the count `14.7778/30`."""
    (line,) = _watched(width, JobState.SUCCEEDED).splitlines()
    assert len(line) <= width
    assert line.startswith("✔ train █")
    assert " 49% 14/30  succeeded" in line
    assert "…" not in line.split("succeeded")[0]


def test_an_interrupted_watch_ends_without_a_spinner() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False)

    def interrupted() -> None:
        with LiveWatch(console, clock=lambda: 1.0) as live:
            live.update(_event(1, 3))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert out.getvalue().startswith("⏸ train ")
    assert "interrupted" in out.getvalue()


def test_a_burst_of_events_is_drawn_at_the_steady_rate() -> None:
    """Events only change what is shown; a terminal gets a frame per refresh, not per event."""
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True)
    with LiveWatch(console) as live:
        for seq in range(1, 500):
            live.update(_event(seq, seq * 30 / 500))
    frames = out.getvalue().count("train")
    assert 1 <= frames <= 5


SCHEMA: dict[str, JsonValue] = {
    "properties": {
        "steps": {"type": "integer"},
        "datagen": {"anyOf": [{"$ref": "#/$defs/Datagen"}, {"type": "null"}]},
    },
    "$defs": {"Datagen": {"properties": {"n_per_class": {}, "length": {}}}},
}
KINDS = [
    KindInfo(kind="noop", description="", image="", params_schema=SCHEMA),
    KindInfo(kind="train", description="", image="", params_schema=SCHEMA),
]


def test_param_names_follow_refs() -> None:
    assert param_names(SCHEMA, []) == ["steps", "datagen"]
    assert param_names(SCHEMA, ["datagen"]) == ["n_per_class", "length"]
    assert param_names(SCHEMA, ["steps"]) == []


def test_did_you_mean() -> None:
    assert did_you_mean("noopp", [FieldError("kind", "unknown")], KINDS) == ["did you mean noop?"]
    assert did_you_mean("xyz", [FieldError("kind", "unknown")], KINDS) == []
    errors = [
        FieldError("params.stpes", "Extra inputs are not permitted"),
        FieldError("params.datagen.lenght", "Extra inputs are not permitted"),
        FieldError("params.qqqq", "Extra inputs are not permitted"),
        FieldError("retries", "too many"),
    ]
    assert did_you_mean("noop", errors, KINDS) == [
        "params.stpes: did you mean steps?",
        "params.datagen.lenght: did you mean datagen.length?",
    ]
