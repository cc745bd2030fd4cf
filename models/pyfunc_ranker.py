"""The MLflow model-from-code file of the ranker: MLflow stores this file (never a pickle)
with each version and runs it to build the pyfunc, which then loads the version's weights
with `weights_only=True`."""

from mlflow.models import set_model

from models.registry import RankerPyfunc

set_model(RankerPyfunc())
