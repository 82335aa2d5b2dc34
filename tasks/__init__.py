"""lm-eval task folders shipped with es2-plugin (YAML + utils.py + small authored data).

This package is the value of the ``lm_eval.tasks`` entry point and the directory the autoload shim and
``es2 tasks-path`` hand to lm-eval's TaskManager.
"""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
