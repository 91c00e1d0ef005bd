import re

from rxlib import config, manifest


def test_readme_map_is_the_manifest_table():
    readme = (config.PROJ_ROOT / "README.md").read_text()
    block = re.search(r"<!-- manifest:start -->\n(.*)\n<!-- manifest:end -->", readme, re.S)
    assert block, "README lacks the manifest block"
    assert block.group(1).strip() == manifest.markdown_table().strip()


def test_quick_start_has_the_two_commands_ci_relies_on():
    readme = (config.PROJ_ROOT / "README.md").read_text()
    commands = re.findall(r"^python3 -m pip install .*$", readme, re.M)
    assert len(commands) == 2
    assert commands[0].endswith("rxlib reproduce --profile smoke")
    assert commands[1].endswith("python3 -m pytest")
    for command in commands:
        assert "torch==2.14.1" in command and "torchvision==0.29.1" in command
    assert "grep -m1 -E '^python3 .*-m pytest' README.md" in (config.PROJ_ROOT / ".ci" / "run").read_text()


def test_readme_states_the_expected_run_times_of_the_runner():
    from rxlib.reproduce import EXPECTED_TIME

    readme = (config.PROJ_ROOT / "README.md").read_text()
    block = re.search(r"<!-- expected-time:start -->\n(.*)\n<!-- expected-time:end -->", readme, re.S)
    assert block, "README lacks the expected-time block"
    assert block.group(1).strip() == "\n".join(f"- {name}: {text}" for name, text in EXPECTED_TIME.items())


def test_reproduce_help_gives_the_same_expected_times():
    from rxlib.cli import build_parser
    from rxlib.reproduce import EXPECTED_TIME

    parser = build_parser()
    reproduce = parser._subparsers._group_actions[0].choices["reproduce"]
    profile_help = next(a.help for a in reproduce._actions if "--profile" in a.option_strings)
    assert all(f"{name}: {text}" in profile_help for name, text in EXPECTED_TIME.items())
