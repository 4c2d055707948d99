"""nbo: a next-best-offer engine built on contextual bandits."""

from __future__ import annotations

__version__ = "0.1.0"
