"""A token bucket per key (an origin): the one rate limiter of the agent's routes,
pairing codes and PIN/PUK-presenting calls."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    """`per_minute` requests per key, in bursts up to `burst` (default: a tenth of the
    minute's allowance, at least 10)."""

    per_minute: float
    burst: float | None = None
    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def capacity(self) -> float:
        return self.burst if self.burst is not None else max(10.0, self.per_minute / 10)

    def take(self, key: str) -> float:
        """Spend one request of `key`: 0 when allowed, else the seconds until one is."""
        now = time.monotonic()
        rate = self.per_minute / 60
        tokens, last = self.buckets.get(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * rate)
        if tokens < 1:
            self.buckets[key] = (tokens, now)
            return (1 - tokens) / rate
        self.buckets[key] = (tokens - 1, now)
        return 0.0

    def allow(self, key: str) -> bool:
        return self.take(key) == 0.0
