"""axe-core's WCAG 2 A and AA rules, run in headless Chromium on the page after a drawing, at a desktop's
1366x900 and a phone's 390x844 (touch): no violation.

axe-core comes from npm and is not in git: set SKETCHLVM_AXE_JS to its ``axe.min.js`` (``.ci/run``
installs it into a temp dir and sets it), or have ``node_modules/axe-core`` beside the repository or in
npm's global root. Without it the test skips and says so, except where SKETCHLVM_REQUIRE_AXE=1 (CI),
where a missing axe-core is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_page_layout import touch_stroke
from test_page_queries import browser, running, settle, stroke  # noqa: F401  (fixtures and helpers)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning", "ignore:The copy keyword:Warning"),
]

ROOT = Path(__file__).resolve().parents[2]
WCAG_TAGS = ["wcag2a", "wcag2aa"]


def axe_path() -> Path | None:
    """axe.min.js: SKETCHLVM_AXE_JS, else node_modules beside the repo, else npm's global root."""
    named = os.environ.get("SKETCHLVM_AXE_JS")
    if named:
        return Path(named) if Path(named).is_file() else None
    places = [ROOT / "node_modules", ROOT.parent / "node_modules"]
    if shutil.which("npm"):
        try:
            places.append(Path(subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=20,
                                              check=True).stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    return next((p / "axe-core" / "axe.min.js" for p in places if (p / "axe-core" / "axe.min.js").is_file()), None)


@pytest.fixture(scope="module")
def axe_source() -> str:
    path = axe_path()
    if path is None:
        unavailable = pytest.fail if os.environ.get("SKETCHLVM_REQUIRE_AXE") == "1" else pytest.skip
        unavailable("axe-core not found: set SKETCHLVM_AXE_JS to axe.min.js (npm pack axe-core), as .ci/run does")
    return path.read_text(encoding="utf-8")


def violations(page, axe_source: str) -> list[dict]:
    page.add_script_tag(content=axe_source)
    result = page.evaluate("""(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}})
        .then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                          nodes: v.nodes.map(n => n.target.join(' ') + ': ' + n.failureSummary)})))""",
                           WCAG_TAGS)
    return result


@pytest.mark.parametrize("size", ["1366x900", "390x844"])
def test_no_wcag_violations_after_a_drawing(running, browser, axe_source, size, tmp_path):  # noqa: F811
    width, height = map(int, size.split("x"))
    phone = width < 600
    context = browser.new_context(viewport={"width": width, "height": height}, has_touch=phone, is_mobile=phone)
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(running[0])
        page.locator("#sketchlvm-canvas canvas").first.wait_for(state="visible")
        page.wait_for_function("() => window.SketchLVMPage && window.SketchLVMPage.check")
        if phone:
            touch_stroke(context, page)
        else:
            stroke(page, 1)
        settle(page)
        page.locator("#sketchlvm-results .thumbnail-item").first.wait_for(state="visible")
        page.wait_for_timeout(300)  # transitions (the results fade back in) over
        page.screenshot(path=str(tmp_path / f"axe-{size}.png"), full_page=True)
        found = violations(page, axe_source)
        assert found == [], json.dumps(found, indent=1)[:4000]
    finally:
        context.close()
