"""The /api/docs page: Swagger UI from the swagger-ui-py wheel, inlined into one self-contained HTML page."""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

from .openapi import SPEC_URL


def swagger_ui_dir() -> Path:
    """The wheel's static folder, found without importing the package (its __init__ pulls in jinja2)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def _inline_script(source: str) -> str:
    # Inside <script>, only "</script" ends the element; "<\/" is the same string to JavaScript.
    return source.replace("</script", "<\\/script")


def render(title: str = "blog-api") -> str:
    static = swagger_ui_dir()
    css = (static / "swagger-ui.css").read_text(encoding="utf-8")
    bundle = (static / "swagger-ui-bundle.js").read_text(encoding="utf-8")
    preset = (static / "swagger-ui-standalone-preset.js").read_text(encoding="utf-8")
    # One page and no further requests: nothing to route besides /api/docs, and no outside network.
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}: API documentation</title>
<link rel="icon" href="data:,">
<style>{css}</style>
<style>html {{ box-sizing: border-box; overflow-y: scroll; }} body {{ margin: 0; background: #fafafa; }}</style>
</head>
<body>
<div id="swagger-ui"></div>
<script>{_inline_script(bundle)}</script>
<script>{_inline_script(preset)}</script>
<script>
window.onload = function () {{
  window.ui = SwaggerUIBundle({{
    url: "{SPEC_URL}",
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayRequestDuration: true,
    docExpansion: "list",
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "BaseLayout"
  }});
}};
</script>
</body>
</html>
"""


@functools.cache
def page() -> tuple[bytes, bytes]:
    """The page, plain and gzipped (about 1.9 MB and 0.5 MB), built on first use and kept."""
    body = render().encode()
    return body, gzip.compress(body, 6)
