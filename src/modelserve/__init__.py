"""modelserve: serve a saved machine-learning model as a fast, safe HTTP service."""

from modelserve.errors import ModelserveError
from modelserve.settings import ModelConfig, Settings, load_settings

__version__ = "0.1.0"

__all__ = ["ModelConfig", "ModelserveError", "Settings", "__version__", "load_settings"]
