from __future__ import annotations

from tests.conftest import tv_source, wait_for


async def test_polls_and_serves_metrics(vendor, vendor_url, write_config, running):
    cfg = write_config([tv_source(vendor_url)])
    exporter, client = await running(cfg)
    await wait_for(exporter.store.ready)
    await wait_for(lambda: all(t.up for t in exporter.store.sources["tv"].targets.values()))
    r = await client.get("/metrics")
    text = await r.text()
    assert 'livestream_concurrent_viewers{provider="testvendor",source="tv",stream="tv/a"} 100.0' in text
    assert "livestream_likes_total{" in text
    r = await client.get("/")
    assert "tv/a" in await r.text()
