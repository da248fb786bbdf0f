"""A lean HTTP/1.1 burst generator: N kept-alive connections, one request on each at once.

An HTTP client library costs a millisecond or more of Python per request; with 50 requests
in flight on a 2-core machine that overhead, spent in the benchmark's own process, shows
up as server latency. Here each request is prepared as bytes before the burst, written
on its own kept-alive connection and timed from just before its write to the last byte
of its response, so the figures are the server's (plus loopback), not the client's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Answer:
    """One response of a burst: status code and milliseconds from write to last byte."""

    status: int
    millis: float
    body: bytes


def http_request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """Build the bytes of an HTTP/1.1 POST that keeps its connection open."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Connection: keep-alive",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class Connections:
    """A fixed set of kept-alive connections to one server."""

    def __init__(self, host: str, port: int, count: int) -> None:
        self.host, self.port, self.count = host, port, count
        self._streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def open(self) -> None:
        """Open every connection (before any timing starts), one at a time.

        A server of several processes shares one listening socket; connections opened all
        at once queue up and the first process to wake accepts nearly all of them (44 of
        50 in one run), so the load would fall on one core. Opened apart, as connections
        from Slack or a load balancer arrive, they spread over the processes.
        """
        self._streams = []
        for _ in range(self.count):
            self._streams.append(await asyncio.open_connection(self.host, self.port))
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        """Close every connection."""
        for _, writer in self._streams:
            writer.close()
        self._streams = []

    async def burst(self, requests: Sequence[bytes]) -> list[Answer]:
        """Send request i on connection i, all at once; return the answers in order."""
        if len(requests) > len(self._streams):
            raise ValueError(f"{len(requests)} requests for {len(self._streams)} connections")

        async def one(request: bytes, stream: tuple[asyncio.StreamReader, asyncio.StreamWriter]):
            reader, writer = stream
            started = time.perf_counter()
            writer.write(request)
            status, body = await _read_response(reader)
            return Answer(status, (time.perf_counter() - started) * 1000, body)

        tasks = [
            asyncio.ensure_future(one(request, stream))
            for request, stream in zip(requests, self._streams, strict=False)
        ]
        return list(await asyncio.gather(*tasks))


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
        elif name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length) if length else b""
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, body
        body += chunk[:-2]
