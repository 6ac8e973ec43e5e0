"""The house's layering: plumbing underneath, lessons on top, imports only go down.

Parses the root modules (nothing is imported or run) and fails on an import that goes sideways or up, an
import cycle, a project import hidden inside a function, a function over 80 lines, or lines over 100 columns.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Reading order, bottom up: a module may import only modules before it in this list.
LAYERS = ["configurator", "files", "runtime", "checkpoints",  # plumbing
          "bpe", "wordpiece", "model", "lora",  # tokenizers, then the model and its adapters
          "token_lengths", "hellaswag", "train", "sample", "sft"]  # the tools that use them
ALLOWED = {  # beyond the order: a few edges that the order allows but the house forbids
    "configurator": set(),  # configurator imports nothing of ours
}


def root_modules():
    return {p.stem: ast.parse(p.read_text(encoding="utf-8")) for p in sorted(ROOT.glob("*.py"))}


def project_imports(tree, names):
    """(module imported, line, inside a function or class?) for each import of one of ours in tree."""
    found = []

    def visit(node, nested):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                mods = [a.name.split(".")[0] for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                mods = [child.module.split(".")[0]]
            else:
                mods = []
            found.extend((m, child.lineno, nested) for m in mods if m in names)
            scope = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            visit(child, nested or scope)
    visit(tree, False)
    return found


def test_every_root_module_has_a_layer():
    assert sorted(root_modules()) == sorted(LAYERS)


def test_imports_only_go_down_and_never_hide_in_functions():
    modules = root_modules()
    bad = []
    for name, tree in modules.items():
        for dep, line, nested in project_imports(tree, modules):
            where = f"{name}.py:{line} imports {dep}"
            if nested:
                bad.append(f"{where} inside a function")
            elif LAYERS.index(dep) >= LAYERS.index(name):
                bad.append(f"{where}, which is not below it")
            elif name in ALLOWED and dep not in ALLOWED[name]:
                bad.append(f"{where}, which it must not")
    assert not bad, "\n".join(bad)


def test_functions_are_short_and_lines_narrow():
    long_functions, wide, total = [], 0, 0
    for path in sorted(ROOT.glob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = [line for line in source.splitlines() if line.strip()]
        total += len(lines)
        wide += sum(len(line) > 100 for line in lines)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > 80:
                    long_functions.append(f"{path.name}:{node.lineno} {node.name} ({n} lines)")
    assert not long_functions, long_functions
    assert wide / total <= 0.02, f"{wide} of {total} lines are over 100 columns"
