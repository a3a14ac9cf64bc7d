"""The installed package's version, for `ipa --version` and `ipa-sim --version`."""

from importlib.metadata import PackageNotFoundError, version as _metadata_version

PACKAGE = "ipa-iot"


def version():
    """The version in the package metadata (pyproject.toml takes it from ipa_core.__version__);
    ipa_core's own when run from a source tree that was never installed."""
    try:
        return _metadata_version(PACKAGE)
    except PackageNotFoundError:
        from ipa_core import __version__

        return __version__
