"""The simulated SM-DS: ES11 (event retrieval) and ES12 (event registration) over HTTPS."""
