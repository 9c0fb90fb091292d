"""Every config the router can pick parses, through the same route a user takes."""

import pytest

from unilab.cli import main
from unilab.router import available_configs


def routes() -> list[list[str]]:
    found = []
    for name in available_configs():
        algo, task, variant = name.split("/")
        sim, _, profile = variant.partition("_")
        found.append(["--algo", algo, "--task", task, "--sim", sim, *(["--profile", profile] if profile else [])])
    return found


@pytest.mark.parametrize("route", routes(), ids=" ".join)
def test_every_routed_config_parses(route, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *route, "--print_config"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: unilab." in printed or "env:" in printed
