"""Every command describes itself."""

import pytest

from tests.conftest import reelflow_cli as run_cli

COMMANDS = [
    "generate",
    "normalize",
    "validate",
    "features",
    "materialize",
    "train",
    "promote",
    "export",
    "recommend",
    "run",
    "reprocess",
    "ui",
]


def test_top_level_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "usage: reelflow " + command in result.stdout
    assert len(result.stdout.splitlines()) > 3


def test_a_home_holds_one_dataset(tmp_path):
    from reelflow.paths import Paths
    from reelflow.state import claim_home

    paths = Paths(tmp_path)
    claim_home(paths, "kuairec", tmp_path)
    with pytest.raises(SystemExit, match="already holds dataset 'kuairec'"):
        claim_home(paths, "kuairand", tmp_path)
