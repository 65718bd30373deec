"""Helpers of the versioning tests: a model trained on a chosen version of the flight_delay view.

The online tests' helpers (a server thread, requests from the real spine, the small training config) are
reused from tests/inference/online/online_testing.py, put on the path here.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference" / "online"))
