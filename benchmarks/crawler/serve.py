"""`python -m benchmarks.crawler.serve DIR`: serves a rendered benchmark web (`web.render`).

One aiohttp process listens on every host's address; each body is read into memory once, so the
server does as little per request as it can. `/__requests` answers how many page requests
(robots.txt aside) it has served, so a benchmark can check that every crawler fetched the same
pages.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aiohttp import web

from benchmarks.crawler.web import HOSTS, MIRROR, PORT

TYPES = {".html": "text/html; charset=utf-8", ".txt": "text/plain"}


def application(root: Path) -> web.Application:
    bodies: dict[tuple[str, str], tuple[bytes, str]] = {}
    for host in (*HOSTS, MIRROR):
        for path in (root / host).rglob("*"):
            if path.is_file():
                key = "/" + path.relative_to(root / host).as_posix()
                bodies[host, key.removesuffix("index.html")] = (
                    path.read_bytes(),
                    TYPES[path.suffix],
                )
    served = [0]

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.path == "/__requests":
            return web.Response(text=str(served[0]))
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        found = bodies.get((sockname[0] if sockname else "", request.path))
        if found is None:
            return web.Response(status=404)
        if request.path != "/robots.txt":
            served[0] += 1
        body, content_type = found
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    return app


async def _sites(app: web.Application) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for host in (*HOSTS, MIRROR):
        await web.TCPSite(runner, host, PORT, backlog=1024).start()


def main() -> None:
    import asyncio

    app = application(Path(sys.argv[1]))

    async def forever() -> None:
        await _sites(app)
        await asyncio.Event().wait()

    asyncio.run(forever())


if __name__ == "__main__":
    main()
