"""Tests for finding installed training tasks by entry point (federation.tasks.registry).

Plugins other than the built-in task are real distributions: a ``.dist-info`` folder
with ``entry_points.txt`` and a module, put on ``sys.path`` for one test.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

from federation.tasks import (
    ENTRY_POINT_GROUP,
    ForecastTask,
    Task,
    TaskLoadError,
    TaskNotFoundError,
    installed_task_ids,
    installed_tasks,
    load_task,
)

_names = itertools.count()

PLUGIN_CODE = """
from federation.tasks.forecast import ForecastTask


class Renamed(ForecastTask):
    id = "calls-itself-something-else"


class NotATask:
    pass


def exploding():
    raise RuntimeError("needs a GPU")
"""


def _install_plugin(
    root: Path, monkeypatch: pytest.MonkeyPatch, entries: dict[str, str], *, code: str = ""
) -> str:
    """A distribution registering ``entries`` (task id -> attribute of its module)."""
    number = next(_names)
    module = f"hanse_test_plugin_{number}"
    folder = root / f"site{number}"
    dist_info = folder / f"hanse_test_plugin_{number}-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: hanse-test-plugin-{number}\nVersion: 0.1\n",
        encoding="utf-8",
    )
    lines = "".join(f"{task_id} = {module}:{attr}\n" for task_id, attr in entries.items())
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}", encoding="utf-8")
    (folder / f"{module}.py").write_text(code or PLUGIN_CODE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, module, raising=False)
    return module


def _load_refused(task_id: str, error: type[TaskNotFoundError]) -> str:
    before = installed_task_ids()
    with pytest.raises(error) as raised:
        load_task(task_id)
    assert installed_task_ids() == before
    return str(raised.value)


def test_builtin_task_is_found_by_its_id() -> None:
    # Execute
    task = load_task("forecast-next-hour")

    # Assert
    assert isinstance(task, ForecastTask)
    assert isinstance(task, Task)
    assert task.id == "forecast-next-hour"


def test_installed_tasks_lists_ids_with_content_hashes() -> None:
    # Execute
    tasks = installed_tasks()

    # Assert
    assert tasks["forecast-next-hour"] == ForecastTask().content_hash()
    assert list(tasks) == installed_task_ids()


def test_unknown_task_is_refused_listing_the_installed_ones() -> None:
    # Execute
    message = _load_refused("steal-the-data", TaskNotFoundError)

    # Assert
    assert "no task 'steal-the-data' is installed" in message
    assert "installed: forecast-next-hour" in message
    assert ENTRY_POINT_GROUP in message


def test_plugin_from_another_package_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    _install_plugin(
        tmp_path,
        monkeypatch,
        {"tiny-forecast": "Tiny"},
        code=(
            "from federation.tasks.forecast import ForecastTask\n\n\n"
            "class Tiny(ForecastTask):\n"
            "    id = 'tiny-forecast'\n\n"
            "    def __init__(self):\n"
            "        super().__init__(hidden_size=4)\n"
        ),
    )

    # Execute
    task = load_task("tiny-forecast")

    # Assert
    assert task.id == "tiny-forecast"
    assert "tiny-forecast" in installed_task_ids()
    assert "forecast-next-hour" in installed_tasks()


def test_plugin_that_fails_to_import_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    _install_plugin(tmp_path, monkeypatch, {"broken": "Missing"})

    # Execute
    message = _load_refused("broken", TaskLoadError)

    # Assert
    assert "task 'broken' is installed" in message
    assert "cannot be loaded: AttributeError" in message


def test_plugin_that_fails_to_construct_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    _install_plugin(tmp_path, monkeypatch, {"exploding": "exploding"})

    # Execute
    message = _load_refused("exploding", TaskLoadError)

    # Assert
    assert "RuntimeError: needs a GPU" in message


def test_plugin_that_is_not_a_task_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    _install_plugin(tmp_path, monkeypatch, {"not-a-task": "NotATask"})

    # Execute
    message = _load_refused("not-a-task", TaskLoadError)

    # Assert
    assert "does not implement the task interface" in message


def test_plugin_whose_id_differs_from_its_entry_point_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    _install_plugin(tmp_path, monkeypatch, {"renamed": "Renamed"})

    # Execute
    message = _load_refused("renamed", TaskLoadError)

    # Assert
    assert "reports the id 'calls-itself-something-else'" in message


def test_task_id_registered_twice_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a second package claims the built-in id
    _install_plugin(tmp_path, monkeypatch, {"forecast-next-hour": "Renamed"})

    # Execute
    message = _load_refused("forecast-next-hour", TaskLoadError)

    # Assert
    assert "registered by more than one package" in message
    assert "federation.tasks.forecast:ForecastTask" in message


def test_installed_tasks_refuses_a_broken_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    _install_plugin(tmp_path, monkeypatch, {"broken": "Missing"})

    # Execute
    with pytest.raises(TaskLoadError) as raised:
        installed_tasks()

    # Assert
    assert "'broken'" in str(raised.value)
    assert isinstance(load_task("forecast-next-hour"), ForecastTask)
