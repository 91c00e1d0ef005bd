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
