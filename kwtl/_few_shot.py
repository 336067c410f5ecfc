"""FewShotSegmentation: the paper's whole method as one scikit-learn estimator."""
import copy
import numbers

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted, check_memory

from ._oracle import Oracle
from ._preflight import FEW_SHOT_CONSTRAINTS, check_before_training
from .datasets import PatchSet
from .metrics import mean_iou
from .utils import check_images, check_masks, derive_seed
from .utils._fingerprint import model_fingerprint
from .utils._image import _as_list

__all__ = ["FewShotSegmentation"]


def _as_object_array(X, name):
    if X is None or isinstance(X, (str, bytes, numbers.Number)) or \
            (isinstance(X, np.ndarray) and X.dtype != object):
        X = _as_list(X, name)  # the shared errors for a single image, a string, None ...
    items = list(X)
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):  # element-wise: never converts (or reads) the items
        out[i] = item
    return out


def _meta_fit(segmenter, images, masks, groups):
    """Reptile on the sources (module-level so joblib.Memory can cache it)."""
    seg = clone(segmenter)
    if len(images):
        seg.meta_fit(images, masks, groups)
    else:
        seg.initialize()
    return seg


def _pseudo_label_fine_tune(segmenter, fingerprint, pseudo_labeler, images, epochs, batch_size,
                            affine, recalibrate):
    """Target-side BatchNorm switch and PLFT; cached by ``fingerprint``, not ``segmenter``."""
    seg = copy.deepcopy(segmenter)
    if affine:
        seg.to_affine()
    else:
        seg.initialize_optimizer()
    patches = PatchSet.from_images(images, seg.patch_size, seg.stride)
    if pseudo_labeler is not None and epochs > 0:
        labels = clone(pseudo_labeler).fit_transform(images)
        own_batch = seg.batch_size
        seg.batch_size = batch_size
        try:
            seg.partial_fit(patches, patches.with_arrays(labels), epochs=epochs)
        finally:
            seg.batch_size = own_batch
    if recalibrate:
        seg.recalibrate_batchnorm(patches)
    seg.initialize_optimizer()  # fine-tuning starts with a fresh optimizer
    return seg


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
    finetune_epochs : int, default=20
        Support fine-tuning epochs (batch = the segmenter's ``batch_size``).
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
    _parameter_constraints = FEW_SHOT_CONSTRAINTS  # checked in fit (kwtl._preflight)

    def __init__(self, segmenter=None, pseudo_labeler="default", selector=None, n_shots=1,
                 patches_per_shot="auto", pl_epochs=100, pl_batch_size=128, finetune_epochs=20,
                 switch_affine=True, recalibrate_batchnorm=True, min_foreground=None,
                 memory=None, random_state=None):
        self.segmenter = segmenter
        self.pseudo_labeler = pseudo_labeler
        self.selector = selector
        self.n_shots = n_shots
        self.patches_per_shot = patches_per_shot
        self.pl_epochs = pl_epochs
        self.pl_batch_size = pl_batch_size
        self.finetune_epochs = finetune_epochs
        self.switch_affine = switch_affine
        self.recalibrate_batchnorm = recalibrate_batchnorm
        self.min_foreground = min_foreground
        self.memory = memory
        self.random_state = random_state

    # ------------------------------------------------------------------ helpers
    def _components(self):
        from .models import FCRNSegmenter
        from .pseudo_label import PseudoLabeler
        from .selection import DEFAULT_SELECTOR, make_selector

        segmenter = FCRNSegmenter() if self.segmenter is None else self.segmenter
        if isinstance(self.pseudo_labeler, str):
            if self.pseudo_labeler != "default":
                raise ValueError(f"pseudo_labeler must be a PseudoLabeler, None or 'default', "
                                 f"got {self.pseudo_labeler!r}")
            pseudo_labeler = PseudoLabeler()
        else:
            pseudo_labeler = self.pseudo_labeler
        selector = (make_selector(DEFAULT_SELECTOR) if self.selector is None
                    else clone(self.selector))
        seed = derive_seed(self.random_state, "selector")
        if seed is not None and getattr(selector, "random_state", None) is None:
            selector.set_params(random_state=seed)
        return segmenter, pseudo_labeler, selector

    def _check_params(self):
        for name in ("n_shots", "pl_epochs", "pl_batch_size", "finetune_epochs"):
            value = getattr(self, name)
            low = 1 if name in ("n_shots", "pl_batch_size") else 0
            if not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        pps = self.patches_per_shot
        if not (pps == "auto" or (isinstance(pps, numbers.Integral) and pps >= 1)):
            raise ValueError(f"patches_per_shot must be a positive integer or 'auto', got {pps!r}")
        mf = self.min_foreground
        if mf is not None and (not isinstance(mf, numbers.Integral) or mf < 0):
            raise ValueError(f"min_foreground must be None or a non-negative integer, got {mf!r}")

    # ------------------------------------------------------------------ fit
    def _roles(self, X, y, sample_domain):
        """Validate inputs and split them into sources and the target pool."""
        self._check_params()
        X = _as_object_array(X, "X")
        y = _as_object_array(y, "y")
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} images but y has {len(y)} masks")
        if sample_domain is None:
            sample_domain = -np.ones(len(X), dtype=int)
        sample_domain = np.asarray(sample_domain)
        if sample_domain.shape != (len(X),) or not np.issubdtype(sample_domain.dtype, np.integer):
            raise ValueError(f"sample_domain must be {len(X)} integers, got {sample_domain!r}")
        if np.any(sample_domain == 0):
            raise ValueError("sample_domain must be non-zero (positive = source, negative = target)")
        targets = np.unique(sample_domain[sample_domain < 0])
        if len(targets) != 1:
            raise ValueError(
                "FewShotSegmentation adapts to one target dataset per fit; got target domains "
                f"{targets.tolist()}. With GridSearchCV and LeaveOneDatasetOut use refit=False."
           )
        src = sample_domain > 0
        tgt = sample_domain < 0
        return {
            "X_src": X[src], "y_src": y[src], "groups": sample_domain[src],
            "pool": check_images(X[tgt], name="target images"), "y_pool": y[tgt],
            "target": int(targets[0]),
        }

    def _candidates(self, roles, segmenter):
        """The candidate patches of the target pool and the oracle over its masks.

        Reads no mask unless ``min_foreground`` (the authors' documented filter) is set.
        """
        pool = roles["pool"]
        candidates = PatchSet.from_images(pool, segmenter.patch_size, segmenter.stride)
        oracle = Oracle(roles["y_pool"], shapes=[im.shape for im in pool])
        if self.min_foreground is not None:
            counts = oracle.foreground_counts(candidates)
            candidates = candidates.subset(np.flatnonzero(counts >= int(self.min_foreground)))
            if len(candidates) == 0:
                raise ValueError(f"no candidate patch has {self.min_foreground} foreground pixels "
                                 "(min_foreground)")
        return candidates, oracle

    def _pretrain(self, segmenter, roles):
        """Source pre-training (Reptile), cached in ``memory``; a fitted segmenter without
        sources is used as it is."""
        seed = derive_seed(self.random_state, "segmenter")
        prefitted = getattr(segmenter, "initialized_", False)
        if seed is not None and segmenter.random_state is None and not prefitted:
            segmenter = clone(segmenter).set_params(random_state=seed)
        if len(roles["X_src"]):
            src_images = check_images(roles["X_src"], name="source images")
            src_masks = check_masks(roles["y_src"], src_images, name="source masks")
            return check_memory(self.memory).cache(_meta_fit)(
                segmenter, src_images, src_masks, roles["groups"])
        if prefitted:
            return segmenter
        raise ValueError("no source images (sample_domain > 0) and the segmenter is not "
                         "fitted: give sources to pre-train on, or a fitted segmenter")

    def _pseudo_label_fine_tune(self, source_model, pseudo_labeler, roles, unlabelled=None):
        """The target-side BatchNorm switch and PLFT on the pool (and ``unlabelled``),
        cached in ``memory`` by the source model's fingerprint."""
        plft_images = list(roles["pool"])
        if unlabelled is not None:
            plft_images += check_images(unlabelled, name="unlabelled")
        plft = check_memory(self.memory).cache(_pseudo_label_fine_tune, ignore=["segmenter"])
        return plft(source_model, model_fingerprint(source_model), pseudo_labeler, plft_images,
                    self.pl_epochs, self.pl_batch_size, self.switch_affine,
                    self.recalibrate_batchnorm)

    def _fine_tune(self, plft, support_patches, support_masks):
        """Support fine-tuning of a copy of the PLFT model on the revealed masks."""
        model = copy.deepcopy(plft)
        model.initialize_optimizer()
        seed = derive_seed(self.random_state, "finetune")
        if seed is not None and model.random_state is None:
            model.random_state = seed
        if self.finetune_epochs:
            model.partial_fit(support_patches, support_masks, epochs=self.finetune_epochs)
        return model

    def prepare(self, X, y, sample_domain=None, unlabelled=None):
        """Run (or load from ``memory``) source pre-training and PLFT only.

        Experiment runners call this once per target/split to fill the cache before
        running many selectors and shot counts in parallel. Reads no target mask.

        Returns
        -------
        plft_segmenter : FCRNSegmenter
        """
        roles = self._roles(X, y, sample_domain)
        segmenter, pseudo_labeler, _ = self._components()
        return self._pseudo_label_fine_tune(self._pretrain(segmenter, roles), pseudo_labeler,
                                            roles, unlabelled)

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
        roles = check_before_training(self, X, y, sample_domain, unlabelled)
        segmenter, pseudo_labeler, selector = self._components()
        candidates, oracle = self._candidates(roles, segmenter)
        selector.budget(candidates, self.n_shots, self.patches_per_shot)  # fail before training
        # the method's steps, each one call
        source_model = self._pretrain(segmenter, roles)
        plft = self._pseudo_label_fine_tune(source_model, pseudo_labeler, roles, unlabelled)
        support = selector.select_support(candidates, plft, self.n_shots,
                                          self.patches_per_shot, memory=self.memory)
        support_masks = oracle.reveal_patches(support.patches)
        self.segmenter_ = self._fine_tune(plft, support.patches, support_masks)

        self.plft_segmenter_ = plft
        self.selector_ = selector
        self.candidates_ = candidates
        self.support_indices_ = support.indices
        self.support_coords_ = support.coords
        self.support_scores_ = support.scores
        self.oracle_ = oracle
        self.target_domain_ = roles["target"]
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
        return mean_iou(list(_as_object_array(y, "y")), self.predict(list(_as_object_array(X, "X"))))
