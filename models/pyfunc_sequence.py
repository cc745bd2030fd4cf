"""The MLflow model-from-code file of the sequence models: MLflow stores this file (never a
pickle) with each version and runs it to build the pyfunc, which then loads the version's
state dict with `weights_only=True`."""

from mlflow.models import set_model

from models.sequence_run import SequencePyfunc

set_model(SequencePyfunc())
