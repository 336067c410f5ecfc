"""FCRNSegmenter: the paper's FCRN as a scikit-learn/skorch estimator on images."""

import numbers

import numpy as np
import torch
from scipy.special import expit
from skorch import NeuralNet
from skorch.dataset import unpack_data
from skorch.utils import is_dataset, to_device

from ..datasets import PatchSet
from ..metrics import mean_iou
from ..utils import (
    check_images,
    check_masks,
    check_training_masks,
    derive_seed,
    normalize_uint8,
    validate_params,
)
from ..utils.validation import NON_NEGATIVE_INT, POSITIVE_INT, Interval, Options, Pair
from ._fcrn import FCRN, is_affine, switch_to_affine
from ._fold import use_training_layers
from ._data import PatchDataset, _warn_if_one_class, resolve_precision
from ._entry_points import SelectionEntryPoints
from ._persistence import VerifiedModelFiles
from ._inference import pooled_batchnorm_statistics, predict_logit_maps
from ._loss import WeightedBCEWithLogitsLoss
from ._reptile import MetaFitting

__all__ = ["FCRNSegmenter", "PatchDataset", "resolve_precision"]


class FCRNSegmenter(MetaFitting, SelectionEntryPoints, VerifiedModelFiles, NeuralNet):
    """The paper's FCRN as a skorch/scikit-learn segmentation estimator working on images.

    ``fit`` cuts images into grid patches and trains with the weighted BCE of the paper;
    ``meta_fit`` runs first-order Reptile over source datasets; ``predict_proba`` returns
    full-resolution probability maps. All skorch parameters (``callbacks``, ``device``,
    ``optimizer__*``, ``module__*`` …) are available.

    Parameters
    ----------
    module : torch.nn.Module class or instance, default=FCRN
        The network; ``module__width``, ``module__dropout`` etc. configure it.
    criterion : default=WeightedBCEWithLogitsLoss
        The paper's weighted BCE with a per-patch background/foreground ratio.
    optimizer : default=torch.optim.Adam
    lr : float, default=1e-4
        Learning rate (the paper's fine-tuning and PLFT).
    weight_decay : float, default=5e-4
        Weight decay of the optimizer (an explicit ``optimizer__weight_decay`` wins) and of
        Reptile's inner Adam.
    max_epochs : int, default=20
        Epochs of ``fit`` (the paper's support fine-tuning; PLFT uses 100).
    batch_size : int, default=64
    train_split : default=None
        No internal validation split (the paper uses none).
    shuffle : bool, default=True
        Shuffle training patches each epoch (``iterator_train__shuffle`` wins if given).
    verbose : int, default=0
        0 is silent; 1 prints skorch's epoch table and meta-training progress.
    patch_size : int, default=256
        Training patch size (divisible by 8).
    stride : int or (int, int), default=30
        Step of the patch grid (the paper's target step for EM and ssTEM).
    bn_mode : {"batch", "running"}, default="batch"
        Test-time BatchNorm of ``predict``/``predict_proba``: statistics of the images being
        predicted (paper fidelity, independent of batching) or running averages.
    precision : {"auto", "fp32", "bf16"}, default="auto"
        ``"bf16"`` runs convolutions under bfloat16 autocast in channels-last memory format
        (weights, BatchNorm and loss stay fp32); ``"auto"`` does so on CPUs with native bf16
        (AVX-512 bf16/AMX) and on CUDA.
    micro_batch_size : int or None, default=None
        Split each training batch into micro-batches whose gradients are accumulated into one
        optimizer step (same loss average). BatchNorm then normalises each micro-batch with
        its own statistics ("ghost" batch norm) and updates its running averages once per
        micro-batch (momentum 0.1 each), i.e. ``batch_size / micro_batch_size`` times per
        step: the running averages (used by the selectors and ``bn_mode="running"``) follow
        the data faster; ``bn_mode="batch"`` prediction does not use them. None trains on
        whole batches.
    inference_batch_size : int, default=8
        Patches per forward pass when scoring patches (:meth:`patch_logits`).
    max_pixels : int, default=2**23
        Pixels per forward pass in :meth:`predict_proba` (bounds memory on large images).
    threshold : float, default=0.5
        Probability threshold of :meth:`predict`.
    meta_iterations : int, default=300
        Reptile meta-iterations of :meth:`meta_fit`.
    meta_shots : int, default=5
        Patches per task, drawn with replacement from that task's patches.
    inner_steps : int, default=30
        Adam steps on each task's batch.
    inner_lr : float, default=1e-3
    meta_step : float, default=1.0
        Reptile step ε: θ ← θ + ε · mean_i(φ_i − θ).
    meta_stride : None, int, pair, or dict, default=None
        Patch-grid step of the source images in :meth:`meta_fit`: None uses ``stride``; a
        dict maps a group (source dataset) to its step (the paper's source steps differ per
        dataset), with key ``"default"`` for the others.
    random_state : int, RandomState or None, default=None
        Seeds weight initialisation, shuffling and meta-task sampling.
    **kwargs
        Other skorch parameters.

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained network.
    meta_history_ : list of float
        Mean final inner loss per meta-iteration (after :meth:`meta_fit`).

    Examples
    --------
    >>> from kwtl.datasets import make_cells
    >>> from kwtl.models import FCRNSegmenter
    >>> images, masks = make_cells(n_images=4, image_size=64, random_state=0)
    >>> seg = FCRNSegmenter(module__width=4, patch_size=32, stride=32, max_epochs=2,
    ...                     batch_size=8, random_state=0).fit(images, masks)
    >>> probs = seg.predict_proba(images[:2])
    >>> len(probs), probs[0].shape
    (2, (64, 64))
    >>> 0.0 <= seg.score(images, masks) <= 1.0
    True
    """

    # --- parameter validation (kwtl.utils.validate_params), checked before any training
    _parameter_constraints = {
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left")],
        "max_epochs": [NON_NEGATIVE_INT],
        "batch_size": [POSITIVE_INT],
        "shuffle": ["boolean"],
        "patch_size": [Interval(numbers.Integral, 8, None, closed="left")],
        "stride": [POSITIVE_INT, Pair(POSITIVE_INT)],
        "bn_mode": [Options(("batch", "running"))],
        "precision": [Options(("auto", "fp32", "bf16"))],
        "micro_batch_size": [None, POSITIVE_INT],
        "inference_batch_size": [POSITIVE_INT],
        "max_pixels": [Interval(numbers.Integral, 64, None, closed="left")],
        "threshold": [Interval(numbers.Real, 0, 1, closed="neither")],
        "meta_iterations": [NON_NEGATIVE_INT],
        "meta_shots": [POSITIVE_INT],
        "inner_steps": [POSITIVE_INT],
        "inner_lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "meta_step": [Interval(numbers.Real, 0, None, closed="left")],
        "meta_stride": [None, POSITIVE_INT, Pair(POSITIVE_INT), dict],
        "random_state": [None, numbers.Integral, np.random.RandomState],
    }
    # ---

    def __init__(
        self,
        module=FCRN,
        criterion=WeightedBCEWithLogitsLoss,
        optimizer=torch.optim.Adam,
        lr=1e-4,
        weight_decay=5e-4,
        max_epochs=20,
        batch_size=64,
        train_split=None,
        shuffle=True,
        verbose=0,
        patch_size=256,
        stride=30,
        bn_mode="batch",
        precision="auto",
        micro_batch_size=None,
        inference_batch_size=8,
        max_pixels=2**23,
        threshold=0.5,
        meta_iterations=300,
        meta_shots=5,
        inner_steps=30,
        inner_lr=1e-3,
        meta_step=1.0,
        meta_stride=None,
        random_state=None,
        **kwargs,
    ):
        super().__init__(
            module,
            criterion,
            optimizer=optimizer,
            lr=lr,
            max_epochs=max_epochs,
            batch_size=batch_size,
            train_split=train_split,
            verbose=verbose,
            **kwargs,
        )
        self.weight_decay = weight_decay
        self.shuffle = shuffle
        self.patch_size = patch_size
        self.stride = stride
        self.bn_mode = bn_mode
        self.precision = precision
        self.micro_batch_size = micro_batch_size
        self.inference_batch_size = inference_batch_size
        self.max_pixels = max_pixels
        self.threshold = threshold
        self.meta_iterations = meta_iterations
        self.meta_shots = meta_shots
        self.inner_steps = inner_steps
        self.inner_lr = inner_lr
        self.meta_step = meta_step
        self.meta_stride = meta_stride
        self.random_state = random_state

    # ------------------------------------------------------------------ set-up
    def _validate_params(self):
        """kwtl's validation hook: ``_parameter_constraints`` and the rules that span
        values, then — once the network exists — skorch's own check of argument names."""
        validate_params(
            type(self).__name__,
            {k: getattr(self, k, None) for k in self._parameter_constraints},
            self._parameter_constraints,
        )
        if int(self.patch_size) % 8:
            raise ValueError(f"patch_size must be a positive multiple of 8, got {self.patch_size}")
        resolve_precision(self.precision, self.device)
        if self.__dict__.get("module_") is not None:
            super()._validate_params()

    @property
    def _amp_dtype(self):
        return resolve_precision(self.precision, self.device)

    @property
    def _channels_last(self):
        # Channels-last on the CPU in fp32 too: this project's CPU (AVX2, no native bf16) runs
        # the FCRN-32 forward 2.4x faster channels-last than NCHW and, with the layers of
        # ``use_training_layers``, the training step 1.6x faster at batch 64
        # (benchmarks/RESULTS.md).
        return self._amp_dtype is not None or torch.device(self.device).type == "cpu"

    @property
    def _inference_channels_last(self):
        return self._channels_last

    def initialize_module(self):
        """skorch hook: check parameters, seed the weight initialisation from
        ``random_state``, swap in layers with faster CPU training passes (same parameters,
        same function; see ``kwtl.models._fold.use_training_layers``) and use channels-last
        memory on the CPU and under bf16."""
        self._validate_params()
        seed = derive_seed(self.random_state, "init")
        if seed is not None:
            torch.manual_seed(seed)
        super().initialize_module()
        if isinstance(self.module, type):  # a module we built, not one the user handed over
            use_training_layers(self.module_)
        if self._channels_last:
            self.module_ = self.module_.to(memory_format=torch.channels_last)
        self.n_train_calls_ = 0
        return self

    def get_params_for_optimizer(self, prefix, named_parameters):
        """skorch hook: ``weight_decay`` is the optimizer's default weight decay."""
        args, kwargs = super().get_params_for_optimizer(prefix, named_parameters)
        kwargs.setdefault("weight_decay", self.weight_decay)
        return args, kwargs

    def get_params_for(self, prefix):
        """skorch hook: ``shuffle`` is the training iterator's default."""
        params = super().get_params_for(prefix)
        if prefix == "iterator_train":
            params.setdefault("shuffle", self.shuffle)
        return params

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        """skorch hook: seed each training call's shuffling from ``random_state`` and the
        call's number, so repeated ``partial_fit`` calls draw different, reproducible orders."""
        super().on_train_begin(net, X=X, y=y, **kwargs)
        self.n_train_calls_ = getattr(self, "n_train_calls_", 0) + 1
        seed = derive_seed(self.random_state, "train", self.n_train_calls_)
        if seed is not None:
            torch.manual_seed(seed)  # shuffling order of this training call

    # ------------------------------------------------------------------ data
    def _patch_sets(self, X, y=None):
        """Validate ``X``/``y`` and return lazy patch sets of images and masks."""
        if isinstance(X, PatchSet):
            if y is not None and not isinstance(y, PatchSet):
                raise TypeError("when X is a PatchSet, y must be a PatchSet of masks too")
            if y is not None and not np.array_equal(X.coords, y.coords):
                raise ValueError("X and y PatchSets have different patch coordinates")
            if len(X) == 0:
                raise ValueError("X contains no patches")
            if y is not None:
                _warn_if_one_class(y)
            return X, y
        images = check_images(X, min_size=8)
        masks = None if y is None else check_masks(y, images)
        if masks is not None:
            check_training_masks(masks)
        patches = PatchSet.from_images(images, self.patch_size, self.stride)
        return patches, (None if masks is None else patches.with_arrays(masks))

    def check_data(self, X, y=None):
        """skorch hook: training needs masks."""
        if y is None and not is_dataset(X):
            raise ValueError("y is required: one mask per image (foreground = non-zero)")

    def get_dataset(self, X, y=None):
        """skorch hook: images (or a PatchSet) become a lazy dataset of grid patches."""
        if is_dataset(X):
            return X
        self._validate_params()
        patches, masks = self._patch_sets(X, y)
        return PatchDataset(patches, masks)

    # ------------------------------------------------------------------ steps
    def infer(self, x, **fit_params):
        """skorch hook: forward ``module_`` on a batch (uint8 batches are normalised here,
        under the segmenter's precision setting; see :meth:`_forward`)."""
        return self._forward(self.module_, x, **fit_params)

    def _forward(self, module, x, **fit_params):
        """``module`` on a batch: uint8 → [-1, 1], channel axis, bf16 autocast in
        channels-last memory format when ``precision`` asks for it; float32 logits."""
        x = to_device(x, self.device)
        if x.dtype == torch.uint8:
            x = normalize_uint8(x)
        if x.dim() == 3:
            x = x.unsqueeze(1)
        dtype = self._amp_dtype
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if dtype is None:
            return module(x, **fit_params)
        with torch.autocast(device_type=torch.device(self.device).type, dtype=dtype):
            out = module(x, **fit_params)
        return out.float()

    def train_step_single(self, batch, **fit_params):
        """skorch hook: one optimizer step's gradients, accumulated over micro-batches of
        ``micro_batch_size`` (same loss average as one batch)."""
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        n = len(Xi)
        size = n if self.micro_batch_size is None else int(self.micro_batch_size)
        total, preds = 0.0, []
        for start in range(0, n, size):
            xs, ys = Xi[start : start + size], yi[start : start + size]
            y_pred = self.infer(xs, **fit_params)
            loss = self.get_loss(y_pred, ys, X=xs, training=True)
            (loss * (len(xs) / n)).backward()
            total = total + loss.detach() * (len(xs) / n)
            preds.append(y_pred.detach())
        return {"loss": total, "y_pred": torch.cat(preds)}

    def recalibrate_batchnorm(self, X, max_patches=4096):
        """Set BatchNorm running statistics to averages over ``X`` ("precise BN").

        Eval-mode consumers (the selectors, ``bn_mode="running"``) use the running
        statistics, which follow training only with momentum 0.1: after a short schedule —
        e.g. right after the switch to affine BatchNorm — they are far from the statistics
        of the data and every patch gets nearly the same prediction. This uses up to
        ``max_patches`` patches of ``X`` (evenly spaced, no
        randomness): layer by layer, each BatchNorm gets the exact mean and (biased) variance
        of its input over those patches, with the earlier layers already normalised this
        way. No weight changes.

        Parameters
        ----------
        X : list of 2-D images or PatchSet
        max_patches : int, default=4096

        Returns
        -------
        self
        """
        self.check_is_fitted()
        patches, _ = self._patch_sets(X)
        n = len(patches)
        idx = np.unique(np.linspace(0, n - 1, min(n, int(max_patches))).round().astype(int))
        chosen = list(patches[idx])
        step = int(self.inference_batch_size)
        batches = [list(range(s, min(s + step, len(chosen)))) for s in range(0, len(chosen), step)]
        bns = [m for m in self.module_.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        was_training = self.module_.training
        try:
            self.module_.eval()
            pooled_batchnorm_statistics(
                self.module_,
                bns,
                chosen,
                batches,
                self.device,
                self._amp_dtype,
                self._channels_last,
            )
        finally:
            self.module_.train(was_training)
        return self

    def to_affine(self, gamma=0.1, beta=0.0, *, if_needed=False):
        """Switch every BatchNorm to a fresh affine one (γ=gamma, β=beta) — the paper's
        target-side switch after meta-training — and start a fresh optimizer.

        With ``if_needed=True`` a model whose BatchNorm is affine already (e.g. after
        pseudo-label fine-tuning) keeps it and only gets a fresh optimizer.

        Returns
        -------
        self
        """
        self.check_is_fitted()
        if not (if_needed and is_affine(self.module_)):
            switch_to_affine(self.module_, gamma, beta)
        self.initialize_optimizer()
        return self

    # ------------------------------------------------------------------ prediction
    # (the selectors' eval-mode entry points are SelectionEntryPoints', in _entry_points.py)
    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_folded_cache_", None)  # a derived copy of module_: rebuilt on demand
        return state

    def predict_proba(self, X):
        """Full-resolution foreground probability maps.

        Images of any size are padded (reflect) to a multiple of 8 and cropped back.
        BatchNorm follows ``bn_mode``.

        Parameters
        ----------
        X : list of 2-D arrays or ndarray of shape (n, H, W)

        Returns
        -------
        proba : list of ndarray of shape (H_i, W_i), float32
        """
        self.check_is_fitted()
        self._validate_params()
        images = check_images(X, min_size=8)
        logits = predict_logit_maps(
            self.module_,
            images,
            bn_mode=self.bn_mode,
            device=self.device,
            dtype=self._amp_dtype,
            channels_last=self._channels_last,
            max_pixels=int(self.max_pixels),
        )
        return [expit(z).astype(np.float32) for z in logits]  # no overflow warning

    def predict(self, X):
        """Boolean foreground masks: ``predict_proba(X) >= threshold``."""
        return [p >= self.threshold for p in self.predict_proba(X)]

    def score(self, X, y):
        """Mean foreground IoU of :meth:`predict` (so ``GridSearchCV(scoring=None)`` works)."""
        return mean_iou(y, self.predict(X))
