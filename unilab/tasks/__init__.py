"""Tasks: hand + object + observations + rewards + resets. No Lightning here."""

from unilab.tasks.allegro import AllegroInhandRotation
from unilab.tasks.base import EnvStep, InHandRotationEnv
from unilab.tasks.registry import TASKS, get_task
from unilab.tasks.sharpa import SharpaInhandRotation

__all__ = ["TASKS", "AllegroInhandRotation", "EnvStep", "InHandRotationEnv", "SharpaInhandRotation", "get_task"]
