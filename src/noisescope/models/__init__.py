"""Model registry: ``build_model(arch, input_shape, num_classes, **options)``.

Entries are lazy ``module:callable`` strings; each callable takes
``(input_shape, num_classes, **options)`` and returns a :class:`TappedModel`.
"""

from __future__ import annotations

from importlib import import_module

from noisescope.models.base import TappedModel, WrappedModel, wrap_model

REGISTRY: dict[str, str] = {
    "linear": "noisescope.models.linear:build_linear",
    "mlp": "noisescope.models.mlp:build_mlp",
    "mlp3": "noisescope.models.mlp:build_mlp3",
    "mlp5": "noisescope.models.mlp:build_mlp5",
    "mlp7": "noisescope.models.mlp:build_mlp7",
    "preact_resnet18": "noisescope.models.resnet:build_preact_resnet18",
    "resnet18": "noisescope.models.resnet:build_resnet18",
    "resnet34": "noisescope.models.resnet:build_resnet34",
    "vgg": "noisescope.models.vgg:build_vgg",
    "vgg11": "noisescope.models.vgg:build_vgg11",
    "vgg16": "noisescope.models.vgg:build_vgg16",
    "wideresnet": "noisescope.models.wideresnet:build_wideresnet",
    "wrn28": "noisescope.models.wideresnet:build_wrn28",
    "vit": "noisescope.models.vit:build_vit",
}


def build_model(
    arch: str, input_shape: tuple[int, ...], num_classes: int, **options: object
) -> TappedModel:
    """Build a registered architecture for inputs of ``input_shape`` (no batch dim)."""
    key = arch.lower()
    if key not in REGISTRY:
        raise ValueError(f"unknown model.arch {arch!r}; choose from {sorted(REGISTRY)}")
    module, attr = REGISTRY[key].split(":")
    return getattr(import_module(module), attr)(tuple(input_shape), num_classes, **options)


def build_from_spec(spec: dict) -> TappedModel:
    """The network an exported file describes: ``spec = {"arch", "input_shape", "num_classes",
    "options", "input_norm"}`` (the ``"model"`` entry every noisescope export writes), built
    with fresh weights and the recorded input standardization; load the weights after."""
    model = build_model(spec["arch"], tuple(spec["input_shape"]), int(spec["num_classes"]),
                        **spec.get("options", {}))
    norm = spec.get("input_norm")
    if norm:
        model.set_input_normalization(norm["mean"], norm["std"], norm.get("scale", 1.0))
    return model


__all__ = ["REGISTRY", "TappedModel", "WrappedModel", "build_from_spec", "build_model", "wrap_model"]
