"""taskmill.testing is a public package: documented, free of import circles."""

from __future__ import annotations

import inspect

import taskmill.testing
from tests.test_imports import circles, import_graph


def test_every_public_name_is_documented() -> None:
    assert taskmill.testing.__doc__ and "Writing a simulated test" in taskmill.testing.__doc__
    for name in taskmill.testing.__all__:
        obj = getattr(taskmill.testing, name)
        assert inspect.getdoc(obj), name
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and (inspect.isfunction(member) or isinstance(member, property)):
                    assert inspect.getdoc(member), f"{name}.{attr}"


def test_the_package_has_no_import_circles() -> None:
    found = [c for c in circles(import_graph()) if any(m.startswith("taskmill.testing") for m in c)]
    assert not found
