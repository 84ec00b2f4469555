"""``history --plot``: a timeline picture of sessions (matplotlib, the ``plot`` extra).

One lane per host (or per user), one bar per session from its start to its
end (open sessions run to their host's last successful poll), alerts in red,
sessions whose start is only "first seen" drawn lighter, and the gaps in a
host's polling (failed polls) shaded grey on host lanes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

MAX_LANES = 60
_ENDED = "#3b6ea8"
_OPEN = "#4a9a5b"
_ALERT = "#c62828"
_GAP = "#bdbdbd"


def _gaps(changes: Sequence[dict[str, Any]], end: float) -> dict[str, list[tuple[float, float]]]:
    """Per host, the spans during which its polls failed (from host-status changes)."""
    spans: dict[str, list[tuple[float, float]]] = {}
    down_since: dict[str, float] = {}
    for change in sorted(changes, key=lambda c: c["_time"]):
        host, time, new = change["host"], change["_time"], change["new"]
        if new != "ok":
            down_since.setdefault(host, time)
        elif host in down_since:
            start = down_since.pop(host)
            spans.setdefault(host, []).append((start, time - start))
    for host, start in down_since.items():
        spans.setdefault(host, []).append((start, max(end - start, 0.0)))
    return spans


def plot_sessions(
    records: Sequence[dict[str, Any]],
    path: str,
    *,
    by: str = "host",
    now: float,
    changes: Sequence[dict[str, Any]] = (),
    title: str | None = None,
) -> int:
    """Draw ``records`` (``history.sessions`` output) into ``path`` (.png/.svg/.pdf); returns lanes drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    key = "host" if by == "host" else "user"
    lanes_all: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        lanes_all.setdefault(str(record[key] or "-"), []).append(record)
    busiest = sorted(lanes_all, key=lambda lane: -len(lanes_all[lane]))[:MAX_LANES]
    lanes = sorted(busiest)
    left_out = len(lanes_all) - len(lanes)

    height = max(2.5, 0.35 * len(lanes) + 1.5)
    figure, axes = plt.subplots(figsize=(12, height))
    try:
        def to_num(seconds: float) -> float:
            # matplotlib's date numbers are days since 1970-01-01; shown as local clock time.
            local = dt.datetime.fromtimestamp(seconds).replace(tzinfo=dt.UTC)
            return local.timestamp() / 86400.0

        latest = max((r["_until"] for r in records), default=now)
        gaps = _gaps(changes, latest) if by == "host" else {}
        for index, lane in enumerate(lanes):
            for start, width in gaps.get(lane, []):
                axes.broken_barh([(to_num(start), to_num(start + width) - to_num(start))],
                                 (index - 0.45, 0.9), facecolors=_GAP, alpha=0.5, zorder=1)
            for record in lanes_all[lane]:
                start, until = record["_start"], record["_until"]
                left = to_num(start)
                width = max(to_num(until) - left, 1 / 86400)
                color = _ALERT if record["alert"] else (_OPEN if record["_end"] is None else _ENDED)
                axes.broken_barh([(left, width)], (index - 0.3, 0.6), facecolors=color,
                                 alpha=1.0 if record["start_exact"] else 0.55, zorder=2)
                if record["alert"]:
                    axes.plot([left], [index], marker="v", color=_ALERT, zorder=3)
        axes.set_yticks(range(len(lanes)))
        axes.set_yticklabels([lane if len(lane) <= 40 else lane[:39] + "…" for lane in lanes])
        axes.set_ylim(-0.7, len(lanes) - 0.3)
        axes.invert_yaxis()
        axes.xaxis_date()
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))  # type: ignore[no-untyped-call]
        figure.autofmt_xdate()
        axes.grid(axis="x", alpha=0.3)
        heading = title or f"{len(records)} session(s) by {key}"
        if left_out:
            heading += f" ({left_out} quieter lane(s) left out)"
        axes.set_title(heading)
        legend = [Patch(color=_ENDED, label="ended"), Patch(color=_OPEN, label="open"),
                  Patch(color=_ALERT, label="alert user")]
        if gaps:
            legend.append(Patch(color=_GAP, alpha=0.5, label="host not answering"))
        axes.legend(handles=legend, loc="upper right", fontsize="small")
        figure.tight_layout()
        figure.savefig(path)
    finally:
        plt.close(figure)
    return len(lanes)
