"""mnistkit: train, evaluate, explain and serve small-image classifiers, MNIST first.

    import mnistkit
    model = mnistkit.load("mnist")         # the pretrained model shipped in the package
    run = mnistkit.train(mnistkit.TrainConfig(epochs=5))   # TrainConfig() is the default recipe
    model = mnistkit.load(run.run_dir)     # a plain torch.nn.Module, ready for inference
    run = mnistkit.load_run(run.run_dir)   # model + config + classes + metrics
"""

from mnistkit.config import PRESETS, TrainConfig, make_config
from mnistkit.data.datasets import list_datasets, load_dataset, split_validation
from mnistkit.errors import CheckpointError, DataFormatError, ImageError, MnistkitError, UnknownNameError
from mnistkit.evaluate import evaluate_on_dataset, evaluate_run
from mnistkit.explain import integrated_gradients
from mnistkit.models import create_model, infer, list_models
from mnistkit.predict import load, predict_images
from mnistkit.pretrained import load_pretrained
from mnistkit.runs import Run, load_run
from mnistkit.train import train

__version__ = "0.1.0"

__all__ = [
    "PRESETS", "CheckpointError", "DataFormatError", "ImageError", "MnistkitError", "Run", "TrainConfig",
    "UnknownNameError", "create_model", "evaluate_on_dataset", "evaluate_run", "infer", "integrated_gradients",
    "list_datasets", "list_models", "load", "load_dataset", "load_pretrained", "load_run", "make_config",
    "predict_images", "split_validation", "train",
]
