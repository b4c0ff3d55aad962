"""A small client for the RabbitMQ management HTTP API: vhosts, users, permissions and
queue statistics. Used to provision gateways and to watch queue health."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aiohttp

__all__ = ["BrokerAdmin", "BrokerAdminError"]


class BrokerAdminError(RuntimeError):
    """The management API refused a request or could not be reached."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:300]}")
        self.status = status


def _q(part: str) -> str:
    return quote(part, safe="")


class BrokerAdmin:
    """``async with BrokerAdmin(url) as admin: await admin.put_vhost("lienthong")``.

    ``url`` is ``http://user:password@host:15672``, or with several hosts (the nodes of a
    cluster) ``http://user:password@rmq1:15672,rmq2:15672``: a request goes to the host
    that answered last and moves on to the next when that one cannot be reached.
    """

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        self._headers = {
            "Authorization": aiohttp.encode_basic_auth(
                unquote(parts.username or "guest"), unquote(parts.password or "guest")
            )
        }
        hosts = [h.strip() for h in parts.netloc.rpartition("@")[2].split(",") if h.strip()]
        self._bases = [urlunsplit((parts.scheme or "http", host, "/api", "", ""))
                       for host in hosts or ["127.0.0.1"]]
        self._current = 0
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, path: str, body: Any = None, *, ok_missing: bool = False
    ) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        for tried in range(len(self._bases)):
            url = f"{self._bases[self._current]}{path}"
            try:
                async with self._session.request(method, url, json=body) as resp:
                    text = await resp.text()
                    if resp.status == 404 and ok_missing:
                        return None
                    if resp.status >= 400:
                        raise BrokerAdminError(method, path, resp.status, text)
                    if not text:
                        return None
                    return await resp.json(content_type=None)
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                if tried + 1 == len(self._bases):  # no node answers
                    raise BrokerAdminError(method, path, 0, repr(exc)) from exc
                self._current = (self._current + 1) % len(self._bases)
            except aiohttp.ClientError as exc:
                raise BrokerAdminError(method, path, 0, str(exc)) from exc
        raise BrokerAdminError(method, path, 0, "no management host")

    # vhosts
    async def put_vhost(self, vhost: str, *, default_queue_type: str = "quorum") -> None:
        await self.request(
            "PUT", f"/vhosts/{_q(vhost)}", {"default_queue_type": default_queue_type}
        )

    async def delete_vhost(self, vhost: str) -> None:
        await self.request("DELETE", f"/vhosts/{_q(vhost)}", ok_missing=True)

    async def vhost_exists(self, vhost: str) -> bool:
        return await self.request("GET", f"/vhosts/{_q(vhost)}", ok_missing=True) is not None

    # users and permissions
    async def put_user(self, user: str, password: str, *, tags: str = "") -> None:
        await self.request("PUT", f"/users/{_q(user)}", {"password": password, "tags": tags})

    async def delete_user(self, user: str) -> None:
        await self.request("DELETE", f"/users/{_q(user)}", ok_missing=True)

    async def get_user(self, user: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.request(
            "GET", f"/users/{_q(user)}", ok_missing=True
        )
        return result

    async def set_permissions(
        self, vhost: str, user: str, *, configure: str, write: str, read: str
    ) -> None:
        await self.request(
            "PUT",
            f"/permissions/{_q(vhost)}/{_q(user)}",
            {"configure": configure, "write": write, "read": read},
        )

    async def clear_permissions(self, vhost: str, user: str) -> None:
        await self.request("DELETE", f"/permissions/{_q(vhost)}/{_q(user)}", ok_missing=True)

    async def set_topic_permissions(
        self, vhost: str, user: str, *, exchange: str, write: str, read: str = ".*"
    ) -> None:
        await self.request(
            "PUT",
            f"/topic-permissions/{_q(vhost)}/{_q(user)}",
            {"exchange": exchange, "write": write, "read": read},
        )

    async def clear_topic_permissions(self, vhost: str, user: str) -> None:
        await self.request(
            "DELETE", f"/topic-permissions/{_q(vhost)}/{_q(user)}", ok_missing=True
        )

    async def close_user_connections(self, user: str) -> None:
        """Close every connection of ``user`` at once. Asks the broker itself: the
        statistics-based connection list lags seconds behind new connections, and a channel
        keeps the permissions it had when it opened."""
        await self.request("DELETE", f"/connections/username/{_q(user)}", ok_missing=True)

    # policies
    async def put_policy(
        self,
        vhost: str,
        name: str,
        *,
        pattern: str,
        definition: dict[str, Any],
        priority: int = 0,
        apply_to: str = "queues",
    ) -> None:
        await self.request(
            "PUT",
            f"/policies/{_q(vhost)}/{_q(name)}",
            {"pattern": pattern, "definition": definition, "priority": priority,
             "apply-to": apply_to},
        )

    async def get_policy(self, vhost: str, name: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.request(
            "GET", f"/policies/{_q(vhost)}/{_q(name)}", ok_missing=True
        )
        return result

    # queues
    async def list_queues(self, vhost: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.request("GET", f"/queues/{_q(vhost)}") or []
        return result

    async def get_queue(self, vhost: str, name: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.request(
            "GET", f"/queues/{_q(vhost)}/{_q(name)}", ok_missing=True
        )
        return result

    # cluster
    async def running_nodes(self) -> list[str]:
        rows: list[dict[str, Any]] = await self.request("GET", "/nodes?columns=name,running")
        return sorted(str(r["name"]) for r in rows or [] if r.get("running"))

    async def rebalance_queues(self) -> None:
        """Ask the cluster to spread queue leaders evenly over its running nodes."""
        await self.request("POST", "/rebalance/queues")

    async def overview(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.request("GET", "/overview")
        return result
