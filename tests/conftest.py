"""Shared fixtures: offline Menagerie models, Hugging Face offline, one small real grasp cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

import unilab  # noqa: F401  (picks MUJOCO_GL for headless rendering before any test module imports mujoco)

SHARED_MENAGERIE = Path(__file__).resolve().parents[2] / "shared" / "menagerie"
if "MENAGERIE_ROOT" not in os.environ and SHARED_MENAGERIE.is_dir():
    os.environ["MENAGERIE_ROOT"] = str(SHARED_MENAGERIE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Caches that a test generates without naming a folder go to a throw-away folder, not the user's cache.
os.environ["UNILAB_CACHE_DIR"] = tempfile.mkdtemp(prefix="unilab-test-caches-")
torch.set_num_threads(2)

TEST_GRASPS = 48
SHARPA_SCALE = 1.0


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """A cache folder holding a small Allegro cache collected with real physics once per session."""
    from unilab.caches import CacheSource
    from unilab.tasks.allegro import AllegroInhandRotation

    directory = tmp_path_factory.mktemp("caches")
    env = AllegroInhandRotation(num_envs=1, cache=CacheSource(cache_dir=str(directory)))
    env.write_grasp_cache(directory / env.cache_name, TEST_GRASPS, num_envs=64)
    return directory


@pytest.fixture
def make_env(cache_dir):
    """Factory of Allegro envs that use the session cache."""
    from unilab.caches import CacheSource
    from unilab.tasks.allegro import AllegroInhandRotation

    def build(num_envs: int = 8, **kwargs) -> AllegroInhandRotation:
        kwargs.setdefault("cache", CacheSource(cache_dir=str(cache_dir), generate_count=0))
        return AllegroInhandRotation(num_envs=num_envs, num_threads=2, **kwargs)

    return build


@pytest.fixture(scope="session")
def sharpa_cache(tmp_path_factory) -> Path:
    """A cache folder holding 4 real Sharpa grasps of the scale-1.0 cylinder, collected once per session."""
    from unilab.caches import CacheSource
    from unilab.tasks.sharpa import SharpaInhandRotation

    directory = tmp_path_factory.mktemp("sharpa_caches")
    env = SharpaInhandRotation(
        num_envs=1, num_threads=2, scale_list=[SHARPA_SCALE], cache=CacheSource(cache_dir=str(directory))
    )
    env.write_grasp_cache(directory / env.cache_files()[0][0], 4, num_envs=128)
    return directory
