"""Model configs of the app (``--conf models``)."""

from lib.configs.radvlsm import RadVLSMConfig

CONFIGS = {"radvlsm": RadVLSMConfig}

__all__ = ["CONFIGS", "RadVLSMConfig"]
