"""The simulated network: per-link faults decided by one seeded ``random.Random``.

A message handed to ``Network.send`` becomes zero, one or two deliveries (drop, duplicate)
at ``now + delay``; random delays reorder messages. Whether a link is cut is decided at
delivery time, so a partition also swallows messages already in flight.

Partitions are sets of blocked *directed* links, so they can be:

- symmetric: groups that cannot reach each other in either direction;
- asymmetric: one group hears the other but not vice versa;
- a bridge: two groups that cannot talk directly, and one node that talks to both.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass
class LinkQuality:
    drop: float = 0.0  # probability a message is lost
    duplicate: float = 0.0  # probability a message is delivered twice
    delay: tuple[int, int] = (1, 5)  # uniform delay, in simulated time units
    slow: float = 0.0  # probability of a long delay instead (strong reordering)
    slow_delay: tuple[int, int] = (20, 120)

    def describe(self) -> str:
        return (
            f"drop={self.drop:.2f} dup={self.duplicate:.2f} delay={self.delay} slow={self.slow:.2f}"
        )


CALM = LinkQuality()


class Network:
    def __init__(self, rng: random.Random, ids: Sequence[int]) -> None:
        self.rng = rng
        self.ids = tuple(ids)
        self.quality = CALM
        self.blocked: set[tuple[int, int]] = set()  # (src, dst) links that drop everything
        self.shape = "healed"

    # --- sending -------------------------------------------------------------------------

    def delays(self) -> list[int]:
        """Delivery delays for one message: [] if dropped, two entries if duplicated."""
        q = self.quality
        rng = self.rng
        if q.drop and rng.random() < q.drop:
            return []
        copies = 2 if q.duplicate and rng.random() < q.duplicate else 1
        out = []
        for _ in range(copies):
            lo, hi = q.slow_delay if q.slow and rng.random() < q.slow else q.delay
            out.append(rng.randint(lo, hi))
        return out

    def allows(self, src: int, dst: int) -> bool:
        return (src, dst) not in self.blocked

    # --- partitions ----------------------------------------------------------------------

    def heal(self) -> None:
        self.blocked.clear()
        self.shape = "healed"

    def _cut(self, a: Iterable[int], b: Iterable[int], *, both: bool = True) -> None:
        bs = list(b)
        for x in a:
            for y in bs:
                self.blocked.add((x, y))
                if both:
                    self.blocked.add((y, x))

    def split(self, groups: Sequence[Sequence[int]]) -> None:
        """Symmetric partition into ``groups``."""
        self.heal()
        for k, a in enumerate(groups):
            for b in groups[k + 1 :]:
                self._cut(a, b)
        self.shape = "split " + " | ".join(",".join(map(str, sorted(g))) for g in groups)

    def one_way(self, senders: Sequence[int], receivers: Sequence[int]) -> None:
        """Asymmetric partition: ``senders`` cannot reach ``receivers``; the reverse works."""
        self.heal()
        self._cut(senders, receivers, both=False)
        self.shape = (
            f"one-way {','.join(map(str, sorted(senders)))} -x-> "
            f"{','.join(map(str, sorted(receivers)))}"
        )

    def bridge(self, left: Sequence[int], bridge: int, right: Sequence[int]) -> None:
        """``left`` and ``right`` are cut from each other; ``bridge`` reaches both."""
        self.heal()
        self._cut(left, right)
        self.shape = (
            f"bridge {','.join(map(str, sorted(left)))} <-{bridge}-> "
            f"{','.join(map(str, sorted(right)))}"
        )

    def random_partition(self) -> None:
        """One partition of a random shape over all nodes."""
        rng = self.rng
        ids = list(self.ids)
        rng.shuffle(ids)
        kind = rng.choice(("split", "split", "isolate", "one_way", "bridge"))
        if kind == "isolate":
            self.split([ids[:1], ids[1:]])
        elif kind == "split":
            if len(ids) >= 5 and rng.random() < 0.3:
                a, b = sorted(rng.sample(range(1, len(ids)), 2))
                self.split([ids[:a], ids[a:b], ids[b:]])
            else:
                k = rng.randrange(1, len(ids))
                self.split([ids[:k], ids[k:]])
        elif kind == "one_way":
            k = rng.randrange(1, len(ids))
            self.one_way(ids[:k], ids[k:])
        else:
            k = rng.randrange(1, len(ids) - 1)
            self.bridge(ids[:k], ids[k], ids[k + 1 :])

    def random_quality(self) -> None:
        rng = self.rng
        self.quality = LinkQuality(
            drop=rng.choice((0.0, 0.0, 0.02, 0.1, 0.3)),
            duplicate=rng.choice((0.0, 0.0, 0.05, 0.2)),
            delay=rng.choice(((1, 3), (1, 8), (2, 20))),
            slow=rng.choice((0.0, 0.0, 0.02, 0.1)),
        )
