"""The mirror's health from the index: counts by state, runs, the running crawl's rate, plots as inline SVG.

Counts follow `status` (crawler/state/report.py): an image's last record is its state, a failure is
grouped by its `reason` (else its error). A crawl counts as running when the last run record is a
start without an end and the manifest grew in the last `RUNNING_QUIET` seconds: read-only, no lock
is touched, so serving never gets in a crawl's way.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from crawler.serve.pages import e, layout

RUNNING_QUIET = 30.0
_RATE_WINDOW = 60.0


@dataclass(slots=True)
class Status:
    done: int = 0
    failed: int = 0
    gone: int = 0
    excluded: int = 0  # excluded images that are done (what export leaves out)
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)  # newest first
    per_day: list[tuple[str, int]] = field(default_factory=list)  # (YYYY-MM-DD, images mirrored that day)
    running: bool = False
    rate: float = 0.0  # images done per second over the last minute, while running
    eta_seconds: float | None = None  # when the running crawl has --max-images

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read(db: sqlite3.Connection, manifest: Path, now: float | None = None) -> Status:
    now = time.time() if now is None else now
    status = Status()
    for state, count in db.execute("SELECT status, count(*) FROM states GROUP BY status"):
        if state in ("done", "failed", "gone"):
            setattr(status, state, count)
    status.failed_by_reason = dict(db.execute(
        "SELECT reason, count(*) FROM states WHERE status = 'failed' GROUP BY reason ORDER BY count(*) DESC"))
    status.excluded = db.execute("SELECT count(*) FROM excluded JOIN images USING (key)").fetchone()[0]
    for event, t, query, reason, message, exit_code, counts, settings in db.execute(
            "SELECT event, t, query, reason, message, exit_code, counts, settings FROM runs ORDER BY at DESC LIMIT 20"):
        status.runs.append({"event": event, "t": t, "query": query, "reason": reason, "message": message,
                            "exit_code": exit_code, "counts": orjson.loads(counts) if counts else None,
                            "settings": orjson.loads(settings) if settings else None})
    status.per_day = [(d, n) for d, n in db.execute(
        "SELECT date(t, 'unixepoch') AS d, count(*) FROM images WHERE t IS NOT NULL GROUP BY d ORDER BY d DESC LIMIT 60")][::-1]
    try:
        grew = manifest.stat().st_mtime
    except FileNotFoundError:
        grew = 0.0
    last = status.runs[0] if status.runs else None
    status.running = bool(last and last["event"] == "start" and now - grew < RUNNING_QUIET)
    if status.running and last is not None:
        started = last["t"] or now
        window = max(1.0, min(_RATE_WINDOW, now - started))
        recent = db.execute("SELECT count(*) FROM states WHERE status = 'done' AND t >= ?", (now - window,)).fetchone()[0]
        status.rate = recent / window
        limit = (last["settings"] or {}).get("max_images")
        if isinstance(limit, int) and limit > 0 and status.rate > 0:
            done_since = db.execute("SELECT count(*) FROM states WHERE status = 'done' AND t >= ?", (started,)).fetchone()[0]
            status.eta_seconds = max(0.0, (limit - done_since) / status.rate)
    return status


def bars_svg(title: str, data: list[tuple[str, int]], vertical: bool) -> str:
    """A bar chart as inline SVG: drawn here, so the page needs no chart library and no other site."""
    if not data:
        return f'<figure class="plot"><figcaption>{e(title)}</figcaption><p>nothing yet</p></figure>'
    top = max(n for _, n in data) or 1
    if vertical:
        w, h, bw = 600, 160, min(40.0, max(2.0, 600 / len(data)))  # a few days stay narrow bars
        bars = "".join(
            f'<rect x="{i * bw:.1f}" y="{h - n / top * (h - 20):.1f}" width="{bw * 0.85:.1f}" '
            f'height="{n / top * (h - 20):.1f}" fill="#5b8def"><title>{e(label)}: {n}</title></rect>'
            for i, (label, n) in enumerate(data))
        axis = (f'<text x="0" y="{h + 14}" font-size="11" fill="#9aa4b5">{e(data[0][0])}</text>'
                f'<text x="{w}" y="{h + 14}" font-size="11" fill="#9aa4b5" text-anchor="end">{e(data[-1][0])}</text>')
        svg = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h + 18}" width="{w}" role="img">{bars}{axis}</svg>'
    else:
        w, row = 600, 22
        h = row * len(data)
        bars = "".join(
            f'<text x="0" y="{i * row + 15}" font-size="12" fill="#cfd6e4">{e(label[:40])}</text>'
            f'<rect x="260" y="{i * row + 4}" width="{n / top * 300:.1f}" height="{row - 8}" fill="#e0675b"/>'
            f'<text x="{265 + n / top * 300:.1f}" y="{i * row + 15}" font-size="12" fill="#cfd6e4">{n}</text>'
            for i, (label, n) in enumerate(data))
        svg = f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" role="img">{bars}</svg>'
    return f'<figure class="plot"><figcaption>{e(title)}</figcaption>{svg}</figure>'


def _when(t: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if isinstance(t, (int, float)) else ""


def page(status: Status, token: str) -> str:
    reasons = "".join(f"<li>{e(r or 'unknown')}: {n}</li>" for r, n in status.failed_by_reason.items())
    running = ""
    if status.running:
        eta = f", about {status.eta_seconds / 60:.0f} min left" if status.eta_seconds is not None else ""
        running = f'<p id="running" class="running">A crawl is running: {status.rate:.1f} images/s{eta}.</p>'
    runs = "".join(
        f'<tr><td>{e(_when(r["t"]))}</td><td>{e(r["event"])}</td><td>{e(r["query"])}</td><td>{e(r["reason"] or "")}</td>'
        f'<td>{e(r["message"] or "")}</td><td>{e("" if r["exit_code"] is None else r["exit_code"])}</td></tr>'
        for r in status.runs[:10])
    body = (f'<h1>Status</h1>{running}<table class="counts" id="counts">'
            f'<tr><th>done</th><td id="n-done">{status.done}</td></tr>'
            f'<tr><th>failed</th><td id="n-failed">{status.failed}</td></tr>'
            f'<tr><th>gone</th><td id="n-gone">{status.gone}</td></tr>'
            f'<tr><th>excluded from exports</th><td id="n-excluded">{status.excluded}</td></tr></table>'
            f'<ul class="reasons">{reasons}</ul>'
            f'{bars_svg("Images mirrored per day", status.per_day, vertical=True)}'
            f'{bars_svg("Failures by reason", list(status.failed_by_reason.items()), vertical=False)}'
            f'<h2>Last runs</h2><table class="runs"><tr><th>when</th><th>event</th><th>query</th><th>stop reason</th>'
            f'<th>message</th><th>exit</th></tr>{runs}</table>')
    # Refreshes itself without JavaScript: every 5 s while a crawl runs, every 30 s otherwise, so a page
    # opened before a crawl (or during a follow pause) notices when one starts.
    head = f'<meta http-equiv="refresh" content="{5 if status.running else 30}">'
    return layout("Status", body, token, head)
