"""``es2 train``: ES2 fine-tuning of a chat model (LoRA by default) with a YAML config and CLI overrides."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

HELP = "fine-tune a chat model with ES2 (LoRA by default); writes a PEFT adapter + es2_config.json"

EPILOG = """\
examples:
  es2 train --output out/                      # built-in model and authored prompts
  es2 train --model M --harmful advbench.csv --harmless alpaca.jsonl --output out/ --steps 60
  es2 train --config es2.yaml --output out/ --beta 2 --layers 8-20
  es2 train --output out/ --resume             # after Ctrl-C or a crash: continue from the last checkpoint
prompt sources: FILE.csv|.jsonl|.txt (column: goal, prompt, instruction, Goal, text, or --harmful-column),
hf:NAME[:SPLIT][:COLUMN], es2:NAME[:SPLIT] (e.g. es2:authored-harmful:train)."""

#: CLI flag -> ES2Config field (flags override the YAML; unset flags keep it)
OVERRIDES = {
    "objective": "objective", "layers": "layers", "p1": "p1", "beta": "beta", "temperature": "temperature",
    "kl_on": "kl_on", "kl_span": "kl_span", "reference": "reference", "steps": "steps",
    "batch_size": "batch_size", "lr": "learning_rate", "seed": "seed", "lora_r": "lora_r",
    "max_length": "max_length", "save_steps": "save_steps", "margin": None, "first_response_weight":
    "first_response_weight", "first_response_tokens": "first_response_tokens", "responses": "responses",
    "max_response_tokens": "max_response_tokens",
}


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help=HELP, description=HELP, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="base model directory or cached hub id (default: the built-in model)")
    p.add_argument("--harmful", default="es2:authored-harmful:train", help="harmful prompt source")
    p.add_argument("--harmless", default="es2:authored-harmless:train", help="harmless prompt source")
    p.add_argument("--harmful-column", help="column holding the harmful prompts")
    p.add_argument("--harmless-column", help="column holding the harmless prompts")
    p.add_argument("--output", "-o", required=True, help="output directory (new or empty)")
    p.add_argument("--config", help="YAML file with ES2Config settings (flags override it)")
    p.add_argument("--full", action="store_true", help="full fine-tuning instead of LoRA")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace an ES2 run already in --output")
    p.add_argument("--trust-remote-code", action="store_true", help="allow model code from the model directory")
    g = p.add_argument_group("ES2 settings (override --config)")
    g.add_argument("--objective", help="separation objective: centroid-margin (default), sample-margin, ...")
    g.add_argument("--margin", type=float, help="objective margin in units of the base hidden norm (default 4)")
    g.add_argument("--layers", help="auto (probe >= P1), all, a list 3,5,7 or a range 4-12")
    g.add_argument("--p1", type=float, help="probe accuracy threshold for layers=auto (default 0.9)")
    g.add_argument("--beta", type=float, help="KL weight (default 1)")
    g.add_argument("--temperature", type=float, help="KL temperature T (default 1)")
    g.add_argument("--kl-on", choices=["both", "harmless"], help="classes the KL covers (default both)")
    g.add_argument("--kl-span", choices=["prompt", "prompt+response"], help="positions the KL covers")
    g.add_argument("--first-response-weight", type=float, help="KL weight of the first answer positions")
    g.add_argument("--first-response-tokens", type=int, help="how many answer positions get that weight")
    g.add_argument("--responses", choices=["generate", "data", "auto", "none"],
                   help="answers the KL covers: own greedy (default), the data's, data-else-own, none")
    g.add_argument("--reference", choices=["auto", "adapter", "frozen", "cached"], help="reference logits")
    g.add_argument("--steps", type=int, help="optimizer steps")
    g.add_argument("--batch-size", type=int, help="prompts per class per step and device")
    g.add_argument("--lr", type=float, help="learning rate")
    g.add_argument("--lora-r", type=int, help="LoRA rank")
    g.add_argument("--max-length", type=int, help="max tokens per prompt + answer")
    g.add_argument("--max-response-tokens", type=int, help="length of the base model's own answers (default 32)")
    g.add_argument("--save-steps", type=int, help="checkpoint every N steps")
    g.add_argument("--seed", type=int, help="random seed")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace) -> Any:
    from es2_plugin.config import ES2Config

    cfg = ES2Config.from_yaml(args.config) if args.config else ES2Config()
    changes = {field: getattr(args, flag) for flag, field in OVERRIDES.items() if field}
    if args.margin is not None:
        changes["objective_options"] = {**cfg.objective_options, "margin": args.margin}
    if args.full:
        changes["full_finetune"] = True
    return cfg.replace(**changes).validate()


def run(args: argparse.Namespace) -> int:
    from es2_plugin.errors import ES2UsageError
    from es2_plugin.report import console, table
    from es2_plugin.training import check_output_dir

    if args.resume and args.overwrite:
        raise ES2UsageError("--resume and --overwrite contradict each other; pick one")
    from pathlib import Path

    check_output_dir(Path(args.output).expanduser(), resume=args.resume, overwrite=args.overwrite)
    config = _config(args)
    out = console()

    def log(message: str) -> None:
        out.print(message, markup=False, highlight=False)

    from es2_plugin.training import run_training

    summary = run_training(
        model_path=args.model, harmful=args.harmful, harmless=args.harmless, output=args.output, config=config,
        resume=args.resume, overwrite=args.overwrite, harmful_column=args.harmful_column,
        harmless_column=args.harmless_column, trust_remote_code=args.trust_remote_code, display=True,
        resume_command=f"es2 train --output {shlex.quote(args.output)} --resume",
        log=log,
    )
    if summary.get("interrupted"):
        return 130
    margins = summary["margins"]
    rows = [[layer, summary["probe_accuracy"].get(str(layer), summary["probe_accuracy"].get(layer)),
             margins["before"].get(layer), margins["after"][layer], margins["ratio"].get(layer)]
            for layer in summary["layers"]]
    out.print(table("ES2 separation (centroid distance / base hidden norm)",
                    ["layer", "base probe acc", "before", "after", "x"], rows))
    final = summary.get("final", {})
    out.print(f"harmless KL {final.get('es2_kl_harmless', float('nan')):.4f} after {summary['steps_done']} steps "
              f"({summary['train_seconds']:.0f} s). Saved {summary['kind']} weights, es2_config.json and README.md "
              f"to {args.output}", markup=False, highlight=False)
    return 0
