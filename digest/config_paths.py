"""What a config file points at, checked when it is read: relative paths made absolute against its folder,
the templates folder, and the relevance model (a folder, or a name in the local Hugging Face cache),
so that a run never waits on a download nor fails half-way for something the config named wrong.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from digest.errors import ConfigError

INSTALL_HINT = (
    "install the model's library (pip install 'digest[semantic]', PyTorch's CPU build first: see the README),"
    ' or set [relevance] model = "tfidf"'
)


def check_model(name: str, base: Path) -> str:
    """The model ``[relevance] model`` names, checked without loading it or touching the network: "tfidf";
    a model folder (an absolute path, or relative to ``base``, the config's folder), returned absolute; or
    a model hub name found in the local Hugging Face cache. ConfigError naming the setting and the fix
    otherwise: a run never waits on a download, nor fails half-way for a model it cannot load."""
    if name == "tfidf":
        return name
    if importlib.util.find_spec("sentence_transformers") is None:
        raise ConfigError(
            f"the model {name!r} needs sentence-transformers, which is not installed",
            key="relevance.model",
            hint=INSTALL_HINT,
        )
    folder = (base / Path(name).expanduser()).resolve()
    if folder.is_dir():
        if not any((folder / f).is_file() for f in ("modules.json", "config.json")):
            raise ConfigError(
                f"{folder} holds no sentence-transformers model (no modules.json or config.json)",
                key="relevance.model",
                hint="point it at the folder a model was saved or downloaded into",
            )
        return str(folder)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ConfigError(
            f"there is no model folder at {folder}",
            key="relevance.model",
            hint="put the model's folder there (model.save(FOLDER), or hf download NAME --local-dir FOLDER)",
        )
    from huggingface_hub import try_to_load_from_cache

    repo = name if "/" in name else f"sentence-transformers/{name}"
    if not isinstance(try_to_load_from_cache(repo, "modules.json"), str):
        raise ConfigError(
            f"the model {name!r} is neither a folder nor in this machine's Hugging Face cache; runs do not download it",
            key="relevance.model",
            hint=f"download it once (hf download {repo}), or save it into a folder and name the folder",
        )
    return name


def resolved(path: Path, base: Path) -> Path:
    """``path`` made absolute: ``~`` expanded, relative to ``base`` (the config file's folder).

    >>> str(resolved(Path("var/state.sqlite3"), Path("/etc/digest")))
    '/etc/digest/var/state.sqlite3'
    """
    path = path.expanduser()
    return (path if path.is_absolute() else base / path).resolve()


def check_templates(folder: Path) -> None:
    """ConfigError unless ``folder`` holds the two templates a digest is rendered with."""
    missing = [n for n in ("digest.html", "digest.txt") if not (folder / n).is_file()]
    if missing:
        raise ConfigError(
            f"{folder} has no {' or '.join(missing)}"
            if folder.is_dir()
            else f"the folder {folder} does not exist",
            key="templates_dir",
            hint="point it at a folder with digest.html and digest.txt, or remove it for the bundled ones",
        )
