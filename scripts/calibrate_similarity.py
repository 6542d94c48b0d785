"""Print the similarity probe on every calibration set: the table in docs/advisor.md.

python scripts/calibrate_similarity.py [N_IMAGES] [SEED ...]     # default 200 0
"""

from __future__ import annotations

import sys
import time

from tl_experiments.advisor.calibration import CALIBRATION_SETS, load_calibration_set, measure_set
from tl_experiments.advisor.measure import similarity_class


def main(n: int, seeds: list[int]) -> None:
    print(
        "| set | seed | images | classes | chance | probe acc pretrained | probe acc random init "
        "| CE pretrained | CE random init | CE reduction | class | seconds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in CALIBRATION_SETS:
        image_set = load_calibration_set(name)
        for seed in seeds:  # seed: which images, and the random-init control's weights
            start = time.perf_counter()
            r = measure_set(image_set, n=n, seed=seed)
            print(
                f"| {name} | {seed} | {r.n_images} | {len(image_set.class_names)} | {r.chance:.2f} "
                f"| {r.acc_pretrained:.3f} | {r.acc_random:.3f} | {r.ce_pretrained:.3f} "
                f"| {r.ce_random:.3f} | {r.gain:+.3f} "
                f"| {similarity_class(r.gain)} | {time.perf_counter() - start:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(args[0] if args else 200, args[1:] or [0])
