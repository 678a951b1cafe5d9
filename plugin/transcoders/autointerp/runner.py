"""Running a hookpoint's explainer or scorer calls concurrently."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from tqdm.auto import tqdm

from .config import AutointerpConfig


def run_all(
    items: list, work: Callable[..., Awaitable[None]], desc: str, initial: int, total: int,
    cfg: AutointerpConfig,
) -> None:
    """Run `work(item, bar)` for every item, `cfg.concurrency` at a time; the first
    failure cancels the rest (whatever finished is already on disk)."""
    if not items:
        return

    async def main():
        gate = asyncio.Semaphore(cfg.concurrency)
        with tqdm(total=total, initial=initial, desc=desc) as bar:

            async def guarded(item):
                async with gate:
                    await work(item, bar)

            await asyncio.gather(*(guarded(item) for item in items))

    asyncio.run(main())
