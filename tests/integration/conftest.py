from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.hub import Hub, create_template, drop_database, require_services, throwaway_hub

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
async def template_db() -> AsyncIterator[str]:
    require_services()
    name = await create_template()
    yield name
    await drop_database(name)


@pytest.fixture
async def hub(template_db: str) -> AsyncIterator[Hub]:
    async with throwaway_hub(template_db) as h:
        yield h
