"""The loader process of an installed IMP (core in site-packages, as in the image) starts.

Its PYTHONPATH must not name site-packages: that goes before the standard library, and a
distribution's stray top-level module (PyPI's ``typing`` backport, which a dependency of
resemblyzer installs) then shadows the real one and every document fails to load.
"""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import core

CHECK = """
from pathlib import Path
import core
from core.ingest.sandbox import LoaderSandbox
assert core.__file__.startswith({site!r}), core.__file__
sandbox = LoaderSandbox(workers=1)
try:
    doc = sandbox.load(Path("note.md").resolve(), "markdown", 10000)
finally:
    sandbox.close()
print([s.text for s in doc.segments])
"""


def test_an_installed_core_loads_documents_beside_a_shadowing_module(tmp_path):
    venv.create(tmp_path / "venv", with_pip=False)
    python = tmp_path / "venv" / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    shutil.copytree(Path(core.__file__).parent, site / "core", ignore=shutil.ignore_patterns("__pycache__"))
    (site / "typing.py").write_text('raise ImportError("a stray typing module shadowed the standard library")\n')
    # This interpreter's dependencies, after the venv's own folder (as a .pth file adds them).
    (site / "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "note.md").write_text("# Note\n\nThe offsite is in Lisbon.\n")

    done = subprocess.run([str(python), "-c", CHECK.format(site=str(site))], cwd=run, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(["Note", "The offsite is in Lisbon."])
