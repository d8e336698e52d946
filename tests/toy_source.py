"""A listing kind digest does not ship, in one module: lines of "title | abstract", as a lab might keep its
own list of papers. The last line registers it; ``[[sources]] kind = "lines"`` then reads such files."""

from __future__ import annotations

from digest import sources
from digest.errors import ParseError
from digest.models import Paper
from digest.sources.listing import Listing


def parse(data: bytes, listing: Listing) -> tuple[list[Paper], int]:
    papers, skipped = [], 0
    for line in data.decode("utf-8").splitlines():
        title, sep, abstract = line.partition("|")
        if sep and title.strip():
            papers.append(Paper(title.strip(), abstract.strip(), source=listing.source))
        elif line.strip():
            skipped += 1
    if not papers:
        raise ParseError(listing.source, f"no line of 'title | abstract'{listing.where}")
    return papers, skipped


sources.register("lines", parse)
