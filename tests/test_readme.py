import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "src" / "gigaworld_policy"


def layout_block() -> str:
    """The code block under README's "## Layout" heading."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"^## Layout\n+```\n(.*?)^```", readme, flags=re.MULTILINE | re.DOTALL)
    assert match, "README has no code block under '## Layout'"
    return match.group(1)


def test_readme_layout_names_every_module_of_the_package():
    block = layout_block()
    first_words = [line.split()[0] for line in block.splitlines() if line.strip()]
    listed_folders = {word for word in first_words if word.endswith("/")}
    missing = [path for path in sorted(PACKAGE.rglob("*.py"))
               if path.name != "__init__.py"
               and (module := path.relative_to(PACKAGE).as_posix()) not in block
               and f"{module.rsplit('/', 1)[0]}/" not in listed_folders]
    assert not missing, f"README's layout leaves out {[p.relative_to(PACKAGE).as_posix() for p in missing]}"


def test_readme_layout_names_no_module_that_is_gone():
    named = re.findall(r"\b((?:\w+/)*\w+\.py)\b", layout_block())
    gone = [module for module in named if not (PACKAGE / module).exists()]
    assert not gone, f"README's layout names modules that do not exist: {gone}"


def test_readme_names_every_extra_a_user_installs():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    readme = (ROOT / "README.md").read_text()
    unnamed = [extra for extra in extras if extra not in ("test", "all") and f"`{extra}` (" not in readme]
    assert not unnamed, f"README's install paragraph does not say what the extras {unnamed} are for"
