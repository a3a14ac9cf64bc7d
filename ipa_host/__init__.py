"""ipa_host: CPython edges of the IPA (card and network transports, CLI, simulators)."""
