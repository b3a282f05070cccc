"""Finding the tasks installed on this node (entry points in the ``hanse.tasks`` group).

A task is installed by installing the Python package that registers it; the entry
point's name is the task id and its value a class (or factory) called with no
arguments. Nothing else is ever loaded as a task.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from federation.tasks.base import ENTRY_POINT_GROUP, Task, TaskNotFoundError


class TaskLoadError(TaskNotFoundError):
    """A task with that id is installed but cannot be used (broken or ambiguous plugin)."""


def installed_task_ids() -> list[str]:
    """The ids of every installed task, sorted (nothing is imported)."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def load_task(task_id: str) -> Task:
    """The installed task ``task_id``, freshly constructed with its default settings.

    Raises:
        TaskNotFoundError: no installed package registers ``task_id`` (the message lists
            the installed ids).
        TaskLoadError: it is registered but cannot be imported or constructed, is not a
            task, reports another id, or two packages register it differently.
    """
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == task_id]
    if not found:
        installed = ", ".join(installed_task_ids()) or "none"
        raise TaskNotFoundError(
            f"no task {task_id!r} is installed on this node (installed: {installed}); install "
            f"the package that provides it (it registers an entry point in the "
            f"{ENTRY_POINT_GROUP!r} group) or use an installed task id"
        )
    entry = _single(task_id, found)
    try:
        factory = entry.load()
        task = factory()
    except Exception as exc:
        raise TaskLoadError(
            f"task {task_id!r} is installed ({entry.value}) but cannot be loaded: "
            f"{type(exc).__name__}: {exc}; reinstall or fix the package that provides it"
        ) from exc
    if not isinstance(task, Task):
        raise TaskLoadError(
            f"task {task_id!r} ({entry.value}) does not implement the task interface "
            f"(id, version, metrics, content_hash, build_model, load, loss, evaluate)"
        )
    if task.id != task_id:
        raise TaskLoadError(
            f"task {task_id!r} ({entry.value}) reports the id {task.id!r}; the entry point's "
            f"name and the task's id must be the same"
        )
    return task


def installed_tasks() -> dict[str, str]:
    """Every installed task's id and content hash, sorted by id.

    Raises:
        TaskLoadError: an installed task cannot be loaded.
    """
    return {task_id: load_task(task_id).content_hash() for task_id in installed_task_ids()}


def _single(task_id: str, found: list[EntryPoint]) -> EntryPoint:
    values = sorted({ep.value for ep in found})
    if len(values) > 1:
        raise TaskLoadError(
            f"task id {task_id!r} is registered by more than one package ({', '.join(values)}); "
            f"uninstall all but one"
        )
    return found[0]


__all__ = ["TaskLoadError", "installed_task_ids", "installed_tasks", "load_task"]
