"""``es2 model``: where the built-in toy model lives, build or rebuild it, check it and its metrics."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="the built-in toy chat model: path, build, check",
                       description="The built-in ~1M-parameter chat model, trained once from the authored prompts "
                                   "into the user cache (ES2_CACHE_DIR overrides where).")
    p.add_argument("action", nargs="?", default="path", choices=["path", "build", "check"],
                   help="path: print its directory (default); build: build it if missing or corrupt; "
                        "check: say whether the cache is complete and print its metrics")
    p.add_argument("--seed", type=int, default=0, help="which seed's model (default 0)")
    p.add_argument("--rebuild", action="store_true", help="with build: rebuild even when the cache is intact")
    p.add_argument("--json", action="store_true", help="with check: print the model's metadata as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from es2_plugin import toy

    target = toy.toy_model_dir(args.seed)
    if args.action == "path":
        print(target)
        return 0
    if args.action == "build":
        from rich.console import Console

        path = toy.ensure_toy_model(args.seed, rebuild=args.rebuild, console=Console(stderr=True))
        print(path)
        return 0
    problem = toy.check_toy_model(target, steps=toy.DEFAULT_STEPS)
    if problem is not None:
        print(f"{target}: not usable ({problem}); run `es2 model build --seed {args.seed}`")
        return 1
    meta = json.loads((target / toy.META_FILE).read_text(encoding="utf-8"))
    if args.json:
        print(json.dumps(meta, indent=2))
        return 0
    m = meta.get("metrics", {})
    print(f"{target}: ok (seed {meta['seed']}, {meta['steps']} steps, {meta['n_parameters']:,} parameters, "
          f"built in {meta['build_seconds']} s); held-out harmful refusal {m.get('harmful_refusal')}, "
          f"harmless compliance {m.get('harmless_compliance')}, borderline compliance "
          f"{m.get('borderline_compliance')}")
    return 0
