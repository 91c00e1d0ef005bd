"""How much of the notebooks is logic rather than calls and displays.

    python scripts/notebook_logic.py [notebooks/*.ipynb]

Each top-level statement of each code cell is one of:

- **call**: an import; a call, a name or an attribute shown or called (``display(table)``, ``fig``,
  ``save_figure(fig, ...)``); an assignment whose value is such a call or a constant (``runs =
  ctx.models("04")``, the parameters cell); a ``print`` of an f-string whose fields are names,
  attributes, subscripts by constants, or calls of those with constant arguments, formatted.
- **logic**: everything else: loops, conditions, functions, ``with`` and ``try`` blocks, arithmetic,
  comparisons, boolean operators, comprehensions, lambdas, conditional expressions, or any of these
  inside a call's arguments.

The share of logic is the logic statements' source lines over all non-blank, non-comment code lines.
Printed per notebook and in total; :func:`logic_share` is what ``tests/test_notebook_logic.py`` checks.
"""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

_LOGIC_NODES = (ast.BinOp, ast.BoolOp, ast.Compare, ast.UnaryOp, ast.ListComp, ast.SetComp, ast.DictComp,
                ast.GeneratorExp, ast.Lambda, ast.IfExp, ast.Slice, ast.Starred, ast.NamedExpr, ast.Await)
_COMPOUND = (ast.For, ast.AsyncFor, ast.While, ast.If, ast.With, ast.AsyncWith, ast.Try, ast.FunctionDef,
             ast.AsyncFunctionDef, ast.ClassDef, ast.Match)


def _code_lines(source: str, start: int, end: int) -> int:
    lines = source.splitlines()[start - 1:end]
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


def _is_logic(statement: ast.stmt) -> bool:
    if isinstance(statement, (ast.Import, ast.ImportFrom, ast.Pass)):
        return False
    if isinstance(statement, _COMPOUND) or isinstance(statement, (ast.AugAssign, ast.Delete, ast.Raise,
                                                                   ast.Assert, ast.Global, ast.Return)):
        return True
    value = getattr(statement, "value", None)
    if isinstance(statement, ast.Assign) and any(not isinstance(t, ast.Name) for t in statement.targets):
        return True  # unpacking or assigning into a container
    if value is None:
        return True
    return any(isinstance(node, _LOGIC_NODES) for node in ast.walk(value))


def _clean(source: str) -> str:
    """IPython magics and shell lines (``%matplotlib inline``) are not Python: dropped."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def notebook_lines(path: str | Path) -> tuple[int, int]:
    """``(logic lines, code lines)`` of one notebook.

    Raises:
        SyntaxError: a code cell is not valid Python (the message names the notebook and cell).
    """
    cells = json.loads(Path(path).read_text())["cells"]
    logic = total = 0
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = _clean("".join(cell["source"]))
        try:
            tree = ast.parse(source)
        except SyntaxError as exc:
            raise SyntaxError(f"{path}: cell {index}: {exc.msg} (line {exc.lineno})") from exc
        for statement in tree.body:
            n = _code_lines(source, statement.lineno, statement.end_lineno)
            total += n
            logic += n if _is_logic(statement) else 0
    return logic, total


def logic_share(paths) -> tuple[float, dict[str, tuple[int, int]]]:
    """Share of logic lines over all ``paths``, and ``{name: (logic, total)}`` per notebook."""
    per = {Path(p).stem: notebook_lines(p) for p in paths}
    logic = sum(v[0] for v in per.values())
    total = sum(v[1] for v in per.values())
    return (logic / total if total else 0.0), per


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    paths = argv or sorted(str(p) for p in (Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    share, per = logic_share(paths)
    for name, (logic, total) in per.items():
        print(f"{name:28s} {logic:3d} of {total:3d} code lines are logic ({logic / max(total, 1):.0%})")
    print(f"{'all notebooks':28s} {sum(v[0] for v in per.values()):3d} of {sum(v[1] for v in per.values()):3d} "
          f"code lines are logic ({share:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
