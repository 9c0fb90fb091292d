"""A tiny strict registry of tasks by name."""

from __future__ import annotations

from typing import TypeVar

TASKS: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register_task(name: str):
    """Class decorator: register an env class under ``name`` (names are unique)."""

    def decorate(cls: T) -> T:
        if name in TASKS:
            raise ValueError(f"task {name!r} is already registered by {TASKS[name].__name__}")
        TASKS[name] = cls
        cls.task_name = name
        return cls

    return decorate


def get_task(name: str) -> type:
    """Return the env class registered as ``name``; the error lists the valid names."""
    import unilab.tasks  # noqa: F401  (registers the built-in tasks)

    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; registered tasks: {sorted(TASKS)}") from None
