#!/usr/bin/env python3
"""Finds import cycles between the modules of a crate.

Usage: scripts/import-cycles.py [--level N] CRATE_SRC...

Every `crate::a::b` and `super::...` path in a file of CRATE_SRC (doc
comments and strings included: a path named in prose is a dependency a
reader follows too) is an arrow from the file's module to the module it
names, cut to its first N levels (default 2: `link::clock`, `cameras::store`,
the files a reader opens). Arrows inside one module and from `lib.rs` and
`main.rs` are not counted; test modules are. Prints each cycle with the
lines that make it and exits 1 when there is one, else prints the number of
modules and arrows and exits 0.
"""

import os
import re
import sys


def module_of(rel):
    parts = rel[:-3].split("/")
    return parts[:-1] if parts[-1] == "mod" else parts


def existing(root, path):
    """The longest prefix of `path` that is a module file or folder."""
    found = []
    for i in range(1, len(path) + 1):
        base = os.path.join(root, *path[: i])
        if os.path.exists(base + ".rs") or os.path.isdir(base):
            found = path[:i]
        else:
            break
    return found


def arrows(root, level):
    edges = {}
    for folder, _, names in os.walk(root):
        for name in names:
            if not name.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(folder, name), root)
            if rel in ("lib.rs", "main.rs"):
                continue
            me = module_of(rel)
            text = open(os.path.join(root, rel), encoding="utf-8").read()
            tests = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
            tests_at = tests.start() if tests else len(text)
            for m in re.finditer(r"\b(crate|super)((?:::[a-z_0-9]+)+)", text):
                segments = m.group(2).strip(":").split("::")
                if m.group(1) == "crate":
                    target = segments
                else:
                    # In `mod tests`, `super` is the file's own module.
                    base = me if m.start() > tests_at else me[:-1]
                    while segments and segments[0] == "super":
                        base, segments = base[:-1], segments[1:]
                    target = base + segments
                a = "::".join(me[:level])
                b = "::".join(existing(root, target)[:level])
                if b and a != b:
                    line = text.count("\n", 0, m.start()) + 1
                    edges.setdefault((a, b), []).append(f"{rel}:{line}")
    return edges


def cycles(edges):
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return graph, found


def main(argv):
    level = 2
    if len(argv) > 1 and argv[0] == "--level":
        level, argv = int(argv[1]), argv[2:]
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 2
    bad = False
    for root in argv:
        edges = arrows(root, level)
        graph, found = cycles(edges)
        if not found:
            print(f"{root}: {len(graph)} modules, {len(edges)} arrows, no cycle (level {level})")
        for part in found:
            bad = True
            print(f"{root}: import cycle (level {level}) among {', '.join(part)}:")
            for a in part:
                for b in part:
                    for at in edges.get((a, b), [])[:3]:
                        print(f"  {a} -> {b}  ({at})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
