"""Training tasks: the plugin interface, the registry and the built-in forecasting task.

A task supplies a model, reads a dataset the node hands it, computes a loss and
evaluates; the node owns the training loop, privacy and egress checks.
"""

from federation.tasks.base import (
    ENTRY_POINT_GROUP,
    SeriesSource,
    Task,
    TaskData,
    TaskDataError,
    TaskNotFoundError,
)
from federation.tasks.forecast import TASK_ID, ForecastExamples, ForecastTask
from federation.tasks.registry import (
    TaskLoadError,
    installed_task_ids,
    installed_tasks,
    load_task,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "TASK_ID",
    "ForecastExamples",
    "ForecastTask",
    "SeriesSource",
    "Task",
    "TaskData",
    "TaskDataError",
    "TaskLoadError",
    "TaskNotFoundError",
    "installed_task_ids",
    "installed_tasks",
    "load_task",
]
