"""GCRA twice: as one atomic Redis Lua script, and as its in-process twin for when Redis is away.

The generic cell rate algorithm keeps, per key, one number: the theoretical arrival time (TAT) of the
next request at the sustained rate. For a policy of N requests per W seconds, with the emission interval
T = ceil(W/N) µs and the burst span B = N×T (W rounded up to a multiple of N µs), a request at `now`:

    tat = max(stored TAT, now)
    admit  iff  tat + T - now <= B        then store tat + T, expiring when it is in the past
    remaining = floor((B - (TAT - now)) / T),   reset = TAT - now  (until all N are back)

Both implementations take the same `(keys, args)` and return the same list, so one test drives both:
    args   = [now in µs, or "" for the implementation's own clock, T1, B1, T2, B2, ...] (one pair per key)
    result = [wait µs (0: admitted), remaining1, reset1 µs, remaining2, reset2 µs, ...]
A request is admitted only when every key admits it, and then every key is charged; a refused request
charges nothing. All numbers are whole microseconds, exact in Lua's doubles below 2^53 (config.parse_rate
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
local out = {wait}
for i = 1, n do
  local interval, span = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local tat = tats[i]
  if wait == 0 then
    tat = tat + interval
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', string.format('%.0f', math.ceil((tat - now) / 1000)))
  end
  out[2 * i] = math.floor((span - (tat - now)) / interval)
  out[2 * i + 1] = tat - now
end
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
        tats, wait = [], 0
        for i, key in enumerate(keys):
            tat = max(self._tats.get(key, now), now)
            tats.append(tat)
            wait = max(wait, tat + int(args[2 * i + 1]) - now - int(args[2 * i + 2]))
        out = [wait]
        for i, key in enumerate(keys):
            interval, span, tat = int(args[2 * i + 1]), int(args[2 * i + 2]), tats[i]
            if wait == 0:
                tat += interval
                self._tats[key] = tat
                self._tats.move_to_end(key)
            out += [(span - (tat - now)) // interval, tat - now]
        while len(self._tats) > self.size:
            self._tats.popitem(last=False)
        return out
