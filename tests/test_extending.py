"""A new listing kind and a new channel are one module each (``toy_source``, ``toy_channel``) and a line
that registers them: nothing else in digest changes. The daily job then reads the new kind and delivers
through the new channel with every guarantee of the outbox (a paper is recorded once accepted, and never
sent twice). An unknown kind or channel in the config is named when a run starts."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import toy_channel
import toy_source
from conftest import write_config

from digest import sources
from digest.errors import ConfigError
from digest.models import Status
from digest.run import pipeline
from digest.settings import load_settings
from digest.store import Store
from digest.wiring import CHANNELS, Services

LAB = "Speculative decoding at scale | We make decoding faster.\nA survey of agents | Agents, surveyed.\nnot a paper\n"


def test_a_new_source_kind_and_a_new_channel_are_one_module_each(tmp_path: Path, now: datetime) -> None:
    assert sources.KINDS["lines"] is toy_source.parse  # imported: each registered itself
    assert CHANNELS["jsonl"] is toy_channel.make
    (tmp_path / "lab.txt").write_text(LAB, encoding="utf-8")
    cfg = write_config(
        tmp_path,
        sources=[{"kind": "lines", "name": "lab", "path": "lab.txt"}],
        subscribers=[{"email": "ada@example.org", "keywords": ["decoding"]}, {"email": "lin@example.org"}],
        tables={"delivery": {"method": "jsonl"}},
    )
    settings = load_settings(cfg)
    with Store.open(settings.database) as store:
        first = pipeline.run_once(Services(settings), store, now)
        again = pipeline.run_once(Services(settings), store, now + timedelta(days=1))
    (source,) = first.sources
    assert (source.kind, source.papers, source.skipped) == ("lines", 2, 1)
    assert first.delivered_to.startswith("JSON lines ")
    lines = [json.loads(line) for line in (tmp_path / "var" / "outbox.jsonl").read_text().splitlines()]
    assert {line["to"]: line["papers"] for line in lines} == {
        "ada@example.org": ["Speculative decoding at scale"],
        "lin@example.org": ["A survey of agents", "Speculative decoding at scale"],  # the trending digest
    }
    assert {r.email: r.status for r in again.subscribers} == {
        "ada@example.org": Status.NOTHING_NEW,  # never a paper twice, whatever the channel
        "lin@example.org": Status.NOTHING_NEW,
    }


@pytest.mark.parametrize(
    ("tables", "sources", "key"),
    [
        (
            {"delivery": {"method": "carrier-pigeon"}},
            [],
            "delivery.method: no delivery method 'carrier-pigeon'",
        ),
        ({}, [{"kind": "rss", "name": "x", "path": "a"}], "sources[0].kind: no listing kind 'rss'"),
    ],
)
def test_an_unknown_kind_or_channel_is_named_when_a_run_starts(
    tmp_path: Path, now: datetime, tables: dict[str, dict[str, str]], sources: list[dict[str, str]], key: str
) -> None:
    settings = load_settings(write_config(tmp_path, sources=sources, tables=tables))
    with (
        Store.open(settings.database) as store,
        pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")),
    ):
        pipeline.run_once(Services(settings), store, now)
