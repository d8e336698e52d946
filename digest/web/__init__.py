"""The reader's web app (``digest serve``): thin routes over the library; see ``app``."""

from starlette.applications import Starlette

from digest.settings import load_settings
from digest.web.app import create_app
from digest.wiring import Services

__all__ = ["app_from_environment", "create_app"]


def app_from_environment() -> Starlette:
    """The app for the config ``DIGEST_CONFIG`` names: what each ``digest serve --workers N`` process runs,
    over services of its own."""
    return create_app(Services(load_settings()))
