"""ipa_core: the portable IoT Profile Assistant core (SGP.32 IPAd).

Pure Python for MicroPython and CPython: no third-party imports and no I/O.
"""

__version__ = "0.1.0"
