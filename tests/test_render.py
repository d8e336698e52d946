"""The rendered message: headers, escaping, inlined CSS, a real text part."""

from __future__ import annotations

import email
import email.policy
from datetime import date, datetime

import pytest
from conftest import TEST_SECRET_KEY

from digest.email.entries import cut_abstract
from digest.email.render import Renderer, subject_for
from digest.errors import ConfigError
from digest.links import Links
from digest.models import Digest, Match, Paper, Profile, Reason, Subscriber
from digest.settings import Settings
from digest.tokens import Purpose, Signer
from digest.wiring import Services

ADA = Subscriber("ada@example.org", "Ada Lovelace", Profile(("speculative decoding", "RAG")))


def make_digest(*papers: Paper, sub: Subscriber = ADA, more: int = 0) -> Digest:
    matches = tuple(Match(p, 2, (Reason("speculative decoding", "title"),)) for p in papers)
    return Digest(sub, matches, date(2025, 11, 22), more=more)


def paper(title: str = "DySpec: Faster Speculative Decoding", **kw: object) -> Paper:
    return Paper(title, kw.pop("abstract", "We make decoding faster. " * 3), **kw)  # type: ignore[arg-type]


def render(d: Digest, **kw: object) -> email.message.EmailMessage:
    r = Renderer(sender="Paper Digest <digest@example.org>", **kw)  # type: ignore[arg-type]
    return r.render(d, datetime(2025, 11, 22, 7, 0))


def test_headers() -> None:
    msg = render(make_digest(paper(), paper("Another"), more=4))
    assert msg["From"] == "Paper Digest <digest@example.org>"
    assert msg["To"] == "Ada Lovelace <ada@example.org>"
    assert msg["Subject"] == "2 new papers on speculative decoding · Nov 22"
    assert msg["Date"] == "Sat, 22 Nov 2025 07:00:00 -0000"
    assert msg["Message-ID"].startswith("<digest.20251122.") and msg["Message-ID"].endswith("@example.org>")
    assert msg["List-Unsubscribe"] == "<mailto:digest@example.org?subject=unsubscribe%20ada%40example.org>"
    assert msg["List-Unsubscribe-Post"] is None
    assert msg["Auto-Submitted"] == "auto-generated"


def test_message_id_is_deterministic_and_unsubscribe_https_with_base_url() -> None:
    d = make_digest(paper())
    assert render(d)["Message-ID"] == render(d)["Message-ID"]
    assert render(d)["Message-ID"] != render(make_digest(paper("Other")))["Message-ID"]
    signer = Signer([TEST_SECRET_KEY])
    msg = render(d, links=Links(signer, "https://digest.example.org"))
    token = signer.make(Purpose.UNSUBSCRIBE, "ada@example.org")
    assert msg["List-Unsubscribe"].startswith(f"<https://digest.example.org/u/{token}>, <mailto:")
    unsigned = Services(Settings(base_url="https://digest.example.org", secret_key=None))
    with pytest.raises(ConfigError, match="DIGEST_SECRET_KEY"):
        _ = unsigned.renderer  # links that act for a reader are never unsigned
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_trending_subject() -> None:
    trending = Subscriber("g@example.org", "", Profile())
    d = Digest(trending, (Match(paper(), 0, ()),), date(2025, 11, 22))
    assert subject_for(d) == "Trending: 1 new paper · Nov 22"


def test_feed_text_is_escaped_never_executed() -> None:
    hostile = paper(
        '<script>alert(1)</script> {{ 7*7 }} <img src=x onerror="alert(2)">',
        abstract="<form action='https://evil.example'><input></form> {% raw %} & more",
        url="javascript:alert(3)",
    )
    msg = render(make_digest(hostile))
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html and "<img" not in html and "<form" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "{{ 7*7 }}" in html and "49" not in html
    assert "javascript:" not in html
    text = msg.get_body(("plain",)).get_content()
    assert "<script>alert(1)</script> {{ 7*7 }}" in text  # the text part shows it as written


def test_css_is_inlined_and_media_rules_kept() -> None:
    html = render(make_digest(paper())).get_body(("html",)).get_content()
    assert 'style="' in html
    assert "font-size:17px" in html.replace(" ", "")  # the .title rule, now on the element
    assert "@media (prefers-color-scheme: dark)" in html
    assert ".paper { padding" not in html  # the inlined rules are gone; only @media rules stay
    assert 'class="column" cellpadding="0" cellspacing="0" border="0" width="640"' in html  # for Outlook


def test_text_part_is_a_numbered_list_wrapped_at_72() -> None:
    p1 = paper(
        "DySpec: Faster Speculative Decoding with Dynamic Token Tree Structure",
        arxiv_id="2410.11744",
        abstract="While speculative decoding has recently appeared as a promising direction " * 4,
    )
    text = render(make_digest(p1, paper("Second"))).get_body(("plain",)).get_content()
    assert "\n1. DySpec" in text and "\n2. Second" in text
    assert "https://arxiv.org/abs/2410.11744" in text and "PDF: https://arxiv.org/pdf/2410.11744" in text
    for line in text.splitlines():
        assert len(line) <= 72 or line.strip().startswith(("http", "PDF:", "Hugging Face:")), line


def test_message_parses_back_to_the_same_text() -> None:
    msg = render(make_digest(paper("Ünïcödé — φ-Decoding")))
    back = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert back["Subject"] == msg["Subject"]
    assert back.get_body(("plain",)).get_content() == msg.get_body(("plain",)).get_content()
    assert back.get_body(("html",)).get_content() == msg.get_body(("html",)).get_content()
    assert "Ünïcödé — φ-Decoding" in back.get_body(("plain",)).get_content()


def test_cut_abstract_at_a_sentence() -> None:
    text = ("This is one sentence that runs for a while. " * 20).strip()
    cut, was_cut = cut_abstract(text, 600)
    assert was_cut and cut.endswith(".") and 300 <= len(cut) <= 600
    assert cut_abstract("short", 600) == ("short", False)
    cut, _ = cut_abstract("word " * 200, 600)
    assert cut.endswith("…") and len(cut) <= 601
