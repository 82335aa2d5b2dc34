"""ES2's built-in attacks, registered lazily (no torch import until an attack runs)."""

from __future__ import annotations

from es2_plugin import hookimpl
from es2_plugin.plugins import lazy


@hookimpl
def es2_register_attacks(register):
    register("none", lazy("es2_plugin.attacks.base:NoAttack"))
    register("scav", lazy("es2_plugin.attacks.scav:SCAV"))
    register("prefill", lazy("es2_plugin.attacks.prefill:Prefill"))
    register("repe", lazy("es2_plugin.attacks.repe:RepE"))
    register("softprompt", lazy("es2_plugin.attacks.softprompt:SoftPrompt"))
