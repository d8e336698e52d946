"""The most papers of each section of a digest (``Profile.sections``), applied over a ranking: a section at
its cap gives its room to the next best papers of the others. Pure; ``index.PaperIndex.ranked`` applies it
to each paper's section as its scores say (a followed author, a keyword, meaning, else trending).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

LOOK_MAX = 1_000  # how far down the ranking other sections' papers may come from
Caps = tuple[int | None, ...]  # the most papers of each section of ``models.SECTIONS`` (None: no cap)


def fill(sections: npt.NDArray[np.int8], caps: Caps, limit: int) -> tuple[list[int], list[int]]:
    """The positions of the best ``limit`` papers (``sections``: each one's section, best first) with at
    most each section's cap, and the positions of the others, in order.

    >>> fill(np.array([1, 1, 1, 2, 1], np.int8), (None, 2, None, None), 3)
    ([0, 1, 3], [2, 4])
    """
    keep: list[int] = []
    left: list[int] = []
    counts = [0] * len(caps)
    for i, section in enumerate(sections.tolist()):
        cap = caps[section]
        if len(keep) < limit and (cap is None or counts[section] < cap):
            keep.append(i)
            counts[section] += 1
        else:
            left.append(i)
    return keep, left
