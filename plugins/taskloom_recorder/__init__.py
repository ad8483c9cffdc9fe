"""Recording on MLflow: run any handler inside an MLflow run, and collect recorded runs."""

from taskloom import hookimpl
from taskloom.hookspecs import RegisterRecorder

from taskloom_recorder.recorder import MlflowRecorder


@hookimpl
def taskloom_register_recorders(register: RegisterRecorder) -> None:
    """The ``mlflow`` recorder."""
    register("mlflow", MlflowRecorder)
