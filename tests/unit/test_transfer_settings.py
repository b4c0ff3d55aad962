"""The large package settings: defaults, ranges, and the rules across them."""

from __future__ import annotations

import pytest

from router.settings import Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.max_large_package_bytes == 2 * 1024**3
    assert s.chunk_bytes == 4 * 1024 * 1024
    assert s.large_threshold_bytes == 16 * 1024 * 1024
    assert s.upload_expiry_minutes == 1440


@pytest.mark.parametrize(("env", "message"), [
    ({"LIENTHONG_CHUNK_BYTES": "1024"}, "LIENTHONG_CHUNK_BYTES"),
    ({"LIENTHONG_MAX_LARGE_PACKAGE_BYTES": str(32 * 1024**3)}, "must be at most"),
    ({"LIENTHONG_UPLOAD_EXPIRY_MINUTES": "0"}, "LIENTHONG_UPLOAD_EXPIRY_MINUTES"),
    # a chunk is one AMQP message: it must fit under the broker's maximum message size
    ({"LIENTHONG_MAX_PACKAGE_BYTES": str(2 * 1024 * 1024)}, "LIENTHONG_CHUNK_BYTES"),
    ({"LIENTHONG_LARGE_THRESHOLD_BYTES": str(64 * 1024 * 1024)},
     "LIENTHONG_LARGE_THRESHOLD_BYTES"),
])
def test_bad_values_are_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert message in refused.value.explain()
