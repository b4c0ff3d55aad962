from __future__ import annotations

import pytest

# the same throwaway hub as the integration tests (one vhost + database + users per test)
from tests.integration.conftest import hub, template_db  # noqa: F401

pytestmark = pytest.mark.chaos
