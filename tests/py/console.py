"""Drives hookgate's console in Debian's headless Chromium, as an operator would, for
tests/console.rs: sign in with a token, open the event list and an event, retry a dead
delivery from the dead-letter view, watch a callback appear in the live tail, ask which
rules fire for a pasted body, and switch to Chinese in the dark theme. Saves a screenshot
of each step. Exits non-zero with the reason when a step does not show what it should.

usage: console.py ADMIN_URL TOKEN CALLBACK_URL SCREENSHOT_DIR
"""

import json
import os
import sys
import tempfile
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

admin, token, callback, shots = sys.argv[1:5]
os.makedirs(shots, exist_ok=True)
for old in os.listdir(shots):
    if old.endswith(".png"):
        os.remove(os.path.join(shots, old))

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1400,1000",
    f"--user-data-dir={tempfile.mkdtemp(prefix='hookgate-chromium-')}",
):
    options.add_argument(flag)
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
wait = WebDriverWait(driver, 15)
step = 0


def shot(name):
    global step
    step += 1
    driver.save_screenshot(os.path.join(shots, f"{step:02d}-{name}.png"))


def fail(why):
    shot("failed")
    logs = [e["message"] for e in driver.get_log("browser")]
    print(f"console test failed: {why}\nbrowser log: {logs}", file=sys.stderr)
    driver.quit()
    sys.exit(1)


def until(what, condition):
    try:
        return wait.until(condition)
    except Exception:
        fail(f"{what} did not happen within 15 s")


def text(css):
    return driver.find_element(By.CSS_SELECTOR, css).text


try:
    # Signing in: the page asks for credentials, a token is taken.
    driver.get(admin + "/")
    until("the sign-in form", ec.presence_of_element_located((By.ID, "login")))
    shot("sign-in")
    driver.find_element(By.NAME, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()

    # The event list, newest first.
    until("the event list", ec.presence_of_element_located((By.CSS_SELECTOR, "#events tbody tr")))
    rows = driver.find_elements(By.CSS_SELECTOR, "#events tbody tr")
    if len(rows) < 2:
        fail(f"{len(rows)} events listed, 2 expected")
    if "deploy" not in text("#who"):
        fail(f"signed in as {text('#who')!r}")
    shot("events")

    # One event: its decrypted body and each delivery's timeline.
    rows[-1].click()
    until("the event page", ec.presence_of_element_located((By.ID, "raw")))
    if "order-1" not in text("#raw"):
        fail(f"the body shown is {text('#raw')!r}")
    until("the dead delivery's card", ec.presence_of_element_located((By.CSS_SELECTOR, ".delivery[data-status=dead] .timeline li")))
    if "dead" not in text(".delivery[data-status=dead] .timeline"):
        fail("the timeline does not show the dead attempt")
    shot("event")

    # The dead letters: retry one.
    driver.get(admin + "/#/deliveries?status=dead")
    until("the dead letters", ec.element_to_be_clickable((By.CSS_SELECTOR, "#deliveries button.retry")))
    shot("dead-letters")
    dead_id = driver.find_element(By.CSS_SELECTOR, "#deliveries tbody tr").get_attribute("data-id")
    driver.find_element(By.CSS_SELECTOR, "#deliveries button.retry").click()
    until("the retry's answer", ec.text_to_be_present_in_element((By.ID, "toast"), "1"))
    print(f"retried {dead_id}")

    # The timers: one cancelled.
    driver.get(admin + "/#/timers")
    until("the timers", ec.element_to_be_clickable((By.CSS_SELECTOR, "#deliveries button.danger")))
    shot("timers")
    driver.find_element(By.CSS_SELECTOR, "#deliveries button.danger").click()
    until("the cancel's answer", ec.text_to_be_present_in_element((By.ID, "toast"), "1"))

    # The cancelled timer's event, replayed through the rules as they are now: both rules
    # are done with it (dead, cancelled), so both plan again.
    driver.get(admin + "/#/deliveries?status=cancelled")
    until("the cancelled timer", ec.presence_of_element_located((By.CSS_SELECTOR, "#deliveries tbody tr a")))
    driver.find_element(By.CSS_SELECTOR, "#deliveries tbody tr a").click()
    until("the replay button", ec.element_to_be_clickable((By.ID, "replay")))
    driver.find_element(By.ID, "replay").click()
    until("the replay's answer", ec.text_to_be_present_in_element((By.ID, "toast"), "Replay 1: 2"))
    until("the replayed deliveries", ec.presence_of_element_located((By.CSS_SELECTOR, ".delivery[data-status=pending], .delivery[data-status=running]")))
    shot("replayed")

    # The live tail: a callback posted now shows up.
    driver.get(admin + "/#/tail")
    until("the tail connected", ec.text_to_be_present_in_element((By.ID, "tail-state"), "connected"))
    body = json.dumps({"id": "order-live", "type": "created", "amount": 7}).encode()
    req = urllib.request.Request(callback, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        if r.status != 200:
            fail(f"the callback got {r.status}")
    until("the callback in the tail", ec.text_to_be_present_in_element((By.CSS_SELECTOR, "#tail tbody"), "order-live"))
    shot("live-tail")

    # Explain: which rules fire for a pasted body.
    driver.get(admin + "/#/explain")
    until("the explain form", ec.presence_of_element_located((By.ID, "explain-body")))
    Select(driver.find_element(By.ID, "explain-receiver")).select_by_value("shop")
    driver.find_element(By.ID, "explain-body").send_keys('{"id": "x-9", "type": "created", "amount": 12}')
    driver.find_element(By.ID, "explain-run").click()
    until("the verdicts", ec.text_to_be_present_in_element((By.ID, "explain-out"), "notify"))
    if "fires" not in text("#explain-out"):
        fail(f"explain says {text('#explain-out')!r}")
    shot("explain")

    # 中文, dark.
    driver.get(admin + "/#/events")
    until("the event list again", ec.presence_of_element_located((By.CSS_SELECTOR, "#events tbody tr")))
    driver.find_element(By.ID, "lang").click()
    driver.find_element(By.ID, "theme").click()
    until("Chinese labels", ec.text_to_be_present_in_element((By.ID, "nav"), "死信"))
    theme = driver.execute_script("return document.documentElement.dataset.theme")
    if theme != "dark":
        fail(f"theme is {theme!r}")
    shot("zh-dark")
    # Script errors only: the 401 that asked for the sign-in is the network's, and expected.
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and e.get("source") != "network"]
    if errors:
        fail(f"errors in the browser console: {errors}")
finally:
    driver.quit()
print("console ok")
