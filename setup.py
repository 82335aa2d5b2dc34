"""Everything is declared in pyproject.toml; this file only adds the lm-eval autoload start-up files.

``es2_plugin_autoload.pth`` (and the PEP 829 ``.start`` twin for Python >= 3.15) must sit at the top of
site-packages, which package data cannot express. ``build_py`` writes them into the build tree for wheels;
for editable installs (PEP 660) it writes them into the editable wheel being assembled. Their content comes
from ``es2_plugin/_autoload.py`` (read by path: no package import at build time).
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PTH_NAME = "es2_plugin_autoload.pth"
START_NAME = "es2_plugin_autoload.start"
START_LINE = "es2_plugin._autoload:install\n"


def _pth_line() -> str:
    namespace: dict = {"__name__": "_es2_plugin_autoload_build"}
    path = os.path.join(HERE, "es2_plugin", "_autoload.py")
    with open(path, encoding="utf-8") as fh:
        exec(compile(fh.read(), path, "exec"), namespace)
    return namespace["PTH_LINE"]


class build_py_with_autoload(build_py):  # noqa: N801 - setuptools command naming
    """build_py + the two start-up files at the root of the wheel (regular and editable)."""

    def run(self) -> None:
        super().run()
        root = self.build_lib
        if getattr(self, "editable_mode", False):
            # setuptools' editable_wheel points the install command at the wheel it is assembling
            root = self.get_finalized_command("install").install_lib
        self._written = []
        for name, text in ((PTH_NAME, _pth_line()), (START_NAME, START_LINE)):
            target = os.path.join(root, name)
            os.makedirs(root, exist_ok=True)
            with open(target, "w", encoding="utf-8") as fh:
                fh.write(text)
            self._written.append(target)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs += [os.path.join(self.build_lib, name) for name in (PTH_NAME, START_NAME)]
        return outputs


setup(cmdclass={"build_py": build_py_with_autoload})
