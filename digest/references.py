"""Reference files in and out: saved papers as BibTeX and RIS, and a BibTeX, RIS or Zotero CSV export read
as seed papers.

Researchers keep their papers in a reference manager; this is the round trip. Maintained parsers do the
formats: bibtexparser (with its LaTeX decoding and encoding: ``{\\"u}`` reads as ``ü``, ``%`` writes as
``\\%``), rispy, and the standard library's csv for Zotero's export (its header names the columns). What
this module adds is how an entry becomes a seed: its arXiv id wherever the file keeps one (``eprint``,
a URL, an arXiv DOI, ``journal``/``note``/``Extra`` text such as "arXiv:2501.01234"), else its title.

Pure, and bounded: at most ``FILE_MAX`` bytes and ``ENTRIES_MAX`` entries are read.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from digest.errors import ReferenceFileError
from digest.models import Paper, arxiv_id_from

FILE_MAX = 1 << 20  # bytes of one reference file
ENTRIES_MAX = 5_000  # entries read from one file
_ARXIV_DOI = re.compile(r"10\.48550/arxiv\.(\S+)", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


@dataclass(slots=True)
class Recognised:
    """What a file gave: ``seeds`` (arXiv ids, else titles, in the file's order, each once), and the entries
    read and not (``missed``: a label for each entry with neither an id nor a title)."""

    seeds: list[str] = field(default_factory=list)
    by_id: int = 0
    by_title: int = 0
    missed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One sentence for the reader, e.g. "3 papers recognised (2 by arXiv id, 1 by title); 1 entry not".

        >>> Recognised(["2501.01234", "A title"], 1, 1, ["book:knuth"]).summary()
        '2 papers recognised (1 by arXiv id, 1 by title); not recognised: book:knuth'
        """
        found = len(self.seeds)
        text = f"{found} paper{'s' if found != 1 else ''} recognised ({self.by_id} by arXiv id, {self.by_title} by title)"
        if self.missed:
            shown = ", ".join(self.missed[:10]) + (
                f" and {len(self.missed) - 10} more" if len(self.missed) > 10 else ""
            )
            text += f"; not recognised: {shown}"
        return text


def arxiv_id_in(values: Iterable[str]) -> str | None:
    """The first arXiv id among a reference's fields (an arXiv DOI too).

    >>> arxiv_id_in(["Some journal", "10.48550/arXiv.2501.01234"])
    '2501.01234'
    >>> arxiv_id_in(["arXiv preprint arXiv:1706.03762"])
    '1706.03762'
    """
    for value in values:
        doi = _ARXIV_DOI.search(value)
        found = arxiv_id_from(doi.group(1) if doi else value)
        if found:
            return found
    return None


def recognise(entries: Iterable[tuple[str, str, list[str]]]) -> Recognised:
    """Seeds from (label, title, other fields' values) of each entry: its arXiv id, else its title."""
    out = Recognised()
    seen: set[str] = set()
    for label, title, values in entries:
        found = arxiv_id_in(values)
        title = _SPACES.sub(" ", title.replace("{", "").replace("}", "")).strip()
        seed = found or title[:500]
        if not seed:
            out.missed.append(label[:80] or "(an entry without a title)")
            continue
        if seed.casefold() in seen:
            continue
        seen.add(seed.casefold())
        out.seeds.append(seed)
        if found:
            out.by_id += 1
        else:
            out.by_title += 1
    return out


def read_references(data: bytes, filename: str = "") -> Recognised:
    """The seeds in a BibTeX, RIS or Zotero CSV file (told apart by ``filename``'s extension, else by its
    first characters); ReferenceFileError naming the problem for a file that is none of them."""
    if len(data) > FILE_MAX:
        raise ReferenceFileError(f"the file is larger than {FILE_MAX // 1024} KiB; export fewer items")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ReferenceFileError("the file is not UTF-8 text; export it as UTF-8") from None
    kind = _kind(filename, text)
    entries = {"bib": _bibtex, "ris": _ris, "csv": _zotero_csv}[kind](text)
    out = recognise(_bounded(entries))
    if not out.seeds and not out.missed:
        raise ReferenceFileError(f"no entry found in this {kind.upper()} file")
    return out


def _kind(filename: str, text: str) -> str:
    """ "bib", "ris" or "csv" (see ``read_references``)."""
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if ext in ("bib", "bibtex"):
        return "bib"
    if ext in ("ris", "csv"):
        return ext
    head = text.lstrip()[:200]
    if head.startswith("@") or re.search(r"^\s*@\w+\s*\{", text[:2000], re.M):
        return "bib"
    if re.match(r"TY {2}- ", head):
        return "ris"
    if "Title" in head.split("\n", 1)[0]:
        return "csv"
    raise ReferenceFileError("this is not a BibTeX, RIS or Zotero CSV export (.bib, .ris or .csv)")


def _bounded(entries: Iterator[tuple[str, str, list[str]]]) -> Iterator[tuple[str, str, list[str]]]:
    for i, entry in enumerate(entries):
        if i == ENTRIES_MAX:
            return
        yield entry


def _bibtex(text: str) -> Iterator[tuple[str, str, list[str]]]:
    import bibtexparser
    from bibtexparser.middlewares import LatexDecodingMiddleware

    logging.getLogger("bibtexparser").setLevel(logging.ERROR)  # a broken entry is reported, not logged
    library = bibtexparser.parse_string(text, append_middleware=[LatexDecodingMiddleware()])
    for entry in library.entries:
        fields = {k.lower(): str(f.value) for k, f in entry.fields_dict.items()}
        values = [
            fields.get(k, "") for k in ("eprint", "arxivid", "url", "doi", "journal", "note", "howpublished")
        ]
        yield f"{entry.entry_type}:{entry.key}", fields.get("title", ""), values
    for block in library.failed_blocks:
        raw = block.raw or ""
        yield f"unreadable: {_SPACES.sub(' ', raw).strip()[:40]}", "", []


def _ris(text: str) -> Iterator[tuple[str, str, list[str]]]:
    import rispy

    try:
        records = rispy.loads(text)
    except (OSError, ValueError) as exc:
        raise ReferenceFileError(f"this RIS file cannot be read: {exc}") from None
    for n, record in enumerate(records, 1):
        title = str(record.get("title") or record.get("primary_title") or "")
        values = [
            *(str(u) for u in record.get("urls", []) or []),
            str(record.get("doi") or ""),
            str(record.get("accession_number") or ""),
            *(str(v) for v in record.get("notes", []) or []),
            str(record.get("journal_name") or record.get("secondary_title") or ""),
        ]
        yield f"entry {n}", title, values


def _zotero_csv(text: str) -> Iterator[tuple[str, str, list[str]]]:
    try:
        rows = csv.DictReader(io.StringIO(text))
        if not rows.fieldnames or "Title" not in rows.fieldnames:
            raise ReferenceFileError("this CSV file has no Title column; export from Zotero as CSV")
        for n, row in enumerate(rows, 2):
            values = [
                row.get(k) or "" for k in ("Url", "DOI", "Extra", "Publication Title", "Archive Location")
            ]
            yield f"line {n}", row.get("Title") or "", values
    except csv.Error as exc:
        raise ReferenceFileError(f"this CSV file cannot be read: {exc}") from None


# -- out ---------------------------------------------------------------------------------------------


def _cite_key(paper: Paper, taken: set[str]) -> str:
    """``arxiv:2501.01234``, else a key from the title, unique within one file.

    >>> _cite_key(Paper("Fast RAG at scale", ""), set())
    'fastragatscale'
    """
    base = (
        f"arxiv:{paper.arxiv_id}"
        if paper.arxiv_id
        else re.sub(r"[^a-z0-9]", "", paper.title.lower())[:40] or "paper"
    )
    key, n = base, 1
    while key in taken:
        n += 1
        key = f"{base}-{n}"
    taken.add(key)
    return key


def _bib_name(author: str) -> str:
    """ "Yann LeCun" as BibTeX wants a name it should not guess at: "LeCun, Yann".

    >>> _bib_name("Yann LeCun"), _bib_name("Müller, Ana"), _bib_name("OpenAI")
    ('LeCun, Yann', 'Müller, Ana', 'OpenAI')
    """
    author = _SPACES.sub(" ", author).strip()
    if "," in author or " " not in author:
        return author
    first, _, last = author.rpartition(" ")
    return f"{last}, {first}"


def to_bibtex(papers: Sequence[Paper]) -> str:
    """Saved papers as BibTeX ``@misc`` entries (arXiv's own form: eprint, archivePrefix, url), LaTeX-encoded."""
    import bibtexparser
    from bibtexparser.middlewares import LatexEncodingMiddleware
    from bibtexparser.model import Entry, Field

    library = bibtexparser.Library()
    taken: set[str] = set()
    for p in papers:
        fields = [Field("title", p.title)]
        if p.authors:
            fields.append(Field("author", " and ".join(_bib_name(a) for a in p.authors)))
        if p.published:
            fields.append(Field("year", str(p.published.year)))
        if p.arxiv_id:
            fields += [Field("eprint", p.arxiv_id), Field("archivePrefix", "arXiv")]
        fields.append(Field("url", p.page_url))
        library.add(Entry("misc", _cite_key(p, taken), fields))
    return str(bibtexparser.write_string(library, prepend_middleware=[LatexEncodingMiddleware()]))


def to_ris(papers: Sequence[Paper]) -> str:
    """Saved papers as RIS records (``UNPB``: a preprint), with the arXiv id as the accession number."""
    import rispy

    records = []
    for p in papers:
        record: dict[str, object] = {"type_of_reference": "UNPB", "title": p.title, "urls": [p.page_url]}
        if p.authors:
            record["authors"] = [_bib_name(a) for a in p.authors]
        if p.published:
            record["year"] = str(p.published.year)
        if p.arxiv_id:
            record["accession_number"] = f"arXiv:{p.arxiv_id}"
        records.append(record)
    return str(rispy.dumps(records))
