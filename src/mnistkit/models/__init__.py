"""Named models: ``create_model(name)``, ``list_models()``. Importing this registers every family."""

from mnistkit.models import fast, inception, resnet, stack, tutorial  # noqa: F401  (registration)
from mnistkit.models.registry import (
    EVAL_BATCH_SIZE,
    TTA_SHIFTS,
    Classifier,
    ModelEntry,
    as_image_batch,
    create_model,
    get_model_entry,
    infer,
    list_models,
    register_model,
    shift_images,
    tta_set,
)
from mnistkit.models.summary import count_macs, count_parameters, summarize

__all__ = [
    "EVAL_BATCH_SIZE", "TTA_SHIFTS", "Classifier", "ModelEntry", "as_image_batch", "count_macs", "count_parameters",
    "create_model", "get_model_entry", "infer", "list_models", "register_model", "shift_images", "summarize", "tta_set",
]
