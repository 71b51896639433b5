"""One result from the parts a split job's workers leave, by the kind's declared `Merge`:
pure functions over plain JSON.

A part is one completion index's result; a missing part (no outcome, or a failed one) is
`None`. The merged figures are over the parts present, the parts stay as detail under
`workers`, and `workers_missing` lists the indices that left none. Being a function of the
final part of every index, the merge gives the same answer however often it runs: a
retried worker's part replaces its earlier one, and a controller restart merges again.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import JsonValue

from kubetask.kinds import Merge, Pick

Part = dict[str, JsonValue]


def _number(value: JsonValue) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _having(parts: Sequence[Part], key: str) -> list[Part]:
    return [part for part in parts if key in part]


def picked(pick: Pick, parts: Sequence[Part]) -> Part | None:
    """The part that ranks first by `pick.by`; None when no part has a number there."""
    ranked = [(value, part) for part in parts if (value := _number(part.get(pick.by))) is not None]
    if not ranked:
        return None
    maximize = pick.maximize
    if pick.direction is not None:
        maximize = ranked[0][1].get(pick.direction) != "minimize"
    choose = max if maximize else min
    return choose(ranked, key=lambda ranked_part: ranked_part[0])[1]


def _sum(values: list[JsonValue]) -> JsonValue:
    numbers = [v for v in values if _number(v) is not None]
    if all(isinstance(v, int) for v in numbers):
        return sum(int(v) for v in numbers if isinstance(v, int))
    return sum(n for v in numbers if (n := _number(v)) is not None)


def _maximum(values: list[JsonValue]) -> JsonValue:
    flags = [v for v in values if isinstance(v, bool)]
    if flags:
        return any(flags)
    numbers = [(n, v) for v in values if (n := _number(v)) is not None]
    return max(numbers, key=lambda pair: pair[0])[1] if numbers else None


def _weighted_mean(parts: Sequence[Part], key: str, count: str) -> float | None:
    pairs = [(_number(part.get(key)), _number(part.get(count))) for part in parts]
    weighted = [(value, weight) for value, weight in pairs if value is not None and weight]
    total = sum(weight for _, weight in weighted)
    if not total:
        return None
    return round(sum(value * weight for value, weight in weighted) / total, 6)


def _first(values: list[JsonValue]) -> JsonValue:
    return values[0]


def _joined(values: list[JsonValue]) -> JsonValue:
    return [item for items in values if isinstance(items, list) for item in items]


def merged_figures(merge: Merge, parts: Sequence[Part]) -> Part:
    """The figures over `parts` (those present) that `merge` declares; a key no part has
    is left out."""
    out: Part = {}
    by_values = (
        (merge.same, _first),
        (merge.sums, _sum),
        (merge.concat, _joined),
        (merge.maxima, _maximum),
    )
    for pick in merge.picks:
        best = picked(pick, parts)
        for key in pick.keys:
            source = best if best is not None else next(iter(_having(parts, key)), None)
            if source is not None and key in source:
                out[key] = source[key]
    for keys, reduce in by_values:
        for key in keys:
            values = [part[key] for part in _having(parts, key)]
            if values:
                out[key] = reduce(values)
    for key, count in merge.means:
        if _having(parts, key):
            out[key] = _weighted_mean(parts, key, count)
    return out


def merge_parts(merge: Merge, parts: Sequence[Part | None]) -> Part:
    """The job's one result: the merged figures, then every worker's part (by completion
    index, None where it left none) and the indices missing."""
    present = [part for part in parts if part is not None]
    workers: list[JsonValue] = list(parts)
    missing: list[JsonValue] = [i for i, part in enumerate(parts) if part is None]
    return {**merged_figures(merge, present), "workers": workers, "workers_missing": missing}
