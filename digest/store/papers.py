"""The papers the store keeps: one row per paper (by arXiv id, else normalised title), however many
listings and runs show it; ``first_seen`` drives every reader's diff. And what a URL source's server said
last time (ETag, Last-Modified), saved in the same transaction as its papers, and each paper's vectors of a
sentence model, made once per model."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from digest.models import Paper, Validators, arxiv_id_from
from digest.selection.finding import key_finding
from digest.store.dialect import Connection
from digest.store.sql import chunks, iso, marks


def paper_of(row: Any) -> Paper:
    """A stored paper from its row."""
    return Paper(
        title=row["title"],
        abstract=row["abstract"],
        arxiv_id=row["arxiv_id"],
        authors=tuple(json.loads(row["authors"])),
        org=row["org"],
        author_count=row["author_count"],
        published=date.fromisoformat(row["published"]) if row["published"] else None,
        upvotes=row["upvotes"],
        url=row["url"],
        source=row["source"],
        ref=row["pid"],
        categories=() if row["categories"] == "[]" else tuple(json.loads(row["categories"])),
        finding=row["finding"],
        version=row["version"] or None,
    )


class Papers:
    """The ``papers`` table (``store.papers``), ``fetch_state`` and ``paper_vectors``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def ingest(
        self,
        papers: Iterable[Paper],
        now: datetime,
        *,
        source: str | None = None,
        url: str | None = None,
        validators: Validators | None = None,
    ) -> int:
        """Store papers (folding duplicates into one row each) and, for a URL source, its validators.

        A new version of a stored paper (``revise``) is kept as its version; one of a paper never stored
        here is left out: nobody here was sent it. All in one transaction: a failure stores nothing and
        keeps the old validators. Returns how many papers were new.
        """
        new = 0
        stamp = iso(now)
        with self.conn.transaction() as tx:
            for paper in papers:
                pid = self._find(tx, paper)
                if pid is None:
                    if not paper.revision:
                        self._insert(tx, paper, stamp)
                        new += 1
                    continue
                self._merge(tx, pid, paper, stamp)
                if paper.version:
                    self._revise(tx, pid, paper, stamp)
            if source is not None and url is not None and validators is not None:
                tx.execute(
                    "INSERT INTO fetch_state (source, url, etag, last_modified, fetched_at) VALUES (?,?,?,?,?)"
                    " ON CONFLICT (source) DO UPDATE SET url = excluded.url, etag = excluded.etag,"
                    " last_modified = excluded.last_modified, fetched_at = excluded.fetched_at",
                    (source, url, validators.etag, validators.last_modified, stamp),
                )
        return new

    @staticmethod
    def _find(tx: Connection, paper: Paper) -> int | None:
        """The row that already holds this paper: by arXiv id, else by title among id-less rows (or any)."""
        if paper.arxiv_id:
            row = tx.execute("SELECT pid FROM papers WHERE arxiv_id = ?", (paper.arxiv_id,)).fetchone()
            if row:
                return int(row[0])
            row = tx.execute(
                "SELECT pid FROM papers WHERE title_key = ? AND arxiv_id IS NULL", (paper.title_key,)
            ).fetchone()
        else:
            row = tx.execute(
                "SELECT pid FROM papers WHERE title_key = ? ORDER BY pid LIMIT 1", (paper.title_key,)
            ).fetchone()
        return int(row[0]) if row else None

    @staticmethod
    def _insert(tx: Connection, p: Paper, stamp: str) -> None:
        tx.execute(
            "INSERT INTO papers (arxiv_id, title_key, title, abstract, authors, org, author_count, published,"
            " upvotes, url, source, first_seen, last_seen, categories, finding, version)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                p.arxiv_id,
                p.title_key,
                p.title,
                p.abstract,
                json.dumps(list(p.authors)),
                p.org,
                p.author_count,
                p.published.isoformat() if p.published else None,
                p.upvotes,
                p.url,
                p.source,
                stamp,
                stamp,
                json.dumps(list(p.categories)),
                key_finding(p.abstract),
                p.version or 0,
            ),
        )

    def _merge(self, tx: Connection, pid: int, p: Paper, stamp: str) -> None:
        """Fill what the stored row lacks; upvotes only grow; first_seen never changes."""
        tx.execute(
            "UPDATE papers SET arxiv_id = COALESCE(arxiv_id, ?),"
            " finding = CASE WHEN length(?) > length(abstract) THEN ? ELSE finding END,"
            " abstract = CASE WHEN length(?) > length(abstract) THEN ? ELSE abstract END,"
            " authors = CASE WHEN authors = '[]' THEN ? ELSE authors END,"
            " org = COALESCE(org, ?), author_count = COALESCE(author_count, ?),"
            f" published = COALESCE(published, ?), upvotes = {self.conn.dialect.greatest}(COALESCE(upvotes, 0),"
            " COALESCE(?, 0)),"
            " url = COALESCE(url, ?), categories = CASE WHEN categories = '[]' THEN ? ELSE categories END,"
            " last_seen = ? WHERE pid = ?",
            (
                p.arxiv_id,
                p.abstract,
                key_finding(p.abstract),
                p.abstract,
                p.abstract,
                json.dumps(list(p.authors)),
                p.org,
                p.author_count,
                p.published.isoformat() if p.published else None,
                p.upvotes,
                p.url,
                json.dumps(list(p.categories)),
                stamp,
                pid,
            ),
        )

    @staticmethod
    def _revise(tx: Connection, pid: int, p: Paper, stamp: str) -> None:
        """Keep a newer version of a stored paper. It is a revision readers are told of when the listing
        announced it as one (arXiv's "replace") or the stored version was known; a paper first stored
        without a version only learns it. A revision's abstract (and so its key finding) replaces the old."""
        stored = int(tx.execute("SELECT version FROM papers WHERE pid = ?", (pid,)).fetchone()[0])
        if p.version is None or p.version <= stored:
            return
        if not (p.revision or stored):
            tx.execute("UPDATE papers SET version = ? WHERE pid = ?", (p.version, pid))
            return
        abstract = p.abstract.strip()
        tx.execute(
            "UPDATE papers SET version = ?, revised = ?, abstract = CASE WHEN ? = '' THEN abstract ELSE ? END,"
            " finding = CASE WHEN ? = '' THEN finding ELSE ? END WHERE pid = ?",
            (p.version, stamp, abstract, abstract, abstract, key_finding(abstract) if abstract else "", pid),
        )
        if abstract:  # a TL;DR of the old abstract: made again from the new one
            tx.execute("DELETE FROM summaries WHERE pid = ?", (pid,))

    def by_refs(self, refs: Sequence[int]) -> list[Paper]:
        """Stored papers in the order of ``refs`` (a digest being resent)."""
        if not refs:
            return []
        rows = {
            r["pid"]: r for r in self.conn.execute(f"SELECT * FROM papers WHERE pid IN ({marks(refs)})", refs)
        }
        return self._with_summaries([paper_of(rows[ref]) for ref in refs if ref in rows])

    def recent(self, since: datetime) -> list[Paper]:
        """Papers first seen at or after ``since``, oldest first: the pool every subscriber's diff draws on."""
        rows = self.conn.execute(
            "SELECT * FROM papers WHERE first_seen >= ? ORDER BY pid", (iso(since),)
        ).fetchall()
        return self._with_summaries([paper_of(r) for r in rows])

    def _with_summaries(self, papers: list[Paper]) -> list[Paper]:
        """``papers`` with their TL;DRs (``Paper.tldrs``), read by ref as ``vectors`` reads a model's
        vectors: none at all unless the operator set up summaries."""
        found: dict[int, list[tuple[str, str]]] = {}
        for chunk in chunks([p.ref for p in papers if p.ref is not None]):
            for pid, language, text in self.conn.execute(
                f"SELECT pid, language, text FROM summaries WHERE pid IN ({marks(chunk)}) ORDER BY language",
                chunk,
            ):
                found.setdefault(int(pid), []).append((str(language), str(text)))
        if not found:
            return papers
        return [replace(p, tldrs=tuple(found[p.ref])) if p.ref in found else p for p in papers]

    def unsummarised(self, since: datetime, languages: Sequence[str], limit: int) -> list[tuple[Paper, str]]:
        """Up to ``limit`` (paper, language key) pairs without a TL;DR: the papers first seen at or after
        ``since``, newest first, in each of ``languages`` (keys, folded)."""
        out: list[tuple[Paper, str]] = []
        for language in languages:
            rows = self.conn.execute(
                "SELECT p.* FROM papers p WHERE p.first_seen >= ? AND NOT EXISTS (SELECT 1 FROM summaries s"
                " WHERE s.pid = p.pid AND s.language = ?) ORDER BY p.pid DESC LIMIT ?",
                (iso(since), language, limit - len(out)),
            ).fetchall()
            out += [(paper_of(r), language) for r in rows]
            if len(out) >= limit:
                break
        return out

    def save_summaries(self, made: Iterable[tuple[int, str, str]], model: str, now: datetime) -> None:
        """Keep TL;DRs: (ref, language key, text) each, made by ``model``."""
        with self.conn.transaction() as tx:
            tx.executemany(
                "INSERT INTO summaries (pid, language, text, model, made) VALUES (?,?,?,?,?)"
                " ON CONFLICT (pid, language) DO UPDATE SET text = excluded.text, model = excluded.model,"
                " made = excluded.made",
                [(ref, language, text, model, iso(now)) for ref, language, text in made],
            )

    def find(self, names: Iterable[str]) -> dict[str, Paper]:
        """Stored papers by the names a reader gives them (an arXiv id, with or without version or as a
        link, else the exact title, compared as ``normalise_title`` folds it); unknown names are left out.

        The same identity rule as ingesting (``_find``): one lookup per name (seeds are few per profile, and
        a run resolves each distinct name once), then the papers in one query."""
        refs = {name: self._find(self.conn, Paper(name, "", arxiv_id=arxiv_id_from(name))) for name in names}
        papers = {p.ref: p for p in self.by_refs([r for r in refs.values() if r is not None])}
        return {name: papers[ref] for name, ref in refs.items() if ref is not None and ref in papers}

    def vectors(self, model: str, refs: Sequence[int]) -> dict[int, bytes]:
        """The stored vectors (float32 bytes) of ``model`` for those of ``refs`` that have one."""
        out: dict[int, bytes] = {}
        for chunk in chunks(refs):
            for pid, vector in self.conn.execute(
                f"SELECT pid, vector FROM paper_vectors WHERE model = ? AND pid IN ({marks(chunk)})",
                (model, *chunk),
            ):
                out[pid] = vector
        return out

    def save_vectors(self, model: str, vectors: Iterable[tuple[int, bytes]]) -> None:
        with self.conn.transaction() as tx:
            tx.executemany(
                "INSERT INTO paper_vectors (pid, model, vector) VALUES (?, ?, ?)"
                " ON CONFLICT (pid, model) DO UPDATE SET vector = excluded.vector",
                [(ref, model, blob) for ref, blob in vectors],
            )

    def version(self, since: datetime) -> tuple[int, int]:
        """(how many, newest ref) of the papers ``recent(since)`` would return: one indexed query that
        says whether an index built on them is still current, without reading them."""
        row = self.conn.execute(
            "SELECT count(*), coalesce(max(pid), 0) FROM papers WHERE first_seen >= ?", (iso(since),)
        ).fetchone()
        return int(row[0]), int(row[1])

    def validators(self, source: str, url: str) -> Validators | None:
        row = self.conn.execute(
            "SELECT etag, last_modified FROM fetch_state WHERE source = ? AND url = ?", (source, url)
        ).fetchone()
        return Validators(row["etag"], row["last_modified"]) if row else None
