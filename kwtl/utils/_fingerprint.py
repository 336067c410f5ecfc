"""Stable cache keys for fitted models."""

__all__ = ["model_fingerprint"]


def model_fingerprint(model):
    """A hash of a fitted model's parameters and weights, stable across pickling.

    joblib hashes objects by pickling them, and a torch module's pickle is not stable across
    a save/load round trip, so cache keys use this fingerprint instead of the model. A model
    without a torch ``module_`` is hashed by its parameters and its pickle.
    """
    import joblib

    module = getattr(model, "module_", None)
    if module is None:
        return joblib.hash(model)
    state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    return joblib.hash((model.get_params(deep=False), state))
