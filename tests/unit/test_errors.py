from __future__ import annotations

import a2al_mcp.errors as errors_module
from a2al_mcp import errors


def test_every_error_is_an_a2al_error_with_a_code() -> None:
    classes = [getattr(errors_module, name) for name in errors.__all__]
    codes = [cls.code for cls in classes]
    assert all(issubclass(cls, errors.A2ALError) for cls in classes)
    assert len(set(codes)) == len(codes)


def test_timeout_is_also_builtin_timeout() -> None:
    assert issubclass(errors.RequestTimeout, TimeoutError)
    exc = errors.ConnectionClosed("bye", error_code=7)
    assert (exc.error_code, exc.reason, str(exc)) == (7, "bye", "bye")
    assert str(errors.NodeClosed()) == "NodeClosed"
