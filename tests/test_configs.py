"""Every composition the router can make parses, through the same route a user takes."""

import pytest

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
