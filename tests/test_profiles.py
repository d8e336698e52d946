"""One reader profile: the config, `digest subscribe`, the sign-up and manage forms, the API and a
confirmation link build it with one model (``profiles.ProfileInput``), so the same input gives the same
stored profile, and the same limit holds everywhere. In-process: click's CliRunner and Starlette's
TestClient over a real SQLite file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import TEST_SECRET_KEY, samples_source, write_config
from starlette.testclient import TestClient

from digest.cli import main
from digest.errors import ConfigError
from digest.models import MAX_PAPERS, Profile
from digest.profiles import ProfileInput
from digest.settings import load_settings
from digest.store import Store
from digest.subscriptions import Request
from digest.tokens import Purpose, Signer
from digest.web import create_app
from digest.wiring import Services

API_TOKEN = "api-token-for-tests-0123456789abcdef"
NAME = "  Ada   " + "L" * 120  # collapsed and cut at 100
ABOUT = "  efficient   LLM\tinference  "
WANT = Profile(("RAG", "speculative decoding"), ("survey",), 500, "efficient LLM inference", ("2501.01234",))


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DIGEST_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("DIGEST_API_TOKEN", API_TOKEN)
    return write_config(tmp_path, top={"base_url": "http://127.0.0.1:8000"}, sources=[samples_source()])


def _stored(cfg: Path, email: str) -> tuple[str, Profile]:
    with Store.open(load_settings(cfg).database) as store:
        found = store.readers.get(email)
    assert found is not None
    return found.name, found.profile


def test_every_way_in_stores_the_same_profile(app_env: Path) -> None:
    name = " ".join(NAME.split())[:100]
    runner = CliRunner()
    made = runner.invoke(
        main,
        [
            "subscribe",
            "cli@example.org",
            "-k",
            "RAG",
            "-k",
            "speculative decoding",
            "-x",
            "survey",
            "--max",
            "500",
            "--about",
            ABOUT,
            "--seed",
            "2501.01234",
            "--name",
            NAME,
            "--config",
            str(app_env),
        ],
    )
    assert made.exit_code == 0, made.output
    assert _stored(app_env, "cli@example.org") == (name, WANT)

    with TestClient(create_app(Services(load_settings(app_env)))) as client:
        body: dict[str, Any] = {
            "keywords": ["RAG", "speculative decoding"],
            "exclude": ["survey"],
            "max_papers": 500,
            "about": ABOUT,
            "seeds": ["2501.01234"],
            "name": NAME,
        }
        put = client.put(
            "/api/subscribers/api@example.org", json=body, headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
        assert put.status_code == 200, put.text
        assert _stored(app_env, "api@example.org") == (name, WANT)

        # The manage page of a reader with 500 papers per email saves (the form used to stop at 100).
        manage = f"/m/{Signer([TEST_SECRET_KEY]).make(Purpose.MANAGE, 'api@example.org')}"
        page = client.get(manage)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf and 'value="500"' in page.text
        form = {
            "csrf": csrf.group(1),
            "keywords": "RAG\nspeculative decoding",
            "exclude": "survey",
            "max_papers": "500",
            "about": ABOUT,
            "seeds": "2501.01234\n\n",
            "action": "save",
        }
        saved = client.post(manage, data=form)
        assert saved.status_code == 200 and "Saved." in saved.text
        assert _stored(app_env, "api@example.org") == (name, WANT)
        too_many = client.post(manage, data={**form, "max_papers": str(MAX_PAPERS + 1)})
        # The same rule, said in the form's words beside the field it is about.
        assert (
            too_many.status_code == 400
            and "Papers per email: give a number from 1 to 1,000." in too_many.text
        )
        assert (
            'inputmode="numeric" value="1001" aria-describedby="form-error" aria-invalid="true"'
            in too_many.text
        )

    asked = Request.from_form(
        {"email": "web@example.org", **{k: v for k, v in form.items() if k != "csrf"}, "name": NAME}
    )
    again = Request.from_token_data(asked.token_data())  # what the confirmation link carries, read back
    assert (again.name, again.profile) == (asked.name, asked.profile) == (name, WANT)


def test_config_profiles_are_checked_when_the_config_loads(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, subscribers=[{"email": "ada@example.org", "keywords": ["RAG", "+++"]}])
    with pytest.raises(
        ConfigError, match=r"subscribers\[0\]: keyword '\+\+\+': the keyword has no letters or digits"
    ):
        load_settings(cfg)
    cfg = write_config(tmp_path, subscribers=[{"email": "ada@example.org", "about": ABOUT, "name": NAME}])
    (ada,) = load_settings(cfg).config_subscribers()
    assert (ada.name, ada.profile.about) == (" ".join(NAME.split())[:100], "efficient LLM inference")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"max_papers": 0}, "max_papers must be a number from 1 to 1,000"),
        ({"max_papers": "5"}, "max_papers must be a number from 1 to 1,000"),
        ({"keywords": ["  "]}, "keyword '  ': the keyword is empty"),
        ({"seeds": ["x" * 501]}, "a seed paper is an arXiv id or a title of 1 to 500 characters"),
        ({"cadence": "hourly"}, "unknown cadence 'hourly'"),
        ({"colour": "blue"}, "unknown field 'colour'"),
    ],
)
def test_one_set_of_messages(data: dict[str, Any], message: str) -> None:
    from digest.errors import ProfileError

    with pytest.raises(
        ProfileError, match=re.escape("subscriber ada@example.org") + ".*" + re.escape(message)
    ):
        ProfileInput.checked(data, subscriber="ada@example.org")
