"""FewShotSegmentation: the paper's whole method as one scikit-learn estimator."""

import numbers
import os

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted, check_memory

from ..metrics import mean_iou
from ..utils import derive_seed
from ..utils._fingerprint import model_fingerprint
from ..utils.validation import NON_NEGATIVE_INT, POSITIVE_INT, HasMethods, Options, validate_params
from ._preflight import as_object_array, check_before_training, split_by_domain
from ._steps import fine_tune, pseudo_label_fine_tune

__all__ = ["FewShotSegmentation"]


def _meta_fit(segmenter, images, masks, groups):
    """Reptile on the sources (module-level so joblib.Memory can cache it)."""
    seg = clone(segmenter)
    if len(images):
        seg.meta_fit(images, masks, groups)
    else:
        seg.initialize()
    return seg


def _pseudo_label_fine_tune_cached(
    segmenter, fingerprint, pseudo_labeler, images, epochs, batch_size, affine, recalibrate
):
    """:func:`pseudo_label_fine_tune`, cached by ``fingerprint``, not ``segmenter``."""
    return pseudo_label_fine_tune(
        segmenter,
        images,
        pseudo_labeler,
        epochs=epochs,
        batch_size=batch_size,
        switch_affine=affine,
        recalibrate_batchnorm=recalibrate,
    )


class FewShotSegmentation(BaseEstimator):
    """Choose which target patches to annotate, then fine-tune on them (Dawoud et al. 2023).

    ``fit`` runs the whole method for one target dataset:

    1. **source pre-training** — ``segmenter.meta_fit`` (first-order Reptile) on the source
       images (``sample_domain > 0``, one task per source dataset); skipped when there are no
       sources and the segmenter is already fitted (then it is used as it is);
    2. the target-side BatchNorm switch (affine, γ = 0.1) and **pseudo-label fine-tuning** on
       the target pool (``sample_domain < 0``) with ``pseudo_labeler``'s masks;
    3. **selection** — ``selector`` scores every candidate patch of the pool with the PLFT
       model and keeps the best ``n_shots * patches_per_shot``;
    4. the **oracle** reveals the true masks of exactly those candidates;
    5. **support fine-tuning** of the PLFT model on them.

    Parameters
    ----------
    segmenter : FCRNSegmenter or None, default=None
        The network and its training settings (``patch_size``, ``stride``, Reptile settings,
        ``bn_mode`` …). None means ``FCRNSegmenter()`` with the paper's defaults.
    pseudo_labeler : PseudoLabeler, None or "default", default="default"
        Pseudo-labels for PLFT; None skips PLFT (the paper's supplement Tab. 6 ablation);
        "default" is ``PseudoLabeler()`` (automatic threshold and polarity).
    selector : selector or None, default=None
        A :mod:`kwtl.selection` selector; None means
        ``make_selector(kwtl.selection.DEFAULT_SELECTOR)``, i.e. ``RandomSelector()``: without
        the authors' ground-truth filter the paper's ``ConsistencySelector()`` lost to random
        on real data, and no label-free selector has yet beaten random by the project's bar
        (user guide, "Knowing what to label without labels"); pass
        ``ConsistencySelector()`` to run the paper's method.
    n_shots : int, default=1
        Annotation budget in shots.
    patches_per_shot : int or "auto", default="auto"
        Patches per shot (the paper's P_t: TNBC 100, EM 400, ssTEM 500). "auto" uses the mean
        number of candidate patches per pool image, so one shot costs about one image's
        worth of patches. Ignored when the selector's ``unit="image"`` (then a shot is one
        whole image).
    pl_epochs : int, default=100
        PLFT epochs (batch ``pl_batch_size``).
    pl_batch_size : int, default=128
    recipe : FineTuneRecipe or None, default=None
        How support fine-tuning trains (:func:`~kwtl.few_shot.fine_tune`); None is
        ``FineTuneRecipe()``, the recipe measured best within 6 CPU minutes: 250 steps of
        batch 8 with random flips and quarter turns (46.8 / 59.9 mIoU on ssTEM / EM from one
        image's worth of random patches, against 20.7 / 43.1 for the paper's 20 epochs;
        ``benchmarks/results/effort``). Its parameters are grid-searchable
        (``recipe__steps``, ``recipe__augment``).
    finetune_epochs : int or None, default=None
        The paper's schedule instead of a recipe: that many epochs over the revealed
        patches, batches of the segmenter's ``batch_size``, no augmentation (the paper's
        20; ``kwtl run``'s profiles use it). Exclusive with ``recipe``.
    switch_affine : bool, default=True
        Replace BatchNorm by affine BatchNorm (γ = 0.1, β = 0) before target training.
    recalibrate_batchnorm : bool, default=True
        After PLFT, set the BatchNorm running statistics (used by the selectors, which score
        in eval mode as the paper does) to averages over the PLFT patches. The paper's
        100-epoch PLFT lets the momentum averages converge; shorter schedules do not, and then
        every candidate scores alike. Set False for the authors' exact behaviour.
    min_foreground : int or None, default=None
        Drop candidate patches whose *true* mask has fewer foreground pixels (the authors'
        360-pixel filter). It reads every pool mask (recorded by the oracle in
        ``filter_reads_``), so it is off by default and only for reproducing the paper.
    memory : None, str or joblib.Memory, default=None
        Cache of source pre-training and PLFT, which do not depend on the selector or the
        number of shots: a grid over selectors and shots pre-trains once per target.
    random_state : int or None, default=None
        Seeds the segmenter and selector when they have no seed of their own.

    Attributes
    ----------
    segmenter_ : FCRNSegmenter
        The fine-tuned model used by ``predict``.
    plft_segmenter_ : FCRNSegmenter
        The model after PLFT (used for selection).
    selector_ : selector
        The fitted selector; ``selector_.scores_`` holds every candidate's score.
    candidates_ : PatchSet
        The candidate patches of the target pool (provenance in ``candidates_.coords``).
    support_indices_ : ndarray of int
        Indices of the selected candidates, best first.
    support_coords_ : ndarray of shape (n_support, 3)
        Their ``(pool_image_index, row, col)``; with ``unit="image"`` row = col = 0.
    support_scores_ : ndarray
        Their selection scores.
    oracle_ : Oracle
        The record of every revealed mask region.
    target_domain_ : int
        The (negative) target domain label seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> from kwtl import FewShotSegmentation
    >>> from kwtl.datasets import make_cells
    >>> from kwtl.models import FCRNSegmenter
    >>> from kwtl.selection import EntropySelector
    >>> src, src_masks = make_cells(4, 32, domain="fluorescence", random_state=0)
    >>> tgt, tgt_masks = make_cells(4, 32, domain="em", random_state=1)
    >>> X, y = src + tgt, src_masks + tgt_masks
    >>> domain = np.array([1, 1, 1, 1, -2, -2, -2, -2])
    >>> method = FewShotSegmentation(
    ...     FCRNSegmenter(module__width=4, patch_size=16, stride=16, meta_iterations=2,
    ...                   inner_steps=2, precision="fp32"),
    ...     selector=EntropySelector(), n_shots=1, patches_per_shot=2,
    ...     pl_epochs=1, finetune_epochs=1, random_state=0)
    >>> method = method.fit(X, y, sample_domain=domain)
    >>> len(method.support_indices_), len(method.oracle_.revealed_)
    (2, 2)
    >>> 0.0 <= method.score(tgt, tgt_masks) <= 1.0
    True
    """

    __metadata_request__fit = {"sample_domain": True}
    __metadata_request__score = {"sample_domain": True}
    _parameter_constraints = {
        "segmenter": [
            None,
            HasMethods(
                ["meta_fit", "partial_fit", "predict_proba", "patch_logits"],
                example="FCRNSegmenter()",
            ),
        ],
        "pseudo_labeler": [
            None,
            Options(("default",)),
            HasMethods(["fit_transform"], example="PseudoLabeler()"),
        ],
        "selector": [
            None,
            HasMethods(["score", "select_support"], example="ConsistencySelector()"),
        ],
        "n_shots": [POSITIVE_INT],
        "patches_per_shot": [Options(("auto",)), POSITIVE_INT],
        "pl_epochs": [NON_NEGATIVE_INT],
        "pl_batch_size": [POSITIVE_INT],
        "recipe": [None, HasMethods(["chunks", "n_steps"], example="FineTuneRecipe()")],
        "finetune_epochs": [None, NON_NEGATIVE_INT],
        "switch_affine": ["boolean"],
        "recalibrate_batchnorm": ["boolean"],
        "min_foreground": [None, NON_NEGATIVE_INT],
        "memory": [None, str, HasMethods(["cache"], example="joblib.Memory(path)"), os.PathLike],
        "random_state": [None, numbers.Integral, np.random.RandomState],
    }

    def __init__(
        self,
        segmenter=None,
        pseudo_labeler="default",
        selector=None,
        n_shots=1,
        patches_per_shot="auto",
        pl_epochs=100,
        pl_batch_size=128,
        recipe=None,
        finetune_epochs=None,
        switch_affine=True,
        recalibrate_batchnorm=True,
        min_foreground=None,
        memory=None,
        random_state=None,
    ):
        self.segmenter = segmenter
        self.pseudo_labeler = pseudo_labeler
        self.selector = selector
        self.n_shots = n_shots
        self.patches_per_shot = patches_per_shot
        self.pl_epochs = pl_epochs
        self.pl_batch_size = pl_batch_size
        self.recipe = recipe
        self.finetune_epochs = finetune_epochs
        self.switch_affine = switch_affine
        self.recalibrate_batchnorm = recalibrate_batchnorm
        self.min_foreground = min_foreground
        self.memory = memory
        self.random_state = random_state

    # ------------------------------------------------------------------ helpers
    def _validate_params(self):
        """Check the parameters against ``_parameter_constraints`` (the one rule set)."""
        validate_params(
            type(self).__name__, self.get_params(deep=False), self._parameter_constraints
        )
        if self.recipe is not None and self.finetune_epochs is not None:
            raise ValueError(
                "give recipe (a FineTuneRecipe) or finetune_epochs (the paper's schedule), "
                f"not both; got recipe={self.recipe!r}, finetune_epochs={self.finetune_epochs!r}"
            )
        if self.recipe is not None:
            self.recipe._validate()  # a bad recipe fails before Reptile and PLFT

    def _components(self):
        from ..models import FCRNSegmenter
        from ..pseudo_label import PseudoLabeler
        from ..selection import DEFAULT_SELECTOR, make_selector

        segmenter = FCRNSegmenter() if self.segmenter is None else self.segmenter
        pseudo_labeler = (
            PseudoLabeler() if isinstance(self.pseudo_labeler, str) else self.pseudo_labeler
        )
        selector = (
            make_selector(DEFAULT_SELECTOR) if self.selector is None else clone(self.selector)
        )
        seed = derive_seed(self.random_state, "selector")
        if seed is not None and getattr(selector, "random_state", None) is None:
            selector.set_params(random_state=seed)
        return segmenter, pseudo_labeler, selector

    def _pretrain(self, segmenter, data):
        """Source pre-training (Reptile), cached in ``memory``; a fitted segmenter without
        sources is used as it is. ``data``: checked sources (:func:`check_before_training`)."""
        seed = derive_seed(self.random_state, "segmenter")
        prefitted = getattr(segmenter, "initialized_", False)
        if seed is not None and segmenter.random_state is None and not prefitted:
            segmenter = clone(segmenter).set_params(random_state=seed)
        if len(data.X_src):
            return check_memory(self.memory).cache(_meta_fit)(
                segmenter, data.X_src, data.y_src, data.groups
            )
        if prefitted:
            return segmenter
        raise ValueError(
            "no source images (sample_domain > 0) and the segmenter is not "
            "fitted: give sources to pre-train on, or a fitted segmenter"
        )

    def _pseudo_label_fine_tune(self, source_model, pseudo_labeler, pool, unlabelled):
        """The target-side BatchNorm switch and PLFT on the pool (and ``unlabelled``),
        cached in ``memory`` by the source model's fingerprint."""
        images = list(pool) + (list(unlabelled) if unlabelled is not None else [])
        plft = check_memory(self.memory).cache(_pseudo_label_fine_tune_cached, ignore=["segmenter"])
        return plft(
            source_model,
            model_fingerprint(source_model),
            pseudo_labeler,
            images,
            self.pl_epochs,
            self.pl_batch_size,
            self.switch_affine,
            self.recalibrate_batchnorm,
        )

    def _check_fit(self, X, y, sample_domain, unlabelled):
        self._validate_params()
        segmenter, pseudo_labeler, selector = self._components()
        data = check_before_training(
            segmenter,
            selector,
            X,
            y,
            sample_domain,
            unlabelled,
            n_shots=self.n_shots,
            patches_per_shot=self.patches_per_shot,
            min_foreground=self.min_foreground,
        )
        return segmenter, pseudo_labeler, selector, data

    def check_fit(self, X, y, sample_domain=None, unlabelled=None):
        """Run every check of :meth:`fit` that needs no training, and nothing else.

        Parameters, components, images, masks and the budget: an experiment runner calls
        this for all its jobs first, so a bad input fails in seconds, not after hours of
        training. Arguments as :meth:`fit`.

        Returns
        -------
        self
        """
        self._check_fit(X, y, sample_domain, unlabelled)
        return self

    def prepare(self, X, y, sample_domain=None, unlabelled=None):
        """Run (or load from ``memory``) source pre-training and PLFT only.

        Experiment runners call this once per target/split to fill the cache before
        running many selectors and shot counts in parallel. Reads no target mask.

        Returns
        -------
        plft_segmenter : FCRNSegmenter
        """
        from ..utils import check_images, check_masks

        self._validate_params()
        segmenter, pseudo_labeler, _ = self._components()
        data = split_by_domain(X, y, sample_domain)
        if len(data.X_src):
            data.X_src = check_images(data.X_src, name="source images")
            data.y_src = check_masks(data.y_src, data.X_src, name="source masks")
        if unlabelled is not None:
            unlabelled = check_images(unlabelled, name="unlabelled")
        return self._pseudo_label_fine_tune(
            self._pretrain(segmenter, data), pseudo_labeler, data.pool, unlabelled
        )

    def fit(self, X, y, sample_domain=None, unlabelled=None):
        """Run the method for the target images of ``X``.

        Parameters
        ----------
        X : list or object array of 2-D images
            Source images and the target pool (the unlabelled images to choose from).
        y : list or object array of masks
            One per image. Target masks are read only through the oracle, for the selected
            candidates (and, with ``min_foreground``, for the documented filter).
        sample_domain : array-like of int, shape (n_images,)
            Positive = source dataset id, negative = target (one target dataset per fit). If
            None, every image is target and the segmenter must already be fitted.
        unlabelled : list of 2-D images, optional
            Extra unlabelled target images used for PLFT only, never selected from (the
            authors also pseudo-label-fine-tuned on the test images; transductive).

        Returns
        -------
        self
        """
        # every check that can run before Reptile/PLFT (parameters, images, masks, budget)
        segmenter, pseudo_labeler, selector, data = self._check_fit(X, y, sample_domain, unlabelled)
        # the method's steps, each one call
        source_model = self._pretrain(segmenter, data)
        plft = self._pseudo_label_fine_tune(
            source_model, pseudo_labeler, data.pool, data.unlabelled
        )
        support = selector.select_support(
            data.candidates, plft, self.n_shots, self.patches_per_shot, memory=self.memory
        )
        support_masks = data.oracle.reveal_patches(support.patches)
        seed = derive_seed(self.random_state, "finetune")
        self.segmenter_ = fine_tune(
            plft,
            support.patches,
            support_masks,
            recipe=self.recipe,
            epochs=self.finetune_epochs,
            random_state=seed if plft.random_state is None else None,
        )

        self.plft_segmenter_ = plft
        self.selector_ = selector
        self.candidates_ = data.candidates
        self.support_indices_ = support.indices
        self.support_coords_ = support.coords
        self.support_scores_ = support.scores
        self.oracle_ = data.oracle
        self.target_domain_ = data.target
        return self

    # ------------------------------------------------------------------ predict
    def predict_proba(self, X):
        """Full-resolution foreground probabilities of the fine-tuned model."""
        check_is_fitted(self, "segmenter_")
        return self.segmenter_.predict_proba(X)

    def predict(self, X):
        """Boolean foreground masks of the fine-tuned model."""
        check_is_fitted(self, "segmenter_")
        return self.segmenter_.predict(X)

    def score(self, X, y, sample_domain=None):
        """Mean foreground IoU on ``X`` (e.g. the target's test images).

        ``sample_domain`` is accepted (and ignored) so that metadata routing can pass it.
        """
        return mean_iou(list(as_object_array(y, "y")), self.predict(list(as_object_array(X, "X"))))
