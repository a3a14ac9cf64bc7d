"""The simulated SM-DP+: ES9+ over HTTPS, its PKI and the test profile packages it binds."""
