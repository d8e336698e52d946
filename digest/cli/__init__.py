"""The `digest` command: a thin click layer over the library (see ``base`` for the group and what every
command shares; the commands by area in ``runs``, ``readers`` and ``admin``)."""

from digest.cli import admin, readers, runs  # noqa: F401  (each module adds its commands to ``main``)
from digest.cli.base import main
from digest.cli.runs import print_summary

__all__ = ["main", "print_summary"]

if __name__ == "__main__":  # pragma: no cover
    main()
