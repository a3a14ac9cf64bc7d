"""The simulated eUICC: ES10 over APDUs, profile download and install, eUICC Packages, served over vpcd."""
