"""Installed packages' additions to digest: the entry points of a group, read once per process.

Reading entry points walks every installed distribution's metadata (milliseconds each time); a run looks a
listing kind up for every file it parses, so the walk is done at the first lookup and kept.
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points
from typing import Any


@functools.cache
def _installed(group: str) -> tuple[EntryPoint, ...]:
    return tuple(entry_points(group=group))


def add_installed(group: str, known: dict[str, Any]) -> dict[str, Any]:
    """``known`` with every installed entry point of ``group`` it lacks loaded into it (digest's own and
    registered names win).

    >>> add_installed("digest.no-such-group", {"a": 1})
    {'a': 1}
    """
    for entry in _installed(group):
        if entry.name not in known:
            known[entry.name] = entry.load()
    return known
