"""GCRA twice: as one atomic Redis Lua script, and as its in-process twin for when Redis is away.

The generic cell rate algorithm keeps, per key, one number: the theoretical arrival time (TAT) of the
next request at the sustained rate. For a policy of N requests per W seconds, with the emission interval
T = ceil(W/N) µs and the burst span B = N×T (W rounded up to a multiple of N µs), a request at `now`:

    tat = max(stored TAT, now)
    admit  iff  tat + T - now <= B        then store tat + T, expiring when it is in the past
    remaining = floor((B - (TAT - now)) / T),   reset = TAT - now  (until all N are back)

Both implementations take the same `(keys, args)` and return the same list, so one test drives both:
    args   = [now in µs, or "" for the implementation's own clock, T1, B1, T2, B2, ...] (one pair per key)
             and, optionally, last, `want`: up to how many requests to admit at once (a share, ratelimit.py)
    result = [wait µs (0: admitted), remaining1, reset1 µs, remaining2, reset2 µs, ...]
             and, when `want` was given, `granted`: how many were admitted (0 when refused)
A request is admitted only when every key admits it, and then every key is charged; a refused request
charges nothing. With `want`, as many as every key still admits are charged, up to `want`, at least one. All numbers are whole microseconds, exact in Lua's doubles below 2^53 (config.parse_rate
keeps them there).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence

# Redis's clock (TIME), not each API process's, so that instances with skewed clocks share one timeline.
# Numbers are written as plain integers (%.0f), never left to the server's float formatting: PX accepts
# nothing else.
LUA = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local n = #KEYS
local tats = {}
local wait = 0
for i = 1, n do
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  tats[i] = tat
  local over = tat + tonumber(ARGV[2 * i]) - now - tonumber(ARGV[2 * i + 1])
  if over > wait then wait = over end
end
local want = tonumber(ARGV[2 * n + 2])
local granted = 0
if wait == 0 then
  granted = want or 1
  for i = 1, n do
    local fit = math.floor((tonumber(ARGV[2 * i + 1]) - (tats[i] - now)) / tonumber(ARGV[2 * i]))
    if fit < granted then granted = fit end
  end
end
local out = {wait}
for i = 1, n do
  local interval, span = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local tat = tats[i]
  if wait == 0 then
    tat = tat + granted * interval
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', string.format('%.0f', math.ceil((tat - now) / 1000)))
  end
  out[2 * i] = math.floor((span - (tat - now)) / interval)
  out[2 * i + 1] = tat - now
end
if want then out[2 * n + 2] = granted end
return out
"""


class LocalGcra:
    """The script's twin over a bounded in-process table: at most `size` keys, least recently charged
    dropped first (a dropped client starts afresh, which errs towards admitting)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._tats: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tats)

    def __call__(self, keys: Sequence[str], args: Sequence) -> list[int]:
        now = int(args[0]) if args[0] != "" else time.monotonic_ns() // 1000
        n = len(keys)
        want = int(args[2 * n + 1]) if len(args) > 2 * n + 1 else None
        tats, wait = [], 0
        for i, key in enumerate(keys):
            tat = max(self._tats.get(key, now), now)
            tats.append(tat)
            wait = max(wait, tat + int(args[2 * i + 1]) - now - int(args[2 * i + 2]))
        granted = 0
        if wait == 0:
            granted = min([want or 1] + [(int(args[2 * i + 2]) - (tats[i] - now)) // int(args[2 * i + 1])
                                         for i in range(n)])
        out = [wait]
        for i, key in enumerate(keys):
            interval, span, tat = int(args[2 * i + 1]), int(args[2 * i + 2]), tats[i]
            if wait == 0:
                tat += granted * interval
                self._tats[key] = tat
                self._tats.move_to_end(key)
            out += [(span - (tat - now)) // interval, tat - now]
        while len(self._tats) > self.size:
            self._tats.popitem(last=False)
        return out + ([granted] if want is not None else [])
