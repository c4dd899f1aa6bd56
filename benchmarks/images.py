"""What reading image files costs training: decoded rows kept between passes, and JPEG's reduced-scale decoding.

    .venv/bin/python benchmarks/images.py [--photos 600] [--repeats 2] [--out docs]

Writes ``--photos`` JPEG photos of 2000 x 1500 pixels (a smooth random scene, shifted per photo)
into a temporary folder and reads them at ``image_shape=(64, 64, 3)``. In one process, alternating
within each repeat:
- one image decoded and resized, with and without Pillow's ``draft`` (JPEG decoded at 1/2 to 1/8 scale);
- ``Autoencoder(2, recipe="classic", hidden=(64,), epochs=4)`` fitted on the folder with the decoded rows
  kept (``formats.IMAGE_CACHE_BYTES``, 1 GiB) and with none kept (every pass decodes again).
Writes ``images.json`` and ``images.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import numpy as np
from PIL import Image

from aepca import Autoencoder
from aepca.data import formats, open_source

SHAPE = (64, 64, 3)


def write_photos(folder: Path, count: int) -> None:
    scene = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    for i in range(count):
        photo = Image.fromarray(np.roll(scene, i, axis=1)).resize((2000, 1500), Image.Resampling.BILINEAR)
        photo.save(folder / f"{i:04d}.jpg", quality=90)


def decode_seconds(files: list[Path], draft: bool) -> float:
    """Seconds per image to decode and resize ``files`` to SHAPE."""
    started = time.perf_counter()
    for file in files:
        with Image.open(file) as image:
            if draft:
                image.draft("RGB", SHAPE[1::-1])
            np.asarray(image.convert("RGB").resize(SHAPE[1::-1], Image.Resampling.BILINEAR))
    return (time.perf_counter() - started) / len(files)


def fit(folder: Path, cache_bytes: int) -> dict:
    formats.IMAGE_CACHE_BYTES = cache_bytes
    started = time.perf_counter()
    model = Autoencoder(2, recipe="classic", hidden=(64,), epochs=4, random_state=0).fit(
        open_source(str(folder), image_shape=SHAPE))
    seconds = time.perf_counter() - started
    return {"fit_s": seconds, "epoch_s": np.diff([0.0, *model.history_["seconds"]]).tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    args = parser.parse_args()
    kept_bytes = formats.IMAGE_CACHE_BYTES
    runs = {"draft": [], "whole": [], "kept": [], "not_kept": []}
    with tempfile.TemporaryDirectory(prefix="aepca-bench-images-") as tmp:
        folder = Path(tmp)
        write_photos(folder, args.photos)
        sample = sorted(folder.iterdir())[:40]
        for _ in range(args.repeats):
            runs["draft"].append(decode_seconds(sample, draft=True))
            runs["whole"].append(decode_seconds(sample, draft=False))
            runs["kept"].append(fit(folder, kept_bytes))
            runs["not_kept"].append(fit(folder, 0))
    results = {
        "command": shlex.join([".venv/bin/python", "benchmarks/images.py", *sys.argv[1:]]),
        "date": datetime.date.today().isoformat(),
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        "photos": args.photos, "image_shape": list(SHAPE), "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "images.json").write_text(json.dumps(results, indent=2))
    (args.out / "images.md").write_text(report(results))
    print(report(results))


def report(results: dict) -> str:
    runs = results["runs"]

    def epochs(key: str) -> str:  # the first epoch compiles: the later ones, every repeat
        later = [s for run in runs[key] for s in run["epoch_s"][1:]]
        return f"{min(later):.2f}-{max(later):.2f}"

    return "\n".join([
        "# Reading image files", "",
        f"Made by `{results['command']}` on {results['date']} ({results['machine']}). {results['photos']} JPEG photos "
        f"of 2000 x 1500 read at `image_shape={tuple(results['image_shape'])}`; the contenders alternate within "
        "each repeat.", "",
        "| | time |", "|---|---:|",
        f"| one photo decoded and resized, with JPEG's reduced-scale decoding (`draft`) | "
        f"{min(runs['draft']) * 1e3:.1f} ms |",
        f"| the same, decoded whole | {min(runs['whole']) * 1e3:.1f} ms |",
        f"| an epoch after the first, decoded rows kept | {epochs('kept')} s |",
        f"| an epoch after the first, every pass decoding | {epochs('not_kept')} s |",
        f"| the fit (4 epochs), decoded rows kept | {min(r['fit_s'] for r in runs['kept']):.1f} s |",
        f"| the fit, every pass decoding | {min(r['fit_s'] for r in runs['not_kept']):.1f} s |",
        "",
    ])


if __name__ == "__main__":
    main()
