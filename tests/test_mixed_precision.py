"""``--trainer.precision bf16-mixed``: the learner computes in bfloat16, outputs and evaluation stay float32."""

import numpy as np
import pytest
import torch

from tests.test_appo import appo_args
from tests.test_cli_fit import fit_args
from unilab import cli
from unilab.cli import main
from unilab.models.actor_critic import ActorCritic

BF16 = "--trainer.precision=bf16-mixed"


def test_output_layers_stay_float32_under_bf16_autocast():
    torch.manual_seed(0)
    policy = ActorCritic(12, 14, 4, actor_hidden_dims=[64, 64], critic_hidden_dims=[64, 64])
    obs = {"policy": torch.randn(32, 12), "critic": torch.randn(32, 14)}
    with torch.no_grad():
        full_mean, full_value = policy.action_mean(obs), policy.value(obs)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = policy.actor[0](obs["policy"])
            mean, value = policy.action_mean(obs), policy.value(obs)
    assert hidden.dtype == torch.bfloat16  # autocast is on for the hidden layers...
    assert mean.dtype == value.dtype == torch.float32  # ...but not for the output layers
    assert not torch.equal(mean, full_mean)  # the hidden layers did compute in bfloat16
    torch.testing.assert_close(mean, full_mean, rtol=0.05, atol=0.02)
    torch.testing.assert_close(value, full_value, rtol=0.05, atol=0.02)


@pytest.mark.parametrize("algo", ["ppo", "appo"])
def test_bf16_mixed_fit_learns_and_predict_acts_in_float32(algo, tmp_path, monkeypatch, cache_dir, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "cpu_has_native_bf16", lambda: False)  # fit warns; predict, which acts in float32, not
    args = fit_args(cache_dir, BF16) if algo == "ppo" else appo_args(cache_dir, "--data.iterations_per_epoch=3", BF16)
    fitted = main(args)
    weights = [p.detach() for p in fitted.model.policy.parameters()]
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in weights)
    assert fitted.trainer.callback_metrics["loss/value"].isfinite()
    (run,) = (tmp_path / "logs" / algo / "AllegroInhandRotation").iterdir()
    ckpt = run / "checkpoints" / "last.ckpt"
    manifest = ["--data.test_episodes=2", "--data.env.episode_length=10"]
    predicted = main(["predict", "--config", str(run / "config.yaml"), f"--ckpt_path={ckpt}", *manifest])
    assert predicted.trainer.precision == "bf16-mixed"
    assert sum("without native bfloat16" in record.getMessage() for record in caplog.records) == 1
    data = np.load(run / "predictions.npz")
    with torch.no_grad():
        replayed = predicted.model.policy.action_mean({"policy": torch.from_numpy(data["input_obs"][0])})
    np.testing.assert_allclose(replayed.numpy(), data["action"][0], atol=1e-6)  # float32, as the ONNX policy acts


@pytest.mark.parametrize(("native", "given", "expected"), [
    (True, None, "bf16-mixed"), (False, None, "32-true"),
    (True, "32-true", "32-true"), (False, "bf16-mixed", "bf16-mixed"),
])  # fmt: skip
def test_a_fit_learns_in_bfloat16_by_default_only_where_it_is_native(
    native, given, expected, tmp_path, monkeypatch, cache_dir
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "cpu_has_native_bf16", lambda: native)
    extra = [] if given is None else [f"--trainer.precision={given}"]
    fitted = main(fit_args(cache_dir, "--data.iterations_per_epoch=1", "--trainer.logger=false", *extra))
    assert fitted.trainer.precision == expected


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bfloat16_is_warned_about(native, monkeypatch, caplog):
    monkeypatch.setattr(cli, "cpu_has_native_bf16", lambda: native)
    cli.warn_if_bf16_is_emulated("bf16-mixed", "cpu")
    cli.warn_if_bf16_is_emulated("32-true", "cpu")
    warned = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warned) == (0 if native else 1)  # only bf16, only where it is emulated
    assert all("--trainer.precision 32-true" in message for message in warned)
