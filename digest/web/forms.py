"""What the reader's forms hold and say: the manage form's fields for a stored reader, its pause, the live
preview's parts, and a mistake as one plain sentence tied to the field it is about.

A profile's rules are the library's (``profiles``); their messages name the subscriber and the keyword for
an operator's log. A form shows the same rule in the reader's words, under the label they see, and says
which field it is about (``aria-invalid`` and ``aria-describedby`` in the templates), naming only fields the
form has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import NamedTuple

from digest.errors import DigestError, ProfileError, SubscriberError
from digest.models import Subscriber

LABELS = {  # a form's field names and the labels the reader sees
    "email": "Email",
    "name": "Your name",
    "keywords": "Topics you follow",
    "about": "Your field",
    "seeds": "Papers like yours",
    "authors": "Authors you follow",
    "categories": "Only these arXiv categories",
    "exclude_categories": "Leave out these arXiv categories",
    "exclude": "Leave out papers that mention",
    "max_papers": "Papers per email",
    "cadence": "How often",
    "send_at": "At (your local time)",
    "timezone": "Time zone",
    "paused_until": "Pause until",
    "sections": "Most papers of each kind",
    "upvotes": "How much upvotes count",
    "language": "Summaries in",
}
UPVOTES = (
    ("0.0", "Not at all"),
    ("0.25", "A little"),
    ("0.5", "Some"),
    ("1.0", "A lot"),
)  # the form's choices
PLAIN = {  # a rule's message for an operator -> the same for a reader
    "max_papers must be a number from 1 to 1,000 (papers per email)": "give a number from 1 to 1,000",
    "give at least one keyword, a description or a seed paper, or choose the trending digest": (
        "give at least one topic, a sentence about your field or a paper like yours, or choose the"
        " trending papers"
    ),
}


class FormError(NamedTuple):
    """A form's mistake: the field it is about (one of ``LABELS``) and what to do, as a sentence."""

    field: str
    text: str


def form_error(exc: DigestError) -> FormError:
    """``exc`` as a reader reads it beside the form.

    >>> form_error(ProfileError("the keyword has no letters or digits", subscriber="a@b.org", keyword="***",
    ...                         field="keywords"))
    FormError(field='keywords', text='Topics you follow: “***”: the keyword has no letters or digits.')
    """
    if isinstance(exc, SubscriberError):
        detail = exc.message.rpartition(": ")[2] if ": " in exc.message else ""
        return FormError("email", f"Email: that is not an address we can send to. {detail}".strip())
    field = getattr(exc, "field", None) or "keywords"
    field = field if field in LABELS else "keywords"
    why = exc.why if isinstance(exc, ProfileError) else exc.message
    what = f"“{exc.keyword}”: " if isinstance(exc, ProfileError) and exc.keyword else ""
    text = f"{LABELS[field]}: {what}{PLAIN.get(why, why)}"
    return FormError(field, text if text.endswith(".") else f"{text}.")


class Preview(NamedTuple):
    """The live preview's HTML, and how many papers it shows (the running count at the top on phones)."""

    html: str
    papers: int


@dataclass(frozen=True, slots=True)
class Pause:
    """What the manage form says of pausing: ``on``, and ``until`` a date (None: until the reader resumes)."""

    on: bool = False
    until: date | None = None

    @classmethod
    def of(cls, form: dict[str, str], today: date) -> Pause:
        """The form's pause; ValueError naming the field for a date that is not one, not after ``today``
        or more than a year away.

        >>> Pause.of({"paused": "yes", "paused_until": "2026-12-24"}, date(2026, 12, 6))
        Pause(on=True, until=datetime.date(2026, 12, 24))
        >>> Pause.of({"paused_until": "2026-12-24"}, date(2026, 12, 6)).on
        False
        """
        if form.get("paused") != "yes":
            return cls()
        given = form.get("paused_until", "").strip()
        if not given:
            return cls(True)
        try:
            until = date.fromisoformat(given)
        except ValueError:
            raise ValueError("Pause until: give a date such as 2026-12-24.") from None
        if not today < until <= today + timedelta(days=366):
            raise ValueError("Pause until: choose a date after today and within a year.")
        return cls(True, until)


def profile_form(subscriber: Subscriber) -> dict[str, str]:
    """The manage form's fields for a stored subscriber."""
    p = subscriber.profile
    return {
        "keywords": "\n".join(p.keywords),
        "exclude": ", ".join(p.exclude),
        "max_papers": str(p.max_papers),
        "trending": "yes" if p.trending else "",
        "paused": "" if subscriber.active and subscriber.paused_until is None else "yes",
        "paused_until": subscriber.paused_until.isoformat() if subscriber.paused_until else "",
        "about": p.about,
        "seeds": "\n".join(p.seeds),
        "authors": "\n".join(p.authors),
        "categories": ", ".join(p.categories),
        "exclude_categories": ", ".join(p.exclude_categories),
        "timezone": p.timezone,
        "send_at": p.send_at,
        "cadence": p.cadence,
        "updates": "yes" if p.updates else "",
        "upvotes": str(float(p.upvotes)),
        "language": p.language,
        **{f"cap_{name}": str(cap) for name, cap in p.sections},
    }
