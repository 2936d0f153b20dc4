"""Paged tables of every scored clip, ranked by score, so a report of thousands of clips stays fast.

Only the top alarms are expanded on the index page. Every scored clip is a row in static pages of
`page_size` clips, and a row links back to its expanded alarm when there is one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from detect.json_files import finite_float
from detect.report_html import escape, ground_truth, page, source_and_span

PAGES_FOLDER = "clips"


def page_name(number: int) -> str:
    """Return the report-relative path of table page `number` (1-based)."""
    return f"{PAGES_FOLDER}/page-{number:04d}.html"


def write_clip_pages(
    report: Path, ranked: list[dict[str, Any]], *, top: int, page_size: int, threshold: float | None
) -> int:
    """Write the ranked rows as HTML tables of `page_size` rows under `report/clips/`, and count the pages."""
    (report / PAGES_FOLDER).mkdir()
    count = max(1, math.ceil(len(ranked) / page_size))
    for number in range(1, count + 1):
        first = (number - 1) * page_size
        rows = ranked[first : first + page_size]
        body = [
            '<p><a href="../index.html">back to the report</a></p>',
            f"<h1>Scored clips {first + 1}-{first + len(rows)} of {len(ranked)}, highest score first</h1>",
            _pager(number, count),
            _table(rows, first_rank=first + 1, top=top, threshold=threshold),
            _pager(number, count),
        ]
        (report / page_name(number)).write_text(
            page(f"latentwatch scored clips, page {number}", body), encoding="utf-8"
        )
    return count


def pages_link_list(count: int, total: int, page_size: int) -> str:
    """Return the index page's links to every table page."""
    links = []
    for number in range(1, count + 1):
        first = (number - 1) * page_size + 1
        last = min(total, number * page_size)
        links.append(f'<a href="{page_name(number)}">{first}-{last}</a>')
    return '<p class="pager">' + " ".join(links) + "</p>"


def _pager(number: int, count: int) -> str:
    # Pages are siblings in one folder, so links use the file name alone.
    def link(target: int, text: str) -> str:
        return f'<a href="{page_name(target).split("/")[-1]}">{escape(text)}</a>'

    parts = [link(1, "first") if number > 1 else "<span>first</span>"]
    parts.append(link(number - 1, "previous") if number > 1 else "<span>previous</span>")
    parts.append(f"<span>page {number} of {count}</span>")
    parts.append(link(number + 1, "next") if number < count else "<span>next</span>")
    parts.append(link(count, "last") if number < count else "<span>last</span>")
    return '<p class="pager">' + "".join(parts) + "</p>"


def _table(rows: list[dict[str, Any]], *, first_rank: int, top: int, threshold: float | None) -> str:
    lines = [
        "<table><tr><th>rank</th><th>score</th><th>above threshold</th><th>clip</th><th>source and span</th>"
        "<th>ground truth</th><th>nearest normal clip (distance)</th></tr>"
    ]
    for rank, row in enumerate(rows, start=first_rank):
        key = escape(row["key"])
        clip = f'<a href="../index.html#alarm-{rank}">{key}</a>' if rank <= top else key
        neighbours = row.get("neighbours") or []
        nearest = (
            f'<span class="key">{escape(neighbours[0]["key"])}</span> ({neighbours[0]["distance"]:.4g})'
            if neighbours
            else "none listed"
        )
        score = finite_float(row["score"])
        above = "n/a"
        if threshold is not None:
            above = "yes" if score > threshold else "no"
        lines.append(
            f'<tr id="clip-{rank}"><td>{rank}</td><td>{score:.4g}</td><td>{above}</td>'
            f'<td class="key">{clip}</td><td>{escape(source_and_span(row))}</td>'
            f"<td>{escape(ground_truth(row))}</td><td>{nearest}</td></tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)
