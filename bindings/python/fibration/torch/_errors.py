"""The error of fibration.torch that every module may raise: a model it
cannot map. It stands below every other module of the package, so that
raising it imports nothing else."""


class UnsupportedModelError(TypeError):
    """The model holds a layer or an operation that libfibration cannot map
    (yet). The message names it and says why."""
