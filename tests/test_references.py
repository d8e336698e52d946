"""Reference files in and out (``digest.references``) on exports shaped as Zotero writes them: which entries
become seed papers and why, and saved papers written as BibTeX and RIS that read back the same."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import bibtexparser
import pytest
import rispy
from bibtexparser.middlewares import LatexDecodingMiddleware

from digest.errors import ReferenceFileError
from digest.models import Paper
from digest.references import FILE_MAX, read_references, to_bibtex, to_ris

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "references"
ATTENTION = "1706.03762"


@pytest.mark.parametrize(
    ("name", "titles", "missed"),
    [
        (
            "zotero.bib",
            [
                "Functional Bayesian Tucker Decomposition for Continuous-indexed Tensor Data",
                "Reasoning with Reinforced Functional Token Tuning",
            ],
            ["book:knuth_art_1997", "unreadable: @misc{broken_2025, title = {An entry tha"],
        ),
        (
            "zotero.ris",
            ["Learning dynamic representations of the functional connectome in neurobiological networks"],
            ["entry 3"],
        ),
        (
            "zotero.csv",
            ["Mixture of Tunable Experts -- Behavior Modification of DeepSeek-R1 at Inference Time"],
            ["line 4"],
        ),
    ],
)
def test_an_export_gives_arxiv_ids_else_titles_and_names_what_it_could_not_read(
    name: str, titles: list[str], missed: list[str]
) -> None:
    found = read_references((FIXTURES / name).read_bytes(), name)
    assert found.seeds == [ATTENTION, *titles]  # the arXiv id wins over the title, from a URL, DOI or note
    assert (found.by_id, found.by_title, found.missed) == (1, len(titles), missed)
    again = read_references((FIXTURES / name).read_bytes())  # no file name: told apart by its content
    assert again.seeds == found.seeds


def test_files_that_are_no_reference_export_are_refused_with_the_reason() -> None:
    with pytest.raises(ReferenceFileError, match="not a BibTeX, RIS or Zotero CSV"):
        read_references(b"just some words\nand more", "notes.txt")
    with pytest.raises(ReferenceFileError, match="not UTF-8"):
        read_references(b"@misc{a, title={\xff}}", "a.bib")
    with pytest.raises(ReferenceFileError, match="larger than"):
        read_references(b"@" * (FILE_MAX + 1), "a.bib")
    with pytest.raises(ReferenceFileError, match="no Title column"):
        read_references(b"Key,Author\nA,B\n", "a.csv")
    with pytest.raises(ReferenceFileError, match="no entry"):
        read_references(b"% nothing here\n", "a.bib")


HOSTILE = Paper(
    "Über 50% of {braces} & #1 a_b ~ $x$",
    "abstract",
    arxiv_id="2501.01234",
    authors=("Yann LeCun", "Müller, Ana", "OpenAI"),
    published=date(2025, 1, 3),
)
PLAIN = Paper("Fast RAG at scale", "abstract", url="https://example.org/rag")


def test_saved_papers_as_bibtex_read_back_the_same_and_as_arxiv_cites_them() -> None:
    text = to_bibtex([HOSTILE, PLAIN, PLAIN])
    library = bibtexparser.parse_string(text, append_middleware=[LatexDecodingMiddleware()])
    assert not library.failed_blocks
    first, second, third = library.entries
    fields = {k: v.value for k, v in first.fields_dict.items()}
    assert fields["title"] == HOSTILE.title
    assert fields["author"] == "LeCun, Yann and Müller, Ana and OpenAI"
    assert (fields["eprint"], fields["archivePrefix"], fields["year"]) == ("2501.01234", "arXiv", "2025")
    assert fields["url"] == "https://arxiv.org/abs/2501.01234"
    assert len({first.key, second.key, third.key}) == 3  # keys unique within the file
    assert read_references(text.encode(), "saved.bib").seeds == ["2501.01234", "Fast RAG at scale"]


def test_saved_papers_as_ris_read_back_the_same() -> None:
    records = rispy.loads(to_ris([HOSTILE, PLAIN]))
    assert [r["title"] for r in records] == [HOSTILE.title, PLAIN.title]
    assert records[0]["authors"] == ["LeCun, Yann", "Müller, Ana", "OpenAI"]
    assert records[0]["accession_number"] == "arXiv:2501.01234" and records[0]["year"] == "2025"
    assert records[1]["urls"] == ["https://example.org/rag"] and records[0]["type_of_reference"] == "UNPB"
