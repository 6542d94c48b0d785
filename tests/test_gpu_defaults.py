"""On a GPU, a run defaults to bf16 autocast and channels_last; the config can say otherwise
(issue 26, item 4: checked on the composed config, no GPU needed)."""

from __future__ import annotations


def test_gpu_runs_default_to_bf16_and_channels_last(make_cfg) -> None:
    gpu = make_cfg("trainer=gpu", tiny=False)
    assert (gpu.trainer.precision, gpu.speed.channels_last) == ("bf16-mixed", True)
    assert make_cfg(tiny=False).trainer.precision == "32-true"  # CPU: no native bf16 here
    chosen = make_cfg("trainer=gpu", "trainer.precision=32-true", tiny=False)
    assert chosen.trainer.precision == "32-true"
