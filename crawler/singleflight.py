"""One fetch per key, however many requests ask at once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Concurrent callers for the same key wait for the first caller's result.

    ``on_abort`` gives the value the waiters get if the first caller is
    cancelled (the engine stopping): it must fail closed.
    """

    def __init__(self) -> None:
        self._inflight: dict[str, asyncio.Future[T]] = {}

    async def run(self, key: str, fetch: Callable[[], Awaitable[T]], on_abort: Callable[[BaseException], T]) -> T:
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await fetch()
        except BaseException as exc:
            result = on_abort(exc)
            raise
        finally:
            self._inflight.pop(key, None)
            if not future.done():
                future.set_result(result)
        return result
