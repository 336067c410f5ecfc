"""Verified model files for :class:`~kwtl.models.FCRNSegmenter` (skorch's
``save_params``/``load_params``, through :mod:`kwtl.models._io`)."""

import copy
import os

from sklearn.base import clone

from ._fcrn import is_affine, switch_to_affine
from ._io import check_state_dict, read_weights, save_weights

__all__ = ["VerifiedModelFiles"]


class VerifiedModelFiles:
    """Mixin of :class:`~kwtl.models.FCRNSegmenter`: weights-only files with a checked
    JSON sidecar."""

    def save_params(self, f_params=None, *args, **kwargs):
        """skorch's ``save_params``; ``f_params`` given as a path is written by
        :func:`kwtl.models.save_weights`: weights-only tensors plus a JSON sidecar
        (``f_params + ".json"``) with the kwtl version, architecture, parameters and sha256
        checksums, both written atomically."""
        if isinstance(f_params, (str, os.PathLike)):
            self.check_is_fitted()
            params = {
                k: v
                for k, v in self.get_params(deep=False).items()
                if not k.startswith("callbacks")
            }
            save_weights(self.module_, f_params, parameters=params)
            f_params = None
        return super().save_params(f_params, *args, **kwargs)

    def load_params(self, f_params=None, *args, **kwargs):
        """skorch's ``load_params``, verified: ``f_params`` is read without running code
        (tensors only), checked against its sidecar (size, sha256) when there is one, and
        against the network (keys and shapes, e.g. ``width``); only then copied in. A file
        that fails any check raises :class:`~kwtl.models.ModelFileError` naming the file and
        the problem, and the segmenter is left untouched. A state dict with affine
        BatchNorm (e.g. a PLFT checkpoint) first switches this segmenter's BatchNorm to
        affine. Plain state dicts without a sidecar (the authors' weights) load too."""
        if f_params is not None and kwargs.get("checkpoint") is None:
            state, _ = read_weights(f_params)
            name = (
                getattr(f_params, "name", "the file object")
                if hasattr(f_params, "read")
                else str(f_params)
            )
            trial = self if self.initialized_ else clone(self).initialize()
            module = copy.deepcopy(trial.module_)
            affine_ckpt = any(k.startswith("conv") and k.endswith(".1.weight") for k in state)
            if affine_ckpt and not is_affine(module):
                switch_to_affine(module)
            check_state_dict(module, state, name)
            module.load_state_dict(state)  # dry run on the copy: must not fail below
            if not self.initialized_:
                self.initialize()
            if affine_ckpt and not is_affine(self.module_):
                switch_to_affine(self.module_)
                self.initialize_optimizer()
            self.module_.load_state_dict(state)
            f_params = None
        return super().load_params(f_params, *args, **kwargs)
