"""Drives `coffer admin console` in real headless Chromium (selenium + chromedriver): every
page loads against a real coffer-server; resources and reference values are added and
deleted; a policy with a syntax error shows the error at its line; a draft is tested against
a recorded attestation, then uploaded, and its audit row appears; the audit page exports CSV.
Screenshots of each page go to SHOT_DIR.

Usage: console_test.py CONSOLE_URL SHOT_DIR
The server must hold resource default/model/key (17 bytes) and at least one recorded
attestation of the sample TEE with svn "1" (integration/tests/console.rs sets this up).
"""
import json
import os
import shutil
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

url, shots = sys.argv[1], sys.argv[2]
downloads = os.path.join(shots, "downloads")
os.makedirs(downloads, exist_ok=True)

opts = Options()
opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
          "--window-size=1440,1000", "--no-first-run", "--disable-extensions",
          "--disable-background-networking", "--disable-component-update", "--disable-sync"):
    opts.add_argument(a)
opts.add_experimental_option("prefs", {"download.default_directory": downloads,
                                       "download.prompt_for_download": False})
opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                          options=opts)
wait = WebDriverWait(driver, 20)
step = "start"


def shot(name):
    driver.save_screenshot(os.path.join(shots, f"console-{name}.png"))


def text(sel):
    return driver.find_element(By.CSS_SELECTOR, sel).text


def until_text(sel, needle):
    wait.until(lambda d: needle in d.find_element(By.CSS_SELECTOR, sel).text,
               f"{sel} never contained {needle!r}")


def set_editor(value):
    driver.execute_script(
        "const t = document.getElementById('rego'); t.value = arguments[0];"
        "t.dispatchEvent(new Event('input', {bubbles: true}));", value)


try:
    # The printed URL carries the token; it becomes a cookie and the page reloads at /.
    step = "overview"
    driver.get(url)
    wait.until(EC.url_matches(r"/(#.*)?$"))
    url_root = driver.current_url.split("#")[0]
    assert "?t=" not in driver.current_url, driver.current_url
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cards .card")) == 5)
    until_text("#cards", "up")
    until_text("#cards", "ready")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#recent-att table tr[data-seq]"))
    assert "sample" in text("#recent-att"), text("#recent-att")
    assert "contraindicated" in text("#recent-att"), text("#recent-att")
    until_text("#recent-deny", "deny")
    until_text("#stats", "attest allow")
    shot("overview")

    # Resources: sizes and times, never values; upload and delete.
    step = "resources"
    driver.get(url_root + "#/resources")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#res-table tr[data-path="default/model/key"]'))
    row = text('#res-table tr[data-path="default/model/key"]')
    assert "17 B" in row, row
    assert "audited-model-key" not in driver.page_source
    upload = os.path.join(shots, "upload.bin")
    with open(upload, "wb") as f:
        f.write(b"x" * 2048)
    driver.find_element(By.ID, "rpath").send_keys("default/model/uploaded")
    driver.find_element(By.ID, "rfile").send_keys(upload)
    driver.find_element(By.CSS_SELECTOR, "#upform button").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#res-table tr[data-path="default/model/uploaded"]'))
    assert "2.0 KiB" in text('#res-table tr[data-path="default/model/uploaded"]')
    shot("resources")
    driver.find_element(By.CSS_SELECTOR, '#res-table tr[data-path="default/model/uploaded"] .del').click()
    wait.until(EC.alert_is_present()).accept()
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, '#res-table tr[data-path="default/model/uploaded"]'))

    # Reference values: add, list, delete.
    step = "reference values"
    driver.get(url_root + "#/reference-values")
    wait.until(EC.presence_of_element_located((By.ID, "rv-table")))
    driver.find_element(By.ID, "rvname").send_keys("console-svn")
    driver.find_element(By.ID, "rvvalue").send_keys('["1", "2"]')
    driver.find_element(By.CSS_SELECTOR, "#rvform button").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#rv-table tr[data-name="console-svn"]'))
    assert '["1","2"]' in text('#rv-table tr[data-name="console-svn"]')
    shot("reference-values")
    driver.find_element(By.CSS_SELECTOR, '#rv-table tr[data-name="console-svn"] .del').click()
    wait.until(EC.alert_is_present()).accept()
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, '#rv-table tr[data-name="console-svn"]'))

    # Policies: a syntax error is shown at its line, with highlighting and the upload refused.
    step = "policy editor"
    driver.get(url_root + "#/policies/resource-policy")
    wait.until(EC.presence_of_element_located((By.ID, "rego")))
    until_text("#editor-status", "compiles")
    assert driver.find_elements(By.CSS_SELECTOR, ".code pre .tok-kw"), "keywords highlighted"
    broken = ('package policy\n\nimport rego.v1\n\ndefault allow := false\n\nallow if {\n'
              '    input.submods.cpu0["ear.veraison.annotated-evidence"].sample.svn == \n}\n')
    set_editor(broken)
    until_text("#editor-status", "line ")
    status = text("#editor-status")
    line = int(status.split("line ", 1)[1].split(",", 1)[0])
    assert line == 9, status  # the unexpected `}` after the dangling `==`
    marked = driver.find_elements(By.CSS_SELECTOR, ".gutter div.err")
    assert [m.get_attribute("data-line") for m in marked] == [str(line)], status
    assert driver.find_elements(By.CSS_SELECTOR, f'.code pre .line.err[data-line="{line}"]')
    assert not driver.find_element(By.ID, "upload").is_enabled()
    shot("policy-error")

    # A draft that denies svn 1 and one that allows it, tried on the recorded attestation.
    step = "policy test"
    good = ('package policy\n\nimport rego.v1\n\ndefault allow := false\n\nallow if {\n'
            '    input.submods.cpu0["ear.veraison.annotated-evidence"].sample.svn == "{svn}"\n}\n')
    set_editor(good.replace("{svn}", "2"))
    until_text("#editor-status", "compiles")
    driver.find_element(By.ID, "tpath").clear()
    driver.find_element(By.ID, "tpath").send_keys("default/model/key")
    driver.find_element(By.ID, "run-test").click()
    until_text("#test-table tbody tr .result", "deny")
    set_editor(good.replace("{svn}", "1"))
    until_text("#editor-status", "compiles")
    driver.find_element(By.ID, "run-test").click()
    until_text("#test-table tbody tr .result", "allow")
    driver.execute_script("document.getElementById('toast').style.display = 'none';"
                          "document.getElementById('run-test').scrollIntoView()")
    shot("policy-test")
    driver.find_element(By.ID, "tab-diff").click()
    until_text("#diff-summary", "changed line")
    assert driver.find_elements(By.CSS_SELECTOR, "#diff .add"), "added lines shown"
    shot("policy-diff")

    # Upload, then the audit row.
    step = "upload"
    driver.find_element(By.ID, "upload").click()
    until_text("#toast", "Uploaded resource-policy")
    step = "audit"
    driver.get(url_root + "#/audit")
    wait.until(EC.presence_of_element_located((By.ID, "afilter")))
    Select(driver.find_element(By.ID, "action")).select_by_visible_text("admin")
    driver.find_element(By.CSS_SELECTOR, "#afilter button.primary").click()
    until_text("#arows", "admin:set-resource-policy")
    first = driver.find_element(By.CSS_SELECTOR, "#arows tr[data-seq]")
    assert "admin:set-resource-policy" in first.text, first.text
    assert "by coffer" in first.text, first.text
    assert time.strftime("%Y-") in first.text, first.text
    until_text("#range", "rows 1–")
    shot("audit")

    # The attestation policy's test pane gives the recorded trust vector.
    step = "attestation policy test"
    driver.get(url_root + "#/policies/default_cpu")
    wait.until(EC.presence_of_element_located((By.ID, "run-test")))
    until_text("#editor-status", "compiles")
    driver.find_element(By.ID, "run-test").click()
    until_text("#test-table tbody tr .result", "contraindicated")

    # Export the matching rows as CSV: the filter is kept across pages; cleared, all rows.
    step = "export"
    driver.get(url_root + "#/audit")
    wait.until(EC.presence_of_element_located((By.ID, "export-csv")))
    assert Select(driver.find_element(By.ID, "action")).first_selected_option.text == "admin"
    driver.find_element(By.ID, "clear").click()
    wait.until(lambda d: "attest" in d.find_element(By.ID, "arows").text)
    total = int(text("#range").rsplit(" ", 1)[1])
    driver.find_element(By.ID, "export-csv").click()
    csv_path = os.path.join(downloads, "coffer-audit.csv")
    wait.until(lambda d: os.path.exists(csv_path) and os.path.getsize(csv_path) > 0)
    with open(csv_path) as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("seq,at_ms,time_utc,action,decision"), lines[0]
    assert len(lines) == total + 1, (len(lines), total)
    assert any(",attest,allow," in l for l in lines[1:]), lines[:5]
    assert any(",release,deny," in l and "no such resource" in l for l in lines[1:]), lines

    # Claims of one attestation.
    step = "claims"
    seq = driver.execute_script(
        "return fetch('/api/coffer/v1/audit?action=attest&decision=allow&limit=1').then(r => r.json())"
        ".then(p => p.entries[0].seq)")
    driver.get(url_root + f"#/audit/{seq}")
    until_text("#claims", '"svn": "1"')
    shot("claims")
    print(json.dumps({"ok": True, "screenshots": sorted(os.listdir(shots))}))
except Exception:
    shot(f"failed-{step.replace(' ', '-')}")
    for entry in driver.get_log("browser"):
        print("browser:", entry, file=sys.stderr)
    print(f"failed at step {step!r}", file=sys.stderr)
    raise
finally:
    driver.quit()
