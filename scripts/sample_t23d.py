"""Text-to-3D: prompts → turntable video, mesh (GLB/OBJ/PLY), preview and a JSON record per sample.

    python scripts/sample_t23d.py --prompt "a red chair with a blue seat" --out outputs/t23d
    python scripts/sample_t23d.py --prompt-file prompts.txt --num-samples 4 --ckpt released-t23d --device cuda
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from guided_diffusion.cli import add_generation_args, check_generation_args, main_guard, run
from ldm.prompts import validate_prompts


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", action="append", default=[], help="a text prompt (repeatable)")
    parser.add_argument("--prompt-file", type=Path, help="a text file with one prompt per line")
    parser.add_argument("--text-encoder", default=None,
                        help="local folder or hub id of the CLIP-L text encoder (released checkpoints only)")
    add_generation_args(parser)
    return parser.parse_args(argv)


def read_prompt_file(path: Path) -> str:
    """The text of a --prompt-file, or one line saying what is wrong with the path (the real problem, not a
    generic "does not exist")."""
    if path.is_dir():
        raise ValueError(f"--prompt-file {path} is a folder; pass a text file with one prompt per line")
    if not path.exists():
        raise FileNotFoundError(f"prompt file {path} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except PermissionError:
        raise ValueError(f"--prompt-file {path} is not readable (permission denied); check its permissions") \
            from None
    except UnicodeDecodeError as e:
        raise ValueError(f"--prompt-file {path} is not UTF-8 text (byte {e.start}); save it as plain UTF-8 text "
                         f"with one prompt per line") from None


def read_prompts(args: argparse.Namespace) -> list[str]:
    prompts = list(args.prompt)
    if args.prompt_file is not None:
        prompts += [line.strip() for line in read_prompt_file(args.prompt_file).splitlines() if line.strip()]
    if not prompts and not args.list_samplers:
        raise ValueError("no prompt given: pass --prompt \"...\" (repeatable) or --prompt-file FILE")
    return validate_prompts(prompts) if prompts else []


def main(argv=None) -> int:
    args = parse_args(argv)

    def go():
        check_generation_args(args)  # before the prompts are read or a model loaded
        prompts = read_prompts(args)
        kwargs = {"source": args.text_encoder} if args.text_encoder else {}
        run("t23d", args, prompts, prompts, kwargs, {"prompts": prompts, "text_encoder": args.text_encoder})

    return main_guard(go)


if __name__ == "__main__":
    sys.exit(main())
