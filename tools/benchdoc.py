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


def table(results, columns, text_cols):
    """A Markdown table (also readable on a terminal) of `results` (dicts): `columns` are
    (key, heading, %-format); the first `text_cols` columns are text (left-aligned), the
    others figures (right-aligned); a missing value shows as '-'."""
    head = [c[1] for c in columns]
    rows = [["-" if r.get(k) is None else f % r.get(k) for k, _h, f in columns]
            for r in results]
    width = [max(len(x) for x in col) for col in zip(head, *rows)]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if i >= text_cols else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(cells, width))) + " |"

    sep = "|" + "|".join("-" * (w + 1) + (":" if i >= text_cols else "-")
                         for i, w in enumerate(width)) + "|"
    return "\n".join([line(head), sep] + [line(r) for r in rows])
