"""Several AMQP hosts in one URL: how it is split, and what is refused."""

from __future__ import annotations

import pytest

from adapters.endpoints import amqp_endpoints, redact


def test_one_host_stays_one_url() -> None:
    url = "amqp://guest:guest@127.0.0.1:5672/lienthong"
    assert amqp_endpoints(url) == [url]


def test_a_host_list_shares_credentials_vhost_and_options() -> None:
    url = "amqps://u%40x:p%2Fw@rmq1:5671,rmq2, rmq3:5999/lien%2Fthong?heartbeat=10"
    assert amqp_endpoints(url) == [
        "amqps://u%40x:p%2Fw@rmq1:5671/lien%2Fthong?heartbeat=10",
        "amqps://u%40x:p%2Fw@rmq2/lien%2Fthong?heartbeat=10",
        "amqps://u%40x:p%2Fw@rmq3:5999/lien%2Fthong?heartbeat=10",
    ]


def test_ipv6_hosts_and_no_credentials() -> None:
    assert amqp_endpoints("amqp://[::1]:5681,[::1]:5682/v") == [
        "amqp://[::1]:5681/v", "amqp://[::1]:5682/v"]


@pytest.mark.parametrize("bad", [
    "http://guest:guest@h:5672/v",          # not AMQP
    "amqp://guest:guest@h1:5672,,h2/v",     # an empty host
    "amqp://guest:guest@/v",                # no host at all
])
def test_malformed_urls_are_refused_without_the_password(bad: str) -> None:
    with pytest.raises(ValueError, match="AMQP") as info:
        amqp_endpoints(bad)
    assert "guest:guest" not in str(info.value)


def test_redact_masks_the_password_only() -> None:
    assert redact("amqp://gw:s3cret@h1:1,h2:2/v") == "amqp://gw:******@h1:1,h2:2/v"


def test_a_gateways_url_keeps_every_host_of_the_hubs_url() -> None:
    from router.cli.gateway import gateway_url
    from router.settings import Settings

    hub = Settings(amqp_url="amqp://hub:pw@rmq1:5672,rmq2:5672,rmq3/lienthong")
    url = gateway_url(hub, "vpcp", "s3/cret")
    assert url == "amqp://vpcp:s3%2Fcret@rmq1:5672,rmq2:5672,rmq3/lienthong"
    assert len(amqp_endpoints(url)) == 3
