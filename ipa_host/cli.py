"""The `ipa` command (placeholder until the CLI lands)."""
import argparse


def main(argv=None):
    p = argparse.ArgumentParser(prog="ipa")
    p.parse_args(argv)
    return 0
