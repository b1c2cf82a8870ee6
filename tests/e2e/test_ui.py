"""``/ui/`` in a real browser: Debian's headless ``chromium`` driven by Playwright (playwright-core
only: it launches /usr/bin/chromium, never a downloaded browser), against a real jetkube over HTTPS.

Two users write a few ConfigMaps (several revisions each); the page is loaded, a data call without a
token shows the 401, the token is pasted, a search filters by name, one object's history shows each
revision with its user and verb as a timeline (an object field carrying HTML is shown as text, never
parsed), and the audit view shows only the records its filters select. A screenshot of that state is
taken into the test's tmp_path, or into the file $JETKUBE_UI_SCREENSHOT names (`JETKUBE_UI_SCREENSHOT=
docs/ui.png` refreshes the README's picture; a plain `make test` leaves the checkout untouched).

Chromium is installed here when missing (apt-get, as root), never skipped: no browser is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import trio

from tests.conftest import poll_until

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CM = "/api/v1/namespaces/default/configmaps"
MERGE = {"Content-Type": "application/merge-patch+json"}
XSS = '<img src=x id="pwned" onerror="document.title=1">'


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed when missing (one apt-get update, bounded); a failure otherwise."""
    if not (os.path.exists(CHROMIUM) and shutil.which("chromedriver")):
        if os.geteuid() != 0:
            pytest.fail("the /ui/ test needs Debian's chromium: apt-get install chromium chromium-driver")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv, limit in ((["apt-get", "update", "-qq"], 300),
                            (["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium",
                              "chromium-driver"], 900)):
            try:
                r = subprocess.run(argv, env=env, timeout=limit, capture_output=True, text=True, check=False)
            except subprocess.TimeoutExpired:
                pytest.fail(f"`{' '.join(argv)}` took more than {limit} s: cannot install chromium")
            if r.returncode != 0:
                pytest.fail(f"`{' '.join(argv)}` failed ({r.returncode}):\n{r.stderr[-3000:]}")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"chromium installed, yet {CHROMIUM} is missing")
    return CHROMIUM


def cm(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def browse(base: str, executable: str, screenshot: Path) -> dict:
    """The browser scenario (Playwright's sync API, in a worker thread: the server runs on trio)."""
    from playwright.sync_api import expect, sync_playwright

    seen: dict = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=ARGS)
        try:
            ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
            page = ctx.new_page()
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            resp = page.goto(base + "/ui/")
            assert resp is not None and resp.status == 200
            seen["csp"] = resp.headers.get("content-security-policy", "")

            # No token: the page loads, but its data calls are answered 401, and it says so.
            page.click("#search-form button[type=submit]")
            expect(page.locator("#error")).to_be_visible()
            seen["error_without_token"] = page.text_content("#error")
            expect(page.locator("#results tbody tr")).to_have_count(0)

            page.fill("#token", "alice-token")
            page.click("#token-form button[type=submit]")
            seen["stored"] = page.evaluate("sessionStorage.getItem('jetkube.token')")
            seen["token_input_after"] = page.input_value("#token")

            # The ui-* objects sort after 505 bulk-* ones: past the first page of the LIST (500).
            page.fill("#search-name", "ui-")
            page.click("#search-form button[type=submit]")
            rows = page.locator("#results tbody tr")
            expect(rows).to_have_count(3)
            expect(page.locator("#error")).to_be_hidden()
            expect(page.locator("#search-more")).to_be_hidden()
            seen["names"] = sorted(rows.nth(i).locator("td").nth(1).text_content() for i in range(3))
            seen["search_count"] = page.text_content("#search-count")
            # Many matches: a page of them, then the rest on demand.
            page.fill("#search-name", "bulk-")
            page.click("#search-form button[type=submit]")
            expect(rows).to_have_count(500)
            expect(page.locator("#search-more")).to_be_visible()
            seen["bulk_count_first"] = page.text_content("#search-count")
            page.click("#search-more")
            expect(rows).to_have_count(505)
            expect(page.locator("#search-more")).to_be_hidden()
            seen["bulk_last"] = rows.nth(504).locator("td").nth(1).text_content()
            page.fill("#search-name", "ui-")
            page.click("#search-form button[type=submit]")
            expect(rows).to_have_count(3)

            page.locator("#results tbody tr", has_text="ui-b").locator("button.open-history").click()
            revs = page.locator("#timeline li.revision")
            expect(revs).to_have_count(4)
            seen["target"] = page.text_content("#history-target")
            seen["users"] = [revs.nth(i).locator(".user").text_content() for i in range(4)]
            seen["verbs"] = [revs.nth(i).locator(".verb").text_content() for i in range(4)]
            seen["types"] = [revs.nth(i).locator(".type").text_content() for i in range(4)]
            seen["diffs"] = [revs.nth(i).locator("pre.diff").text_content() for i in range(4)]
            seen["removed"] = revs.nth(1).locator("pre.diff span.del").all_text_contents()
            seen["added"] = revs.nth(1).locator("pre.diff span.add").all_text_contents()
            seen["injected"] = page.locator("#pwned").count()
            seen["title"] = page.title()

            # A long history: the first page (100), then the rest on demand.
            page.locator("#results tbody tr", has_text="ui-c").locator("button.open-history").click()
            expect(revs).to_have_count(100)
            expect(page.locator("#history-more")).to_be_visible()
            page.click("#history-more")
            expect(revs).to_have_count(111)
            expect(page.locator("#history-more")).to_be_hidden()
            seen["long"] = [revs.nth(i).locator(".verb").text_content() for i in (0, 1, 110)]
            seen["long_last"] = revs.nth(110).locator("pre.diff").text_content()
            page.locator("#results tbody tr", has_text="ui-b").locator("button.open-history").click()
            expect(revs).to_have_count(4)

            page.fill("#audit-user", "bob")
            page.fill("#audit-verb", "patch")
            page.fill("#audit-resource", "configmaps")
            page.fill("#audit-namespace", "default")
            page.click("#audit-form button[type=submit]")
            records = page.locator("#audit tbody tr.record")
            expect(records).not_to_have_count(0)
            seen["audit"] = [[c.text_content() for c in records.nth(i).locator("td").all()]
                             for i in range(records.count())]
            seen["audit_count"] = page.text_content("#audit-count")
            page.screenshot(path=str(screenshot), full_page=True)

            # Forget the token: the next data call is a 401 again, shown on the page.
            page.click("#token-forget")
            page.click("#audit-form button[type=submit]")
            expect(page.locator("#error")).to_be_visible()
            seen["error_after_forget"] = page.text_content("#error")
            expect(records).to_have_count(0)

            # A user RBAC allows nothing: the same page, the API's 403 for each view.
            page.fill("#token", "carol-token")
            page.click("#token-form button[type=submit]")
            page.click("#audit-form button[type=submit]")
            expect(page.locator("#error")).to_contain_text("403")
            seen["error_audit_carol"] = page.text_content("#error")
            page.click("#search-form button[type=submit]")
            expect(page.locator("#error")).to_contain_text("configmaps")
            seen["error_search_carol"] = page.text_content("#error")
            expect(page.locator("#results tbody tr")).to_have_count(0)
            seen["page_errors"] = errors
        finally:
            browser.close()
    return seen


async def test_ui_search_history_and_audit_in_headless_chromium(start_server, tmp_path: Path,
                                                                 chromium: str) -> None:
    screenshot = Path(os.environ.get("JETKUBE_UI_SCREENSHOT") or tmp_path / "ui.png").resolve()
    tokens = tmp_path / "tokens.csv"
    tokens.write_text('alice-token,alice,uid-alice,"system:masters"\nbob-token,bob,uid-bob,"system:masters"\n'
                      "carol-token,carol,uid-carol\n")
    g = await start_server(token_file=str(tokens))
    alice = httpx.AsyncClient(base_url=g.https_url, verify=False, timeout=30,
                              headers={"Authorization": "Bearer alice-token"})
    bob = httpx.AsyncClient(base_url=g.https_url, verify=False, timeout=30,
                            headers={"Authorization": "Bearer bob-token"})
    anon = httpx.AsyncClient(base_url=g.https_url, verify=False, timeout=30)
    async with alice, bob, anon:
        with trio.fail_after(60):
            for name in ("ui-a", "ui-b", "ui-c", "other-d"):  # several objects, several revisions each
                assert (await alice.post(CM, json=cm(name, v="0"))).status_code == 201
            for name in ("ui-a", "ui-b", "other-d"):
                r = await bob.patch(f"{CM}/{name}", content=b'{"data":{"v":"1"}}', headers=MERGE)
                assert r.status_code == 200, r.text
            obj = (await alice.get(f"{CM}/ui-b")).json()
            obj["data"] = {"v": "2", "html": XSS}
            assert (await alice.put(f"{CM}/ui-b", json=obj)).status_code == 200
            r = await bob.patch(f"{CM}/ui-b", content=b'{"data":{"v":"3"}}', headers=MERGE)
            assert r.status_code == 200, r.text
            for i in range(110):  # more revisions than one history page (100)
                r = await alice.patch(f"{CM}/ui-c", content=b'{"data":{"v":"p%d"}}' % i, headers=MERGE)
                assert r.status_code == 200, r.text

            async def bulk(lo: int) -> None:  # more objects than one page of the search's LIST (500)
                for i in range(lo, 505, 8):
                    assert (await bob.post(CM, json=cm(f"bulk-{i:03d}", v="0"))).status_code == 201

            async with trio.open_nursery() as n:
                for lo in range(8):
                    n.start_soon(bulk, lo)

            # The page is public (it holds no data); every data call it makes is authenticated.
            r = await anon.get("/ui/")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert (await anon.get("/ui/app.js")).headers["content-type"].startswith("text/javascript")
            assert (await anon.get("/ui")).headers.get("location") == "/ui/"
            assert (await anon.get("/ui/../api/v1/secrets")).status_code in (401, 404)
            assert (await anon.get("/ui/nothing.js")).status_code == 404
            assert (await anon.post("/ui/")).status_code == 405
            assert (await anon.head("/ui/")).status_code == 200
            for path in (CM, "/apis/history.jetkube.io/v1/namespaces/default/configmaps/ui-b",
                         "/apis/audit.jetkube.io/v1/events"):
                assert (await anon.get(path)).status_code == 401, path

        with trio.fail_after(120):
            seen = await trio.to_thread.run_sync(browse, g.https_url, chromium, screenshot, abandon_on_cancel=True)
            r = await alice.get("/apis/history.jetkube.io/v1/namespaces/default/configmaps/ui-b",
                                params={"diff": "yaml"})
            assert r.status_code == 200, r.text

    assert "script-src 'self'" in seen["csp"] and "default-src 'none'" in seen["csp"]
    assert seen["error_without_token"].startswith("401"), seen["error_without_token"]
    assert seen["stored"] == "alice-token" and seen["token_input_after"] == ""
    assert seen["names"] == ["ui-a", "ui-b", "ui-c"]
    assert seen["target"] == "configmaps default/ui-b"
    assert seen["users"] == ["alice", "bob", "alice", "bob"]
    assert seen["verbs"] == ["create", "patch", "update", "patch"]
    assert seen["types"] == ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED"]
    # 505 bulk-*, ui-a, ui-b, ui-c, other-d and kube-root-ca.crt: every page was read.
    assert seen["search_count"] == "3 matches in 510 objects", seen["search_count"]
    assert seen["bulk_count_first"] == "500 matches in 500 objects read so far", seen["bulk_count_first"]
    assert seen["bulk_last"] == "bulk-504"
    # Each revision as the unified YAML diff `jetkube history --diff` prints (the server's, one place).
    assert [i["diff"] for i in r.json()["items"]] == seen["diffs"]
    assert seen["removed"] == ["-  v: '0'\n"] and seen["added"] == ["+  v: '1'\n"], seen
    first = seen["diffs"][0].splitlines()
    assert first[:2] == ["--- rv (none)", f"+++ rv {r.json()['items'][0]['resourceVersion']}"], first
    assert "+data:" in first and "+  v: '0'" in first and "+  name: ui-b" in first, first
    assert not any("resourceVersion" in line or "managedFields" in line for d in seen["diffs"] for line in d.splitlines())
    # An object's field is shown as text: the HTML in it is in the diff, and never became an element.
    assert any(line.startswith("+  html: ") and XSS in line for line in seen["diffs"][2].splitlines()), seen["diffs"][2]
    assert seen["injected"] == 0 and seen["title"] != "1"
    assert seen["long"] == ["create", "patch", "patch"]
    assert "-  v: p108" in seen["long_last"].splitlines() and "+  v: p109" in seen["long_last"].splitlines(), (
        seen["long_last"])
    by_name = {row[5]: row for row in seen["audit"]}
    assert set(by_name) == {"ui-a", "ui-b", "other-d"}, seen["audit"]
    assert len(seen["audit"]) == 4  # bob's four patches, nothing else
    assert all(row[1] == "bob" and row[2] == "patch" and row[3] == "configmaps" and row[4] == "default"
               and row[6] == "200" for row in seen["audit"]), seen["audit"]
    assert seen["audit_count"] == "4 records"
    assert seen["error_after_forget"].startswith("401"), seen["error_after_forget"]
    assert seen["error_audit_carol"].startswith("403 Forbidden"), seen["error_audit_carol"]
    assert 'User "carol" cannot' in seen["error_audit_carol"], seen["error_audit_carol"]
    assert seen["error_search_carol"].startswith("403 Forbidden"), seen["error_search_carol"]
    assert seen["page_errors"] == []
    assert screenshot.stat().st_size > 10_000


def browse_with_certificate(base: str, executable: str, cert: bytes, key: bytes) -> dict:
    """No token: the browser's TLS client certificate authenticates the page's data calls; the page at a
    tenant's /clusters/<tenant>/ui/ calls that tenant's APIs."""
    from playwright.sync_api import expect, sync_playwright

    seen: dict = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=ARGS)
        try:
            ctx = browser.new_context(ignore_https_errors=True,
                                      client_certificates=[{"origin": base, "cert": cert, "key": key}])
            page = ctx.new_page()
            page.set_default_timeout(15_000)
            for where in ("", "/clusters/ui-tenant"):
                page.goto(base + where + "/ui/")
                page.fill("#search-name", "in-")
                page.click("#search-form button[type=submit]")
                rows = page.locator("#results tbody tr")
                expect(rows).to_have_count(1)
                seen[where or "root"] = rows.nth(0).locator("td").nth(1).text_content()
                rows.nth(0).locator("button.open-history").click()
                expect(page.locator("#timeline li.revision")).to_have_count(1)
                seen[(where or "root") + "-user"] = page.locator("#timeline .user").text_content()
                seen[(where or "root") + "-token"] = page.evaluate("Object.keys(sessionStorage).length")
        finally:
            browser.close()
    return seen


async def test_ui_with_a_client_certificate_and_in_a_tenant(start_server, chromium: str) -> None:
    import base64

    import yaml

    g = await start_server()
    kubeconfig = yaml.safe_load(g.kubeconfig.read_text())
    user = next(u["user"] for u in kubeconfig["users"] if "client-certificate-data" in u["user"])
    cert, key = (base64.b64decode(user[k]) for k in ("client-certificate-data", "client-key-data"))
    admin = httpx.AsyncClient(base_url=g.https_url, verify=False, timeout=30,
                              headers={"Authorization": f"Bearer {g.admin_token}"})
    async with admin:
        with trio.fail_after(60):
            r = await admin.post("/apis/tenancy.jetkube.io/v1alpha1/logicalclusters",
                                 json={"apiVersion": "tenancy.jetkube.io/v1alpha1", "kind": "LogicalCluster",
                                       "metadata": {"name": "ui-tenant"}})
            assert r.status_code == 201, r.text
            assert (await admin.post(CM, json=cm("in-root", v="1"))).status_code == 201

            async def tenant_ready() -> bool:
                r = await admin.post("/clusters/ui-tenant" + CM, json=cm("in-tenant", v="1"))
                return r.status_code == 201

            await poll_until(tenant_ready)  # the tenant's namespaces exist once it is Ready
            r = await admin.get("/clusters/ui-tenant/ui")
            assert r.status_code == 301 and r.headers["location"] == "/clusters/ui-tenant/ui/"
        with trio.fail_after(120):
            seen = await trio.to_thread.run_sync(browse_with_certificate, g.https_url, chromium, cert, key,
                                                 abandon_on_cancel=True)
    assert seen["root"] == "in-root" and seen["/clusters/ui-tenant"] == "in-tenant", seen
    # The objects were written with the admin token ("admin"); the page read them with no token at all
    # (anonymous calls are 401, see above): the certificate authenticated.
    assert seen["root-user"] == seen["/clusters/ui-tenant-user"] == "admin", seen
    assert seen["root-token"] == seen["/clusters/ui-tenant-token"] == 0
