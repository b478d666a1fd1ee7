"""Engines measured side by side: each engine in its own process (``worker``), alternating
rounds, ratios printed from one run (``runner``)."""
