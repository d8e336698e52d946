"""Settings mean what they say, and a bad one stops the command at once with one line that names it:
numbers are numbers (``send_at = 7`` is not seven seconds past midnight), secrets are never printed (a
database URL's password included), a DKIM key too short for receivers is refused, and a relevance model
that is not on this machine is named before any run waits on a download."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from conftest import samples_source, write_config
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from test_cli import ADA, digest

from digest.errors import ConfigError
from digest.settings import load_settings

SECRET = "s3cret-Pa55word"


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("send_at = 7", 'send_at: Value error, write the time of day as a string, "HH:MM"'),
        ("send_at = 7.5", 'write the time of day as a string, "HH:MM"'),
        ("send_at = true", 'write the time of day as a string, "HH:MM"'),
        ('send_at = "7"', "is not a time of day as HH:MM"),
        ("lookback_days = true", "lookback_days: expected a number, not true or false"),
        ("[delivery]\nworkers = true", "delivery.workers: expected a number, not true or false"),
        ("[smtp]\ntimeout = false", "smtp.timeout: expected a number, not true or false"),
        (
            "[[subscribers]]\nemail = 'a@example.org'\nmax_papers = true",
            "subscribers[0].max_papers: Input should be a valid integer",
        ),
        ('[web]\ntrusted_proxies = ["*"]', "web.trusted_proxies: '*' is not an IP address or network"),
        (
            "[[subscribers]]\nemail = 'bad@example.org'\nkeywords = ['RAG', '***']",
            "subscribers[0]: keyword '***': the keyword has no letters or digits",
        ),
        (
            "[[subscribers]]\nemail = 'a@example.org'\nmax_papers = 1001",
            "max_papers must be a number from 1 to 1,000",
        ),
        (
            "[[subscribers]]\nemail = 'a@example.org'\nabout = 7",
            "subscribers[0].about: Input should be a valid string",
        ),
        ('[web]\ntrusted_proxies = ["proxy.internal"]', "is not an IP address or network"),
    ],
)
def test_a_setting_of_the_wrong_kind_is_refused(tmp_path: Path, setting: str, expected: str) -> None:
    cfg = tmp_path / "digest.toml"
    cfg.write_text(setting + "\n", encoding="utf-8")
    result = digest("run", "--config", str(cfg))
    assert result.returncode == 2, result.stderr
    assert expected.replace("Value error, ", "") in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 3


@pytest.mark.parametrize("written", ['send_at = "07:30"', "send_at = 07:30:00", 'send_at = "7:30"'])
def test_a_time_of_day_is_read_as_one(tmp_path: Path, written: str) -> None:
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text(encoding="utf-8").replace('send_at = "00:00"', written), encoding="utf-8")
    assert f"{load_settings(cfg).send_at:%H:%M}" == "07:30"


@pytest.mark.parametrize(
    "where",
    [
        ("file", f"postgresql://digest:{SECRET}@db.example.org/digest"),
        ("file", f"postgresql://digest@db.example.org/digest?password={SECRET}"),
        ("env", f"postgres://digest:{SECRET}@db.example.org:5432/digest"),
        ("env", f"postgresql://digest@db.example.org/digest?sslmode=require&password={SECRET}"),
    ],
)
def test_a_password_in_the_database_url_is_refused_and_never_printed(
    tmp_path: Path, where: tuple[str, str]
) -> None:
    place, url = where
    cfg = write_config(tmp_path, sources=[samples_source()])
    env = {}
    if place == "file":
        cfg.write_text(
            cfg.read_text(encoding="utf-8").replace('database = "var/digest.sqlite3"', f'database = "{url}"'),
            encoding="utf-8",
        )
    else:
        env["DIGEST_DATABASE"] = url
    for command in (["run"], ["subscribers"], ["serve", "--port", "1"], ["-vv", "run"]):
        result = digest(*command, "--config", str(cfg), env=env)
        assert result.returncode == 2, result.stderr
        assert SECRET not in result.stderr + result.stdout
        assert "database: " in result.stderr and "***" in result.stderr and "PGPASSWORD" in result.stderr


def test_a_database_that_does_not_answer_is_named_without_its_password(tmp_path: Path) -> None:
    """A URL without a password (it comes from PGPASSWORD) to a server that is not there: the error names
    the database; a password from the environment is never printed, even with -vv."""
    cfg = write_config(
        tmp_path, top={"database": "postgresql://digest@127.0.0.1:9/digest"}, subscribers=[ADA]
    )
    result = digest("-vv", "subscribers", "--config", str(cfg), env={"PGPASSWORD": SECRET})
    assert result.returncode == 2
    assert "postgresql://digest@127.0.0.1:9/digest" in result.stderr and SECRET not in result.stderr


def _rsa_pem(bits: int) -> str:
    """An RSA key of ``bits`` bits (the cryptography package refuses to make one under 1,024 itself)."""
    rnd = random.Random(bits)

    def prime(size: int) -> int:
        while True:
            n = rnd.getrandbits(size) | (3 << size - 2) | 1  # the top two bits: p * q has all its bits
            if all(pow(a, n - 1, n) == 1 for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)):
                return n

    p, q, e = prime(bits // 2), prime(bits // 2), 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, p * q)
    )
    return (
        numbers.private_key()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


def test_a_dkim_key_under_1024_bits_is_refused_with_its_size(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path, sources=[samples_source()], subscribers=[ADA], tables={"dkim": {"selector": "s1"}}
    )
    short = digest("run", "--config", str(cfg), env={"DIGEST_DKIM__PRIVATE_KEY": _rsa_pem(768)})
    assert short.returncode == 2
    assert (
        "dkim.private_key: the DKIM private key has 768 bits; RFC 8301 asks for at least 1024" in short.stderr
    )
    assert "BEGIN" not in short.stderr
    assert not (tmp_path / "var" / "outbox").exists()  # nothing went out unsigned or badly signed
    ok = digest("run", "--config", str(cfg), env={"DIGEST_DKIM__PRIVATE_KEY": _rsa_pem(1024)})
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "no-such/model",
            "relevance.model: the model 'no-such/model' is neither a folder nor in this machine's",
        ),
        ("./models/minilm", "relevance.model: there is no model folder at"),
        ("/nowhere/at/all", "relevance.model: there is no model folder at /nowhere/at/all"),
    ],
)
def test_a_relevance_model_that_is_not_here_stops_the_run_at_once(
    tmp_path: Path, model: str, expected: str
) -> None:
    cfg = write_config(
        tmp_path, sources=[samples_source()], subscribers=[ADA], tables={"relevance": {"model": model}}
    )
    started = time.monotonic()
    result = digest("run", "--config", str(cfg), env={"HF_HUB_OFFLINE": ""})
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 20  # no network wait, no model loading
    assert not (tmp_path / "var" / "outbox").exists()


def test_a_folder_that_holds_no_model_is_named(tmp_path: Path) -> None:
    (tmp_path / "empty-model").mkdir()
    cfg = write_config(tmp_path, tables={"relevance": {"model": "empty-model"}})
    with pytest.raises(ConfigError, match="holds no sentence-transformers model"):
        load_settings(cfg)


def test_without_sentence_transformers_the_fix_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library cannot be uninstalled under a test; what `find_spec` answers without it is simulated."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sentence_transformers" else real(name, *a),
    )
    cfg = write_config(tmp_path, tables={"relevance": {"model": "all-MiniLM-L6-v2"}})
    with pytest.raises(
        ConfigError, match=r"needs sentence-transformers, which is not installed.*digest\[semantic\]"
    ):
        load_settings(cfg)
