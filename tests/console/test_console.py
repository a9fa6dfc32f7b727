"""Headless-Chromium end to end for the manager's web console (/console/).

Run through tests/console/run.sh, which starts an all-in-one manager and sets:
BAI_CONSOLE_URL, BAI_ADMIN_AK/SK, BAI_USER_AK/SK, BAI_CONSOLE_IMAGE, BAI_CONSOLE_ARTIFACTS
(and optionally BAI_CONSOLE_AGENT_ID, BAI_CONSOLE_WORK).

The tests share one browser and run in file order: each builds on the state the previous one
left (signed in as the admin from b to k, as the user in k and l). Every wait is an explicit
WebDriverWait; the only "sleeps" are WebDriverWait's polls.
"""
import os
import pathlib
import re
import tempfile
import warnings

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

if not os.environ.get("BAI_CONSOLE_URL"):
    pytest.skip("run through tests/console/run.sh (BAI_CONSOLE_URL is not set)", allow_module_level=True)

BASE = os.environ["BAI_CONSOLE_URL"].rstrip("/")
CONSOLE = BASE + "/console/"
ADMIN_AK = os.environ["BAI_ADMIN_AK"]
ADMIN_SK = os.environ["BAI_ADMIN_SK"]
USER_AK = os.environ["BAI_USER_AK"]
USER_SK = os.environ["BAI_USER_SK"]
IMAGE = os.environ.get("BAI_CONSOLE_IMAGE", "bai/python:3.11")
AGENT_ID = os.environ.get("BAI_CONSOLE_AGENT_ID", "")
ARTIFACTS = pathlib.Path(os.environ.get("BAI_CONSOLE_ARTIFACTS", "/var/tmp/bai-target/console-screenshots"))
DOWNLOADS = ARTIFACTS / "downloads"
WORK = pathlib.Path(os.environ.get("BAI_CONSOLE_WORK") or tempfile.mkdtemp(prefix="bai-console-"))

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

OK_SESSION = "console-ok"
BIG_SESSION = "console-big"
ADMIN_ONLY_SESSION = "console-admin-only"
FOLDER = "console-data"
UPLOAD_NAME = "console-upload.bin"
UPLOAD_SIZE = 3 * 1024 * 1024

PAGES = ("sessions", "agents", "groups", "folders", "admin")


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def driver():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    DOWNLOADS.mkdir(parents=True, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a container: the setuid/namespace sandbox is unavailable
        "--disable-dev-shm-usage",  # a container's /dev/shm is tiny
        "--window-size=1400,1000",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-search-engine-choice-screen",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    opts.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(DOWNLOADS),
            "download.prompt_for_download": False,
            "download.directory_upgrade": True,
            "safebrowsing.enabled": False,
        },
    )
    # An explicit chromedriver: Selenium Manager never runs (and never downloads anything).
    service = Service(CHROMEDRIVER, log_output=str(ARTIFACTS / "chromedriver.log"))
    drv = webdriver.Chrome(service=service, options=opts)
    drv.set_page_load_timeout(60)
    drv.set_script_timeout(60)
    try:
        drv.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(DOWNLOADS)})
    except WebDriverException as e:  # pragma: no cover - older Chromium
        warnings.warn(f"Browser.setDownloadBehavior: {e}")
    yield drv
    try:
        dump_browser_log(drv, ARTIFACTS / "browser-console.log")
        # Not a test of its own, but worth seeing: script errors and policy violations.
        for e in BROWSER_LOG:
            msg = str(e.get("message", ""))
            if e.get("level") == "SEVERE" and "Failed to load resource" not in msg:
                warnings.warn(f"browser console: {msg[:400]}")
    finally:
        drv.quit()


@pytest.fixture(autouse=True)
def _artifacts_on_failure(request, driver):
    """On a failing test: failure-<test>.png, failure-<test>.html (page source) and
    failure-<test>.console.log (the browser's console) in the artifacts directory."""
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is None or not rep.failed:
        return
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    try:
        # a prompt left open would make every command fail
        driver.switch_to.alert.dismiss()
    except WebDriverException:
        pass
    try:
        driver.save_screenshot(str(ARTIFACTS / f"failure-{name}.png"))
    except WebDriverException as e:
        print(f"failure screenshot: {e}")
    try:
        (ARTIFACTS / f"failure-{name}.html").write_text(driver.page_source)
    except WebDriverException as e:
        print(f"failure page source: {e}")
    dump_browser_log(driver, ARTIFACTS / f"failure-{name}.console.log")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


BROWSER_LOG = []  # every browser console entry of the run (get_log drains Chromium's buffer)


def drain_browser_log(driver):
    try:
        BROWSER_LOG.extend(driver.get_log("browser"))
    except WebDriverException as e:
        BROWSER_LOG.append({"level": "ERROR", "message": f"(could not read the browser log: {e.msg})"})
    return BROWSER_LOG


def dump_browser_log(driver, path):
    with open(path, "w") as f:
        for e in drain_browser_log(driver):
            f.write(f"{e.get('timestamp', '')} {e.get('level')} {e.get('message')}\n")


def wait(driver, timeout=30, poll=0.25):
    return WebDriverWait(
        driver,
        timeout,
        poll_frequency=poll,
        ignored_exceptions=(StaleElementReferenceException, NoSuchElementException),
    )


def text_of(el):
    """The element's text as in the DOM (textContent): not affected by CSS text-transform or
    by the element being scrolled out of view."""
    return (el.get_attribute("textContent") or "").strip()


def outer(driver, css, limit=1500):
    els = driver.find_elements(By.CSS_SELECTOR, css)
    if not els:
        return f"(no element matches {css})"
    try:
        return (els[0].get_attribute("outerHTML") or "")[:limit]
    except StaleElementReferenceException:
        return "(stale)"


def page_state(driver):
    """A one-line description of main#page and the errors shown, for failure messages."""
    try:
        return driver.execute_script(
            """
            const m = document.querySelector('main#page');
            const errs = [...document.querySelectorAll('#login-error, #create-error')]
                .map(e => e.id + '=' + JSON.stringify(e.textContent.trim())).join(' ');
            return 'url=' + location.href + ' main#page=' + (m ? JSON.stringify({
                page: m.getAttribute('data-page'), ready: m.getAttribute('data-ready')}) : 'missing')
                + ' ' + errs;
            """
        )
    except WebDriverException as e:
        return f"(page state unavailable: {e.msg})"


def shot(driver, name):
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), f"save_screenshot({path}) failed"
    assert path.exists() and path.stat().st_size > 0, f"{path} is empty"
    return path


def fresh(driver, fn, timeout=10):
    """fn(driver), retried while the elements it touches go stale: the console re-renders its
    tables on live updates, so no element reference is kept across waits."""
    return wait(driver, timeout, 0.05).until(lambda d: (fn(d),))[0]


def click_css(driver, css, timeout=10):
    """Find the element by CSS and click it, again if a re-render made it stale."""
    try:
        fresh(driver, lambda d: click(d, d.find_element(By.CSS_SELECTOR, css)), timeout)
    except TimeoutException:
        pytest.fail(f"cannot click {css} (missing or always stale) in {timeout} s; {page_state(driver)}")


def click(driver, el):
    """Click like a user; if something overlays the element, click it from script (deferred,
    so a window.confirm it opens does not block the script call)."""
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
    try:
        el.click()
    except (ElementClickInterceptedException, ElementNotInteractableException) as e:
        warnings.warn(f"native click failed ({e.msg.splitlines()[0]}); clicking from script")
        driver.execute_script("const el = arguments[0]; setTimeout(() => el.click(), 0)", el)


def fill(driver, el, value):
    el.clear()
    el.send_keys(value)
    if el.get_attribute("value") != value:
        # e.g. an <input type=number> that refused the keys: set it and tell the page
        driver.execute_script(
            """const [el, v] = arguments; el.value = v;
               el.dispatchEvent(new Event('input', {bubbles: true}));
               el.dispatchEvent(new Event('change', {bubbles: true}));""",
            el,
            value,
        )
    assert el.get_attribute("value") == value, f"{el.get_attribute('name')}: value {el.get_attribute('value')!r}"


def submit(driver, form):
    buttons = form.find_elements(By.CSS_SELECTOR, 'button[type="submit"], input[type="submit"]') or [
        b for b in form.find_elements(By.CSS_SELECTOR, "button") if (b.get_attribute("type") or "submit") == "submit"
    ]
    assert buttons, f"no submit button in form#{form.get_attribute('id')}"
    click(driver, buttons[0])


def accept_confirm(driver, timeout=3):
    """Accept a window.confirm if one is (or comes) up; return its text, or None."""
    try:
        WebDriverWait(driver, timeout, poll_frequency=0.1).until(EC.alert_is_present())
    except TimeoutException:
        return None
    alert = driver.switch_to.alert
    text = alert.text
    alert.accept()
    return text


def wait_page(driver, page, timeout=30):
    css = f'main#page[data-page="{page}"][data-ready="1"]'
    try:
        return wait(driver, timeout).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))
    except TimeoutException:
        pytest.fail(f"{css} not there after {timeout} s; {page_state(driver)}")


def go(driver, page):
    """Navigate through the nav link (falling back to the hash route) and wait until the page
    says it has loaded its data."""
    links = driver.find_elements(By.CSS_SELECTOR, f'nav#nav a[data-page="{page}"]')
    if links and links[0].is_displayed():
        click(driver, links[0])
    else:
        driver.execute_script("location.hash = arguments[0]", f"#/{page}")
    wait_page(driver, page)
    assert driver.execute_script("return location.hash") == f"#/{page}", page_state(driver)


def login(driver, ak, sk):
    form = wait(driver).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "form#login-form")))
    fill(driver, form.find_element(By.CSS_SELECTOR, 'input[name="access_key"]'), ak)
    fill(driver, form.find_element(By.CSS_SELECTOR, 'input[name="secret_key"]'), sk)
    submit(driver, form)


def wait_nav(driver, timeout=30):
    try:
        return wait(driver, timeout).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "nav#nav")))
    except TimeoutException:
        pytest.fail(f"nav#nav did not appear in {timeout} s; {page_state(driver)}")


def session_rows(driver, name):
    return driver.find_elements(By.CSS_SELECTOR, f'table#sessions tr[data-session="{name}"]')


def create_session(driver, name, cpu, mem, image=IMAGE):
    form = wait(driver).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "form#create-session")))
    fill(driver, form.find_element(By.CSS_SELECTOR, 'input[name="name"]'), name)
    fill(driver, form.find_element(By.CSS_SELECTOR, 'input[name="image"]'), image)
    fill(driver, form.find_element(By.CSS_SELECTOR, 'input[name="cpu"]'), cpu)
    fill(driver, form.find_element(By.CSS_SELECTOR, 'input[name="mem"]'), mem)
    submit(driver, form)
    try:
        return wait(driver, 30).until(lambda d: session_rows(d, name)[0] if session_rows(d, name) else False)
    except TimeoutException:
        err = driver.find_elements(By.CSS_SELECTOR, "#create-error")
        pytest.fail(
            f"no tr[data-session={name!r}] 30 s after submitting form#create-session; "
            f"#create-error: {text_of(err[0]) if err else '(absent)'!r}; {page_state(driver)}; "
            f"table#sessions: {outer(driver, 'table#sessions')}"
        )


def wait_session_status(driver, name, accept, timeout, gone_ok=False):
    """Wait, without reloading, until the session's row shows one of `accept` (or, with
    gone_ok, has disappeared). Returns the status (or "GONE")."""
    history = []

    def cond(d):
        rows = session_rows(d, name)
        if not rows:
            if gone_ok:
                return "GONE"
            status = "(no row)"
        else:
            status = text_of(rows[0].find_element(By.CSS_SELECTOR, ".status")).upper()
        if not history or history[-1] != status:
            history.append(status)
        return status if status in accept else False

    try:
        return wait(driver, timeout, 0.5).until(cond)
    except TimeoutException:
        pytest.fail(
            f"{name}: no {'/'.join(accept)}{' (or disappearance)' if gone_ok else ''} in {timeout} s; "
            f"statuses seen: {history}; row: {outer(driver, f'table#sessions tr[data-session={name!r}]')}"
        )


def terminate(driver, name):
    click_css(driver, f'table#sessions tr[data-session="{name}"] button.terminate')
    return accept_confirm(driver)


# --------------------------------------------------------------------------------------------
# Tests (in order; they share the browser)
# --------------------------------------------------------------------------------------------


def test_a_login_page_and_wrong_secret(driver):
    driver.get(CONSOLE)
    form = wait(driver).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "form#login-form")))
    assert form.find_element(By.CSS_SELECTOR, 'input[name="access_key"]').is_displayed()
    assert form.find_element(By.CSS_SELECTOR, 'input[name="secret_key"]').is_displayed()
    shot(driver, "login.png")

    wrong = ("0" * len(ADMIN_SK)) if not ADMIN_SK.startswith("0") else ("1" * len(ADMIN_SK))
    login(driver, ADMIN_AK, wrong)
    try:
        err = wait(driver, 20).until(
            lambda d: next(
                (e for e in d.find_elements(By.CSS_SELECTOR, "#login-error") if e.is_displayed() and text_of(e)),
                False,
            )
        )
    except TimeoutException:
        pytest.fail(f"no visible, non-empty #login-error after a wrong secret key; {outer(driver, '#login-error')}")
    print("login error:", text_of(err))
    assert driver.find_element(By.CSS_SELECTOR, "form#login-form").is_displayed(), "the login form went away"
    navs = [n for n in driver.find_elements(By.CSS_SELECTOR, "nav#nav") if n.is_displayed()]
    assert not navs, "nav#nav is shown after a failed sign-in"


def test_b_admin_signs_in(driver):
    login(driver, ADMIN_AK, ADMIN_SK)
    nav = wait_nav(driver)
    for page in PAGES:
        assert nav.find_elements(By.CSS_SELECTOR, f'a[data-page="{page}"]'), f'no a[data-page="{page}"] for the admin'
    assert driver.find_elements(By.CSS_SELECTOR, "button#logout"), "no button#logout"
    wait(driver, 10).until(EC.invisibility_of_element_located((By.CSS_SELECTOR, "form#login-form")))


def test_c_session_becomes_running_live(driver):
    go(driver, "sessions")
    # A page reload (or a full navigation) would drop this; hash routing and live updates keep it.
    driver.execute_script("window.__baiConsoleTestMarker = 'no-reload'")
    create_session(driver, OK_SESSION, cpu="1", mem="256m")

    def row_parts(d):
        row = d.find_element(By.CSS_SELECTOR, f'table#sessions tr[data-session="{OK_SESSION}"]')
        parts = (".status", ".status-info", ".age", ".resources", "button.terminate", "button.logs")
        return [c for c in parts if not row.find_elements(By.CSS_SELECTOR, c)], row.get_attribute("outerHTML")[:1500]

    missing, html = fresh(driver, row_parts)
    assert not missing, f"the {OK_SESSION} row has no {missing}: {html}"
    wait_session_status(driver, OK_SESSION, {"RUNNING"}, timeout=120)
    marker = driver.execute_script("return window.__baiConsoleTestMarker || null")
    assert marker == "no-reload", "the page was reloaded while waiting for RUNNING"
    assert driver.execute_script("return location.hash") == "#/sessions"
    shot(driver, "sessions.png")


def test_d_pending_session_explains_and_cancels(driver):
    go(driver, "sessions")
    create_session(driver, BIG_SESSION, cpu="1000", mem="256m")
    seen = []

    def pending_with_reason(d):
        rows = session_rows(d, BIG_SESSION)
        if not rows:
            raise AssertionError(f"the {BIG_SESSION} row disappeared; seen {seen}")
        row = rows[0]
        status = text_of(row.find_element(By.CSS_SELECTOR, ".status")).upper()
        info = text_of(row.find_element(By.CSS_SELECTOR, ".status-info"))
        if not seen or seen[-1] != (status, info):
            seen.append((status, info))
        if status not in ("PENDING", ""):
            raise AssertionError(f"{BIG_SESSION} left PENDING: {status!r} (info {info!r})")
        return (status, info) if status == "PENDING" and info else False

    try:
        status, info = wait(driver, 60, 0.5).until(pending_with_reason)
    except TimeoutException:
        pytest.fail(f"{BIG_SESSION}: no PENDING with a non-empty .status-info in 60 s; seen {seen}")
    print(f"{BIG_SESSION}: {status} / {info}")
    assert "cpu" in info.lower(), f".status-info does not say why (no 'cpu'): {info!r}"
    shot(driver, "sessions-pending.png")

    confirm_text = terminate(driver, BIG_SESSION)
    print("confirm:", confirm_text)
    wait_session_status(driver, BIG_SESSION, {"CANCELLED", "TERMINATED"}, timeout=60, gone_ok=True)


def test_e_logs_panel(driver):
    go(driver, "sessions")
    click_css(driver, f'table#sessions tr[data-session="{OK_SESSION}"] button.logs')
    try:
        logs = wait(driver, 30).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#logs")))
    except TimeoutException:
        pytest.fail(f"#logs is not displayed 30 s after clicking button.logs: {outer(driver, '#logs')}")
    assert logs.is_displayed()
    assert isinstance(logs.text, str)
    print("logs:", logs.text[:500])


def test_f_terminate_running_session(driver):
    go(driver, "sessions")
    confirm_text = terminate(driver, OK_SESSION)
    print("confirm:", confirm_text)
    wait_session_status(driver, OK_SESSION, {"TERMINATED"}, timeout=120, gone_ok=True)


def test_g_agents_page(driver):
    go(driver, "agents")
    css = "table#agents tr[data-agent]"
    try:
        ids = wait(driver, 30).until(
            lambda d: [r.get_attribute("data-agent") for r in d.find_elements(By.CSS_SELECTOR, css)] or False
        )
    except TimeoutException:
        pytest.fail(f"no {css}: {outer(driver, 'table#agents')}")
    print("agents:", ids)
    if AGENT_ID:
        assert AGENT_ID in ids, f"the embedded agent {AGENT_ID} is not listed: {ids}"
    agent = AGENT_ID or ids[0]
    row_css = f'table#agents tr[data-agent="{agent}"]'

    def alive(d):
        row = d.find_element(By.CSS_SELECTOR, row_css)
        return text_of(row.find_element(By.CSS_SELECTOR, ".status")).upper() == "ALIVE"

    try:
        wait(driver, 30).until(alive)
    except TimeoutException:
        pytest.fail(f"{agent} is not ALIVE: {outer(driver, row_css)}")

    def row_parts(d):
        row = d.find_element(By.CSS_SELECTOR, row_css)
        heartbeat = row.find_elements(By.CSS_SELECTOR, ".heartbeat")
        return (
            text_of(heartbeat[0]) if heartbeat else None,
            len(row.find_elements(By.CSS_SELECTOR, '.bar[data-slot="cpu"]')),
            row.get_attribute("outerHTML")[:1500],
        )

    heartbeat, cpu_bars, html = fresh(driver, row_parts)
    print(f"{agent}: heartbeat {heartbeat!r}")
    assert heartbeat, f"no .heartbeat text: {html}"
    assert cpu_bars, f'no .bar[data-slot="cpu"] in the row: {html}'
    shot(driver, "agents.png")


def test_h_scaling_groups_page(driver):
    go(driver, "groups")
    css = 'section.group[data-group="default"]'
    try:
        wait(driver, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))
    except TimeoutException:
        pytest.fail(f"no {css}: {outer(driver, 'main#page', 3000)}")
    try:
        wait(driver, 30).until(lambda d: d.find_element(By.CSS_SELECTOR, css).find_elements(By.CSS_SELECTOR, "svg.plot") or False)
    except TimeoutException:
        pytest.fail(f"no svg.plot in {css}: {outer(driver, css, 2000)}")
    shot(driver, "groups.png")


# Records, from inside the page, whether the progress bars were ever rendered and whether they
# reached their max: an upload of a few MB over loopback can be over between two polls.
PROGRESS_OBSERVER = """
window.__baiSeen = {upload: null, download: null};
const check = () => {
  for (const [k, sel] of [['upload', 'progress#upload-progress'], ['download', 'progress#download-progress']]) {
    const el = document.querySelector(sel);
    if (el && el.getClientRects().length > 0) {
      const s = window.__baiSeen[k] || (window.__baiSeen[k] = {count: 0, full: false});
      s.count++; s.value = el.value; s.max = el.max;
      if (el.max > 0 && el.value >= el.max) s.full = true;
    }
  }
};
if (window.__baiObserver) window.__baiObserver.disconnect();
window.__baiObserver = new MutationObserver(check);
window.__baiObserver.observe(document.documentElement,
  {subtree: true, childList: true, attributes: true, characterData: true});
check();
"""


def test_i_folders_upload_download(driver):
    go(driver, "folders")
    form = wait(driver).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "form#create-folder")))
    fill(driver, form.find_element(By.CSS_SELECTOR, 'input[name="name"]'), FOLDER)
    submit(driver, form)
    row_css = f'table#folders tr[data-folder="{FOLDER}"]'
    try:
        wait(driver, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, row_css)))
    except TimeoutException:
        pytest.fail(f"no {row_css} after creating it; {page_state(driver)}; {outer(driver, 'main#page', 3000)}")
    click_css(driver, f"{row_css} button.open")
    try:
        wait(driver, 30).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#folder-files")))
    except TimeoutException:
        pytest.fail(f"#folder-files not displayed after button.open: {outer(driver, '#folder-files')}")

    payload = os.urandom(UPLOAD_SIZE)
    upload_path = WORK / UPLOAD_NAME
    upload_path.write_bytes(payload)
    driver.execute_script(PROGRESS_OBSERVER)
    # Slow the network a little so the progress bars are on screen for a moment.
    throttled = False
    try:
        driver.set_network_conditions(
            offline=False, latency=5, download_throughput=2 * 1024 * 1024, upload_throughput=2 * 1024 * 1024
        )
        throttled = True
    except WebDriverException as e:
        warnings.warn(f"network throttling unavailable: {e.msg}")
    try:
        inp = wait(driver).until(EC.presence_of_element_located((By.CSS_SELECTOR, "input#upload-file")))
        inp.send_keys(str(upload_path))  # a hidden file input is fine (strictFileInteractability off)
        try:
            wait(driver, 30, 0.05).until(
                lambda d: d.execute_script(
                    "const el = document.querySelector('progress#upload-progress');"
                    "return !!(window.__baiSeen.upload || (el && el.getClientRects().length));"
                )
            )
        except TimeoutException:
            pytest.fail(f"progress#upload-progress never appeared: {outer(driver, 'progress#upload-progress')}")
        file_css = f'#folder-files tr[data-file="{UPLOAD_NAME}"]'
        try:
            wait(driver, 60).until(EC.presence_of_element_located((By.CSS_SELECTOR, file_css)))
        except TimeoutException:
            pytest.fail(f"no {file_css} 60 s after the upload started: {outer(driver, '#folder-files', 3000)}")

        click_css(driver, f"{file_css} button.download")
        state = {}

        def downloaded(d):
            s = d.execute_script(
                """const p = document.querySelector('progress#download-progress');
                   const st = document.querySelector('#download-status');
                   return {value: p ? p.value : null, max: p ? p.max : null,
                           full: !!(window.__baiSeen.download && window.__baiSeen.download.full),
                           status: st ? st.textContent.trim() : null};"""
            )
            state.update(s)
            full = s["full"] or (s["max"] is not None and s["max"] > 0 and s["value"] == s["max"])
            done = s["status"] is not None and re.search(r"\bdone\b|complete", s["status"], re.I)
            return full or bool(done)

        try:
            wait(driver, 60, 0.05).until(downloaded)
        except TimeoutException:
            pytest.fail(f"the download did not finish in 60 s: {state}")
        print("download:", state, "progress bars seen:", driver.execute_script("return window.__baiSeen"))
    finally:
        if throttled:
            driver.delete_network_conditions()
    shot(driver, "folders.png")

    # If the browser saved the file, it must be the bytes we uploaded.
    saved = DOWNLOADS / UPLOAD_NAME
    try:
        WebDriverWait(driver, 15, 0.25).until(
            lambda _: saved.exists() and not (DOWNLOADS / (UPLOAD_NAME + ".crdownload")).exists()
        )
    except TimeoutException:
        warnings.warn(f"the browser did not save {UPLOAD_NAME} into {DOWNLOADS} (only the progress was checked)")
    else:
        got = saved.read_bytes()
        assert got == payload, f"the downloaded file differs: {len(got)} bytes, {len(payload)} uploaded"


def test_j_admin_page(driver):
    go(driver, "admin")
    css = f'#keypairs tr[data-access-key="{ADMIN_AK}"]'
    try:
        wait(driver, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))
    except TimeoutException:
        pytest.fail(f"no {css}: {outer(driver, 'table#keypairs', 3000)}")
    try:
        emails = wait(driver, 30).until(
            lambda d: [r.get_attribute("data-email") for r in d.find_elements(By.CSS_SELECTOR, "#users tr[data-email]")]
            or False
        )
    except TimeoutException:
        pytest.fail(f"no #users tr[data-email]: {outer(driver, 'table#users', 3000)}")
    print("users:", emails)
    if "user@example.com" not in emails:
        warnings.warn(f"user@example.com is not in the admin's user list: {emails}")
    shot(driver, "admin.png")


def test_j_graphql_ui(driver):
    # /graphql-ui is the console's GraphQL page: the schema from introspection, a query run as
    # the signed-in admin.
    driver.get(BASE + "/graphql-ui")
    try:
        wait(driver, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, '#gql-schema li[data-field="agent_list"]')))
    except TimeoutException:
        pytest.fail(f"no agent_list in the schema list: {outer(driver, '#gql-schema', 3000)}")
    assert "/console/" in driver.current_url and driver.current_url.endswith("#/graphql"), driver.current_url
    mutations = [e.get_attribute("data-field") for e in driver.find_elements(By.CSS_SELECTOR, "#gql-schema li[data-field]")]
    assert "create_keypair" in mutations, mutations
    click_css(driver, "button#gql-run")
    try:
        text = wait(driver, 30).until(lambda d: (t := d.find_element(By.ID, "gql-result").text) and t != "…" and t)
    except TimeoutException:
        pytest.fail(f"no result: {outer(driver, '#gql-result', 3000)}")
    assert '"total_count"' in text and '"errors"' not in text, text
    shot(driver, "graphql.png")


def test_k_logout_and_user_view(driver):
    # A session of the admin's that must stay invisible to the user (cpu 1000: it stays PENDING
    # and starts no container).
    go(driver, "sessions")
    create_session(driver, ADMIN_ONLY_SESSION, cpu="1000", mem="256m")
    # Problems that do not stop the user's part (and test l, which needs the user signed in)
    # from running; reported together at the end.
    problems = []

    click(driver, driver.find_element(By.CSS_SELECTOR, "button#logout"))
    try:
        wait(driver, 30).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "form#login-form")))
    except TimeoutException:
        pytest.fail(f"no login form after #logout; {page_state(driver)}")
    shot(driver, "logout.png")
    for css in ("nav#nav", "button#logout", "main#page"):
        shown = [e for e in driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]
        if shown:
            detail = driver.execute_script(
                "const e = arguments[0]; return {hidden: e.hidden, display: getComputedStyle(e).display,"
                " text: e.textContent.trim().slice(0, 200)}",
                shown[0],
            )
            problems.append(f"{css} is still displayed after signing out: {detail}")

    login(driver, USER_AK, USER_SK)
    nav = wait_nav(driver)
    wait(driver, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, 'nav#nav a[data-page="sessions"]') or False)
    for page in ("admin", "agents", "graphql"):
        links = nav.find_elements(By.CSS_SELECTOR, f'a[data-page="{page}"]')
        if links:
            problems.append(
                f'the user\'s nav has a[data-page="{page}"]'
                f" ({'displayed' if links[0].is_displayed() else 'present but hidden'})"
            )
    go(driver, "sessions")
    wait(driver, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, "table#sessions")))
    listed = fresh(
        driver,
        lambda d: [r.get_attribute("data-session") for r in d.find_elements(By.CSS_SELECTOR, "table#sessions tr[data-session]")],
    )
    print("user's sessions:", listed)
    leaked = [n for n in (OK_SESSION, BIG_SESSION, ADMIN_ONLY_SESSION) if n in listed]
    if leaked:
        problems.append(f"the user sees the admin's sessions: {leaked}")
    assert not problems, "; ".join(problems)


FETCH_FOLDERS = """
const done = arguments[arguments.length - 1];
(async () => {
  const out = {};
  let r = await fetch('/folders', {credentials: 'same-origin'});
  out.plain = r.status; out.plainBody = (await r.text()).slice(0, 400);
  r = await fetch('/folders', {credentials: 'same-origin',
    headers: {'X-BackendAI-Console': '1', 'X-BackendAI-Version': 'v7.20230615'}});
  out.console = r.status; out.consoleBody = (await r.text()).slice(0, 400);
  out.cookie = document.cookie;
  return out;
})().then(done, e => done({error: String(e)}));
"""


def test_l_console_session_cookie_security(driver):
    r = driver.execute_async_script(FETCH_FOLDERS)
    print("fetch /folders:", r)
    assert "error" not in r, r
    problems = []
    # Without the console header the cookie counts for nothing: the request is an unsigned
    # one, refused as such (400 invalid-auth-params for the missing Date, as the original).
    if r["plain"] not in (400, 401) or "[]" == r["plainBody"].strip():
        problems.append(f"GET /folders without X-BackendAI-Console: {r['plain']} (want 400/401) {r['plainBody']!r}")
    if r["console"] != 200:
        problems.append(f"GET /folders with the console headers: {r['console']} (want 200) {r['consoleBody']!r}")
    if "bai_console" in r["cookie"]:
        problems.append(f"the session cookie is readable from script: document.cookie = {r['cookie']!r}")
    cookies = driver.get_cookies()
    print("cookies:", [(c["name"], c.get("httpOnly"), c.get("sameSite"), c.get("secure")) for c in cookies])
    if not any(c.get("httpOnly") for c in cookies):
        problems.append(f"no HttpOnly cookie holds the console session: {cookies}")
    assert not problems, "; ".join(problems)
