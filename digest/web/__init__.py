"""The reader's web app (``digest serve``): thin routes over the library; see ``app``."""

from digest.web.app import create_app

__all__ = ["create_app"]
