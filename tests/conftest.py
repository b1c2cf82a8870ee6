"""Shared fixtures: a real nats-server on a free loopback port, started from the wheel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus import run_nats_server


@pytest.fixture
async def nats_url(tmp_path: Path) -> AsyncIterator[str]:
    async with run_nats_server(tmp_path / "nats") as url:
        yield url
