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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, Template, TemplateError, nodes

from digest.email.mime import qp

SLOT = "\x00"  # never in rendered feed text: one_line() drops control characters
# Entry fields that vary per email; everything else in an entry follows from its paper and matched keywords.
# A likeness reason names the words a paper shares with one reader's description, and a section's heading
# comes before the paper that starts it: both shown outside the block.
VARYING = ("number", "score", "likeness", "heading")
# Cached blocks per template, at most (~2.5 KB each for the HTML). A block is cached per paper and set of
# matched keywords: 100,000 random profiles over the 375 seed papers meet ~30,000 such pairs, a few thousand
# of them often; the cache keeps the recently used (two generations), so memory stays flat.
CACHE_LIMIT = 12_000
log = logging.getLogger("digest.email.render")


@dataclass(frozen=True, slots=True)
class Body:
    """One rendered part: quoted-printable encoded, its decoded size, and its text when asked for."""

    encoded: bytes
    size: int  # decoded bytes (what Gmail's clipping counts)
    text: str | None = None

    @classmethod
    def of(cls, text: str) -> Body:
        return cls(qp(text), len(text.encode("utf-8")), text)


@dataclass(frozen=True, slots=True)
class _Fragment:
    """A rendered paper block, kept encoded: split after its first line break, both parts' encodings.

    QP works line by line, so the encoding of a text is the encodings of its lines joined. ``rest``
    starts at a line start and can be reused wherever the fragment lands; ``head`` is reused only when
    the fragment starts a line, else it is encoded with what precedes it on its line. Only a fragment
    that does not end with a line break keeps its whole text (``loose``): it is encoded with what follows.
    """

    head: str
    head_encoded: bytes
    rest_encoded: bytes
    size: int
    loose: str | None

    @classmethod
    def of(cls, text: str) -> _Fragment:
        cut = text.find("\n") + 1  # 0 when there is no line break: all of it is ``head``
        head, rest = (text[:cut], text[cut:]) if cut else (text, "")
        loose = None if text.endswith("\n") else text
        return cls(head, qp(head), qp(rest), len(text.encode("utf-8")), loose)


def join_encoded(pieces: list[str | _Fragment]) -> bytes:
    r"""The QP encoding of the pieces (text, or cached fragments) joined, reusing the fragments' encodings.

    >>> f = _Fragment.of("Title\n    abstract\n")
    >>> join_encoded(["1. ", f, "--\n"]) == qp("1. Title\n    abstract\n--\n")
    True
    """
    out: list[bytes] = []
    run: list[str] = []  # text since the last line start, not yet encoded
    for piece in pieces:
        if isinstance(piece, _Fragment) and piece.loose is None:
            if run:
                out.append(qp("".join(run) + piece.head))  # one short line ("3. " and a title)
                run = []
            else:
                out.append(piece.head_encoded)
            out.append(piece.rest_encoded)
            continue
        text = (piece.loose or "") if isinstance(piece, _Fragment) else piece
        if not text:
            continue
        run.append(text)
        if text.endswith("\n"):
            out.append(qp("".join(run)))
            run = []
    if run:
        out.append(qp("".join(run)))
    return b"".join(out)


def _swap(node: nodes.Node, target: nodes.Node, new: nodes.Node) -> bool:
    """Replace ``target`` by ``new`` wherever it sits below ``node``; True if it was found."""
    for field, value in node.iter_fields():
        if isinstance(value, list):
            for i, item in enumerate(value):
                if item is target:
                    value[i] = new
                    return True
                if isinstance(item, nodes.Node) and _swap(item, target, new):
                    return True
        elif isinstance(value, nodes.Node):
            if value is target:
                setattr(node, field, new)
                return True
            if _swap(value, target, new):
                return True
    return False


def frame_template(env: Environment, name: str) -> Template | None:
    r"""The template ``name`` with its ``paper`` block replaced by a slot marker; None without such a block
    (or with blocks inside it).

    Found through Jinja's own parser, so any spelling of the tags (``{%- block paper scoped -%}``, a
    comment inside, the block name repeated at ``endblock``) is the same block. The whitespace around the
    block is what the lexer made of it for the whole template, so the frame with each slot filled by the
    block's own render is exactly the whole render.

    >>> from jinja2 import DictLoader
    >>> t = "<ul>{% for e in entries %}{% block paper scoped %}<li>{{ e }}</li>{% endblock %}{% endfor %}</ul>"
    >>> env = Environment(loader=DictLoader({"t": t}))
    >>> frame_template(env, "t").render(entries=[1, 2])
    '<ul>\x00\x00</ul>'
    """
    assert env.loader is not None
    source, filename, _ = env.loader.get_source(env, name)
    tree = env.parse(source, name, filename)
    found = [b for b in tree.find_all(nodes.Block) if b.name == "paper"]
    if len(found) != 1 or any(True for _ in found[0].find_all(nodes.Block)):
        return None
    _swap(tree, found[0], nodes.Output([nodes.TemplateData(SLOT)]))
    code = env.compile(tree, name, filename)
    return env.template_class.from_code(env, code, env.make_globals(None))


class SplitTemplate:
    """A template rendered as frame + cached ``paper`` blocks, or whole when it cannot be.

    The frame is rendered with light entries (``number``, ``score``, ``paper``, ``matched``); ``expand``
    makes the full entry a paper block shows, only when that block is not cached yet. The block sees
    ``e`` without the ``hidden`` fields: those vary per email (a paper's number and score), so a block
    that shows one of them is refused (rendered whole) rather than cached wrongly.
    """

    def __init__(
        self,
        env: Environment,
        name: str,
        expand: Callable[[dict[str, Any]], dict[str, Any]],
        hidden: tuple[str, ...] = (),
    ) -> None:
        self.whole = env.get_template(name)
        self.expand = expand
        self.hidden = hidden
        self._keyed = tuple(k for k in VARYING if k not in hidden)
        self._block = self.whole.blocks.get("paper")
        self._frame = frame_template(env, name) if self._block is not None else None
        self._cache: dict[Any, _Fragment] = {}  # blocks used in this generation
        self._older: dict[Any, _Fragment] = {}  # the previous generation: moved up when used again

    @property
    def split(self) -> bool:
        """Whether emails are made as frame + cached paper blocks (else the template is rendered whole)."""
        return self._frame is not None

    @property
    def line_aligned(self) -> bool:
        """Whether every cached block ends a line, so that its encoding is reused as it is."""
        return all(f.loose is None for f in (*self._cache.values(), *self._older.values()))

    def _fragment(self, entry: dict[str, Any]) -> _Fragment:
        key = (
            entry["paper"],
            entry["matched"],
            entry.get("by", ()),
            entry.get("tldr", ""),
            *(entry[k] for k in self._keyed),
        )
        found = self._cache.get(key)
        if found is not None:
            return found
        found = self._older.pop(key, None)
        if found is None:
            assert self._block is not None
            shown = {k: v for k, v in self.expand(entry).items() if k not in self.hidden}
            found = _Fragment.of("".join(self._block(self.whole.new_context({"e": shown}))))
        self._cache[key] = found
        if len(self._cache) >= CACHE_LIMIT // 2:  # a new generation; blocks not used since are dropped
            self._older, self._cache = self._cache, {}
        return found

    def render(self, context: dict[str, Any], *, text: bool = False) -> Body:
        """The part for one email, from cached blocks when the template allows it; ``text`` also gives
        the text (rendered whole: the same output, as the tests check)."""
        if self._frame is not None and not text:
            try:
                return self._spliced(context)
            except TemplateError as exc:  # the template reads more of an entry than the block: render whole
                log.info("the paper block cannot be rendered on its own (%s); rendering whole", exc)
                self._frame = None
        return Body.of(
            self.whole.render({**context, "entries": [self.expand(e) for e in context["entries"]]})
        )

    def _spliced(self, context: dict[str, Any]) -> Body:
        assert self._frame is not None
        entries = context["entries"]
        frame = self._frame.render(context).split(SLOT)
        if len(frame) != len(entries) + 1:  # the template shows papers outside the loop: render whole
            return self.render(context, text=True)
        pieces: list[str | _Fragment] = [frame[0]]
        size = len(frame[0].encode("utf-8"))
        for entry, after in zip(entries, frame[1:], strict=True):
            fragment = self._fragment(entry)
            pieces += [fragment, after]
            size += fragment.size + len(after.encode("utf-8"))
        return Body(join_encoded(pieces), size)
