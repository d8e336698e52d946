"""Each reader's own model (``selection.learner``), kept in the store and fitted only when what it learns
from changed: the planning side of "a small model per reader".

For a batch of readers with feedback: the kept models are read in one query; a reader whose model is
missing or of another version (a new description, seed or opinion) is fitted now, on their description,
seeds and liked papers against their disliked papers and the papers they were shown last and did not
like, and the model kept (unless the store is read-only: a preview fits but keeps nothing). The result
is each paper's liking under the reader's model, for the hybrid score.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import numpy.typing as npt

from digest.models import Paper, Subscriber
from digest.selection.index import PaperIndex
from digest.selection.learner import SHOWN, ReaderModel, fit, version
from digest.store import Store

Opinions = dict[str, dict[str, list[Paper]]]  # mailbox key -> {"more": papers, "less": papers}


def _text(paper: Paper) -> str:
    return f"{paper.title}. {paper.abstract}"


def learned_scores(
    subs: Sequence[Subscriber],
    liked: dict[str, list[Paper]],
    opinions: Opinions,
    pool: PaperIndex,
    store: Store,
    now: datetime,
) -> dict[str, npt.NDArray[np.float32]]:
    """Mailbox key -> each pool paper's liking in [-1, 1], for the readers of ``subs`` with feedback
    (``opinions``); ``liked`` holds each reader's seeds and liked papers as resolved for their taste."""
    wanted = [s for s in subs if opinions.get(s.key, {}).get("more") or opinions.get(s.key, {}).get("less")]
    if not wanted:
        return {}
    versions = {
        s.key: version(
            s.profile.about,
            [p.key for p in liked.get(s.key, [])],
            [p.key for p in opinions[s.key].get("less", [])],
        )
        for s in wanted
    }
    kept = store.feedback.models([s.email for s in wanted])
    models: dict[str, ReaderModel] = {}
    fresh: list[tuple[str, str, bytes]] = []
    for sub in wanted:
        stored = kept.get(sub.key)
        if stored is not None and stored[0] == versions[sub.key]:
            models[sub.key] = ReaderModel.from_bytes(*stored)
            continue
        model = _fit(sub, versions[sub.key], liked.get(sub.key, []), opinions[sub.key], store)
        if model is not None:
            models[sub.key] = model
            fresh.append((sub.email, model.version, model.to_bytes()))
    if fresh and not store.read_only:
        store.feedback.save_models(fresh, now)
    return {key: model.scores(pool.hashed) for key, model in models.items()}


def _fit(
    sub: Subscriber, model_version: str, liked: list[Paper], opinion: dict[str, list[Paper]], store: Store
) -> ReaderModel | None:
    positives = ([sub.profile.about] if sub.profile.about.strip() else []) + [_text(p) for p in liked]
    mine = {p.key for p in liked}
    disliked = opinion.get("less", [])
    shown = [p for p in store.feedback.shown(sub.email, SHOWN + len(mine)) if p.key not in mine][:SHOWN]
    negatives = [_text(p) for p in disliked] + [
        _text(p) for p in shown if p.key not in {d.key for d in disliked}
    ]
    return fit(model_version, positives, negatives)
