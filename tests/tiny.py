"""The one tiny-model factory of the tests (tiny networks, fp32, fast on a CPU)."""

from kwtl.models import FCRNSegmenter

#: The tiny segmenter's settings; a test passes what it needs different.
TINY_SEGMENTER = dict(
    module__width=4,
    module__init="default",
    patch_size=16,
    stride=16,
    meta_iterations=2,
    inner_steps=2,
    meta_shots=2,
    lr=1e-3,
    batch_size=8,
    precision="fp32",
)


def tiny_segmenter(**overrides):
    """An (unfitted) FCRNSegmenter of width 4 on 16² patches; ``overrides`` win."""
    return FCRNSegmenter(**{**TINY_SEGMENTER, **overrides})
