"""Attacks used to measure ES2: SCAV (embedding push along probe weights), RepE, soft prompt, prefilling, none.

All share one interface (:mod:`es2_plugin.attacks.base`) and are registered through ``es2_register_attacks``.
Importing this package is cheap; torch is imported when an attack runs.
"""

from __future__ import annotations

from es2_plugin.attacks.base import Attack, AttackContext, AttackOutput

__all__ = ["Attack", "AttackContext", "AttackOutput"]
