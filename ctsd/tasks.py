"""Task helpers shared by packages that own background tasks."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel `tasks` and wait until they end, without swallowing our own cancellation.

    Awaiting a cancelled child raises CancelledError in the caller; that error
    is the child's, unless the caller itself is being cancelled, in which case
    it must propagate.
    """
    for task in tasks:
        task.cancel()
    for task in tasks:
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        except Exception:  # the task's own error: its owner reports it
            pass
