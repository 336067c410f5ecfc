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


def tiny_method(**overrides):
    """A FewShotSegmentation of the tiny segmenter: 1 shot of 3 patches, one epoch of
    pseudo-label and one of support fine-tuning; ``overrides`` win (``segmenter`` too)."""
    from kwtl import FewShotSegmentation

    params = dict(
        n_shots=1,
        patches_per_shot=3,
        pl_epochs=1,
        pl_batch_size=8,
        finetune_epochs=1,
        random_state=0,
    )
    params.update(overrides)
    params.setdefault("segmenter", tiny_segmenter())
    return FewShotSegmentation(**params)
