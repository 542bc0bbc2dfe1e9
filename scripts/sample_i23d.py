"""Image-to-3D: images → turntable video, mesh (GLB/OBJ/PLY), preview and a JSON record per sample.

    python scripts/sample_i23d.py --image assets/i23d_examples/chair.png --out outputs/i23d
    python scripts/sample_i23d.py --image photos/ --remove-background --ckpt released-i23d --device cuda

Images: png/jpg/webp of any size; RGBA is composited on white; the object is recentred to ~85 % of the frame as the
released demo does (`--no-recentre` to keep the framing).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from guided_diffusion.cli import add_generation_args, check_generation_args, main_guard, run
from utils.images import ImageLoadError, list_images, preprocess_image, require_rembg
from utils.validation import InputErrors, Limit


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", action="append", default=[], type=Path,
                        help="an image file or a folder of images (repeatable)")
    parser.add_argument("--remove-background", action="store_true",
                        help="cut the object out with rembg (needs the rembg package and its u2net model locally)")
    parser.add_argument("--no-recentre", action="store_true", help="keep the image's own framing")
    parser.add_argument("--condition-size", type=int, default=256, help="side of the condition image")
    parser.add_argument("--clip-weights", default=None, help="CLIP ViT-L/14 weights (released checkpoints only)")
    parser.add_argument("--dino-weights", default=None, help="DINOv2 ViT-L/14-reg weights (released checkpoints only)")
    add_generation_args(parser)
    return parser.parse_args(argv)


def load_images(args: argparse.Namespace) -> tuple[list, list[Path], list[str]]:
    """Every input checked up front: the preprocessed condition images of the usable ones, their paths, and one
    line (file and problem) per unusable one, so that one bad file in a folder does not stop the others."""
    if not args.image:
        if args.list_samplers:
            return [], [], []
        raise ValueError("no image given: pass --image PATH (a file or a folder; repeatable)")
    if args.remove_background:
        require_rembg()  # before any image is read: skipping it would leave the backgrounds in, unsaid
    paths, problems = [], []
    for arg in args.image:
        try:
            paths += list_images(arg)
        except ImageLoadError as err:
            problems.append(str(err))
    ratio = None if args.no_recentre else 0.85
    images, usable = [], []
    for path in paths:
        try:
            images.append(preprocess_image(path, size=args.condition_size, remove_bg=args.remove_background,
                                           recentre_ratio=ratio))
            usable.append(path)
        except ImageLoadError as err:
            problems.append(str(err))
    if problems and not images and not args.list_samplers:
        raise InputErrors(problems)
    return images, usable, problems


def main(argv=None) -> int:
    args = parse_args(argv)

    def go():
        # before any image is read or a model loaded
        check_generation_args(args, {"--condition-size": (args.condition_size, Limit(16, 4096, whole=True))})
        images, paths, problems = load_images(args)
        for problem in problems:  # now, not after the run: the good images are generated meanwhile
            print(f"error: {problem}", file=sys.stderr)
        kwargs = {k: v for k, v in (("clip_weights", args.clip_weights), ("dino_weights", args.dino_weights)) if v}
        inputs = {"images": [str(p) for p in paths], "remove_background": args.remove_background,
                  "recentre": not args.no_recentre, "condition_size": args.condition_size, **kwargs}
        run("i23d", args, images, [p.stem for p in paths], kwargs, inputs)
        if problems:  # exit status 2: some inputs produced nothing
            raise InputErrors([f"{len(problems)} of {len(problems) + len(paths)} inputs could not be used (named "
                               f"above); the others were generated"])

    return main_guard(go)


if __name__ == "__main__":
    sys.exit(main())
