"""The package's public face: every error the SDK raises can be imported from `kubetask`
itself (the README names them so: `from kubetask import NotFound, RequestTooLarge, ...`)."""

from __future__ import annotations

import inspect

import kubetask
from kubetask import errors


def test_every_error_the_sdk_raises_is_importable_from_the_package() -> None:
    raised = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value)
        and issubclass(value, errors.KubetaskError)
        and value.__module__ == errors.__name__
    }
    assert raised <= set(kubetask.__all__)
    for name in sorted(raised):
        assert getattr(kubetask, name) is getattr(errors, name)


def test_every_name_the_package_lists_is_there() -> None:
    for name in kubetask.__all__:
        assert getattr(kubetask, name) is not None
    assert set(kubetask.__all__) <= set(dir(kubetask))
