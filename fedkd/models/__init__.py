"""Small model zoo (MLP, plain CNNs, a narrow ResNet) and per-client architecture assignment."""

from fedkd.models.zoo import (MODEL_FACTORIES, MODEL_NAMES, build_model, count_parameters, model_for_client,
                              model_names, register_model)

__all__ = ["MODEL_FACTORIES", "MODEL_NAMES", "build_model", "count_parameters", "model_for_client", "model_names",
           "register_model"]
