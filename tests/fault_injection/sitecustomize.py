"""Arms the test-only fault hook (tests/faults.py) in a router process started with this
directory on PYTHONPATH. Never on a production path."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: ``tests``

from tests.faults import install

install()
