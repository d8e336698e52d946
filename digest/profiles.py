"""The one reader profile that comes in from outside, with its one set of limits and messages.

Every way a profile arrives builds a ``ProfileInput`` and nothing else: the config's ``[[subscribers]]``
(checked when the config loads), ``digest subscribe``, the sign-up and manage forms (``from_form``), the
API's JSON, and a confirmation link's data. So a limit is the same everywhere (papers per email: 1 to
1,000), text is normalised the same way (a description and a name have their whitespace collapsed; a
name is cut at ``NAME_MAX``; a form's typed lists are split and their blank lines dropped, while a blank
keyword given on its own is a mistake), and a mistake reads the same wherever it is made ("subscriber
ada@example.org, keyword '***': the keyword has no letters or digits").

Values are taken as they are given, never guessed at: a number must be a number, a list a list
(``"active": "false"`` in JSON or ``max_papers = true`` in TOML is refused, not read as something else).

``check_profile`` states the same rules for a ``Profile`` already stored (one stored before a rule existed
fails only its own reader at a run).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator

from digest.authors import followable
from digest.cadence import normalise_schedule
from digest.errors import KeywordError, ProfileError
from digest.keywords import compile_keyword
from digest.models import DEFAULT_MAX_PAPERS, MAX_PAPERS, SECTIONS, Profile

PROFILE_MAX = 100  # keywords, and exclusions, in one profile
ABOUT_MAX = 2_000  # characters in a profile's description
SEEDS_MAX = 50  # seed papers in one profile
AUTHORS_MAX = 50  # followed authors in one profile
CATEGORIES_MAX = 50  # arXiv categories in one profile's list
CATEGORY = re.compile(r"[a-z][a-z-]{0,15}(\.([A-Za-z-]{1,15}|\*))?")  # "cs.CL", "hep-th", "cs.*"
SEED_MAX = 500  # characters in one seed (an arXiv id, or a title)
LANGUAGE = re.compile(r"[^\W\d_]+(?:[ -][^\W\d_]+){0,3}")  # "German", "Brazilian Portuguese", "中文"
NAME_MAX = 100  # characters of a reader's name

# What a field of the wrong kind is told (pydantic's own words name types, not what to write).
_KIND = {
    "keywords": "keywords, exclude and seeds must be lists of strings",
    "exclude": "keywords, exclude and seeds must be lists of strings",
    "seeds": "keywords, exclude and seeds must be lists of strings",
    "authors": "authors must be a list of names",
    "categories": "categories must be a list of arXiv categories",
    "exclude_categories": "categories must be a list of arXiv categories",
    "max_papers": f"max_papers must be a number from 1 to {MAX_PAPERS:,} (papers per email)",
    "updates": "updates must be true or false",
    "sections": f"sections must map a section ({', '.join(SECTIONS)}) to the most papers it shows",
    "upvotes": "upvotes must be a number from 0 (upvotes do not count) to 1",
}


class ProfileProblem(ValueError):
    """A rule a profile breaks, and the keyword (or seed, or "about") it is about."""

    def __init__(self, why: str, keyword: str | None = None, field: str | None = None) -> None:
        super().__init__(f"keyword {keyword!r}: {why}" if keyword is not None else why)
        self.why, self.keyword, self.field = why, keyword, field


class ProfileInput(BaseModel):
    """A reader's profile as it comes in, checked and normalised (see the module's docstring).

    >>> p = ProfileInput(keywords=["RAG"], about="  LLM   inference ", name="  Ada  ", authors=[" Y.  LeCun"]).profile()
    >>> p.keywords, p.about, p.max_papers, p.authors
    (('RAG',), 'LLM inference', 20, ('Y. LeCun',))
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = ""
    keywords: list[str] = []
    exclude: list[str] = []
    max_papers: int = DEFAULT_MAX_PAPERS
    about: str = ""
    seeds: list[str] = []
    authors: list[str] = []
    categories: list[str] = []
    exclude_categories: list[str] = []
    # When (see ``cadence``): an IANA zone, "HH:MM", a cadence; empty follows the operator's settings.
    timezone: str = ""
    send_at: str = ""
    cadence: str = ""
    updates: bool = True
    sections: dict[str, int] = {}
    upvotes: float = 0.0
    language: str = ""

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        value = " ".join(value.split())
        if value and not LANGUAGE.fullmatch(value):
            raise ProfileProblem("a language's name, such as German or Português", None, "language")
        return value

    @field_validator("sections")
    @classmethod
    def _sections(cls, value: dict[str, int]) -> dict[str, int]:
        for name, cap in value.items():
            if name not in SECTIONS:
                raise ProfileProblem(f"no section {name!r}: use {', '.join(SECTIONS)}", None, "sections")
            if not 0 <= cap <= MAX_PAPERS:
                raise ProfileProblem(f"a section shows 0 to {MAX_PAPERS:,} papers", None, "sections")
        return {name: value[name] for name in SECTIONS if name in value}

    @field_validator("upvotes")
    @classmethod
    def _upvotes(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ProfileProblem(_KIND["upvotes"], None, "upvotes")
        return float(value)

    @field_validator("about")
    @classmethod
    def _about(cls, value: str) -> str:
        return " ".join(value.split())

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return " ".join(value.split())[:NAME_MAX]

    @field_validator("authors")
    @classmethod
    def _authors(cls, value: list[str]) -> list[str]:
        names = list(dict.fromkeys(" ".join(a.split()) for a in value if a.strip()))
        if len(names) > AUTHORS_MAX:
            raise ProfileProblem(
                f"more than {AUTHORS_MAX} authors; keep those you read most", names[AUTHORS_MAX]
            )
        for name in names:
            why = followable(name)
            if why is not None:
                raise ProfileProblem(why, name, "authors")
        return names

    @field_validator("categories", "exclude_categories")
    @classmethod
    def _categories(cls, value: list[str], info: ValidationInfo) -> list[str]:
        names = list(dict.fromkeys(c.strip() for c in value if c.strip()))
        if len(names) > CATEGORIES_MAX:
            raise ProfileProblem(
                f"more than {CATEGORIES_MAX} categories", names[CATEGORIES_MAX], str(info.field_name)
            )
        for name in names:
            if not CATEGORY.fullmatch(name):
                why = "an arXiv category such as cs.CL, or cs.* for all of cs"
                raise ProfileProblem(why, name, str(info.field_name))
        return names

    @field_validator("max_papers")
    @classmethod
    def _max_papers(cls, value: int) -> int:
        if not 1 <= value <= MAX_PAPERS:
            raise ProfileProblem(_KIND["max_papers"])
        return value

    @field_validator("timezone", "send_at", "cadence")
    @classmethod
    def _schedule(cls, value: str, info: ValidationInfo) -> str:
        at = ("timezone", "send_at", "cadence").index(str(info.field_name))
        try:
            return normalise_schedule(*(value if i == at else "" for i in range(3)))[at]
        except ValueError as exc:
            raise ProfileProblem(str(exc)) from None

    @model_validator(mode="after")
    def _rules(self) -> ProfileInput:
        problems = check_profile(self.profile())
        if problems:
            keyword, why = problems[0]
            raise ProfileProblem(why, None, "about") if keyword == "about" else ProfileProblem(why, keyword)
        return self

    def profile(self) -> Profile:
        return Profile(
            tuple(self.keywords),
            tuple(self.exclude),
            self.max_papers,
            self.about,
            tuple(self.seeds),
            timezone=self.timezone,
            send_at=self.send_at,
            cadence=self.cadence,
            authors=tuple(self.authors),
            categories=tuple(self.categories),
            exclude_categories=tuple(self.exclude_categories),
            updates=self.updates,
            sections=tuple(self.sections.items()),
            upvotes=self.upvotes,
            language=self.language,
        )

    @classmethod
    def checked(cls, data: Mapping[str, Any], *, subscriber: str) -> ProfileInput:
        """``data`` as a checked profile, or the first mistake as a ProfileError naming the subscriber (and
        the keyword, where one is at fault)."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise problem_of(exc, subscriber) from None


def problem_of(exc: ValidationError, subscriber: str) -> ProfileError:
    """A profile's validation error as the one message a reader or an operator reads."""
    err = exc.errors()[0]
    found = err.get("ctx", {}).get("error")
    field = str(err["loc"][0]) if err["loc"] else ""
    if isinstance(found, ProfileProblem):
        at = field or found.field or _field_of(found.keyword, err.get("input"))
        return ProfileError(found.why, subscriber=subscriber, keyword=found.keyword, field=at)
    if err["type"] == "extra_forbidden":
        return ProfileError(f"unknown field {field!r}", subscriber=subscriber, field=field)
    return ProfileError(_KIND.get(field, f"{field} must be a string"), subscriber=subscriber, field=field)


def _field_of(keyword: str | None, given: Any) -> str:
    """Which field a whole-profile rule's ``keyword`` came from (``check_profile``).

    >>> _field_of("+++", {"keywords": ["RAG"], "exclude": ["+++"]}), _field_of("2501.1", {})
    ('exclude', 'seeds')
    """
    given = given if isinstance(given, dict) else {}
    for field in ("keywords", "exclude"):
        if keyword in (given.get(field) or ()):
            return field
    return "seeds"


def check_profile(profile: Profile) -> list[tuple[str, str]]:
    """Every (keyword, problem) in a profile; empty when the profile is usable.

    >>> check_profile(Profile(("RAG", "+++")))
    [('+++', 'the keyword has no letters or digits')]
    >>> [why for _, why in check_profile(Profile(about="x" * 2001, seeds=("",)))]
    ['the description is longer than 2,000 characters', 'a seed paper is an arXiv id or a title of 1 to 500 characters']
    """
    problems = [
        (kw, why) for kw in (*profile.keywords, *profile.exclude) if (why := _problem(kw)) is not None
    ]
    for words, what in ((profile.keywords, "keywords"), (profile.exclude, "exclusions")):
        if len(words) > PROFILE_MAX:
            problems.append(
                (words[PROFILE_MAX], f"more than {PROFILE_MAX} {what}; keep those that matter most")
            )
    if len(profile.about) > ABOUT_MAX:
        problems.append(("about", f"the description is longer than {ABOUT_MAX:,} characters"))
    if len(profile.seeds) > SEEDS_MAX:
        problems.append((profile.seeds[SEEDS_MAX], f"more than {SEEDS_MAX} seed papers; keep the closest"))
    for seed in profile.seeds:
        if not seed.strip() or len(seed) > SEED_MAX:
            problems.append(
                (seed[:60], f"a seed paper is an arXiv id or a title of 1 to {SEED_MAX} characters")
            )
    return problems


@functools.lru_cache(maxsize=1 << 16)
def _problem(keyword: str) -> str | None:
    try:
        compile_keyword(keyword)
    except KeywordError as exc:
        return str(exc)
    return None


def split_words(text: str) -> list[str]:
    """Keywords as typed in a form: one per line or separated by commas, blanks dropped.

    >>> split_words("RAG, speculative decoding\\n  quantiz*\\n\\n")
    ['RAG', 'speculative decoding', 'quantiz*']
    """
    return [w.strip() for w in re.split(r"[,\n]", text) if w.strip()]


def from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """A sign-up or manage form's fields as a profile's data (``ProfileInput.checked`` checks it):
    keywords and exclusions one per line or comma separated, seeds and authors one per line (a name may
    hold a comma: "LeCun, Yann"), ``trending=yes`` for the
    trending digest (keywords, description and seeds then ignored), papers per email as typed.

    >>> from_form({"keywords": "RAG, agents", "max_papers": "5", "trending": ""})["keywords"]
    ['RAG', 'agents']
    """
    trending = form.get("trending") == "yes"
    typed = form.get("max_papers", "").strip()
    data: dict[str, Any] = {
        "exclude": split_words(form.get("exclude", "")),
        "max_papers": int(typed)
        if typed.isascii() and typed.isdigit() and len(typed) < 8
        else (typed or None),
        "timezone": form.get("timezone", ""),
        "send_at": form.get("send_at", ""),
        "cadence": form.get("cadence", ""),
    }
    if data["max_papers"] is None:
        del data["max_papers"]
    if "name" in form:
        data["name"] = form["name"]
    if not trending:
        data["keywords"] = split_words(form.get("keywords", ""))
        data["about"] = form.get("about", "")
        data["seeds"] = [s.strip() for s in form.get("seeds", "").splitlines() if s.strip()]
        data["authors"] = [a.strip() for a in form.get("authors", "").splitlines() if a.strip()]
    for field in ("categories", "exclude_categories"):
        data[field] = [c for c in re.split(r"[\s,]+", form.get(field, "")) if c]
    caps = {
        name: _number(form[f"cap_{name}"], int) for name in SECTIONS if form.get(f"cap_{name}", "").strip()
    }
    if caps:
        data["sections"] = caps
    if form.get("upvotes", "").strip():
        data["upvotes"] = _number(form["upvotes"], float)
    if "language" in form:
        data["language"] = form["language"]
    if "has_updates" in form:  # the manage form: an unticked box sends nothing
        data["updates"] = form.get("updates") == "yes"
    return data


def _number(typed: str, kind: type[int] | type[float]) -> int | float | str:
    """A form's number as ``kind``, else as typed (for the profile's check to refuse it in words).

    >>> _number(" 5 ", int), _number("0.5", float), _number("five", int)
    (5, 0.5, 'five')
    """
    try:
        return kind(typed.strip()) if len(typed) < 12 else typed
    except ValueError:
        return typed


def profile_from_form(form: Mapping[str, str], subscriber: str) -> ProfileInput:
    """A form's profile, checked; a form must say what it wants: keywords, a description or seed papers,
    or the trending digest by its own choice (an empty form is a mistake, not the trending digest)."""
    checked = ProfileInput.checked(from_form(form), subscriber=subscriber)
    if form.get("trending") != "yes" and checked.profile().trending:
        raise ProfileError(
            "give at least one keyword, a description or a seed paper, or choose the trending digest",
            subscriber=subscriber,
            field="keywords",
        )
    return checked
