#!/usr/bin/env python3
"""bench_sections.py DOC NAME=FILE [NAME=FILE ...]

Replace the generated sections of DOC (docs/benchmarks.md) and keep every
other line as it is. A generated section is what lies between the lines

    <!-- bench:NAME begin -->
    <!-- bench:NAME end -->

and scripts/bench owns it: its text becomes FILE's. Everything outside the
markers is hand-written and never changed. A NAME that DOC has no markers
for is appended at the end, markers included, so that a new benchmark finds
a place. Markers of names not given are left as they are.

DOC is checked whole before anything is written: a begin without its end,
an end without its begin, a name marked twice, a section inside another, a
NAME given twice or a FILE that cannot be read is an error naming the line
or the argument, and DOC is left untouched. DOC is replaced by rename, so an
interrupted run leaves the old page or the new one, never half of one.
"""
import os
import re
import sys
import tempfile

MARKER = re.compile(r"^<!-- bench:([A-Za-z0-9_.-]+) (begin|end) -->$")


def fail(message):
    print(f"bench_sections.py: {message}", file=sys.stderr)
    sys.exit(1)


def parse(doc, lines):
    """The marked sections: name -> (index of begin line, index of end line)."""
    sections, open_name, open_at = {}, None, None
    for i, line in enumerate(lines):
        m = MARKER.match(line.rstrip("\n"))
        if not m:
            if line.lstrip().startswith("<!-- bench:"):
                fail(f"{doc}:{i + 1}: malformed marker {line.strip()!r} (want "
                     "'<!-- bench:NAME begin -->' or '<!-- bench:NAME end -->')")
            continue
        name, kind = m.groups()
        if kind == "begin":
            if open_name is not None:
                fail(f"{doc}:{i + 1}: section {name!r} begins inside section "
                     f"{open_name!r} (begun at line {open_at + 1})")
            if name in sections:
                fail(f"{doc}:{i + 1}: section {name!r} is marked twice (first at line "
                     f"{sections[name][0] + 1})")
            open_name, open_at = name, i
        else:
            if open_name != name:
                fail(f"{doc}:{i + 1}: end of section {name!r} without its begin")
            sections[name] = (open_at, i)
            open_name = None
    if open_name is not None:
        fail(f"{doc}:{open_at + 1}: section {open_name!r} has no end marker")
    return sections


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    doc = argv[1]
    replacements = {}
    for arg in argv[2:]:
        name, sep, path = arg.partition("=")
        if not sep or not MARKER.match(f"<!-- bench:{name} begin -->"):
            fail(f"argument {arg!r}: want NAME=FILE, NAME of letters, digits, '_', '-', '.'")
        if name in replacements:
            fail(f"argument {arg!r}: section {name!r} given twice")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            fail(f"section {name!r}: cannot read {path}: {e.strerror}")
        if any(MARKER.match(l) for l in text.splitlines()):
            fail(f"section {name!r}: {path} holds a bench marker itself")
        replacements[name] = text if text.endswith("\n") or not text else text + "\n"
    try:
        with open(doc, encoding="utf-8") as f:
            lines = f.readlines()
    except OSError as e:
        fail(f"cannot read {doc}: {e.strerror}")
    sections = parse(doc, lines)

    # Replace from the last section up, so earlier indices stay valid.
    for name, (begin, end) in sorted(sections.items(), key=lambda s: -s[1][0]):
        if name in replacements:
            lines[begin + 1:end] = [replacements[name]]
    for name, text in replacements.items():
        if name not in sections:
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            lines.append(f"\n<!-- bench:{name} begin -->\n{text}<!-- bench:{name} end -->\n")

    directory = os.path.dirname(os.path.abspath(doc))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bench-sections-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(lines))
        os.chmod(tmp, os.stat(doc).st_mode & 0o7777)
        os.replace(tmp, doc)
    except BaseException:
        os.unlink(tmp)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
