"""mnistkit: train, evaluate, explain and serve small-image classifiers, MNIST first.

    import mnistkit
    result = mnistkit.train(mnistkit.make_config("default", epochs=5))
    model = mnistkit.load(result.run_dir)     # a plain torch.nn.Module, ready for inference
"""

from mnistkit.config import PRESETS, TrainConfig, make_config
from mnistkit.data.datasets import list_datasets, load_dataset, split_validation
from mnistkit.errors import CheckpointError, DataFormatError, ImageError, MnistkitError, UnknownNameError
from mnistkit.models import create_model, list_models
from mnistkit.predict import load, predict_images
from mnistkit.train import TrainResult, train

__version__ = "0.1.0"

__all__ = [
    "PRESETS", "CheckpointError", "DataFormatError", "ImageError", "MnistkitError", "TrainConfig", "TrainResult",
    "UnknownNameError", "create_model", "list_datasets", "list_models", "load", "load_dataset", "make_config",
    "predict_images", "split_validation", "train",
]
