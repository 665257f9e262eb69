"""The lock files in requirements/: regenerate them from pyproject.toml, or check they match it.

    python tools/lock.py           # regenerate (after editing pyproject.toml's dependencies)
    python tools/lock.py --check   # exit 1 if pyproject.toml was edited without relocking

Each set is resolved by ``uv pip compile`` with hashes, for every platform (the image may be built
for arm64 on an x86 machine), keeping the versions already locked unless pyproject.toml asks for
others. The check resolves again into a scratch copy and compares: an edited pin, a new
dependency or a changed build backend shows as a difference.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
PYTHON_VERSION = "3.11"
REGENERATE = "python tools/lock.py"

# Lock file -> the extras of pyproject.toml it holds (besides the runtime dependencies).
SETS: dict[str, tuple[str, ...]] = {
    "runtime.txt": (),  # the image
    "dev.txt": ("dev",),  # `make`: tests, linters, and the local AWS (the `local` extra)
    "bench.txt": ("dev", "bench"),  # `make bench`: the dev set and the plot
}
BUILD = "build.txt"  # the build backend, from [build-system] requires
# Command-line tools whose dependencies cannot share the dev environment (checkov pins an older
# `packaging` than pytest needs): each is locked alone, from [tool.lock.tools] in pyproject.toml,
# into requirements/<name>.txt, and installed into a venv of its own.
TOOLS_TABLE = ("tool", "lock", "tools")


def _tools(pyproject: Path) -> dict[str, list[str]]:
    table = tomllib.loads(pyproject.read_text())
    for key in TOOLS_TABLE:
        table = table.get(key, {})
    return {f"{name}.txt": list(requirements) for name, requirements in table.items()}


def _uv() -> list[str]:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if found is None:
        sys.exit("uv is not installed: run `make .venv/.installed` (it is in the dev lock)")
    return [found]


def _compile(
    sources: list[str], extras: tuple[str, ...], output: Path, stdin: str | None = None
) -> None:
    command = [
        *_uv(), "pip", "compile", "--quiet", "--generate-hashes", "--universal",
        "--python-version", PYTHON_VERSION, "--custom-compile-command", REGENERATE,
        "--output-file", str(output), *sources,
    ]  # fmt: skip
    for extra in extras:
        command += ["--extra", extra]
    subprocess.run(command, check=True, cwd=ROOT, input=stdin, text=True)  # noqa: S603 - fixed


def write_locks(directory: Path) -> None:
    """Resolve every set into ``directory`` (lock files already there are kept as preferences)."""
    pyproject = ROOT / "pyproject.toml"
    build_requires = tomllib.loads(pyproject.read_text())["build-system"]["requires"]
    _compile(["-"], (), directory / BUILD, stdin="\n".join(build_requires) + "\n")
    for name, extras in SETS.items():
        _compile(["pyproject.toml"], extras, directory / name)
    for name, requirements in _tools(pyproject).items():
        _compile(["-"], (), directory / name, stdin="\n".join(requirements) + "\n")


def check() -> int:
    """0 when every lock file is what pyproject.toml resolves to; 1 (and a diff) otherwise."""
    names = [*SETS, BUILD, *_tools(ROOT / "pyproject.toml")]
    with tempfile.TemporaryDirectory() as scratch:
        fresh = Path(scratch)
        for name in names:
            if (LOCKS / name).exists():
                shutil.copy(LOCKS / name, fresh / name)
        write_locks(fresh)
        stale = []
        for name in names:
            locked = (LOCKS / name).read_text() if (LOCKS / name).exists() else ""
            wanted = (fresh / name).read_text()
            if locked != wanted:
                stale.append(name)
                diff = difflib.unified_diff(
                    locked.splitlines(keepends=True),
                    wanted.splitlines(keepends=True),
                    f"requirements/{name} (locked)",
                    f"requirements/{name} (pyproject.toml)",
                )
                sys.stdout.writelines(diff)
    if stale:
        print(f"\nThe lock does not match pyproject.toml ({', '.join(stale)}): run `{REGENERATE}`")
        return 1
    print("requirements/ matches pyproject.toml")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    if parser.parse_args().check:
        return check()
    LOCKS.mkdir(exist_ok=True)
    write_locks(LOCKS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
