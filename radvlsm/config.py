"""The bundle's JSON is the one place that chooses and sizes the model: everything builds it from there.

``network_def`` lives in ``<bundle>/configs/inference.json``. The CLI, the MONAI Label app, the benchmarks and
the tests build the network with :func:`build_network` (MONAI's ``ConfigParser`` on that file, with
overrides as ``network_def#<key>`` values); ``train.json`` and ``evaluate.json`` point their ``network_def``
here too, so the architecture is written once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radvlsm.errors import RadVLSMInputError

if TYPE_CHECKING:  # imported when a parser is made, so that importing this module stays cheap
    from monai.bundle import ConfigParser

logger = logging.getLogger(__name__)

DEFAULT_BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "radvlsm_breast_us"
NETWORK_CONFIG = "inference.json"


def bundle_parser(
    bundle_root: str | Path = DEFAULT_BUNDLE, config: str = NETWORK_CONFIG, overrides: Mapping[str, Any] | None = None
) -> ConfigParser:
    """A ``ConfigParser`` of ``<bundle_root>/configs/<config>`` with ``bundle_root`` set and ``overrides`` applied.

    Args:
        bundle_root: the bundle folder.
        config: a config file name in its ``configs/``.
        overrides: ``{id: value}`` (e.g. ``{"network_def#variant": "tiny"}``), as ``--id value`` on MONAI's CLI.

    Raises:
        RadVLSMInputError: the bundle has no such config file.
    """
    from monai.bundle import ConfigParser

    path = Path(bundle_root).expanduser().resolve() / "configs" / config
    if not path.is_file():
        raise RadVLSMInputError(f"not a bundle config file (no configs/{config}); pass the bundle folder", str(path))
    parser = ConfigParser()
    parser.read_config(str(path))
    parser["bundle_root"] = str(path.parents[1])
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser


def build_network(bundle_root: str | Path = DEFAULT_BUNDLE, **overrides: Any):
    """The bundle's network (:class:`radvlsm.models.radvlsm.RadVLSM`, untrained heads), sized by ``network_def``.

    Args:
        bundle_root: the bundle folder (default: the one in this repository).
        overrides: ``network_def`` keys to change, e.g. ``variant="tiny"`` (what ``--network_def#variant tiny``
            does on MONAI's command line).

    Returns:
        the model, in train mode, on the CPU; load ``model.pt`` with
        :func:`radvlsm.models.weights.load_trained_weights`.
    """
    parser = bundle_parser(bundle_root, overrides={f"network_def#{k}": v for k, v in overrides.items()})
    try:
        model = parser.get_parsed_content("network_def", instantiate=True)
    except RuntimeError as exc:  # MONAI wraps a component's error: give the user our message, not the wrapper
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, RadVLSMInputError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None
    logger.debug("network built from %s with overrides %s", bundle_root, overrides)
    return model
