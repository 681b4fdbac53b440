#!/usr/bin/env python3
"""Checks the `use crate::` graph of src/ (run by ./scripts/test.sh, so CI).

1. Layers: a top-level module may use only modules of a lower layer
   (LAYERS below, lowest first: `embed` <- `catalog` <- `search` <- `fit`
   <- `review` <- `eval` <- `api`/`cli`, with the helpers and the plumbing between).
2. No import circles between files: an edge A -> B means file A names an
   item defined in file B (a name re-exported by a `mod.rs` is followed to
   the file that defines it; a `pub use` counts only where the file's own
   code uses the name). Test modules at the end of a file are not counted.
3. No file in src/ over 500 lines.

Exits 1 with what is wrong; prints one summary line otherwise.
"""
import os
import re
import sys

LAYERS = [
    ["util"],
    ["metrics", "synth"],
    ["embed"],
    ["catalog"],
    ["index"],
    ["ingest"],
    ["search"],
    ["fit"],
    ["review", "webhooks"],
    ["eval"],
    ["api"],
    ["cli"],
]
MAX_LINES = 500

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_files():
    """Module path (tuple) -> file, for every .rs file under src/."""
    out = {}
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), ROOT)
            parts = rel[:-3].split(os.sep)
            if parts in (["lib"], ["main"]):
                out[()] = out.get((), os.path.join(ROOT, "lib.rs"))
                continue
            if parts[-1] == "mod":
                parts = parts[:-1]
            out[tuple(parts)] = os.path.join(ROOT, rel)
    return out


def strip(text):
    """The code without comments, string literals and the trailing test module."""
    m = re.search(r"\n#\[cfg\(test\)\]\s*\nmod tests\b", text)
    if m:
        text = text[: m.start()]
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""')
            i = j + 1
        elif c == "'" and i + 2 < n and (text[i + 2] == "'" or (text[i + 1] == "\\" and "'" in text[i + 2 : i + 6])):
            j = text.find("'", i + 2)
            out.append("' '")
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use(tree):
    """`a::{b, c::{d, e as f}}` -> [['a','b'], ['a','c','d'], ['a','c','e']]."""
    tree = re.sub(r"\s+", " ", tree).strip()
    results = []

    def walk(prefix, s):
        depth, start, items = 0, 0, []
        for k, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                items.append(s[start:k])
                start = k + 1
        items.append(s[start:])
        for item in items:
            item = item.strip()
            if not item:
                continue
            b = item.find("{")
            if b >= 0:
                head = [p.strip() for p in item[:b].split("::") if p.strip()]
                walk(prefix + head, item[b + 1 : item.rfind("}")])
            else:
                path = re.split(r"\s+as\s+", item)[0].replace(" ", "")
                results.append(prefix + [p for p in path.split("::") if p])

    walk([], tree)
    return results


def reexports(files, mod):
    """Name -> absolute path it re-exports, for a module's `pub use` lines."""
    text = strip(open(files[mod]).read())
    out = {}
    for vis, tree in re.findall(r"\b(pub(?:\([^)]*\))?\s+)use\s+([^;]+);", text):
        for path in expand_use(tree):
            absolute = resolve_prefix(files, mod, path)
            if absolute and path[-1] not in ("*", "self"):
                out[path[-1]] = absolute
    return out


def resolve_prefix(files, mod, path):
    """A `use` or code path seen in module `mod`, as an absolute module path, or None (another crate)."""
    if not path:
        return None
    head = path[0]
    if head == "crate":
        return list(path[1:])
    if head == "self":
        return list(mod) + list(path[1:])
    if head == "super":
        base, rest = list(mod), list(path)
        while rest and rest[0] == "super":
            base = base[:-1]
            rest = rest[1:]
        return base + rest
    if tuple(list(mod) + [head]) in files:
        return list(mod) + list(path)
    return None


def target_file(files, absolute, seen=None):
    """The file defining what an absolute path names (following re-exports)."""
    seen = seen or set()
    k = len(absolute)
    while k > 0 and tuple(absolute[:k]) not in files:
        k -= 1
    mod = tuple(absolute[:k])
    if mod not in files:
        return None
    if k < len(absolute) and mod not in seen:
        name = absolute[k]
        ex = reexports(files, mod)
        if name in ex:
            seen.add(mod)
            follow = target_file(files, ex[name], seen)
            if follow:
                return follow
    return files[mod]


def edges(files):
    out = {}
    for mod, path in files.items():
        if mod == ():
            continue
        text = strip(open(path).read())
        targets = set()
        uses = list(re.finditer(r"(\bpub(?:\([^)]*\))?\s+)?\buse\s+([^;]+);", text))
        body = re.sub(r"\b(?:pub(?:\([^)]*\))?\s+)?mod\s+[A-Za-z_][A-Za-z0-9_]*\s*;", "", text)
        for m in uses:
            body = body.replace(m.group(0), "")
        for m in uses:
            for p in expand_use(m.group(2)):
                name = p[-1]
                if m.group(1) and name not in ("*", "self") and not re.search(r"\b%s\b" % re.escape(name), body):
                    continue  # a re-export the file itself does not use
                absolute = resolve_prefix(files, mod, p)
                if absolute is not None:
                    targets.add(target_file(files, absolute))
        for m in re.finditer(r"(?<![:\w])[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)+", body):
            absolute = resolve_prefix(files, mod, m.group(0).split("::"))
            if absolute is not None:
                targets.add(target_file(files, absolute))
        targets.discard(None)
        targets.discard(path)
        out[path] = targets
    return out


def cycles(graph):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def main():
    files = module_files()
    graph = edges(files)
    rel = lambda p: os.path.relpath(p, os.path.join(ROOT, ".."))
    layer_of = {m: i for i, names in enumerate(LAYERS) for m in names}
    top = {path: mod[0] for mod, path in files.items() if mod}
    problems = []
    for mod in {m[0] for m in files if m}:
        if mod not in layer_of:
            problems.append(f"src/{mod}: a top-level module missing from LAYERS in scripts/check_layers.py")
    for a, targets in graph.items():
        for b in targets:
            ta, tb = top.get(a), top.get(b)
            if ta and tb and ta != tb and layer_of.get(tb, -1) >= layer_of.get(ta, -1):
                problems.append(f"{rel(a)} uses {rel(b)}: `{ta}` may only use lower layers (LAYERS: {LAYERS})")
    for comp in cycles(graph):
        problems.append("import circle between " + ", ".join(rel(p) for p in comp))
    for path in files.values():
        n = sum(1 for _ in open(path))
        if n > MAX_LINES:
            problems.append(f"{rel(path)} has {n} lines (at most {MAX_LINES})")
    if problems:
        print("\n".join(sorted(set(problems))), file=sys.stderr)
        sys.exit(1)
    n_edges = sum(len(t) for t in graph.values())
    print(f"[layers] {len(files)} files, {n_edges} file dependencies: layers respected, no import circle, none over {MAX_LINES} lines")


if __name__ == "__main__":
    main()
