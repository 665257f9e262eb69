"""The install docs/producers.md gives: the package is not on PyPI, so it is built and installed
from a copy of the source, `pip install './cognito-worker[local]'`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


def test_a_copy_of_the_source_installs_with_the_local_extra(tmp_path: Path) -> None:
    # A clone holds what git tracks: copy exactly that, as `git clone` would.
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPOSITORY, capture_output=True,
                             check=True, timeout=60).stdout.decode().split("\0")  # fmt: skip
    clone = tmp_path / "cognito-worker"
    for name in filter(None, tracked):
        source = REPOSITORY / name
        if source.is_file() and not source.is_symlink():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, clone / name)
    target = tmp_path / "site"
    # Dependencies aside (no network here: they are this interpreter's), the command of the docs.
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-build-isolation", "--no-index", "--target", str(target),
         "./cognito-worker[local]"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]
    (metadata,) = target.glob("cognito_worker-*.dist-info/METADATA")
    text = metadata.read_text()
    assert "Provides-Extra: local" in text
    assert 'Requires-Dist: moto[server]==5.2.5; extra == "local"' in text
    entry_points = metadata.with_name("entry_points.txt").read_text()
    assert "cognito-worker = worker.__main__:main" in entry_points.replace("  ", " ")
    ran = subprocess.run(
        [sys.executable, "-c", "import worker, worker.local.aws, worker.producer;"
         "print(worker.__file__)"],
        cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.strip().startswith(str(target))
