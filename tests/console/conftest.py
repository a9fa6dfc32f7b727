"""Pytest hooks for the console tests: remember each phase's report on the test item, so the
failure fixture in test_console.py can save a screenshot and the page source of a failing test."""
import pytest


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
