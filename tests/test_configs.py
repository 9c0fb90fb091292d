"""Every composition the router can make parses, through the same route a user takes."""

import inspect

import pytest
import yaml

from unilab.algos.actor_critic_base import ActorCriticAlgorithm
from unilab.cli import main
from unilab.router import choices


def routes() -> list[list[str]]:
    available = choices()
    found = []
    for task in available["task"]:
        for sim in available["sim"]:
            for algo in available["algo"]:
                found.append(["--algo", algo, "--task", task, "--sim", sim])
            for algo in ("ppo", "appo"):
                for profile in available["profile"]:
                    found.append(["--algo", algo, "--task", task, "--sim", sim, "--profile", profile])
    for task in available["grasp task"]:
        found += [["--task", task, "--sim", sim] for sim in available["sim"]]
    return found


@pytest.mark.parametrize("route", routes(), ids=" ".join)
def test_every_composition_parses(route, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *route, "--print_config"])
    assert exit_info.value.code == 0
    assert "class_path: unilab." in capsys.readouterr().out


def test_the_printed_composition_is_a_one_file_config_of_the_same_setup(tmp_path, capsys):
    route = ["--algo", "appo", "--task", "sharpa_inhand", "--sim", "motrix", "--profile", "hora"]
    with pytest.raises(SystemExit):
        main(["train", *route, "--print_config"])
    composed = capsys.readouterr().out
    (tmp_path / "one.yaml").write_text(composed)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(tmp_path / "one.yaml"), "--print_config"])
    assert capsys.readouterr().out == composed
    assert "privileged_group: privileged" in composed and "sim: motrix" in composed


@pytest.mark.parametrize("algo", ["ppo", "appo"])
def test_the_skeletons_settings_are_on_the_command_line_of_each_algorithm(algo, capsys):
    """PPO and APPO pass the shared actor-critic settings on as **kwargs; the CLI must still list (and set)
    every one of them, with the subclass's own defaults where it changes one."""
    with pytest.raises(SystemExit):
        main(
            ["train", "--algo", algo, "--task", "allegro_inhand", "--model.init_args.clip_param=0.3", "--print_config"]
        )
    settings = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]
    linked = {"observation_dims", "num_actions"}
    assert set(inspect.signature(ActorCriticAlgorithm.__init__).parameters) - {"self"} - linked <= set(settings)
    assert settings["clip_param"] == 0.3
    assert settings["lr_factor"] == (1.1 if algo == "appo" else 1.5)
