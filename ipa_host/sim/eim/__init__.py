"""The simulated eIM: ESipa over HTTPS (ASN.1 and JSON) and CoAP/DTLS, its state, TLS and the eUICC Package signer."""
