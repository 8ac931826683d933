"""HTTP control of the simulator for out-of-process tests: /_sim/control, /_sim/requests, /_sim/state.

POST /_sim/control takes one JSON object with an "action" and its arguments ("vendor" left
out means every vendor where the action allows it):

    {"action": "latency", "vendor": "...", "mean": 0.2, "jitter": 0.05, "arrival": null}
    {"action": "pieces", "vendor": "...", "size": 4096, "gap": 0.01, "jitter": 0.0,
     "chunked": false, "endpoints": null}
    {"action": "network", "vendor": "...", "value": "demo" | "off"}
    {"action": "seed", "value": 7}
    {"action": "add_streams", "vendor": "...", "count": 10000, "scenario": "steady"}
        -> {"ok": true, "streams": [the new keys]}
    {"action": "limits", "vendor": "...", "endpoint": "*", "windows": [[20, 2.0], ...]}
        (the vendor's rate limit of one endpoint group: requests per seconds, all holding)
    reset, set_viewers, drop, end_stream, start_stream, remove_stream, inject, clear_faults,
    quirk, configure: see `apply`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .core import Simulator

CONTROL_PATH = "/_sim/control"
REQUESTS_PATH = "/_sim/requests"
STATE_PATH = "/_sim/state"


def _str(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name!r} (a string) is required")
    return value


def _number(args: dict[str, Any], name: str, default: float | None = None) -> float:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name!r} (a number) is required")
    return float(value)


def _windows(value: Any) -> list[tuple[int, float]]:
    if not isinstance(value, list) or not value:
        raise ValueError("'windows' is a list of [requests, seconds] pairs")
    out = []
    for pair in value:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in pair)
        ):
            raise ValueError("'windows' is a list of [requests, seconds] pairs of positive numbers")
        out.append((int(pair[0]), float(pair[1])))
    return out


def _optional_vendor(args: dict[str, Any]) -> str | None:
    """The action's vendor, or None (every vendor) when it names none."""
    value = args.get("vendor")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError("'vendor' must be a vendor's name (or left out: every vendor)")
    return value


def _int(args: dict[str, Any], name: str, default: int | None = None) -> int:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name!r} (an integer) is required")
    return value


def _network(sim: Simulator, action: str, args: dict[str, Any]) -> None:
    vendor = _optional_vendor(args)
    if action == "latency":
        arrival = args.get("arrival")
        sim.set_latency(
            vendor,
            _number(args, "mean"),
            _number(args, "jitter", 0.0),
            arrival=None if arrival is None else _number(args, "arrival"),
        )
    elif action == "pieces":
        endpoints = args.get("endpoints")
        if endpoints is not None and (
            not isinstance(endpoints, list) or not all(isinstance(e, str) for e in endpoints)
        ):
            raise ValueError("'endpoints' must be a list of endpoint names")
        chunked = args.get("chunked", False)
        if not isinstance(chunked, bool):
            raise ValueError("'chunked' must be true or false")
        sim.set_pieces(
            vendor,
            _int(args, "size"),
            _number(args, "gap", 0.0),
            jitter=_number(args, "jitter", 0.0),
            chunked=chunked,
            endpoints=endpoints,
        )
    elif action == "network":
        value = args.get("value")
        if value == "demo":
            sim.use_demo_network(vendor)
        elif value == "off":
            sim.clear_network(vendor)
        else:
            raise ValueError("'value' is one of demo, off")
    else:  # seed
        seed = args.get("value")
        sim.seed(None if seed is None else _int(args, "value"))


def apply(sim: Simulator, args: dict[str, Any]) -> dict[str, Any]:
    """Run one control action; what it answers beyond {"ok": true}. ValueError/KeyError on a
    bad request."""
    action = args.get("action")
    if action in ("latency", "pieces", "network", "seed"):
        _network(sim, action, args)
    elif action == "add_streams":
        scenario = args.get("scenario", "steady")
        if not isinstance(scenario, str):
            raise ValueError("'scenario' must be a string")
        keys = sim.add_streams(_str(args, "vendor"), _int(args, "count"), scenario)
        return {"streams": keys}
    elif action == "limits":
        sim.set_limits(_str(args, "vendor"), str(args.get("endpoint", "*")), _windows(args.get("windows")))
    elif action == "reset":
        sim.reset()
    elif action == "set_viewers":
        sim.set_viewers(_str(args, "vendor"), _str(args, "stream"), _number(args, "value"))
    elif action == "drop":
        sim.drop(_str(args, "vendor"), _str(args, "stream"), _number(args, "factor", 1.0 / 3.0))
    elif action == "end_stream":
        sim.end_stream(_str(args, "vendor"), _str(args, "stream"))
    elif action == "start_stream":
        viewers = _number(args, "viewers") if args.get("viewers") is not None else None
        sim.start_stream(_str(args, "vendor"), _str(args, "stream"), viewers)
    elif action == "remove_stream":
        sim.remove_stream(_str(args, "vendor"), _str(args, "stream"))
    elif action == "inject":
        stream, code = args.get("stream"), args.get("code")
        if stream is not None and not isinstance(stream, str):
            raise ValueError("'stream' must be a string")
        if code is not None and not isinstance(code, int):
            raise ValueError("'code' must be an integer")
        count = int(_number(args, "count", 1))
        sim.inject(_str(args, "vendor"), _str(args, "kind"), count=count, stream=stream, code=code)
    elif action == "clear_faults":
        sim.clear_faults(args.get("vendor"))
    elif action == "quirk":
        sim.set_quirk(_str(args, "name"), args.get("value"))
    elif action == "configure":
        for name in ("slow_seconds", "hang_seconds", "retry_after_seconds"):
            if name in args:
                setattr(sim, name, _number(args, name))
    else:
        raise ValueError(
            "action is one of limits, reset, set_viewers, drop, end_stream, start_stream, remove_stream, "
            "add_streams, inject, clear_faults, quirk, configure, latency, pieces, network, seed"
        )
    return {}


def add_routes(app: web.Application, sim: Simulator) -> None:
    async def control(request: web.Request) -> web.Response:
        try:
            args = await request.json()
            if not isinstance(args, dict):
                raise ValueError("the body must be a JSON object")
            answer = apply(sim, args)
        except KeyError as exc:
            return web.json_response({"ok": False, "error": str(exc.args[0])}, status=404)
        except ValueError as exc:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        return web.json_response({"ok": True, **answer})

    async def requests(request: web.Request) -> web.Response:
        vendor = request.query.get("vendor") or None
        return web.json_response({"requests": sim.request_log(vendor)})

    async def state(request: web.Request) -> web.Response:
        now = sim.now()
        streams = {
            vendor: {
                key: {
                    "scenario": s.scenario,
                    "exists": s.exists(now),
                    "live": s.is_live(now),
                    "viewers": s.viewers(now),
                }
                for key, s in by_key.items()
            }
            for vendor, by_key in sim.streams.items()
        }
        network = {vendor: n.as_dict() for vendor, n in sim.network.items()}
        return web.json_response({"now": now, "started": sim.t0, "network": network, "streams": streams})

    app.router.add_post(CONTROL_PATH, control)
    app.router.add_get(REQUESTS_PATH, requests)
    app.router.add_get(STATE_PATH, state)
