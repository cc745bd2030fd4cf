"""The MLflow model-from-code file of every registered model: MLflow stores this file (never a
pickle) with each version and runs it to build the pyfunc, which then loads the version's
bundle (models/bundle.py) with `weights_only=True`."""

from mlflow.models import set_model

from models.bundle import BundlePyfunc

set_model(BundlePyfunc())
