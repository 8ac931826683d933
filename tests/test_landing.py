"""The landing page's HTML: the summary per source (up, stale, down, viewers, interval,
budget use), the target tables (relative data ages, viewers, errors), escaping of every
name from configuration or vendors, the row cap at thousands of targets, and the page
served by a running exporter.

Most tests render the page from a store filled by hand on a FakeClock, and read it back
with the standard library's HTML parser (as text, the way a browser shows it).
tests/test_landing_browser.py loads it in a real browser.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import pytest

from exporter import __version__
from exporter.engine.stats import SourceStats
from exporter.model.clock import FakeClock
from exporter.model.errors import GoneError, UpstreamError
from exporter.model.samples import Origin, Sample, Target
from exporter.store.exposition import ReloadStatus
from exporter.store.store import Store
from exporter.web import landing
from exporter.web.landing import ago, landing_page, span
from tests.conftest import tv_source, wait_for

# ---- a store filled by hand ---------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A target's spec: its key is its stream label."""

    name: str

    def key(self) -> str:
        return self.name

    def stream_label(self) -> str:
        return self.name


@dataclass
class View:
    """The ExporterView the page sees."""

    store: Store
    clock: FakeClock
    reload_status: ReloadStatus
    config_file: str = "config.yaml"

    async def reload(self) -> str | None:
        return None


def view(clock: FakeClock | None = None) -> View:
    return View(Store(), clock or FakeClock(), ReloadStatus())


def add_source(
    v: View,
    name: str,
    streams: list[str],
    *,
    provider: str = "cloudflare",
    interval: float = 15.0,
    budget: float = 4.0,
    origin: Origin = Origin.CONFIG,
) -> SourceStats:
    stats = SourceStats(provider, budget_rps=budget, interval=interval, targets=len(streams))
    kept = [(s.name, s.provider, s.stats) for s in v.store.sources.values()]
    v.store.keep_sources([*kept, (name, provider, stats)])
    v.store.set_targets(name, [Target.of(Spec(s), origin) for s in streams])
    return stats


def succeed(v: View, source: str, stream: str, viewers: float | None = 100.0) -> None:
    samples = [Sample.of("livestream_likes_total", 7)]
    if viewers is not None:
        samples.append(Sample.of("livestream_concurrent_viewers", viewers))
    v.store.record_success(
        source, stream, samples, now=v.clock.time(), mono=v.clock.monotonic(), duration=0.1
    )


def fail(v: View, source: str, stream: str, message: str = "HTTP 500") -> None:
    v.store.record_failure(source, stream, UpstreamError(message), duration=0.1)


# ---- reading the page back -------------------------------------------------------------------


class Page(HTMLParser):
    """The page as a browser shows it: every table's rows of cell texts (keyed by the
    table's id, or the heading before it), the text of elements with an id, links, scripts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.row_classes: dict[str, list[str]] = {}
        self.texts: dict[str, str] = {}
        self.hrefs: list[str] = []
        self.scripts = 0
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self._heading: str | None = None
        self._heading_text = ""
        self._last_heading = ""
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._open_ids: list[tuple[str, str]] = []
        self._id_text: dict[str, list[str]] = {}
        self.feed(text)
        self.close()
        self.texts = {k: " ".join("".join(v).split()) for k, v in self._id_text.items()}
        self.text = " ".join(self._all)

    _all: list[str]

    def reset(self) -> None:
        super().reset()
        self._all = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.elements.append((tag, a))
        if a.get("id"):
            self._open_ids.append((tag, str(a["id"])))
            self._id_text.setdefault(str(a["id"]), [])
        if tag == "h2":
            self._heading, self._heading_text = tag, ""
        elif tag == "table":
            self._table = str(a.get("id") or self._last_heading)
            self.tables[self._table] = []
            self.row_classes[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
            self.row_classes[self._table].append(str(a.get("class") or ""))
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        elif tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))
        elif tag == "script":
            self.scripts += 1
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "h2" and self._heading:
            self._last_heading = self._heading_text.split()[0]
            self._heading = None
        elif tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        if self._open_ids and self._open_ids[-1][0] == tag:
            self._open_ids.pop()

    def handle_data(self, data: str) -> None:
        self._all.append(data)
        if self._heading:
            self._heading_text += data
        if self._cell is not None:
            self._cell.append(data)
        for _, ident in self._open_ids:
            self._id_text[ident].append(data)

    def rows(self, table: str) -> dict[str, list[str]]:
        """A table's data rows by their first cell (the header row left out)."""
        return {r[0]: r for r in self.tables[table][1:]}

    def summary(self) -> dict[str, dict[str, str]]:
        """The summary table: source -> column -> cell text."""
        head, *rows = self.tables["summary"]
        return {r[0].split()[0]: dict(zip(head, r, strict=True)) for r in rows}

    def targets(self, source: str) -> dict[str, dict[str, str]]:
        """A source's target table: stream -> column -> cell text."""
        head, *rows = self.tables[source]
        return {r[0]: dict(zip(head, r, strict=True)) for r in rows}


def render(v: View, path: str = "/metrics") -> tuple[str, Page]:
    text = landing_page(v, path)  # type: ignore[arg-type]
    return text, Page(text)


# ---- formatting ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "never"),
        (0.0, "just now"),
        (0.4, "just now"),
        (-3.0, "just now"),
        (1.0, "1 s ago"),
        (4.56, "4.5 s ago"),
        (12.9, "12 s ago"),
        (119.0, "119 s ago"),
        (120.0, "2 min ago"),
        (45 * 60, "45 min ago"),
        (3 * 3600, "3 h ago"),
        (47 * 3600, "47 h ago"),
        (3 * 86400, "3 d ago"),
    ],
)
def test_ago(seconds: float | None, text: str) -> None:
    assert ago(seconds) == text


def test_span_rate_count() -> None:
    assert [span(x) for x in (0.25, 1.5, 15.0, 18.0013, 90.0, 600.0)] == [
        "250 ms",
        "1.5 s",
        "15 s",
        "18 s",
        "90 s",
        "10 min",
    ]
    assert landing.count(12345.6) == "12,346"
    assert landing.rate(0.2778, per_minute=True) == "16.7/min"
    assert landing.rate(4.0, per_minute=False) == "4.00/s"
    assert landing.rate(250.0, per_minute=False) == "250/s"


# ---- the summary and the tables -----------------------------------------------------------------


def test_summary_counts_up_stale_down_pending_gone_and_viewers() -> None:
    clock = FakeClock()
    v = view(clock)
    add_source(v, "cf", ["old", "fresh", "broken", "waiting", "ended", "silent"], interval=15.0)
    succeed(v, "cf", "old", viewers=5)
    succeed(v, "cf", "broken", viewers=7)  # its values stay until stale_after; the poll fails now
    clock.advance(40)  # more than two intervals: 'old' has not been polled since
    succeed(v, "cf", "fresh", viewers=1200)
    succeed(v, "cf", "silent", viewers=None)  # a vendor that reports no concurrent viewers
    fail(v, "cf", "broken")
    v.store.record_failure("cf", "ended", GoneError("the stream ended"), duration=0.1)
    add_source(v, "quiet", [], provider="tencent")
    _, page = render(v)

    cf = page.summary()["cf"]
    assert cf["source"] == "cf cloudflare"
    assert (cf["status"], cf["targets"], cf["up"], cf["stale"], cf["down"], cf["pending"], cf["gone"]) == (
        "partly down",
        "6",
        "2",
        "1",
        "1",
        "1",
        "1",
    )
    # the audience: what the targets report now (a down target's last values still count)
    assert cf["viewers now"] == "1,212"
    assert cf["oldest data"] == "40 s ago"
    assert cf["interval"] == "15s"
    quiet = page.summary()["quiet"]
    assert (quiet["status"], quiet["targets"], quiet["viewers now"]) == ("pending", "0", "-")
    assert "no targets yet" in page.text
    assert "6 targets in 2 sources: 2 up, 1 stale, 1 down, 1 pending, 1 gone · 1,212 viewers now" in " ".join(
        page.text.split()
    )

    rows = page.targets("cf")
    assert list(rows) == ["broken", "old", "waiting", "fresh", "silent", "ended"], "worst first"
    assert {k: r["status"] for k, r in rows.items()} == {
        "broken": "down",
        "old": "stale",
        "waiting": "pending",
        "fresh": "up",
        "silent": "up",
        "ended": "gone",
    }
    assert rows["fresh"]["viewers"] == "1,200" and rows["silent"]["viewers"] == "-"
    assert rows["broken"]["last error"] == "upstream: HTTP 500"
    assert rows["waiting"]["data age"] == "never"
    assert page.row_classes["cf"][1:3] == ["r-down", "r-stale"]


def test_data_age_is_relative_and_follows_the_clock() -> None:
    """Ages read '12 s ago' and grow with the (monotonic) clock; the tooltip has the UTC time."""
    clock = FakeClock(start=1_700_000_000.0)
    v = view(clock)
    add_source(v, "cf", ["a", "b"], interval=60.0)
    succeed(v, "cf", "a")
    clock.advance(12)
    succeed(v, "cf", "b")
    text, page = render(v)
    ages = {k: r["data age"] for k, r in page.targets("cf").items()}
    assert ages == {"a": "12 s ago", "b": "just now"}
    assert 'datetime="2023-11-14T22:13:20Z" title="2023-11-14 22:13:20 UTC">12 s ago</time>' in text
    clock.advance(5 * 60)
    _, page = render(v)
    rows = page.targets("cf")
    assert (rows["a"]["data age"], rows["b"]["data age"]) == ("5 min ago", "5 min ago")
    assert {r["status"] for r in rows.values()} == {"stale"}
    assert page.summary()["cf"]["status"] == "stale"
    assert "Data as of 22:18:32 UTC" in page.texts["live"]


def test_stale_needs_two_intervals_and_ten_seconds() -> None:
    clock = FakeClock()
    v = view(clock)
    add_source(v, "fast", ["a"], interval=0.2)
    add_source(v, "slow", ["a"], interval=30.0)
    succeed(v, "fast", "a")
    succeed(v, "slow", "a")
    clock.advance(9.9)
    _, page = render(v)
    assert page.targets("fast")["a"]["status"] == "up", "a short interval still allows 10 s"
    clock.advance(0.2)
    _, page = render(v)
    assert page.targets("fast")["a"]["status"] == "stale"
    assert page.targets("slow")["a"]["status"] == "up"
    clock.advance(50)
    _, page = render(v)
    assert page.targets("slow")["a"]["status"] == "stale"


def test_everything_from_config_or_vendors_is_escaped() -> None:
    """Stream, source and provider names, error messages and the config path render as text."""
    evil = '<script>document.title="pwned"</script>'
    attr = '" onmouseover="alert(1)'
    v = view()
    v.config_file = "/etc/<marquee>x</marquee>.yaml"
    add_source(v, "src<i>", [evil, attr, "&amp;"], provider="p<u>")
    succeed(v, "src<i>", evil)
    fail(v, "src<i>", attr, message='<img src=x onerror="alert(2)"> & "quotes"')
    text, page = render(v)
    assert page.scripts == 1, "the page's own script only"
    for raw in (evil, "<i>", "<u>", "<marquee>", "<img", 'onmouseover="', 'onerror="'):
        assert raw not in text, raw
    # the browser shows the names as they are
    rows = page.targets("src<i>")
    assert set(rows) == {evil, attr, "&amp;"}
    assert rows[attr]["last error"] == 'upstream: <img src=x onerror="alert(2)"> & "quotes"'
    assert page.tables["summary"][1][0] == "src<i> p<u>"
    assert "configuration /etc/<marquee>x</marquee>.yaml" in page.text
    # and no attribute carries anything of them but as a value
    assert all(set(a) <= {"class", "id", "href", "title", "datetime", "charset", "name", "content", "lang",
                          "http-equiv", "min", "max", "low", "high", "optimum", "value"}
               for _, a in page.elements), page.elements  # fmt: skip
    titles = [a["title"] for tag, a in page.elements if tag == "td" and a.get("title")]
    assert titles == ['<img src=x onerror="alert(2)"> & "quotes"']


def test_links_are_relative() -> None:
    """Links resolve against the page's own address, so a path prefix keeps working."""
    _, page = render(view(), "/x/stats")
    resolved = {urljoin("http://h/prefix/", h) for h in page.hrefs}
    assert {"http://h/prefix/x/stats", "http://h/prefix/-/healthy", "http://h/prefix/-/ready"} <= resolved


def test_interval_and_a_cycle_running_behind() -> None:
    v = view()
    stats = add_source(v, "sfd", ["a"], interval=18.0013)
    stats.cycle_seconds = 25.0
    _, page = render(v)
    assert page.summary()["sfd"]["interval"] == "18s cycle 25s"
    stats.cycle_seconds = 17.0
    _, page = render(v)
    assert page.summary()["sfd"]["interval"] == "18s"
    assert [landing.duration(x) for x in (0.2, 3.25, 90.0, 18.0013, 70 * 86400)] == [
        "200ms",
        "3s250ms",
        "1m30s",
        "18s",
        "70d",
    ]


def test_budget_use_is_requests_sent_per_second_against_the_budget() -> None:
    """The send rate is measured between renders, over about the last minute."""
    clock = FakeClock()
    v = view(clock)
    stats = add_source(v, "cf", ["a"], budget=4.0)
    slow = add_source(v, "sfd", ["a"], budget=100 / 60, provider="swiftfederation")
    tiny = add_source(v, "tiny", ["a"], budget=1000 / 3600, provider="swiftfederation")
    _, page = render(v)
    assert page.summary()["cf"]["requests sent / budget"] == "measuring of 4.00/s 0 in flight"
    for _ in range(10):
        clock.advance(5)
        stats.requests[("stream", "200")] += 10
        slow.requests[("stream", "200")] += 5
        tiny.requests[("stream", "200")] += 1
    stats.in_flight = 3
    stats.requests[("stream", "200")] -= 3  # three of the last ten still in flight
    _, page = render(v)
    assert page.summary()["cf"]["requests sent / budget"] == "2.00/s of 4.00/s · 50% 3 in flight"
    assert page.summary()["sfd"]["requests sent / budget"] == "1.00/s of 1.67/s · 60% 0 in flight"
    assert page.summary()["tiny"]["requests sent / budget"] == "12.0/min of 16.7/min · 72% 0 in flight"
    # the window moves: the last minute counts, not the whole history
    for _ in range(12):
        clock.advance(5)
        stats.requests[("stream", "200")] += 19
    _, page = render(v)
    cell = page.summary()["cf"]["requests sent / budget"]
    assert cell.startswith("3.80/s of 4.00/s · 95%"), cell
    text, _ = render(v)
    assert '<td class="stale">3.80/s' in text, "near the budget is a warning"
    # a page not looked at for long starts measuring again
    clock.advance(3600)
    _, page = render(v)
    assert page.summary()["cf"]["requests sent / budget"].startswith("measuring")


def test_send_rate_forgets_a_source_that_is_gone() -> None:
    meter = landing.SendRate()
    stats = SourceStats("cloudflare")
    assert meter.per_second(stats, 0.0) is None
    stats.requests[("x", "200")] += 10
    assert meter.per_second(stats, 5.0) == 2.0
    del stats
    meter.forget_gone()
    assert meter._by_stats == {}


def test_thousands_of_targets_list_problems_first_then_the_largest_audiences() -> None:
    """10,000 targets: every target counts in the summary; 100 rows listed, a small page."""
    clock = FakeClock()
    v = view(clock)
    streams = [f"s{i:05d}" for i in range(10_000)]
    add_source(v, "big", streams, origin=Origin.DISCOVERY)
    for i, s in enumerate(streams):
        if i % 1000 == 7:
            fail(v, "big", s)
        else:
            succeed(v, "big", s, viewers=i)
    started = time.perf_counter()
    text, page = render(v)
    took = time.perf_counter() - started
    assert len(text) < 64 * 1024, len(text)
    assert took < 1.0, took  # about 20 ms on a laptop
    summary = page.summary()["big"]
    assert (summary["targets"], summary["up"], summary["down"]) == ("10,000", "9,990", "10")
    rows = page.targets("big")
    assert len(rows) == landing.ROWS_PER_SOURCE
    down = [k.split()[0] for k, r in rows.items() if r["status"] == "down"]
    assert down == [f"s{i:05d}" for i in range(7, 10_000, 1000)]
    up = [k.split()[0] for k, r in rows.items() if r["status"] == "up"]
    assert up == sorted(s for s in streams[-95:] if int(s[1:]) % 1000 != 7)[-90:]
    assert rows["s09999 discovered"]["viewers"] == "9,999"
    assert "9,900 more targets not listed (9,900 up)" in " ".join(page.text.split())


def test_rows_are_capped_over_all_sources() -> None:
    v = view()
    for n in range(15):
        add_source(v, f"src{n:02d}", [f"t{i}" for i in range(100)])
    _, page = render(v)
    listed = sum(len(page.tables[f"src{n:02d}"]) - 1 for n in range(10))
    assert listed == landing.MAX_ROWS
    assert "src10" not in page.tables and "src14" not in page.tables
    assert "100 more targets not listed (100 pending)" in " ".join(page.text.split())
    assert page.summary()["src14"]["targets"] == "100"


def test_refresh_script_and_noscript_fallback() -> None:
    """One inline script, no external asset; with JavaScript off the page reloads itself."""
    text, page = render(view())
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "no external assets"
    assert page.scripts == 1
    assert '<noscript><meta http-equiv="refresh" content="30"></noscript>' in text
    assert 'id="live"' in text and 'getElementById("live")' in text
    assert "replaceWith" in text, "the script swaps the live part, not the whole page"


# ---- served by a running exporter ----------------------------------------------------------------


async def test_served_page_shows_each_target(vendor: Any, vendor_url: str, write_config: Any, running: Any):
    """`/`: the version, relative links, the summary, a row per target with its health,
    viewers and data age, the error kind of a failing one, names escaped."""
    vendor.faults["b"] = "500"
    vendor.viewers["a"] = 1234.0
    src = tv_source(vendor_url)
    src["targets"] = [{"stream_id": "a"}, {"stream_id": "b"}, {"stream_id": "c", "name": "<b>x</b>"}]
    exporter, client = await running(write_config([src]))
    await wait_for(exporter.store.ready)
    await wait_for(lambda: all(t.attempted for t in exporter.store.sources["tv"].targets.values()))
    r = await client.get("/")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/html")
    text = await r.text()
    page = Page(text)
    assert __version__ in page.text
    hrefs = {urljoin("http://h/", h) for h in page.hrefs}
    assert {"http://h/metrics", "http://h/-/healthy", "http://h/-/ready"} <= hrefs, hrefs

    summary = page.summary()["tv"]
    assert (summary["source"], summary["targets"], summary["down"]) == ("tv testvendor", "3", "1")
    assert summary["up"] in ("2", "1") and int(summary["up"]) + int(summary["stale"]) == 2
    rows = page.targets("tv")
    assert set(rows) == {"tv/a", "tv/b", "<b>x</b>"}, rows
    assert (rows["tv/a"]["status"], rows["tv/a"]["viewers"]) == ("up", "1,234")
    assert re.fullmatch(r"just now|\d+(\.\d)? s ago", rows["tv/a"]["data age"]), rows["tv/a"]
    assert (rows["tv/b"]["status"], rows["tv/b"]["data age"]) == ("down", "never")
    assert rows["tv/b"]["last error"].startswith("upstream")
    assert "<b>x</b>" not in text, "stream names must be HTML-escaped"


async def test_served_page_shows_intervals_as_durations(vendor, vendor_url, write_config, running):
    """Effective intervals read as the configuration writes durations (`1m30s`, `70d`), never
    as seconds in float notation such as `90s` or `6.048e+06s`."""
    ids = [f"s{i}" for i in range(10)]
    vendor.viewers.update(dict.fromkeys(ids, 1.0))
    week = [{"requests": 1, "per": "1w"}]  # ten targets at one request a week: 70 days
    cfg = write_config(
        [
            tv_source(vendor_url, targets=["a"], interval="1m30s"),
            tv_source(vendor_url, name="slow", targets=ids, rate_limit=week),
        ]
    )
    _, client = await running(cfg)
    text = await (await client.get("/")).text()
    summary = Page(text).summary()
    assert (summary["tv"]["interval"], summary["slow"]["interval"]) == ("1m30s", "70d")
    assert "e+" not in text
