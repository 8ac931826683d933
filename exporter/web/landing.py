"""The landing page: what an operator wants at a glance.

At the top, one row per source: its status, how many of its targets are up, stale, down,
pending or gone, its audience now, the age of its oldest data, its effective poll
interval, and the requests it sends per second against its budget.  Below, a table per
source with a row per target: status, concurrent viewers, data age ("12 s ago"), last
error.  Everything from configuration or vendors (stream and source names, error
messages) is HTML-escaped.

The page stays cheap however many targets there are: the summary is one pass over the
targets, and each source lists at most `ROWS_PER_SOURCE` of them (`MAX_ROWS` over all),
every target with a problem first, then the largest audiences; /metrics has them all.

Plain HTML with inline CSS and no external assets.  With JavaScript on, a small inline
script fetches the page again every few seconds (`?refresh=N` seconds, `?refresh=0` off)
and swaps in its `#live` part, so the scroll position and the header stay; it pauses while
the tab is hidden or text is selected, and says so when a refresh fails.  With JavaScript
off the page is complete as served and reloads itself every `NOSCRIPT_REFRESH_SECONDS`.
Links and the refresh are relative to the page's own address, so the page works behind
a reverse proxy that serves it under a path prefix (reached with its trailing slash).
"""

from __future__ import annotations

import heapq
import html
import math
import platform
import weakref
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter

from exporter import __version__
from exporter.engine.stats import ClusterStats, SourceStats
from exporter.model.durations import format_duration
from exporter.model.samples import Origin
from exporter.store.store import SourceState, TargetState
from exporter.web.view import ExporterView

#: the audience shown per stream
VIEWERS = "livestream_concurrent_viewers"
#: target rows listed per source, and over all sources; the summary counts every target
ROWS_PER_SOURCE = 100
MAX_ROWS = 1000
#: data older than this many effective intervals (and at least STALE_MIN_SECONDS) is stale:
#: the target's last poll succeeded, but it has not been polled since as often as planned
STALE_INTERVALS = 2.0
STALE_MIN_SECONDS = 10.0
#: the script's refresh period by default, and the reload period with JavaScript off
REFRESH_SECONDS = 5
NOSCRIPT_REFRESH_SECONDS = 30
#: the send rate is measured over about this long, between renders of the page
RATE_WINDOW = 60.0
#: and shown once the renders span at least this long
RATE_MIN_SPAN = 2.0
#: budget use from which it is shown as a warning
BUDGET_HIGH = 0.9
#: an error message is cut to this many characters in its cell (whole in its tooltip)
ERROR_CHARS = 160
#: a cycle this much longer than the interval is shown as running behind
CYCLE_BEHIND = 1.1

#: the order of target rows, worst first
_RANK = {"down": 0, "stale": 1, "pending": 2, "up": 3, "gone": 4}


def esc(value: object) -> str:
    """HTML-escaped text, safe in element content and in quoted attribute values."""
    return html.escape(str(value), quote=True)


# ---- numbers and times as an operator reads them ----------------------------------------------


def ago(seconds: float | None) -> str:
    """A data age as relative time: 'just now', '12 s ago', '5 min ago', '3 h ago', '2 d ago'."""
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 1:
        return "just now"
    return f"{span(seconds)} ago"


def span(seconds: float) -> str:
    """A duration, as precise as a glance needs: '250 ms', '1.5 s', '18 s', '5 min', '3 h', '2 d'."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 10:
        return f"{math.floor(seconds * 10) / 10:g} s"
    if seconds < 120:
        return f"{math.floor(seconds)} s"
    if seconds < 120 * 60:
        return f"{math.floor(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{math.floor(seconds / 3600)} h"
    return f"{math.floor(seconds / 86400)} d"


def count(value: float) -> str:
    """A count with thousands separators: 12345.0 -> '12,345'."""
    return f"{round(value):,}"


def rate(per_second: float, per_minute: bool) -> str:
    """A request rate, per second or (for small budgets) per minute."""
    value, unit = (per_second * 60, "min") if per_minute else (per_second, "s")
    if value >= 100:
        return f"{value:,.0f}/{unit}"
    if value >= 10:
        return f"{value:.1f}/{unit}"
    return f"{value:.2f}/{unit}"


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _time(ts: float, text: str) -> str:
    """A <time> element showing `text`, with the absolute UTC time in its tooltip."""
    dt = _utc(ts)
    return (
        f'<time datetime="{dt.strftime("%Y-%m-%dT%H:%M:%SZ")}" '
        f'title="{dt.strftime("%Y-%m-%d %H:%M:%S UTC")}">{esc(text)}</time>'
    )


# ---- requests sent per second, measured between renders -----------------------------------


@dataclass
class _Marks:
    stats: weakref.ref[SourceStats]
    #: (monotonic time, requests sent by then), oldest first
    marks: deque[tuple[float, int]] = field(default_factory=deque)


class SendRate:
    """Requests each source sends per second, over about the last `RATE_WINDOW` seconds.

    A source counts every request it has sent (answered, plus in flight); the page notes
    that count each time it renders, so the rate is measured between renders (the page
    refreshes itself every few seconds while open).  Keyed by the source's `SourceStats`,
    which lives as long as the source (through reloads); a source that is gone is forgotten.
    """

    def __init__(self) -> None:
        self._by_stats: dict[int, _Marks] = {}

    @staticmethod
    def sent(stats: SourceStats) -> int:
        return sum(stats.requests.values()) + stats.in_flight

    def per_second(self, stats: SourceStats, now: float) -> float | None:
        """The rate now (None until renders `RATE_MIN_SPAN` apart have seen the source)."""
        entry = self._by_stats.get(id(stats))
        if entry is None or entry.stats() is not stats:
            entry = self._by_stats[id(stats)] = _Marks(weakref.ref(stats))
        marks = entry.marks
        sent = self.sent(stats)
        if marks and sent < marks[-1][1]:
            marks.clear()
        if not marks or now - marks[-1][0] >= 1.0:
            marks.append((now, sent))
        while marks[0][0] < now - 2 * RATE_WINDOW:  # no render for long: start over
            marks.popleft()
        while len(marks) > 2 and marks[1][0] <= now - RATE_WINDOW:
            marks.popleft()
        then, before = marks[0]
        if now - then < RATE_MIN_SPAN:
            return None
        return (sent - before) / (now - then)

    def forget_gone(self) -> None:
        for key in [k for k, v in self._by_stats.items() if v.stats() is None]:
            del self._by_stats[key]


SEND_RATE = SendRate()


# ---- what the page shows ----------------------------------------------------------------------


def viewers(t: TargetState) -> float | None:
    """The target's concurrent viewers now (summed over any extra labels), None if unknown."""
    total: float | None = None
    for sample in t.samples:
        if sample.name == VIEWERS:
            total = (total or 0.0) + sample.value
    return total


def stale_after(interval: float) -> float:
    return max(STALE_INTERVALS * interval, STALE_MIN_SECONDS)


def status(t: TargetState, age: float | None, stale_age: float) -> str:
    """up, stale (the last poll succeeded but long ago), down, pending or gone."""
    if t.gone:
        return "gone"
    if not t.attempted:
        return "pending"
    if not t.up:
        return "down"
    if age is None or age > stale_age:
        return "stale"
    return "up"


@dataclass(frozen=True)
class Row:
    target: TargetState
    status: str
    age: float | None
    viewers: float | None


@dataclass
class SourceSummary:
    """One source, as its summary row and its table show it."""

    state: SourceState
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_RANK, 0))
    viewers: float = 0.0
    with_viewers: int = 0
    oldest: float | None = None
    rows: list[Row] = field(default_factory=list)
    send_rate: float | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def status(self) -> str:
        c = self.counts
        active = self.total - c["gone"]
        if active == 0:
            return "pending" if not self.state.attempted else "no targets"
        if c["down"] == active:
            return "down"
        if c["down"]:
            return "partly down"
        if c["stale"]:
            return "stale"
        if c["pending"] == active:
            return "pending"
        return "up"

    @property
    def status_class(self) -> str:
        return {"partly down": "down", "no targets": "pending"}.get(self.status, self.status)


def summarize(s: SourceState, now_mono: float, limit: int) -> SourceSummary:
    """The source's counts over every target, and at most `limit` rows to list: every
    target with a problem first, then the largest audiences.  One pass over the targets;
    rows are built only for those listed."""
    out = SourceSummary(state=s)
    counts = out.counts
    stale_age = stale_after(s.stats.interval)
    problems: list[Row] = []
    #: up and gone targets as (sort key: audience, gone last; the row's values)
    rest: list[tuple[float, TargetState, str, float | None, float | None]] = []
    oldest = -1.0
    for t in s.targets.values():
        last = t.last_success_mono
        age = None if last is None else (now_mono - last if now_mono > last else 0.0)
        st = status(t, age, stale_age)
        counts[st] += 1
        v = viewers(t)
        if v is not None:
            out.viewers += v
            out.with_viewers += 1
        if age is not None and age > oldest and st != "gone":
            oldest = age
        if st in {"up", "gone"}:
            rest.append((-1.0 if st == "gone" else (v or 0.0), t, st, age, v))
        else:
            problems.append(Row(t, st, age, v))
    out.oldest = oldest if oldest >= 0 else None
    problems.sort(key=lambda r: (_RANK[r.status], r.target.target.stream))
    rows = problems[:limit]
    room = limit - len(rows)
    if room > 0:
        chosen = rest if len(rest) <= room else heapq.nlargest(room, rest, key=itemgetter(0))
        rows += [Row(t, st, age, v) for _, t, st, age, v in chosen]
    rows.sort(key=lambda r: (_RANK[r.status], r.target.target.stream))
    out.rows = rows
    return out


# ---- HTML -------------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.2em 1.5em;color:#1d1d1f}
h1{font-size:1.4em;margin:0}h2{font-size:1.1em;margin:1.6em 0 .3em}
a{color:#0b5cad}header p,nav{margin:.2em 0;color:#555}nav a{margin-right:1em}
table{border-collapse:collapse;margin:.3em 0}#summary td{white-space:nowrap}
th,td{padding:.25em .7em;text-align:left;border-bottom:1px solid #e2e2e2;vertical-align:top}
th{background:#f4f4f5;font-weight:600;white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.up{color:#15803d}.down{color:#c62828}.stale{color:#b45309}.pending,.gone,.none,.dim{color:#888}
td.up,td.down,td.stale,td.pending,td.gone,td.none{font-weight:600}
tr.r-down td{background:#fdf0f0}tr.r-stale td{background:#fdf7ec}
.total{font-size:1.15em;margin:.6em 0}.total b{font-variant-numeric:tabular-nums}
small{color:#666}meter{width:5em;vertical-align:middle}
.err{max-width:40em;overflow-wrap:anywhere}#auto{color:#555}#auto.down{color:#c62828;font-weight:600}
"""

# Fetches the page again and swaps in its #live part; no value from the server is ever put
# into the script, and text is set with textContent only.
_SCRIPT = """
(function () {
  var q = new URLSearchParams(location.search).get("refresh");
  var every = q === null ? @EVERY@ : Number(q);
  var note = document.getElementById("auto");
  var idle = "Refreshes every " + every + " s (?refresh=N to change, ?refresh=0 to stop).";
  if (!(every > 0)) { note.textContent = "Auto-refresh is off."; return; }
  note.textContent = idle;
  var busy = false, done = 0;
  function tick() {
    var sel = window.getSelection();
    if (busy || document.hidden || (sel && !sel.isCollapsed)) return;
    busy = true;
    fetch(location.href, {cache: "no-store", headers: {Accept: "text/html"}})
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
        var live = document.getElementById("live");
        if (!fresh || !live) throw new Error("not the landing page");
        live.replaceWith(document.adoptNode(fresh));
        done += 1;
        document.body.setAttribute("data-refreshes", String(done));
        note.className = "";
        note.textContent = idle;
      })
      .catch(function (err) {
        note.className = "down";
        note.textContent = "Refresh failed at " + new Date().toLocaleTimeString() + " (" +
          err.message + "): the data below is older; retrying every " + every + " s.";
      })
      .finally(function () { busy = false; });
  }
  setInterval(tick, every * 1000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) tick(); });
})();
""".replace("@EVERY@", str(REFRESH_SECONDS))


def _num(value: int, cls: str) -> str:
    return f'<td class="n {cls if value else "none"}">{count(value)}</td>'


def _budget(s: SourceSummary) -> str:
    """Requests sent per second against the budget (per minute for budgets under 1/s)."""
    stats = s.state.stats
    budget = stats.budget_rps
    per_minute = 0 < budget < 1
    in_flight = f"<br><small>{count(stats.in_flight)} in flight</small>"
    measuring = '<span class="dim">measuring</span>'
    sent = measuring if s.send_rate is None else esc(rate(s.send_rate, per_minute))
    if budget <= 0:
        return f"<td>{sent}{in_flight}</td>"
    of = f"{sent} of {esc(rate(budget, per_minute))}"
    if s.send_rate is None:
        return f"<td>{of}{in_flight}</td>"
    use = s.send_rate / budget
    meter = (
        f'<meter min="0" max="1" low="0.7" high="{BUDGET_HIGH}" optimum="0" '
        f'value="{min(1.0, use):.3f}"></meter>'
    )
    cls = ' class="stale"' if use >= BUDGET_HIGH else ""
    return f"<td{cls}>{of} &middot; {use:.0%} {meter}{in_flight}</td>"


def duration(seconds: float) -> str:
    """An interval as the configuration writes durations: '15s', '1m30s', '70d', '250ms';
    to the second from 10 s on (an interval the budget lengthened is rarely whole)."""
    return format_duration(round(seconds) if seconds >= 10 else round(seconds, 3))


def _interval(stats: SourceStats) -> str:
    text = esc(duration(stats.interval)) if stats.interval > 0 else "-"
    if stats.interval > 0 and stats.cycle_seconds > CYCLE_BEHIND * stats.interval:
        cycle = esc(duration(stats.cycle_seconds))
        return f'<td class="n stale">{text}<br><small>cycle {cycle}</small></td>'
    return f'<td class="n">{text}</td>'


def _anchor(index: int) -> str:
    return f"source-{index}"


def _summary_table(summaries: list[SourceSummary]) -> str:
    head = (
        "<tr><th>source</th><th>status</th><th class=n>targets</th><th class=n>up</th>"
        "<th class=n>stale</th><th class=n>down</th><th class=n>pending</th><th class=n>gone</th>"
        "<th class=n>viewers now</th><th class=n>oldest data</th><th class=n>interval</th>"
        "<th>requests sent / budget</th></tr>"
    )
    rows = []
    for i, s in enumerate(summaries):
        c = s.counts
        audience = count(s.viewers) if s.with_viewers else "-"
        oldest = esc(ago(s.oldest)) if s.oldest is not None else "-"
        rows.append(
            f'<tr class="source"><td><a href="#{_anchor(i)}">{esc(s.state.name)}</a>'
            f"<br><small>{esc(s.state.provider)}</small></td>"
            f'<td class="{s.status_class}">{esc(s.status)}</td>'
            f'<td class="n">{count(s.total)}</td>'
            + _num(c["up"], "up")
            + _num(c["stale"], "stale")
            + _num(c["down"], "down")
            + _num(c["pending"], "pending")
            + _num(c["gone"], "gone")
            + f'<td class="n">{audience}</td><td class="n">{oldest}</td>'
            + _interval(s.state.stats)
            + _budget(s)
            + "</tr>"
        )
    return f'<table id="summary">{head}{"".join(rows)}</table>'


def _error_cell(t: TargetState) -> str:
    if not t.error:
        return "<td></td>"
    message = t.error_message or ""
    short = message if len(message) <= ERROR_CHARS else message[: ERROR_CHARS - 1] + "\u2026"
    text = f"<b>{esc(t.error)}</b>" + (f": {esc(short)}" if short else "")
    return f'<td class="err" title="{esc(message)}">{text}</td>'


def _target_row(r: Row) -> str:
    t = r.target
    audience = count(r.viewers) if r.viewers is not None else "-"
    if t.last_success is None or r.age is None:
        age = '<span class="dim">never</span>'
    else:  # the age is measured on the monotonic clock; the tooltip has the wall-clock time
        age = _time(t.last_success, ago(r.age))
    origin = "" if t.target.origin == Origin.CONFIG else f" <small>{esc(t.target.origin)}</small>"
    return (
        f'<tr class="r-{r.status}"><td>{esc(t.target.stream)}{origin}</td>'
        f'<td class="{r.status}">{r.status}</td><td class="n">{audience}</td>'
        f'<td class="n">{age}</td>{_error_cell(t)}</tr>'
    )


def _source_section(i: int, s: SourceSummary) -> str:
    name = esc(s.state.name)
    head = f'<h2 id="{_anchor(i)}">{name} <small>{esc(s.state.provider)}</small></h2>'
    if not s.total:
        note = "no targets yet" if not s.state.attempted else "no targets: none configured or discovered"
        return f'{head}<p class="dim">{note}</p>'
    rows = "".join(_target_row(r) for r in s.rows)
    table = (
        "<table class=targets><tr><th>stream</th><th>status</th><th class=n>viewers</th>"
        f"<th class=n>data age</th><th>last error</th></tr>{rows}</table>"
        if rows
        else ""
    )
    hidden = s.total - len(s.rows)
    more = ""
    if hidden:
        shown = {k: 0 for k in _RANK}
        for r in s.rows:
            shown[r.status] += 1
        left = ", ".join(f"{count(s.counts[k] - shown[k])} {k}" for k in _RANK if s.counts[k] - shown[k])
        more = (
            f'<p class="more">{count(hidden)} more targets not listed ({left}): '
            "targets with a problem are listed first, then the largest audiences; "
            "the metrics have every target.</p>"
        )
    return f"{head}{table}{more}"


def _totals(summaries: list[SourceSummary]) -> str:
    total = {k: sum(s.counts[k] for s in summaries) for k in _RANK}
    targets = sum(total.values())
    audience = sum(s.viewers for s in summaries)
    parts = [
        f'<b class="{k if total[k] else "none"}">{count(total[k])}</b> {k}' for k in ("up", "stale", "down")
    ]
    parts += [f"{count(total[k])} {k}" for k in ("pending", "gone") if total[k]]
    return (
        f'<p class="total">{count(targets)} targets in {count(len(summaries))} sources: '
        + ", ".join(parts)
        + f" &middot; <b>{count(audience)}</b> viewers now</p>"
    )


def _cluster(c: ClusterStats, sources: Iterable[SourceState]) -> str:
    """Who polls what: every member's share of every source, and who holds its lease."""
    redis = "reachable" if c.redis_up else "<b class=down>unreachable</b>: each replica polls what it owned"
    members = list(c.members)
    head = "".join(
        f"<th class=n>{esc(m)}{'<br><small>this replica</small>' if m == c.replica else ''}</th>"
        for m in members
    )
    rows = []
    for s in sources:
        assigned = c.assigned.get(s.name, {})
        leader = c.leaders.get(s.name)
        cells = "".join(
            f'<td class="n">{count(assigned.get(m, 0))}{" &#9733;" if m == leader else ""}</td>'
            for m in members
        )
        rows.append(f"<tr><td>{esc(s.name)}<br><small>{esc(s.provider)}</small></td>{cells}</tr>")
    return (
        f'<section id="cluster"><h2>Cluster</h2><p>{len(members)} replica(s) share every budget;'
        f" Redis {redis}."
        " Targets per replica; &#9733; holds the source's lease (discovery, app-level requests).</p>"
        f"<table><tr><th>source</th>{head}</tr>{''.join(rows)}</table></section>"
    )


def _live(exporter: ExporterView, sources: Iterable[SourceState]) -> str:
    now_wall = exporter.clock.time()
    now_mono = exporter.clock.monotonic()
    summaries: list[SourceSummary] = []
    budget = MAX_ROWS
    for s in sources:
        summary = summarize(s, now_mono, max(0, min(ROWS_PER_SOURCE, budget)))
        summary.send_rate = SEND_RATE.per_second(s.stats, now_mono)
        budget -= len(summary.rows)
        summaries.append(summary)
    SEND_RATE.forget_gone()
    generated = _time(now_wall, _utc(now_wall).strftime("%H:%M:%S UTC"))
    if not summaries:
        body = "<p>No sources configured.</p>"
    else:
        cluster = exporter.store.cluster
        body = (
            _totals(summaries)
            + (_cluster(cluster, (x.state for x in summaries)) if cluster is not None else "")
            + _summary_table(summaries)
            + "".join(_source_section(i, s) for i, s in enumerate(summaries))
        )
    return f'<main id="live"><p class="dim">Data as of {generated}.</p>{body}</main>'


def landing_page(exporter: ExporterView, path: str) -> str:
    """The landing page's HTML (plain, no external assets); `path` is the metrics' path."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<noscript><meta http-equiv="refresh" content="{NOSCRIPT_REFRESH_SECONDS}"></noscript>
<title>livestream-exporter</title>
<style>{_STYLE}</style></head>
<body><header><h1>livestream-exporter</h1>
<p>Version {esc(__version__)} (Python {esc(platform.python_version())})
&middot; configuration {esc(exporter.config_file)}</p>
<nav><a href="{esc(path.lstrip("/"))}">Metrics</a><a href="-/healthy">Health</a>
<a href="-/ready">Readiness</a></nav>
<p id="auto"><noscript>JavaScript is off: the page reloads every {NOSCRIPT_REFRESH_SECONDS} s.</noscript></p>
</header>
{_live(exporter, exporter.store.sources.values())}
<script>{_SCRIPT}</script>
</body></html>
"""
