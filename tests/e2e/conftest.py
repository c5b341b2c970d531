"""Browser tests: a live cbm server and Debian's Chromium driven by Playwright.

- ``live_server``: the real app served by werkzeug on 127.0.0.1 (a free port, a thread),
  on its own SQLite file, migrated with Alembic, reference data loaded, one account per
  role created through the account service.
- ``browser``: Chromium from ``/usr/bin/chromium`` (or ``CBM_CHROMIUM``), launched once.
  Without Chromium or the ``playwright`` package the tests skip, unless
  ``CBM_REQUIRE_BROWSER=1`` (CI), where that is a failure that says what to install.
- ``page``: a fresh browser context per test that refuses every request not addressed to
  the live server, and fails the test if a page tried one, logged a console error (a CSP
  violation is one) or raised a script error.
- ``shots``: saves a screenshot per step into ``CBM_SCREENSHOT_DIR`` or a temp folder.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cbm.db import make_engine, make_session_factory
from cbm.migrate import upgrade
from cbm.reference.loader import load_reference
from cbm.services import accounts

CHROMIUM = os.environ.get("CBM_CHROMIUM", "/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("CBM_REQUIRE_BROWSER", "").strip().lower() in {
    "1",
    "true",
    "yes",
}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Every account the browser tests use: username -> (role, display name). One password.
PASSWORD = "browser tests password"
ACCOUNTS = {
    "ana": ("analyst", "Ana Lyst"),
    "vic": ("viewer", "Vic Viewer"),
    "ada": ("admin", "Ada Admin"),
}
#: Browser waits (ms): generous for a loaded CI machine, short enough to fail fast.
TIMEOUT_MS = 15_000


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


def _unavailable(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(
            f"CBM_REQUIRE_BROWSER is set but the browser tests cannot run: {reason}. "
            "Install Debian's Chromium (apt-get install chromium) and the dev extras "
            "(pip install -e '.[dev]', which brings playwright), or point CBM_CHROMIUM at "
            "a Chromium binary. Never `playwright install`: it downloads.",
            pytrace=False,
        )
    pytest.skip(f"browser tests skipped: {reason} (set CBM_REQUIRE_BROWSER=1 to fail instead)")


# --------------------------------------------------------------------------------------
# the live server
# --------------------------------------------------------------------------------------


@dataclass
class LiveServer:
    url: str
    engine: Engine
    session_factory: sessionmaker[Session]
    app: Any
    password: str = PASSWORD
    accounts: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(ACCOUNTS))

    def session(self) -> Session:
        """A session on the server's database, to check what a request stored."""
        return self.session_factory()


def _prepare_database(url: str) -> Engine:
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session:
        load_reference(session)
        for username, (role, display_name) in ACCOUNTS.items():
            accounts.create_user(session, username, PASSWORD, role, display_name=display_name)
        session.commit()
    return engine


def load_demo_and_score(engine: Engine) -> None:
    """The demo data set, a compliance check and the trust scores, committed (as
    ``make run`` and the scheduler would leave a fresh install)."""
    from cbm.compliance.engine import run_check
    from cbm.demo.loader import load_demo

    with Session(engine) as session:
        load_demo(session)
        session.commit()
        check = run_check(session, trigger="cli")
        session.commit()
        try:
            from cbm.trust.compute import compute_trust
        except ImportError:  # an installation without trust signals
            return
        compute_trust(session, check_run_id=check.run_id)
        session.commit()


@contextmanager
def serve(
    tmp_path_factory: pytest.TempPathFactory, prepare: Callable[[Engine], None] | None = None
) -> Iterator[LiveServer]:
    """The app on a fresh migrated SQLite file, in a thread; ``prepare`` fills the database
    (after the reference data and the accounts) before the server starts."""
    from werkzeug.serving import make_server

    from cbm.web import create_app, web_state
    from cbm.web.auth import limiter

    folder = tmp_path_factory.mktemp("live")
    url = f"sqlite:///{folder}/cbm.sqlite3"
    setup_engine = _prepare_database(url)
    if prepare is not None:
        prepare(setup_engine)
    setup_engine.dispose()
    app = create_app(
        {
            "CBM_SETTINGS_OVERRIDES": {
                "env": "test",
                "database_url": url,
                "secret_key": "browser-tests-secret",
                "instance_dir": folder,
            },
        }
    )
    limiter.reset()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="cbm-live-server", daemon=True)
    thread.start()
    engine = web_state(app).engine
    try:
        yield LiveServer(
            url=f"http://127.0.0.1:{server.server_port}",
            engine=engine,
            session_factory=make_session_factory(engine),
            app=app,
        )
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        engine.dispose()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """An empty install (reference data and accounts only). A test module that needs the
    demo data overrides this fixture with ``serve(tmp_path_factory, load_demo_and_score)``."""
    with serve(tmp_path_factory) as server:
        yield server


# --------------------------------------------------------------------------------------
# the browser
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the Python package 'playwright' is not installed")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        _unavailable(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
        except PlaywrightError as exc:
            _unavailable(f"Chromium at {CHROMIUM} did not start: {exc}")
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageProblems:
    """What a page did that a test should fail on."""

    blocked: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    allowed_console: list[re.Pattern[str]] = field(default_factory=list)

    def expect_console_error(self, pattern: str) -> None:
        """Allow console errors matching ``pattern`` (e.g. the 403 a test provokes)."""
        self.allowed_console.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        console = [
            m for m in self.console_errors if not any(p.search(m) for p in self.allowed_console)
        ]
        return (
            [f"request to another host (blocked): {u}" for u in self.blocked]
            + [f"console error: {m}" for m in console]
            + [f"script error: {m}" for m in self.page_errors]
        )


@pytest.fixture()
def problems() -> PageProblems:
    return PageProblems()


@pytest.fixture()
def context(browser: Any, live_server: LiveServer, problems: PageProblems) -> Iterator[Any]:
    """A clean browser profile (no cookies) that can only talk to the live server."""
    ctx = browser.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 900}, locale="en-GB"
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    allowed = urlsplit(live_server.url).netloc

    def guard(route: Any) -> None:
        url = route.request.url
        parts = urlsplit(url)
        local = parts.scheme in ("http", "https") and parts.netloc == allowed
        if local or parts.scheme in ("data", "blob", "about"):
            route.continue_()
        else:
            problems.blocked.append(url)
            route.abort("blockedbyclient")

    ctx.route("**/*", guard)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture()
def page(context: Any, problems: PageProblems) -> Iterator[Any]:
    page = context.new_page()
    page.on(
        "console",
        lambda msg: problems.console_errors.append(msg.text) if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: problems.page_errors.append(str(exc)))
    yield page
    found = problems.unexpected()
    assert not found, "the page misbehaved:\n" + "\n".join(found)


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("CBM_SCREENSHOT_DIR", "").strip()
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture()
def shots(screenshot_dir: Path, request: pytest.FixtureRequest) -> Any:
    """``shots(page, "step")`` saves ``<test>-<nn>-<step>.png`` (full page)."""
    counter = iter(range(1, 100))
    prefix = re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name).strip("-")

    def shot(page: Any, step: str) -> Path:
        path = screenshot_dir / f"{prefix}-{next(counter):02d}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return shot
