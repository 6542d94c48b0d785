"""The README's strategy table says what conf/strategy/*.yaml do."""

from __future__ import annotations

import re

import yaml

from .conftest import CONF, ROOT


def _table() -> dict[str, list[str]]:
    """Rows of the README's strategy table: name -> (pretrained, trains, lr) cells."""
    text = (ROOT / "README.md").read_text()
    start = text.index("| strategy | pretrained | trains |")
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def _e(x: float) -> str:
    """1e-3, 3e-4: how the README writes a learning rate."""
    mantissa, exponent = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _factor_named(cell: str, factor: float) -> bool:
    """x0.3, or x1/2.6 for 0.385."""
    return f"x{factor:g}" in cell or f"x1/{1 / factor:.2g}" in cell


def test_readme_strategy_table_matches_the_configs() -> None:
    rows = _table()
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in (CONF / "strategy").glob("*.yaml")}
    assert set(rows) == set(configs)
    for name, s in configs.items():
        pretrained, _, lr = rows[name]
        assert pretrained == ("yes" if s["pretrained"] else "no"), name
        assert _e(s["lr"]) in lr, (name, lr)
        scale = s.get("backbone_lr_scale", 1.0)
        decay = s.get("lr_decay", 1.0)
        if isinstance(scale, str):  # ${.lr_decay}
            scale = decay
        below = s["trainable"] != "head" or s.get("unfreeze_every_n_epochs") or s.get("phases")
        if scale != 1.0 and below:  # the backbone trains at another lr than the head
            assert "everywhere" not in lr, (name, lr)
            assert _e(s["lr"] * scale) in lr or _factor_named(lr, scale), (name, lr)
        if decay != 1.0:
            assert "per stage" in lr and _factor_named(lr, decay), (name, lr)
        if s.get("l2sp_alpha"):
            assert re.search(rf"pull {s['l2sp_alpha']:g}\b", lr), (name, lr)
