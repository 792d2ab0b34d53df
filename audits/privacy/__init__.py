"""Privacy probes, one file per method: membership inference. Importing this package registers them."""

from __future__ import annotations

import importlib

for _module in ("membership_inference",):
    importlib.import_module(f"audits.privacy.{_module}")
