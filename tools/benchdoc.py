"""docs/bench.md upkeep shared by the bench tools: one `## ` section per tool.

`write_section(text, section)` replaces that tool's section (or appends it) and
keeps every other section as it is; `machine()` is the line saying where the
figures were taken.
"""

import os
import platform

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs", "bench.md")
DOCS_INTRO = """# Benchmarks

Measurements of the host chain, not tests: nothing here passes or fails. Each
section below is written by one tool, which also prints the figures; rerun the
command given in the section to reproduce them on your machine (figures depend
on the machine and its load). Run the commands from the repository root after
`make setup`.
"""


def machine():
    """One line about where the figures were taken."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    cpu = ln.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d cores, %s %s, Python %s" % (cpu, os.cpu_count() or 0, platform.system(),
                                               platform.release(), platform.python_version())


def write_section(text, section, path=DOCS):
    """Replace (or add) the section headed `section` in `path`; keep the others."""
    try:
        with open(path) as f:
            doc = f.read()
    except FileNotFoundError:
        doc = DOCS_INTRO
    start = doc.find(section + "\n")
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        nxt = doc.find("\n## ", start + len(section))
        doc = doc[:start] + text + ("\n" + doc[nxt + 1:] if nxt >= 0 else "")
    with open(path, "w") as f:
        f.write(doc.rstrip("\n") + "\n")
