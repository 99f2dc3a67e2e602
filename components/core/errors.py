"""The project's exception types. The CLI turns any GanopsError into a one-line message and exit code 2."""


class GanopsError(Exception):
    """A user-facing error: the message names the bad file, key or model version and the rule it broke."""


class ConfigError(GanopsError):
    """A configuration value is missing or breaks a rule."""


class DataError(GanopsError):
    """The dataset or its DVC tracking is not what the pipeline needs."""


class ValidationFailed(GanopsError):
    """Data validation failed; nothing downstream may run."""

    def __init__(self, message: str, report: object = None):
        super().__init__(message)
        self.report = report  # the ValidationReport


class RegistryError(GanopsError):
    """A model, version or alias is missing from the registry."""
