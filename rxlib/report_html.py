"""Self-contained HTML of an executed notebook: it renders fully offline, from a file, with no CDN.

nbconvert's ``HTMLExporter`` writes a page that loads MathJax, require.js and the Jupyter widget renderer
from CDNs: offline, equations stay raw ``$...$`` text and widgets are blank. :func:`notebook_html` makes
the page stand alone instead:

* **Equations** (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``, ``equation``/``align``
  environments in markdown cells and markdown outputs, and ``text/latex`` outputs) are converted to
  MathML at export time with the pure-Python ``latex2mathml``; browsers draw MathML natively (MathML
  Core), so no script is needed. Math is swapped for placeholders before markdown is rendered, so that
  markdown never sees (and mangles) TeX's ``_`` and ``*``.
* **Widgets** keep the static snapshot papermill/nbclient stored in the notebook's widget state: each
  widget view becomes the images (``ipywidgets.Image``), HTML and control values it showed when the
  notebook ran, e.g. the first picture of the Grad-CAM explorer. Where no state was stored, the view
  falls back to its ``text/plain`` output and a note.
* **Remote scripts and stylesheets** (MathJax, require.js, widget manager, mermaid) are removed; figures
  are already inline base64 PNGs, and markdown images of local files are embedded (``embed_images``).
* **Layout**: every output area scrolls horizontally instead of overflowing (wide DataFrames), and
  images shrink to the page width.

Wide DataFrames are rendered by pandas in the kernel when the notebook runs: the exporter cannot add
columns pandas left out (``display.max_columns``); :func:`rxlib.notebook.setup` is the place to set it.
"""
from __future__ import annotations

import copy
import html
import re
from pathlib import Path
from typing import Any

#: Widget-view and widget-state mime types of ipywidgets 7/8.
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

#: CSS appended to the page: scrolling output areas, images within the page, display math as a block.
OFFLINE_CSS = """
.jp-OutputArea-output { overflow-x: auto; max-width: 100%; }
.jp-OutputArea-output img { max-width: 100%; height: auto; }
.jp-RenderedHTMLCommon table { font-size: 12px; }
math[display="block"] { margin: 0.8em 0; overflow-x: auto; }
.rx-widget-snapshot { border: 1px solid #d0d0d0; padding: 6px; display: inline-block; max-width: 100%; }
.rx-widget-note { color: #666; font-size: 11px; margin: 2px 0 6px 0; }
.rx-widget-control { font-size: 12px; color: #333; }
"""

# Math delimiters, longest first; DOTALL so that display math may span lines.
_MATH = re.compile(
    r"(?P<dd>\$\$(?P<dd_body>.+?)\$\$)"
    r"|(?P<env>\\begin\{(?P<env_name>equation\*?|align\*?|gather\*?|multline\*?)\}(?P<env_body>.+?)\\end\{(?P=env_name)\})"
    r"|(?P<bracket>\\\[(?P<bracket_body>.+?)\\\])"
    r"|(?P<paren>\\\((?P<paren_body>.+?)\\\))"
    r"|(?P<d>(?<![\\$\w])\$(?=\S)(?P<d_body>[^$\n]+?)(?<=\S)\$(?!\d))",
    re.DOTALL,
)
# Code that markdown shows literally: fenced blocks and inline code spans (left untouched).
_CODE = re.compile(r"(^|\n)(```|~~~).*?\n\2[^\n]*|(`+)[^`]*?\3", re.DOTALL)
_PLACEHOLDER = "rxmathph{}x"
_PLACEHOLDER_RE = re.compile(r"rxmathph(\d+)x")


def latex_to_mathml(tex: str, display: bool = False) -> str:
    """MathML of one TeX formula (no delimiters); on a formula latex2mathml cannot read, the TeX in
    ``<code>`` so that the page still shows what was meant (and names the problem in its title)."""
    from latex2mathml.converter import convert

    tex = tex.strip()
    # aligned environments: latex2mathml reads them as a matrix-like table; & and \\ are kept
    try:
        return convert(tex, display="block" if display else "inline")
    except Exception as exc:  # noqa: BLE001 - any parser failure falls back to the literal formula
        return (f'<code class="rx-math-error" title="not converted to MathML: {html.escape(str(exc), quote=True)}">'
                f"{html.escape(tex)}</code>")


class _MathStore:
    """Math found in markdown, swapped for placeholders that markdown leaves alone."""

    def __init__(self) -> None:
        self.mathml: list[str] = []

    def _add(self, tex: str, display: bool) -> str:
        self.mathml.append(latex_to_mathml(tex, display))
        return _PLACEHOLDER.format(len(self.mathml) - 1)

    def _replace(self, match: re.Match) -> str:
        if match.group("dd"):
            return "\n\n" + self._add(match.group("dd_body"), True) + "\n\n"
        if match.group("env"):
            body = match.group("env_body")
            name = match.group("env_name").rstrip("*")
            if name in ("align", "gather", "multline"):
                body = r"\begin{aligned}" + body + r"\end{aligned}"
            return "\n\n" + self._add(body, True) + "\n\n"
        if match.group("bracket"):
            return "\n\n" + self._add(match.group("bracket_body"), True) + "\n\n"
        if match.group("paren"):
            return self._add(match.group("paren_body"), False)
        return self._add(match.group("d_body"), False)

    def protect(self, text: str) -> str:
        """``text`` with every formula outside code replaced by a placeholder."""
        out, last = [], 0
        for code in _CODE.finditer(text):
            out.append(_MATH.sub(self._replace, text[last:code.start()]))
            out.append(code.group(0))
            last = code.end()
        out.append(_MATH.sub(self._replace, text[last:]))
        return "".join(out)

    def restore(self, page: str) -> str:
        """``page`` with the placeholders replaced by their MathML (a placeholder alone in a paragraph
        loses the paragraph, so that display math is a block of its own)."""
        def one(match: re.Match) -> str:
            return self.mathml[int(match.group(1))]

        page = re.sub(r"<p>\s*(rxmathph\d+x)\s*</p>", lambda m: one(_PLACEHOLDER_RE.match(m.group(1))), page)
        return _PLACEHOLDER_RE.sub(one, page)


def _source(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _strip_delimiters(tex: str) -> tuple[str, bool]:
    tex = tex.strip()
    for left, right, display in (("$$", "$$", True), ("\\[", "\\]", True), ("$", "$", False), ("\\(", "\\)", False)):
        if tex.startswith(left) and tex.endswith(right) and len(tex) > len(left) + len(right):
            return tex[len(left):-len(right)], display
    return tex, True


# -- widgets -------------------------------------------------------------------------------------------

def _widget_states(nb) -> dict[str, dict]:
    widgets = nb.metadata.get("widgets", {}) or {}
    return (widgets.get(WIDGET_STATE) or {}).get("state", {}) or {}


def _model_ref(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith("IPY_MODEL_"):
        return value[len("IPY_MODEL_"):]
    return None


def _widget_html(model_id: str, states: dict[str, dict], seen: set[str] | None = None) -> str:
    """Static HTML of one widget model and its children, from the stored state."""
    seen = set() if seen is None else seen
    if model_id in seen or model_id not in states:
        return ""
    seen.add(model_id)
    entry = states[model_id]
    name = entry.get("model_name", "")
    state = entry.get("state", {}) or {}
    if name == "ImageModel":
        data = None
        for buffer in entry.get("buffers", []) or []:
            if list(buffer.get("path", [])) == ["value"]:
                data = buffer.get("data")
        if data is None and isinstance(state.get("value"), str):
            data = state["value"]
        if not data:
            return ""
        fmt = state.get("format", "png")
        return f'<img alt="widget image" src="data:image/{html.escape(fmt)};base64,{data}"/>'
    if name in ("HTMLModel", "HTMLMathModel"):
        return f"<div>{state.get('value', '')}</div>"
    if name == "LabelModel":
        return f'<div class="rx-widget-control">{html.escape(str(state.get("value", "")))}</div>'
    if name in ("FloatProgressModel", "IntProgressModel"):  # e.g. tqdm's bar
        return (f'<progress value="{float(state.get("value", 0))}" max="{float(state.get("max", 100))}">'
                f'{html.escape(str(state.get("value", "")))}</progress>')
    children = [_model_ref(c) for c in state.get("children", []) or []]
    if children and any(children):
        inner = "".join(_widget_html(c, states, seen) for c in children if c)
        if name == "HBoxModel":
            return f'<div style="display:flex;gap:6px;align-items:center">{inner}</div>'
        return inner
    if ("value" in state or "index" in state) and not name.endswith(("LayoutModel", "StyleModel")):
        value = state.get("value", "")  # selection widgets store only the index into their labels
        labels = state.get("_options_labels")
        if isinstance(state.get("index"), int) and labels:
            value = labels[state["index"]]
        description = state.get("description", "") or name.replace("Model", "")
        return f'<div class="rx-widget-control">{html.escape(str(description))}: {html.escape(str(value))}</div>'
    return ""


#: Widgets that only show something (text, picture, progress): their snapshot needs no "interactive" note.
_DISPLAY_ONLY = {"HTMLModel", "HTMLMathModel", "LabelModel", "ImageModel", "FloatProgressModel", "IntProgressModel",
                 "HBoxModel", "VBoxModel", "BoxModel"}


def _interactive(model_id: str, states: dict[str, dict], seen: set[str] | None = None) -> bool:
    """Whether the widget tree under ``model_id`` holds a control a reader could move."""
    seen = set() if seen is None else seen
    if model_id in seen or model_id not in states:
        return False
    seen.add(model_id)
    entry = states[model_id]
    if entry.get("model_name", "") not in _DISPLAY_ONLY:
        return True
    children = [_model_ref(c) for c in (entry.get("state", {}) or {}).get("children", []) or []]
    return any(_interactive(c, states, seen) for c in children if c)


def _snapshot_widgets(nb) -> int:
    """Replace every widget view output by its static snapshot; return how many views were replaced."""
    states = _widget_states(nb)
    replaced = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []) or []:
            data = output.get("data") or {}
            if WIDGET_VIEW not in data:
                continue
            view = data[WIDGET_VIEW]
            model_id = view.get("model_id") if isinstance(view, dict) else None
            body = _widget_html(model_id, states) if model_id else ""
            if body and not _interactive(model_id, states):  # a progress bar, a label: just what it showed
                snapshot = body
            elif body:
                snapshot = (f'<div class="rx-widget-snapshot">{body}</div>'
                            '<div class="rx-widget-note">Interactive widget, shown as it was when the notebook ran; '
                            "open the notebook in Jupyter to use it.</div>")
            else:
                plain = html.escape(_source(data.get("text/plain", "widget")))
                snapshot = (f"<pre>{plain}</pre><div class=\"rx-widget-note\">Interactive widget: its state was not "
                            "stored with the notebook; open the notebook in Jupyter to use it.</div>")
            output["data"] = {"text/html": snapshot}
            replaced += 1
    nb.metadata.pop("widgets", None)  # nothing left for the (remote) widget manager to render
    return replaced


# -- the page ------------------------------------------------------------------------------------------

_REMOTE_TAGS = [
    re.compile(r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*</script>", re.IGNORECASE),
    re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.IGNORECASE),
    re.compile(r"<script\b[^>]*type=[\"']text/x-mathjax-config[\"'][^>]*>.*?</script>", re.IGNORECASE | re.DOTALL),
    # inline module scripts that import from a CDN (mermaid)
    re.compile(r"<script\b[^>]*>(?:(?!</script>).)*?\bimport\b(?:(?!</script>).)*?https?://(?:(?!</script>).)*?</script>",
               re.IGNORECASE | re.DOTALL),
]


def strip_remote_resources(page: str) -> str:
    """``page`` without the script and stylesheet tags that load from the network."""
    for pattern in _REMOTE_TAGS:
        page = pattern.sub("", page)
    return page


def _prepare(nb) -> _MathStore:
    """Convert math to placeholders (markdown) or MathML (latex outputs) and widgets to snapshots, in place."""
    store = _MathStore()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = store.protect(_source(cell.source))
        for output in cell.get("outputs", []) or []:
            data = output.get("data")
            if not data:
                continue
            if "text/markdown" in data:
                data["text/markdown"] = store.protect(_source(data["text/markdown"]))
            if "text/latex" in data:
                latex = _source(data.pop("text/latex"))
                if "text/html" not in data and "image/png" not in data and "image/svg+xml" not in data:
                    tex, display = _strip_delimiters(latex)
                    data["text/html"] = latex_to_mathml(tex, display)
    _snapshot_widgets(nb)
    return store


def notebook_html(notebook: str | Path | Any) -> str:
    """The self-contained HTML page of an executed notebook (a path or an ``nbformat`` node).

    The notebook object passed in is not changed.
    """
    import nbformat
    from nbconvert import HTMLExporter

    resources: dict[str, Any] = {}
    if isinstance(notebook, (str, Path)):
        path = Path(notebook)
        nb = nbformat.read(path, as_version=4)
        resources = {"metadata": {"path": str(path.parent), "name": path.stem}}
    else:
        nb = copy.deepcopy(notebook)
    store = _prepare(nb)
    exporter = HTMLExporter(embed_images=True)
    page, _ = exporter.from_notebook_node(nb, resources=resources)
    page = store.restore(strip_remote_resources(page))
    return page.replace("</head>", f"<style type=\"text/css\">{OFFLINE_CSS}</style>\n</head>", 1)


def write_notebook_html(executed: str | Path, html_path: str | Path) -> Path:
    """Write :func:`notebook_html` of ``executed`` to ``html_path`` atomically; return the path."""
    from rxlib.io import atomic_path

    html_path = Path(html_path)
    page = notebook_html(executed)
    with atomic_path(html_path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return html_path


def remote_references(page: str) -> list[str]:
    """``src``/``href`` attributes of ``page`` that point to the network (used by tests; anchors excluded)."""
    found = re.findall(r"<(script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']((?:https?:)?//[^\"']+)", page,
                       re.IGNORECASE)
    return [url for _, url in found]

