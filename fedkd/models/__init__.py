"""Small model zoo (MLP, plain CNNs, a narrow ResNet) and per-client architecture assignment.

The registry (names, factories, which client gets which model) loads without torch; ``build_model`` and
``count_parameters`` load torch with ``fedkd/models/zoo.py`` when first used.
"""

from fedkd.models.registry import MODEL_FACTORIES, MODEL_NAMES, model_for_client, model_names, register_model

__all__ = ["MODEL_FACTORIES", "MODEL_NAMES", "build_model", "count_parameters", "model_for_client", "model_names",
           "register_model"]


def __getattr__(name: str):
    if name in ("build_model", "count_parameters"):
        from fedkd.models import zoo

        return getattr(zoo, name)
    raise AttributeError(f"module 'fedkd.models' has no attribute {name!r}")
