"""wrk: Debian's HTTP load generator, driven by generated Lua scripts.

wrk runs one thread (``-t1``) with N connections, closed loop, bounded by ``-d`` and by a request
count (the script stops the thread at ``max_requests``). Its ``done`` hook prints one JSON line
with counts and client-side latency percentiles. If wrk is missing it is installed with
``apt-get install -y wrk`` (``apt-get update`` first when that fails); when that is impossible the
orchestrator falls back to the Python load generator.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from ._util import NAME, RV, split_body

_LUA_COMMON = r"""
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "jetkube-bench-wrk"
local max_requests = %(max_requests)d
local seen = 0
local function count()
  seen = seen + 1
  if seen >= max_requests then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests":%%d,"duration_us":%%d,"bytes":%%d,"err_connect":%%d,' ..
    '"err_read":%%d,"err_write":%%d,"err_status":%%d,"err_timeout":%%d,"p50_us":%%d,"p90_us":%%d,' ..
    '"p99_us":%%d,"p999_us":%%d,"max_us":%%d,"mean_us":%%f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""


def _lstr(b: bytes | str) -> str:
    s = b.decode() if isinstance(b, bytes) else b
    assert "]==]" not in s
    return "[==[" + s + "]==]"


def lua_body(parts: tuple[bytes, ...], slots: tuple[str, ...], exprs: dict[str, str]) -> tuple[str, str]:
    """(Lua expression of the body, declarations of its constant parts): the parts of
    :func:`bench._util.split_body` joined with the Lua expression of each slot."""
    decls = "".join(f"local p{i + 1} = {_lstr(p)}\n" for i, p in enumerate(parts))
    expr = "p1"
    for i, slot in enumerate(slots):
        expr += f" .. {exprs[slot]} .. p{i + 2}"
    return expr, decls


def lua_create(token: str, target: dict[str, Any], prefix: str, max_requests: int) -> str:
    parts, slots = split_body(target["create"])
    expr, decls = lua_body(parts, slots, {NAME: f'"{prefix}-" .. n'})
    return (_LUA_COMMON % {"token": token, "max_requests": max_requests}) + decls + f"""
local path = "{target['collection']}"
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", path, nil, {expr})
end
response = function(status, headers, body) count() end
"""


def lua_get(token: str, target: dict[str, Any], names_prefix: str, names_count: int, query: str,
            max_requests: int) -> str:
    q = ("?" + query) if query else ""
    return (_LUA_COMMON % {"token": token, "max_requests": max_requests}) + f"""
local base = "{target['collection']}/{names_prefix}"
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", base .. (n % {names_count}) .. "{q}")
end
response = function(status, headers, body) count() end
"""


def lua_raw(token: str, method: str, path: str, body: bytes, max_requests: int) -> str:
    return (_LUA_COMMON % {"token": token, "max_requests": max_requests}) + f"""
local body = {_lstr(body) if body else "nil"}
local req = nil
request = function()
  if req == nil then req = wrk.format("{method}", "{path}", nil, body) end  -- wrk.host is known by now
  return req
end
response = function(status, headers, body) count() end
"""


def lua_update(token: str, target: dict[str, Any], objects: list[list[Any]], max_requests: int) -> str:
    """PUT with resourceVersion. Objects wait in a free queue; an object goes back into it with
    the resourceVersion its answer carried, so no two requests in flight touch one object and no
    update is decided against a stale version (no conflicts by construction)."""
    parts, slots = split_body(target["update"])
    expr, decls = lua_body(parts, slots, {NAME: "nm", RV: "rvs[i]"})
    names = ",".join(f'"{n}"' for n, _ in objects)
    rvs = ",".join(str(int(rv)) for _, rv in objects)
    return (_LUA_COMMON % {"token": token, "max_requests": max_requests}) + decls + f"""
local path = "{target['collection']}/"
local names = {{{names}}}
local rvs = {{{rvs}}}
local index = {{}}
local free, head, tail = {{}}, 1, 0
for i, nm in ipairs(names) do index[nm] = i; tail = tail + 1; free[tail] = i end
local lost = 0
request = function()
  local i
  if head <= tail then
    i = free[head]; free[head] = nil; head = head + 1
  else
    i = 1  -- starved (should not happen with 4x more objects than connections): will conflict
  end
  local nm = names[i]
  return wrk.format("PUT", path .. nm, nil, {expr})
end
response = function(status, headers, body)
  count()
  local nm = string.match(body, '"name":"([^"]+)"')
  local i = nm and index[nm]
  if i == nil then lost = lost + 1; return end
  if status == 200 then
    rvs[i] = string.match(body, '"resourceVersion":"(%d+)"')
    tail = tail + 1; free[tail] = i
  elseif status == 429 then  -- refused before deciding: the version is unchanged
    tail = tail + 1; free[tail] = i
  end
end
"""


def ensure_wrk(log: Any) -> str | None:
    """The wrk binary, installing Debian's package when missing; None when it cannot be had."""
    found = shutil.which("wrk")
    if found:
        return found
    for cmd in (["apt-get", "install", "-y", "wrk"], ["apt-get", "update"], ["apt-get", "install", "-y", "wrk"]):
        log(f"wrk missing: running {' '.join(cmd)}")
        try:
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=240, check=False,
                           env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        except (OSError, subprocess.TimeoutExpired) as e:
            log(f"  failed: {e}")
            if cmd[1] == "update":
                continue
        found = shutil.which("wrk")
        if found:
            return found
    return None


def parse_output(text: str) -> dict[str, Any]:
    for line in text.splitlines():
        if line.startswith("BENCHJSON "):
            d: dict[str, Any] = json.loads(line[len("BENCHJSON "):])
            return d
    raise RuntimeError(f"wrk printed no result: {text[-500:]!r}")
