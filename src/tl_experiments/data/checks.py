"""Before training: every image of every split decodes, and no image sits in two splits.

A file that cannot be read in the test split would otherwise be found only after training
(checkpoints written, no metrics); a copy of a training image in the test split inflates
the test accuracy without any sign. Copies are found by a hash of the file's bytes (of the
pixels for in-memory sources).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from tl_experiments.errors import UserError

__all__ = ["ImageCheck", "check_images", "duplicate_message"]

SPLIT_ORDER = ("train", "val", "test")


@dataclass
class ImageCheck:
    """What :func:`check_images` found."""

    splits: dict[str, np.ndarray]  # the readable images of each split
    skipped: dict[str, list[str]] = field(default_factory=dict)  # split -> unreadable files
    # (split, item, earlier split, the earlier item it copies)
    duplicates: list[tuple[str, str, str, str]] = field(default_factory=list)


def check_images(
    items: list, splits: dict[str, np.ndarray], skip_bad: bool, decode, workers: int = 0
) -> ImageCheck:
    """Decode every item of every split with ``decode`` (raising :class:`UserError` when it
    cannot) and hash it, in ``workers`` DataLoader worker processes.

    Args:
        items: the image set's items (arrays or file paths).
        splits: index arrays per split.
        skip_bad: leave unreadable files out (counted in ``skipped``) instead of stopping.
        decode: the loader the data module uses (``to_pil``), so the check reads as it does.
    """
    result = ImageCheck(splits=dict(splits))
    order = sorted(splits, key=lambda s: SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 9)
    everything = np.concatenate([splits[s] for s in order]) if order else np.array([], int)
    found = _probe(items, everything, decode, workers)
    seen: dict[str, tuple[str, int]] = {}
    for split in order:
        keep, bad = [], []
        for i in splits[split]:
            error, digest = found[int(i)]
            if error:
                if not skip_bad:
                    raise UserError(error)
                bad.append(str(items[i]))
                continue
            keep.append(i)
            first = seen.setdefault(digest, (split, i))
            if first[0] != split:
                result.duplicates.append((split, str(items[i]), first[0], str(items[first[1]])))
        if skip_bad:
            if not keep:
                raise UserError(f"No readable image in the {split} split; check the data folder.")
            result.skipped[split] = bad
            result.splits[split] = np.asarray(keep)
    return result


class _Probe(Dataset):
    """Item ``k`` of ``index``: (the UserError's sentence or "", the digest or "")."""

    def __init__(self, items: list, index: np.ndarray, decode) -> None:
        self.items, self.index, self.decode = items, index, decode

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> tuple[str, str]:
        item = self.items[self.index[k]]
        try:
            self.decode(item)
        except UserError as e:
            return str(e), ""
        return "", _digest(item)


def _probe(items: list, index: np.ndarray, decode, workers: int) -> dict[int, tuple[str, str]]:
    loader = DataLoader(
        _Probe(items, index, decode), batch_size=32, num_workers=workers, collate_fn=list
    )
    found = [pair for batch in loader for pair in batch]
    return dict(zip(index.tolist(), found, strict=True))


def _digest(item) -> str:
    if isinstance(item, np.ndarray):
        data = str(item.shape).encode() + np.ascontiguousarray(item).tobytes()
    else:
        data = Path(item).read_bytes()
    return hashlib.sha1(data).hexdigest()


def duplicate_message(duplicates: list[tuple[str, str, str, str]], refuse: bool) -> str:
    """One sentence about the copies across splits and what to do about them."""
    pairs: dict[tuple[str, str], int] = {}
    for split, _, earlier, _ in duplicates:
        pairs[(split, earlier)] = pairs.get((split, earlier), 0) + 1
    counts = ", ".join(f"{n} {s} image(s) copy {e} images" for (s, e), n in pairs.items())
    split, item, _, original = duplicates[0]
    fix = (
        "set data.refuse_duplicates=false to only warn"
        if refuse
        else "set data.refuse_duplicates=true to stop on them"
    )
    return (
        f"The same image is in two splits ({counts}; e.g. '{item}' = '{original}'), which "
        f"inflates validation and test accuracy; remove the copies, or {fix}."
    )
