"""Per-paper parts of an email rendered once per run, not once per email.

In a run, most subscribers get the same few hundred papers highlighted for the same few keywords. A
template that wraps each paper in ``{% block paper scoped %}…{% endblock %}`` is therefore rendered in two
parts: the block once per distinct entry (paper, highlighted keywords, and for the text part its number),
cached together with its quoted-printable encoding; and per email only the frame (header, footer, what
differs per subscriber), by a child template that puts a slot marker where each paper goes. The email is
the frame with the cached parts spliced in, and its encoded body the encoded pieces joined.

The result is exactly what rendering the whole template gives (the tests compare both). A template
without the block, or whose block reads more than ``e``, is rendered whole every time instead: slower,
never wrong.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, Template, TemplateError

from digest.mime import qp

SLOT = "\x00"  # never in rendered feed text: one_line() drops control characters
# Entry fields that vary per email; everything else in an entry follows from its paper and matched keywords.
VARYING = ("number", "score")
CACHE_LIMIT = 8192  # cached entries per template; a run's distinct entries are far fewer
log = logging.getLogger("digest.render")


@dataclass(frozen=True, slots=True)
class Body:
    """One rendered part: its text, and the same text quoted-printable encoded (CRLF)."""

    text: str
    encoded: bytes

    @property
    def size(self) -> int:
        """The decoded size in bytes (what Gmail's clipping counts)."""
        return len(self.text.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class _Fragment:
    """A rendered paper block: its text, split after the first line break, with both parts' encodings.

    QP works line by line, so the encoding of a text is the encodings of its lines joined. ``rest``
    starts at a line start and can be reused wherever the fragment lands; ``head`` is reused only when
    the fragment starts a line, else it is encoded with what precedes it on its line.
    """

    text: str
    head: str
    head_encoded: bytes
    rest_encoded: bytes
    after: dict[str, bytes]  # the head's encoding after a given start of line ("3. "), as met

    @classmethod
    def of(cls, text: str) -> _Fragment:
        cut = text.find("\n") + 1  # 0 when there is no line break: all of it is ``head``
        head, rest = (text[:cut], text[cut:]) if cut else (text, "")
        return cls(text, head, qp(head), qp(rest), {})

    def head_after(self, prefix: str) -> bytes:
        found = self.after.get(prefix)
        if found is None:
            if len(self.after) > 64:
                self.after.clear()
            found = self.after[prefix] = qp(prefix + self.head)
        return found

    @property
    def whole_lines(self) -> bool:
        return self.text.endswith("\n")


def join_encoded(pieces: list[tuple[str, _Fragment | None]]) -> bytes:
    r"""The QP encoding of the pieces' text joined, reusing the fragments' cached encodings where exact.

    >>> f = _Fragment.of("Title\n    abstract\n")
    >>> join_encoded([("1. ", None), (f.text, f), ("--\n", None)]) == qp("1. Title\n    abstract\n--\n")
    True
    """
    out: list[bytes] = []
    run: list[str] = []  # text since the last line start, not yet encoded
    for text, fragment in pieces:
        if not text:
            continue
        if fragment is not None and fragment.whole_lines and fragment.head.endswith("\n"):
            if run:
                out.append(fragment.head_after("".join(run)))
                run = []
            else:
                out.append(fragment.head_encoded)
            out.append(fragment.rest_encoded)
            continue
        run.append(text)
        if text.endswith("\n"):
            out.append(qp("".join(run)))
            run = []
    if run:
        out.append(qp("".join(run)))
    return b"".join(out)


_PAPER_BLOCK = re.compile(
    r"\{%(-?)\s*block\s+paper(?:\s+scoped)?\s*(-?)%\}(.*?)\{%(-?)\s*endblock(?:\s+paper)?\s*(-?)%\}",
    re.DOTALL,
)


def frame_source(source: str) -> str | None:
    """The template with its ``paper`` block replaced by a slot marker; None if it has no such block.

    The block's tags become ``if`` tags, so trim_blocks and lstrip_blocks treat the whitespace around
    them as before.

    >>> frame_source("<ul>{% for e in entries %}{% block paper scoped %}<li>{{ e }}</li>{% endblock %}{% endfor %}</ul>")
    '<ul>{% for e in entries %}{% if true %}\\x00{% endif %}{% endfor %}</ul>'
    """
    found = list(_PAPER_BLOCK.finditer(source))
    if len(found) != 1 or "{% block" in found[0].group(3) or "{%- block" in found[0].group(3):
        return None
    m = found[0]
    slot = f"{{%{m.group(1)} if true {m.group(2)}%}}" + SLOT + f"{{%{m.group(4)} endif {m.group(5)}%}}"
    return source[: m.start()] + slot + source[m.end() :]


class SplitTemplate:
    """A template rendered as frame + cached ``paper`` blocks, or whole when it cannot be.

    The block sees ``e``, the entry, without the ``hidden`` fields: those vary per email (a paper's number
    and score), so a block that shows one of them is refused (rendered whole) rather than cached wrongly.
    An entry's cache key is its paper, its matched keywords and its other fields' values. ``generated``
    is where the environment's loader finds templates made here (the frame, named ``frame/<name>``).
    """

    def __init__(
        self, env: Environment, name: str, generated: dict[str, str], hidden: tuple[str, ...] = ()
    ) -> None:
        self.whole = env.get_template(name)
        self.hidden = hidden
        self._keyed = tuple(k for k in VARYING if k not in hidden)
        self._block = self.whole.blocks.get("paper")
        self._frame: Template | None = None
        source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        frame = frame_source(source)
        if self._block is not None and frame is not None:
            generated[f"frame/{name}"] = frame
            self._frame = env.get_template(f"frame/{name}")
        self._cache: dict[Any, _Fragment] = {}

    @property
    def split(self) -> bool:
        return self._frame is not None

    def _fragment(self, entry: dict[str, Any]) -> _Fragment:
        key = (entry["paper"], entry["matched"], *(entry[k] for k in self._keyed))
        found = self._cache.get(key)
        if found is None:
            assert self._block is not None
            shown = {k: v for k, v in entry.items() if k not in self.hidden}
            text = "".join(self._block(self.whole.new_context({"e": shown})))
            found = _Fragment.of(text)
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()  # bounded memory; the next entries fill it again
            self._cache[key] = found
        return found

    def render(self, context: dict[str, Any]) -> Body:
        """The part for one email: spliced from cached blocks when the template allows it."""
        if self._frame is not None:
            try:
                return self._spliced(context)
            except TemplateError as exc:  # the block reads something besides ``e``: render whole from now on
                log.info("the paper block cannot be rendered on its own (%s); rendering whole", exc)
                self._frame = None
        text = self.whole.render(context)
        return Body(text, qp(text))

    def _spliced(self, context: dict[str, Any]) -> Body:
        assert self._frame is not None
        entries = context["entries"]
        frame = self._frame.render(context).split(SLOT)
        if len(frame) != len(entries) + 1:  # the template shows papers outside the loop: render whole
            text = self.whole.render(context)
            return Body(text, qp(text))
        fragments = [self._fragment(e) for e in entries]
        pieces: list[tuple[str, _Fragment | None]] = [(frame[0], None)]
        for fragment, after in zip(fragments, frame[1:], strict=True):
            pieces += [(fragment.text, fragment), (after, None)]
        return Body("".join(text for text, _ in pieces), join_encoded(pieces))
