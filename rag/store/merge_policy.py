"""Which segments to merge: a tiered policy, like Lucene's TieredMergePolicy in spirit.

Segments are sorted into tiers by their live rows (tier 0 up to `floor` rows, then one tier per factor
of `per_tier`). A tier holding `per_tier` segments merges them into one, which lands a tier higher; so
each tier holds fewer than `per_tier` segments and their number grows with the logarithm of the corpus,
while a row is rewritten about once per tier it climbs. A segment more than half deleted is rewritten
on its own, so deleted rows do not pile up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class MergePolicy:
    per_tier: int = field(default=10, metadata={"help": "Segments of one tier that are merged into one."})
    floor: int = field(
        default=1000, metadata={"help": "Live rows up to which segments share the first tier."}
    )
    max_deleted: float = field(
        default=0.5, metadata={"help": "Deleted share that makes a segment be rewritten."}
    )

    def tier(self, live: int) -> int:
        return 0 if live <= self.floor else 1 + int(math.log(live / self.floor, self.per_tier))

    def plan(self, live: Sequence[int], rows: Sequence[int]) -> list[list[int]]:
        """Groups of segment positions to merge (each group into one new segment), given each segment's
        live and total rows. Positions in no group are kept as they are."""
        too_deleted = {
            i
            for i, (n, total) in enumerate(zip(live, rows, strict=True))
            if n < total * (1 - self.max_deleted)
        }
        # (live rows, original positions): a merged entry may fill the next tier in turn.
        pending = [(n, [i]) for i, n in enumerate(live)]
        while True:
            tiers: dict[int, list[int]] = {}
            for index, (n, _) in enumerate(pending):
                tiers.setdefault(self.tier(n), []).append(index)
            full = next((t for t in sorted(tiers) if len(tiers[t]) >= self.per_tier), None)
            if full is None:
                break
            members = set(sorted(tiers[full], key=lambda i: pending[i][0])[: self.per_tier])
            merged = (sum(pending[i][0] for i in members), sorted(p for i in members for p in pending[i][1]))
            pending = [entry for i, entry in enumerate(pending) if i not in members] + [merged]
        return sorted(
            positions for _, positions in pending if len(positions) > 1 or positions[0] in too_deleted
        )


@dataclass(frozen=True)
class MergeEverything(MergePolicy):
    """`ragtune ingest --compact`: every segment, and every deleted row, merged away into one segment."""

    def plan(self, live: Sequence[int], rows: Sequence[int]) -> list[list[int]]:
        if len(live) > 1 or any(n < total for n, total in zip(live, rows, strict=True)):
            return [list(range(len(live)))]
        return []
