"""The values that flow through a run: frozen dataclasses, no I/O.

Papers come out of ``sources``, are kept by ``store``, picked by ``selection`` into ``Match``es, grouped
into a ``Digest`` per subscriber by ``run.planning``, composed and sent by a channel (``run.channel``; the
email channel renders with ``email.render``); every step adds to a ``RunReport`` (``reports``).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any, Literal

from digest.identity import mailbox_key

Where = Literal["title", "abstract"]
# Why a paper was chosen without a keyword: like a paper the reader named or liked, or close to their words.
Likeness = Literal["similar", "about"]
# A reason naming a followed author (as the paper writes them) or a category, or a paper added for its
# upvotes among those in the reader's area ("trending").
By = Literal["author", "category", "trending"]


class Status(StrEnum):
    """A subscriber's outcome in one run, as the report prints it."""

    SENT = "sent"
    NOTHING_NEW = "nothing-new"
    WAITING = "waiting"  # between the reader's periods: before their hour, or a day their cadence skips
    RETRY_LATER = "retry-later"  # not accepted this run (4xx, timeout, dropped connection); retried next run
    BOUNCED = "bounced"  # marked bouncing after repeated permanent refusals; skipped until resumed
    FAILED = "failed"  # refused permanently this time, or could not be built
    DRY_RUN = "dry-run"


class MessageState(StrEnum):
    """An outbox row's state, as the ``messages.status`` column holds it.

    ``sending`` is committed before the send; ``sent`` on acceptance (only then are its papers recorded);
    ``retry`` after a transient failure; ``failed`` after a permanent one; ``expired`` when a retry was
    overtaken by a newer day's digest.
    """

    SENDING = "sending"
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    EXPIRED = "expired"


DEFAULT_MAX_PAPERS = 20
# A digest's parts, in the order an email shows them: papers by authors the reader follows, matching their
# keywords, like their papers or description, and trending (chosen by upvotes). See ``selection.sections``.
SECTIONS = ("authors", "keywords", "similar", "trending")
# The section (its index in ``SECTIONS``) a reason puts a paper in, the first that applies; a paper with
# none of these reasons (trending, or a category alone) is in the last.
SECTION_OF: dict[str, int] = {"author": 0, "title": 1, "abstract": 1, "similar": 2, "about": 2}
MAX_PAPERS = 1_000  # papers per email, at most (``profiles`` checks it)
SEARCH_TITLE = 200  # characters of a title an arXiv title search link carries

_NON_WORD = re.compile(r"[\W_]+")
_ARXIV_ID = re.compile(r"(?<![\w.])(\d{4}\.\d{4,5}|[a-z-]+(?:\.[A-Z]{2})?/\d{7})(?:v(\d+))?(?![\w.])")


@functools.lru_cache(maxsize=1 << 16)
def normalise_title(title: str) -> str:
    """Fold a title to the key that finds the same paper under another spelling.

    Unicode compatibility forms, case, whitespace and punctuation are folded:

    >>> normalise_title("  Test-Time  Scaling: A SURVEY! ")
    'test time scaling a survey'
    >>> normalise_title("φ-Decoding")
    'φ decoding'
    """
    folded = unicodedata.normalize("NFKC", title).casefold()
    return _NON_WORD.sub(" ", folded).strip()


def in_category(categories: tuple[str, ...], pattern: str) -> str | None:
    """The first of a paper's ``categories`` that ``pattern`` ("cs.CL", or "cs.*" for a whole archive)
    names, compared without case; None if none.

    >>> in_category(("stat.ML", "cs.LG"), "cs.*"), in_category(("cs.CL",), "cs.cl"), in_category((), "cs.*")
    ('cs.LG', 'cs.CL', None)
    """
    want = pattern.casefold()
    if want.endswith(".*"):
        archive = want[:-2]
        return next((c for c in categories if c.casefold().split(".")[0] == archive), None)
    return next((c for c in categories if c.casefold() == want), None)


def arxiv_id_from(text: str) -> str | None:
    """The version-less arXiv id in a link, guid or bare id, if there is one.

    >>> arxiv_id_from("http://arxiv.org/abs/2411.04330v2")
    '2411.04330'
    >>> arxiv_id_from("oai:arXiv.org:hep-th/9901001v1")
    'hep-th/9901001'
    >>> arxiv_id_from("https://example.org/paper") is None
    True
    """
    m = _ARXIV_ID.search(text)
    return m.group(1) if m else None


def arxiv_version_from(text: str) -> int | None:
    """The arXiv version a link, guid or id names, if it names one.

    >>> arxiv_version_from("oai:arXiv.org:2411.04330v3"), arxiv_version_from("2411.04330")
    (3, None)
    """
    m = _ARXIV_ID.search(text)
    return int(m.group(2)) if m and m.group(2) and len(m.group(2)) < 4 else None


@dataclass(frozen=True, slots=True)
class Validators:
    """What a URL source's server said last time (ETag, Last-Modified), for a conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class Paper:
    """One paper as a listing shows it. ``key`` identifies it across listings and runs."""

    title: str
    abstract: str
    arxiv_id: str | None = None
    authors: tuple[str, ...] = ()
    org: str | None = None
    author_count: int | None = None
    published: date | None = None
    upvotes: int | None = None
    url: str | None = None
    source: str = ""
    # The store's row id once stored; not part of the paper's identity.
    ref: int | None = field(default=None, compare=False)
    # arXiv categories, the primary first, then cross-lists ("cs.CL", "cs.LG"); () when the listing gives none.
    categories: tuple[str, ...] = field(default=(), compare=False)
    # The abstract's sentence that says what the paper found (``selection.finding``), kept with the paper.
    finding: str = field(default="", compare=False)
    # The arXiv version the listing shows (None: not given), and whether the listing announced it as a
    # new version of a paper it listed before (arXiv's "replace"): a revision, never a new paper.
    version: int | None = field(default=None, compare=False)
    revision: bool = field(default=False, compare=False)
    # One-sentence TL;DRs by a language model, where the operator set one up: (language key, text) pairs.
    tldrs: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def tldr(self, language: str) -> str:
        """The TL;DR in ``language`` (compared without case), or "".

        >>> Paper("T", "A", tldrs=(("german", "Kurz."),)).tldr("German")
        'Kurz.'
        """
        key = language.casefold()
        return next((text for lang, text in self.tldrs if lang == key), "")

    def __hash__(self) -> int:
        # Consistent with equality (equal papers have equal ids and titles) and cheap: a run hashes papers
        # hundreds of thousands of times as cache keys, and the generated hash walks every field.
        return hash((self.arxiv_id, self.title))

    @property
    def title_key(self) -> str:
        return normalise_title(self.title)

    @property
    def key(self) -> str:
        """The arXiv id without version where known, else ``title:`` and the normalised title."""
        return self.arxiv_id or f"title:{self.title_key}"

    @property
    def page_url(self) -> str:
        """Where the title links: the given page, the arXiv abstract, or an arXiv title search."""
        if self.url:
            return self.url
        if self.arxiv_id:
            return f"https://arxiv.org/abs/{self.arxiv_id}"
        from urllib.parse import quote_plus

        # The first words are enough to find a title, and keep the link short whatever the listing says.
        return f"https://arxiv.org/search/?searchtype=title&query={quote_plus(self.title[:SEARCH_TITLE])}"

    @property
    def pdf_url(self) -> str | None:
        return f"https://arxiv.org/pdf/{self.arxiv_id}" if self.arxiv_id else None

    @property
    def hf_url(self) -> str | None:
        return f"https://huggingface.co/papers/{self.arxiv_id}" if self.arxiv_id else None

    @property
    def byline(self) -> str | None:
        """Authors, else org, else an author count: the meta line's first part."""
        if self.authors:
            shown = ", ".join(self.authors[:3])
            return shown + (f" and {len(self.authors) - 3} more" if len(self.authors) > 3 else "")
        if self.org:
            return self.org
        if self.author_count:
            return f"{self.author_count} author{'s' if self.author_count != 1 else ''}"
        return None


@dataclass(frozen=True, slots=True)
class Profile:
    """What a subscriber wants: keywords (any may match), exclusions (any drops the paper), a cap; and by
    meaning, ``about`` (their field in a sentence or two) and ``seeds`` (papers like theirs: arXiv ids or
    exact titles), with which papers that say none of the keywords can still be chosen."""

    keywords: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_papers: int = DEFAULT_MAX_PAPERS
    about: str = ""
    seeds: tuple[str, ...] = ()
    # When (see ``cadence``): an IANA zone, a local "HH:MM", and "daily", "weekdays" or "weekly:<day>";
    # empty follows the operator's settings.
    timezone: str = ""
    send_at: str = ""
    cadence: str = ""
    authors: tuple[str, ...] = ()  # people whose papers they want ("Yann LeCun", "Y. LeCun"; see ``authors``)
    # arXiv categories ("cs.CL", "cs.*"): ``categories`` narrows the papers to those in one of them (a
    # paper whose categories are not known stays in), ``exclude_categories`` drops those in one of them.
    categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    updates: bool = (
        True  # papers they were sent and that have a new version since: "Updated since you saw it"
    )
    # The most papers of a section (``SECTIONS``) in one email, where the reader set one: (("keywords", 5),).
    sections: tuple[tuple[str, int], ...] = ()
    upvotes: float = 0.0  # how much community signal (upvotes) counts in the ranking: 0 (not at all) to 1
    language: str = ""  # the language of their TL;DRs ("German"); "": the operator's (``[summaries]``)

    def cap(self, section: str) -> int | None:
        """The most papers of ``section`` in one email, if the reader set a limit.

        >>> Profile(sections=(("keywords", 5),)).cap("keywords"), Profile().cap("keywords")
        (5, None)
        """
        return next((n for name, n in self.sections if name == section), None)

    @property
    def trending(self) -> bool:
        """No keywords, authors, description or seed papers: the subscriber gets the top new papers by upvotes."""
        return not (self.keywords or self.about or self.seeds or self.authors)

    @property
    def topics(self) -> tuple[str, ...]:
        """What the reader follows, for the email's lines: the keywords, else the authors, else "your
        description"."""
        if self.keywords or self.authors:
            return self.keywords + self.authors
        return ("your description",) if self.about else ("papers like yours",)


@dataclass(frozen=True, slots=True)
class Subscriber:
    email: str
    name: str = ""
    profile: Profile = field(default_factory=Profile)
    active: bool = True
    bouncing: bool = False
    bounce_reason: str | None = None  # why they are bouncing: the refusal, or the returned mail's subject
    paused_until: date | None = None  # no digest before this local date (a pause the reader set)

    def paused_on(self, today: date) -> bool:
        """Whether a pause the reader set still holds on their local date ``today``.

        >>> Subscriber("a@b.org", paused_until=date(2026, 12, 24)).paused_on(date(2026, 12, 23))
        True
        >>> Subscriber("a@b.org", paused_until=date(2026, 12, 24)).paused_on(date(2026, 12, 24))
        False
        """
        return self.paused_until is not None and today < self.paused_until

    @property
    def key(self) -> str:
        """The canonical key of their mailbox (``identity.mailbox_key``): what every lookup compares."""
        return mailbox_key(self.email)

    def to_json(self) -> dict[str, Any]:
        """As `digest subscribers --json`, the web app's data download and its API show a subscriber."""
        p = self.profile
        extra = {"bounce_reason": self.bounce_reason} if self.bouncing and self.bounce_reason else {}
        if self.paused_until is not None:
            extra["paused_until"] = self.paused_until.isoformat()
        return {
            "email": self.email,
            "name": self.name,
            "keywords": list(p.keywords),
            "exclude": list(p.exclude),
            "max_papers": p.max_papers,
            "about": p.about,
            "seeds": list(p.seeds),
            "authors": list(p.authors),
            "categories": list(p.categories),
            "exclude_categories": list(p.exclude_categories),
            "timezone": p.timezone,
            "send_at": p.send_at,
            "cadence": p.cadence,
            "updates": p.updates,
            "sections": dict(p.sections),
            "upvotes": p.upvotes,
            "language": p.language,
            "active": self.active,
            "bouncing": self.bouncing,
            **extra,
        }


@dataclass(frozen=True, slots=True)
class Reason:
    """One keyword that matched, and where (``title``, ``abstract``); or a likeness: ``similar`` to the
    paper titled ``keyword`` (a seed or a "more like this"), or close to the reader's ``about``, with the
    ``words`` the paper shares with it."""

    keyword: str
    where: Where | Likeness | By
    words: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """The reason as the reader reads it.

        >>> Reason("RAG", "title").text, Reason("Attention Is All You Need", "similar").text
        ('matched: RAG', 'similar to: Attention Is All You Need')
        >>> Reason("Yann LeCun", "author").text
        'by Yann LeCun'

        >>> Reason("", "about", ("lean", "theorem")).text
        'close to your description (shares: lean, theorem)'
        """
        shares = f" (shares: {', '.join(self.words)})" if self.words else ""
        if self.where == "author":
            return f"by {self.keyword}"
        if self.where == "category":
            return f"in {self.keyword}"
        if self.where == "trending":
            return "trending in your area"
        if self.where == "similar":
            return f"similar to: {self.keyword}{shares}"
        if self.where == "about":
            return f"close to your description{shares}"
        return f"matched: {self.keyword}"


@dataclass(frozen=True, slots=True)
class Match:
    paper: Paper
    score: float
    reasons: tuple[Reason, ...] = ()

    def why(self, trending: bool) -> list[str]:
        """The reasons as a reader reads them; a paper recalled without the ranking that chose it (a sent
        digest's page, the feed) and matching no keyword came by meaning, or for a ``trending`` reader as
        trending.

        >>> Match(Paper("T", "A"), 0).why(trending=False)
        ['chosen by meaning: close to your description or the papers you liked']
        """
        texts = [r.text for r in self.reasons]
        if texts:
            return texts
        return (
            ["trending today"]
            if trending
            else ["chosen by meaning: close to your description or the papers you liked"]
        )

    @property
    def by(self) -> tuple[str, ...]:
        """The followed authors of the paper, as it writes them (what the author line highlights)."""
        return tuple(r.keyword for r in self.reasons if r.where == "author")

    @property
    def matched(self) -> tuple[str, ...]:
        """The keywords that matched (what the email highlights)."""
        return tuple(r.keyword for r in self.reasons if r.where in ("title", "abstract"))

    @property
    def likeness(self) -> str:
        """Why a paper came besides its keywords: by a followed author ("by Yann LeCun"), and chosen by
        meaning ("similar to: …", "close to your description"); "" when only by keywords."""
        by = [r.text for r in self.reasons if r.where in ("author", "category", "trending")]
        meaning = next((r.text for r in self.reasons if r.where in ("similar", "about")), "")
        return " · ".join([*by, meaning] if meaning else by)


@dataclass(frozen=True, slots=True)
class Digest:
    """One email's content. ``more`` counts matches cut by the cap; they stay candidates. ``rest``: the
    store refs of the best of those, best first (its page of all matches lists them). ``updates``: papers
    the reader was sent before that have a new version since (``Paper.version``), told once per version.
    ``recalled``: rebuilt from an outbox row that kept no reasons (begun before they were kept), its reasons
    worked out again from keywords alone: its papers are shown in the order sent, without naming sections."""

    subscriber: Subscriber
    matches: tuple[Match, ...]
    day: date
    more: int = 0
    rest: tuple[int, ...] = ()
    updates: tuple[Paper, ...] = ()
    recalled: bool = False

    @property
    def papers(self) -> tuple[Paper, ...]:
        return tuple(m.paper for m in self.matches)

    def top_topics(self, limit: int = 3) -> list[str]:
        """Keywords by how many papers they matched: ``["RAG", "speculative decoding"]``."""
        counts: dict[str, int] = {}
        for m in self.matches:
            for kw in dict.fromkeys(m.matched):
                counts[kw] = counts.get(kw, 0) + 1
        order = {kw: i for i, kw in enumerate(self.subscriber.profile.keywords)}
        ranked = sorted(counts, key=lambda kw: (-counts[kw], order.get(kw, len(order))))
        return ranked[:limit]
