"""Code shape (issue 13, point 4): no function in ``rxlib/`` runs over about 60 lines unless its
docstring says why, in a sentence starting "Long because".

A function's length is counted from its first statement after the docstring to its last line, so
neither the signature nor the docstring counts; a nested function counts within its parent too.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rxlib"
MAX_LINES = 60
REASON = "Long because"

def _functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, node) of every function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")
        else:
            yield from _functions(node, prefix)


def code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first statement after the docstring to the function's last line."""
    body = node.body
    if ast.get_docstring(node, clean=False) is not None:
        body = body[1:]
    if not body:
        return 0
    return node.end_lineno - body[0].lineno + 1


def long_functions() -> dict[str, int]:
    """``path::qualified.name`` -> code lines, for every function over the limit without a reason."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for name, node in _functions(tree):
            lines = code_lines(node)
            if lines > MAX_LINES and REASON not in (ast.get_docstring(node) or ""):
                found[f"{path.relative_to(PACKAGE.parent).as_posix()}::{name}"] = lines
    return found


def test_code_lines_counts_from_the_first_statement_after_the_docstring():
    tree = ast.parse('def f():\n    """Doc\n    string."""\n    a = 1\n\n    return a\n')
    assert code_lines(tree.body[0]) == 3


def test_no_long_function_without_a_reason():
    found = long_functions()
    offenders = dict(found)
    assert not offenders, (
        f"functions over {MAX_LINES} code lines (docstring excluded) whose docstring has no "
        f"'{REASON} ...' sentence: split them into named steps, or say why not:\n"
        + "\n".join(f"  {name}: {lines} lines" for name, lines in sorted(offenders.items())))

