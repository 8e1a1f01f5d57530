"""The ceiling for a Python proxy on this machine: a bare uvloop + httptools pass-through
that relays each request and response byte for byte over pooled upstream connections, with
no policy, routing, header work or error handling. Measured beside ramparts and nginx so
the ratio table shows how much of the ceiling ramparts keeps. Not a product."""

from __future__ import annotations

import asyncio
import sys

import httptools
import uvloop


class Upstream(asyncio.Protocol):
    def __init__(self, pool: list[Upstream]) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.client: Client | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None or client.transport is None or client.transport.is_closing():
            return
        client.transport.write(data)
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        self.pool.append(self)
        if client is not None:
            client.done()


class Client(asyncio.Protocol):
    def __init__(self, pool: list[Upstream], host: str, port: int) -> None:
        self.pool = pool
        self.host = host
        self.port = port
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []
        self.up: Upstream | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.pending.append(data)
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        data = b"".join(self.pending)
        self.pending = []
        if self.pool:
            up = self.pool.pop()
            up.client = self
            assert up.transport is not None
            up.transport.write(data)
        else:
            asyncio.get_running_loop().create_task(self.connect(data))

    async def connect(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, up = await loop.create_connection(lambda: Upstream(self.pool), self.host, self.port)
        assert isinstance(up, Upstream) and up.transport is not None
        up.client = self
        up.transport.write(data)

    def done(self) -> None:
        pass


async def main(listen_port: int, up_host: str, up_port: int) -> None:
    loop = asyncio.get_running_loop()
    pool: list[Upstream] = []
    server = await loop.create_server(
        lambda: Client(pool, up_host, up_port), "127.0.0.1", listen_port, backlog=1024
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
