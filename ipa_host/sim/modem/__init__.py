"""The simulated modems: AT command personalities on a pty and their HTTP/TCP stacks."""
