"""The sentence that says what a paper found: one for every seed paper, a sentence of its own abstract,
kept in the store when the paper is stored, and shown under the title in the email and on the pages."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from conftest import seed_papers

from digest.selection.finding import key_finding, sentences
from digest.store import Store


def test_every_seed_paper_has_a_key_sentence_of_its_own_abstract() -> None:
    papers = seed_papers()
    found = {p.key: key_finding(p.abstract) for p in papers}
    assert all(found.values()), [k for k, v in found.items() if not v]
    assert all(found[p.key] in sentences(p.abstract) or found[p.key].endswith("…") for p in papers)
    assert key_finding("") == ""
    assert key_finding(papers[0].abstract) == found[papers[0].key]  # deterministic


def test_the_key_sentence_is_kept_when_a_paper_is_stored(tmp_path: Path) -> None:
    papers = seed_papers()[:20]
    with Store.open(tmp_path / "s.sqlite3") as store:
        store.papers.ingest(papers, datetime(2025, 11, 22, tzinfo=UTC))
        stored = store.papers.recent(datetime(2000, 1, 1, tzinfo=UTC))
    assert {p.key: p.finding for p in stored} == {p.key: key_finding(p.abstract) for p in papers}


def test_the_email_shows_it_under_each_title() -> None:
    from digest.email.render import Renderer
    from digest.models import Digest, Match, Subscriber

    paper = next(p for p in seed_papers() if "nn-JIT.web" in p.abstract)
    digest = Digest(Subscriber("ada@example.org"), (Match(paper, 1),), datetime(2025, 11, 22).date())
    message = Renderer(sender="Digest <d@example.org>").render(digest, datetime(2025, 11, 22, 7, tzinfo=UTC))
    text = " ".join(message.get_body(("plain",)).get_content().split())
    html = message.get_body(("html",)).get_content()
    assert "Found: Results show that nn-JIT.web can achieve up to 8.2x faster" in text
    assert 'class="finding"' in html and "Results show that nn-JIT.web" in html
