"""FineTuneRecipe: step counts, visiting order, schedule, frozen encoder, reproducibility."""

import copy
import math

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from kwtl.datasets import PatchAugmenter, PatchSet, make_cells
from kwtl.models import FCRNSegmenter, FineTuneRecipe
from kwtl.models._recipe import ENCODER_LAYERS, AugmentedPatchDataset, _StepSchedule, epoch_order


@pytest.fixture(scope="module")
def support():
    images, masks = make_cells(n_images=2, image_size=32, random_state=0)
    patches = PatchSet.from_images(images, 16, 16)
    return patches, patches.with_arrays(masks)


@pytest.fixture
def segmenter():
    return FCRNSegmenter(
        module__width=4, patch_size=16, stride=16, precision="fp32", random_state=0
    ).initialize()


def weights(seg):
    return {k: v.detach().clone() for k, v in seg.module_.state_dict().items()}


class LrLog(Callback):
    def initialize(self):
        self.lrs = []
        return self

    def on_batch_begin(self, net, training=False, **kwargs):
        if training:
            self.lrs.append(net.optimizer_.param_groups[0]["lr"])


def test_a_step_recipe_takes_exactly_its_steps(segmenter, support):
    recipe = FineTuneRecipe(steps=5, batch_size=3, lr=1e-3)
    seg = recipe.train(segmenter, *support, random_state=0)
    batches = seg.history[-1, "batches"]
    assert len(batches) == 5 and all(b["train_batch_size"] == 3 for b in batches)
    # a longer run is cut into chunks of CHUNK_STEPS batches (checkpoints in between)
    seg = FineTuneRecipe(steps=60, batch_size=2).train(segmenter, *support, random_state=0)
    assert [len(seg.history[i, "batches"]) for i in (-3, -2, -1)] == [25, 25, 10]
    assert seg.optimizer_.param_groups[0]["lr"] == 1e-3
    assert seg.batch_size == 64  # the segmenter's own batch size is restored


def test_epoch_order_visits_every_patch_equally_often():
    order = epoch_order(23, 5, np.random.default_rng(0))
    counts = np.bincount(order, minlength=5)
    assert len(order) == 23 and counts.max() - counts.min() <= 1
    for start in range(0, 20, 5):  # each full pass is a permutation
        assert sorted(order[start : start + 5]) == list(range(5))


def test_dataset_items_do_not_depend_on_the_reading_order(support):
    patches, masks = support
    data = AugmentedPatchDataset(
        patches, masks, [0, 1, 2, 3, 0], PatchAugmenter(intensity=0.2), seed=7
    )
    forward = [data[i] for i in range(5)]
    backward = [data[i] for i in reversed(range(5))][::-1]
    for (x1, y1), (x2, y2) in zip(forward, backward):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(forward[0][0], forward[4][0])  # same patch, another draw
    assert forward[0][0].dtype == torch.uint8 and forward[0][1].dtype == torch.float32


def test_same_seed_same_weights_other_seed_other_weights(support):
    def run(seed):
        seg = FCRNSegmenter(
            module__width=4, patch_size=16, stride=16, precision="fp32", random_state=0
        ).initialize()
        recipe = FineTuneRecipe(
            steps=4, batch_size=2, lr=1e-3, augment=PatchAugmenter(intensity=0.1)
        )
        return weights(recipe.train(seg, *support, random_state=seed))

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_frozen_encoder_leaves_encoder_weights_alone(segmenter, support):
    before = weights(segmenter)
    FineTuneRecipe(steps=3, batch_size=4, lr=1e-2, train_encoder=False).train(
        segmenter, *support, random_state=0
    )
    after = weights(segmenter)
    for key in before:
        layer = key.split(".")[0]
        if "running" in key or "num_batches" in key:
            continue  # BatchNorm statistics follow the data in train mode either way
        if layer in ENCODER_LAYERS:
            assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["conv8.weight"], after["conv8.weight"])
    assert all(p.requires_grad for p in segmenter.module_.parameters())


def test_schedule_values_by_hand():
    s = _StepSchedule(1.0, total=6, warmup=2, kind="cosine")
    expected = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * t / 4)) for t in range(4)]
    assert [s.lr_at(t) for t in range(6)] == pytest.approx(expected)
    assert _StepSchedule(2.0, 5, 0, "constant").lr_at(3) == 2.0


def test_the_schedule_reaches_the_optimizer(segmenter, support):
    log = LrLog()
    FineTuneRecipe(steps=4, batch_size=2, lr=0.01, schedule="cosine", warmup=1).train(
        segmenter, *support, random_state=0, callbacks=[log]
    )
    s = _StepSchedule(0.01, 4, 1, "cosine")
    assert log.lrs == pytest.approx([s.lr_at(t) for t in range(4)])
    assert not any(name.startswith("kwtl_recipe") for name, _ in segmenter.callbacks_)


def test_epochs_without_augmentation_is_plain_partial_fit(support):
    def fresh():
        return FCRNSegmenter(
            module__width=4,
            patch_size=16,
            stride=16,
            precision="fp32",
            batch_size=3,
            random_state=5,
        ).initialize()

    plain = fresh()
    plain.initialize_optimizer()
    plain.partial_fit(*support, epochs=2)
    recipe = fresh()
    FineTuneRecipe(steps=None, epochs=2, batch_size=3, augment=None).train(recipe, *support)
    a, b = weights(plain), weights(recipe)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (
        FineTuneRecipe(steps=None, epochs=2, batch_size=3, augment=None).n_steps(len(support[0]))
        == 6
    )  # 8 patches: 3 batches a pass


def test_augmented_epochs_take_epochs_times_batches(segmenter, support):
    n = len(support[0])
    recipe = FineTuneRecipe(steps=None, epochs=2, batch_size=3, augment=PatchAugmenter())
    seg = recipe.train(segmenter, *support, random_state=0)
    batches = sum(len(seg.history[i, "batches"]) for i in (-1, -2))
    assert batches == recipe.n_steps(n) == 2 * math.ceil(n / 3)


def test_training_lowers_the_loss(support):
    seg = FCRNSegmenter(
        module__width=4, patch_size=16, stride=16, precision="fp32", random_state=0
    ).initialize()
    probe = copy.deepcopy(seg)
    FineTuneRecipe(steps=40, batch_size=4, lr=3e-3, augment=PatchAugmenter()).train(
        seg, *support, random_state=0
    )
    patches, masks = support

    def loss(model):
        y = torch.from_numpy(masks[np.arange(len(masks))].astype(np.float32))[:, None]
        x = torch.from_numpy(patches[np.arange(len(patches))])[:, None]
        model.module_.eval()
        with torch.no_grad():
            return float(model.get_loss(model.infer(x), y, training=False))

    assert loss(seg) < loss(probe)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"steps": 3, "epochs": 2}, "exactly one"),
        ({"steps": None}, "exactly one"),
        ({"steps": 0}, "steps"),
        ({"schedule": "linear"}, "schedule"),
        ({"augment": "flips"}, "augment"),
        ({"lr": -1.0}, "lr"),
    ],
)
def test_bad_parameters_are_named(params, match, segmenter, support):
    with pytest.raises(ValueError, match=match):
        FineTuneRecipe(**params).train(segmenter, *support)


def test_inputs_must_be_patch_sets(segmenter):
    with pytest.raises(TypeError, match="PatchSet"):
        FineTuneRecipe(steps=1).train(
            segmenter, [np.zeros((16, 16), np.uint8)], [np.zeros((16, 16))]
        )


def test_the_default_recipe_is_the_measured_one():
    recipe = FineTuneRecipe()
    assert (recipe.steps, recipe.epochs, recipe.batch_size, recipe.lr) == (250, None, 8, None)
    assert recipe.augmenter().get_params() == PatchAugmenter().get_params()
    assert PatchAugmenter().get_params() == {
        "flips": True,
        "intensity": 0.0,
        "gamma": 0.0,
        "scale": 0.0,
    }
    assert FineTuneRecipe(augment=None).augmenter() is None


def test_chunks_replay_the_whole_run_item_by_item(support):
    patches, masks = support
    recipe = FineTuneRecipe(steps=7, batch_size=3, augment=PatchAugmenter(intensity=0.3))
    chunks = recipe.chunks(patches, masks, random_state=4, chunk_steps=3)
    assert [len(c) for c in chunks] == [9, 9, 3]
    whole = recipe.chunks(patches, masks, random_state=4, chunk_steps=100)[0]
    items = [c[i] for c in chunks for i in range(len(c))]
    assert len(items) == len(whole) == 21
    for i, (x, y) in enumerate(items):
        assert torch.equal(x, whole[i][0]) and torch.equal(y, whole[i][1])


def test_few_shot_fine_tune_runs_the_recipe_and_resumes(segmenter, support):
    from kwtl.few_shot import fine_tune

    recipe = FineTuneRecipe(
        steps=30,
        batch_size=2,
        lr=2e-3,
        schedule="cosine",
        warmup=3,
        augment=PatchAugmenter(intensity=0.2),
    )
    direct = recipe.train(copy.deepcopy(segmenter), *support, random_state=5)
    tuned = fine_tune(segmenter, *support, recipe=recipe, random_state=5)
    a, b = weights(direct), weights(tuned)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(tuned.epoch_losses_) == 2
    before = weights(segmenter)  # the given segmenter is not trained: a copy is
    assert any(not torch.equal(before[k], a[k]) for k in a)

    class Memory:
        def __init__(self):
            self.state = None

        def load(self):
            return self.state

        def save(self, **state):  # as the workflow's checkpoint files: the module's weights
            state["module"] = state["module"].state_dict()
            self.state = copy.deepcopy(state)

    class Stop(Exception):
        pass

    class StopAfterFirstChunk(Memory):
        def save(self, **state):
            super().save(**state)
            raise Stop

    memory = StopAfterFirstChunk()
    with pytest.raises(Stop):
        fine_tune(segmenter, *support, recipe=recipe, random_state=5, checkpoint=memory)
    assert memory.state["epoch"] == 1
    resumed_memory = Memory()
    resumed_memory.state = memory.state
    resumed = fine_tune(
        segmenter, *support, recipe=recipe, random_state=5, checkpoint=resumed_memory
    )
    c = weights(resumed)
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert resumed_memory.state["epoch"] == 2


def test_few_shot_fine_tune_epochs_is_the_paper_schedule(segmenter, support):
    from kwtl.few_shot import fine_tune
    from kwtl.models import paper_recipe

    by_epochs = fine_tune(segmenter, *support, epochs=2, batch_size=3, random_state=1)
    by_recipe = fine_tune(segmenter, *support, recipe=paper_recipe(batch_size=3), random_state=1)
    a, b = weights(by_epochs), weights(by_recipe)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # 2 epochs against the paper's 20
    twenty = fine_tune(segmenter, *support, epochs=20, batch_size=3, random_state=1)
    c = weights(twenty)
    assert all(torch.equal(b[k], c[k]) for k in b)
    with pytest.raises(ValueError, match="not both"):
        fine_tune(segmenter, *support, epochs=2, recipe=FineTuneRecipe())
