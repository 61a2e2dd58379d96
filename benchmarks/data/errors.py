"""The error every data set loader raises for a data root it cannot use."""


class DataError(ValueError):
    """A data root that is missing or does not have the expected layout (one line,
    naming the file and the fix)."""
