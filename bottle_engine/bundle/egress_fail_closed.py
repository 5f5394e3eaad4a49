"""Addon hooks that fail closed.

mitmproxy catches an exception raised by an addon hook, logs "Addon error" and carries on as if
the hook had returned: a check that crashes half way lets its flow through unchecked. One
Host header of ``other.test:¹`` did exactly that (``'¹'.isdigit()`` is true, ``int('¹')``
raises), and the request went to the bound host with the real secret and another tenant's name.

`fails_closed(on_error)` wraps a hook (plain or async) so that an exception runs `on_error`
with the hook's argument instead: it refuses the flow, kills it, or fails the connection, as
fits the hook. The log names the hook and the exception's type only: the exception's text may
quote what the agent sent.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

INTERNAL_ERROR = "internal-error"  # the rule named when a check failed instead of deciding

Hook = TypeVar("Hook", bound=Callable[..., Any])
OnError = Callable[[Any, str], None]  # (the hook's argument, why) -> close what it carries

_log = logging.getLogger(__name__)


def failure_reason(hook: str, exc: BaseException) -> str:
    return (
        f"the proxy's check {hook} failed ({type(exc).__name__}); the request is refused "
        "rather than sent on unchecked"
    )


def fails_closed(on_error: OnError) -> Callable[[Hook], Hook]:
    """A decorator for addon methods taking one argument (flow, connection data, layer)."""

    def wrap(hook: Hook) -> Hook:
        name = hook.__qualname__

        def failed(subject: object, exc: Exception) -> None:
            _log.error("%s raised %s; failing closed", name, type(exc).__name__)
            try:
                on_error(subject, failure_reason(name, exc))
            except Exception as again:  # the closing itself failed: say so, loudly
                _log.critical("closing after %s failed: %s", name, type(again).__name__)
                raise

        if inspect.iscoroutinefunction(hook):

            @functools.wraps(hook)
            async def guarded_async(self: object, subject: object) -> Any:
                try:
                    return await hook(self, subject)
                except Exception as exc:
                    failed(subject, exc)
                    return None

            return cast(Hook, guarded_async)

        @functools.wraps(hook)
        def guarded(self: object, subject: object) -> Any:
            try:
                return hook(self, subject)
            except Exception as exc:
                failed(subject, exc)
                return None

        return cast(Hook, guarded)

    return wrap
