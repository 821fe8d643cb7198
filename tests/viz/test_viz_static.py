"""The page's scripts as ES modules: one module entry, every import resolves to an export, formatters by node."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from viz.site_routes import STATIC

IMPORT = re.compile(r'^import \{([^}]*)\} from "\./([a-z_]+\.js)";$', re.M)
EXPORT = re.compile(r"^export (?:async )?(?:function|const|let) ([A-Za-z_$][\w$]*)", re.M)


def test_the_page_loads_one_module_and_no_classic_script() -> None:
    scripts = re.findall(r"<script[^>]*>", (STATIC / "index.html").read_text())
    assert scripts == ['<script type="module" src="/static/main.js">']


def test_every_import_names_an_export_of_an_existing_module() -> None:
    modules = {p.name: p.read_text() for p in STATIC.glob("*.js")}
    exports = {name: set(EXPORT.findall(text)) for name, text in modules.items()}
    imported: set[str] = set()
    for name, text in modules.items():
        assert "window." not in text, f"{name} writes to the global namespace"
        for names, source in IMPORT.findall(text):
            assert source in modules, f"{name} imports the missing module {source}"
            missing = {n.strip() for n in names.split(",")} - exports[source]
            assert not missing, f"{name} imports {sorted(missing)} that {source} does not export"
            imported.add(source)
    assert imported | {"main.js"} == set(modules)  # every module is reached from the entry


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_bytes_and_time_formatters(tmp_path: Path) -> None:
    script = tmp_path / "check.mjs"
    script.write_text(
        f'import {{ fmtBytes, fmtMs, fmtCount }} from "{(STATIC / "format.js").as_uri()}";\n'
        "console.log(JSON.stringify([fmtBytes(98304), fmtBytes(3 * 1024 ** 3), fmtBytes(1536), fmtBytes(512),\n"
        "  fmtBytes(null), fmtMs(123.456), fmtMs(1.5), fmtMs(0.25), fmtCount(86567656)]));\n")
    out = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60, check=True).stdout
    # 98,304 B = 96 x 1,024 B; 1,536 B = 1.5 x 1,024 B; 86,567,656 parameters (vit_base) = 86.57 million.
    assert json.loads(out) == ["96.00 KiB", "3.00 GiB", "1.50 KiB", "512 B", "", "123.5", "1.50", "0.250", "86.57 M"]
