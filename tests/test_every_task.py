"""Every registered task on every simulator gets the same smoke test for free: collect, reset, step, shapes."""

import inspect

import pytest
import torch

from unilab.caches import CacheSource
from unilab.sim import SIMULATORS
from unilab.tasks import TASKS


@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("name", sorted(TASKS))
def test_registered_task_builds_steps_and_reports_its_layout(name, sim, tmp_path, request):
    cls = TASKS[name]
    session_cache = {"allegro_inhand": "cache_dir", "sharpa_inhand": "sharpa_cache"}.get(name)
    if sim == "mujoco" or session_cache is None:  # collect a tiny cache on this simulator
        cache = CacheSource(cache_dir=str(tmp_path), generate_count=2)
    else:  # reuse the session's MuJoCo-made cache (allowed across simulators; Sharpa collection is slow on Motrix)
        cache = CacheSource(cache_dir=str(request.getfixturevalue(session_cache)), generate_count=0)
    kwargs = {"num_envs": 2, "num_threads": 1, "sim": sim, "cache": cache}
    if "scale_list" in inspect.signature(cls).parameters:
        kwargs["scale_list"] = [1.0]
    env = cls(**kwargs)
    obs = env.reset(seed=0)
    assert {k: v.shape[1] for k, v in obs.items()} == env.observation_dims
    for _ in range(3):
        step = env.step(torch.zeros(2, env.num_actions))
        assert torch.isfinite(step.reward).all()
        assert {k: v.shape for k, v in step.obs.items()} == {k: v.shape for k, v in step.final_obs.items()}
    metrics = env.pop_metrics()
    assert all(f"reward/{term}" in metrics for term in env.reward_term_names())
