"""The execution stage's parts without a runtime: the SWE-bench records' test commands
re-aimed (on the real records), swebench's parsers, the map of test imports (on git
repositories built here), the fingerprint, a script's verdict."""

from __future__ import annotations

import json

import pytest
from conftest import SHARED_DATA, git

from cwm_agent.verification import testcmd
from cwm_agent.verification.checks import classify, touches_build
from cwm_agent.verification.impact import DIRECT, PACKAGE, REEXPORTED, impacted
from cwm_agent.verification.pytree import PyTree
from cwm_agent.verification.testinfra import is_test_module
from cwm_agent.verification.warm import Fingerprint, WarmError


@pytest.fixture(scope="module")
def lite():
    path = SHARED_DATA / "swebench_lite_test.jsonl"
    if not path.exists():
        pytest.skip(f"needs {path}")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["instance_id"]: r for r in records}


def test_every_lite_record_gives_a_command_that_names_its_own_tests_again(lite):
    """Re-aimed at the record's own test files, the command is the eval script's line."""
    for record in lite.values():
        command = testcmd.from_eval_script(record)
        assert command is not None, record["instance_id"]
        lines = record["eval_script"].splitlines()
        line = lines[lines.index(testcmd.START) + 1]
        files = testcmd.test_directives({"test_patch": record["test_patch"]})
        names = " ".join(command.names(files))
        assert f"{command.command} {names}".strip() == line.strip(), record["instance_id"]


def test_django_sympy_and_sphinx_commands(lite):
    django = testcmd.from_eval_script(lite["django__django-11099"])
    assert django.command == "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1"
    assert django.names(["tests/auth_tests/test_validators.py"]) == ["auth_tests.test_validators"]
    assert django.parser == "parse_log_django"
    assert "locale-gen" in django.preamble and "conda activate testbed" in django.preamble
    assert django.install == "python -m pip install -e ."
    sympy = testcmd.from_eval_script(lite["sympy__sympy-20590"])
    assert sympy.command.endswith("bin/test -C --verbose") and sympy.labels == "path"
    sphinx = next(r for r in lite.values() if r["repo"] == "sphinx-doc/sphinx")
    assert testcmd.from_eval_script(sphinx).command == "tox --current-env -epy39 -v --"


def test_the_script_runs_the_setup_then_the_tests_into_the_log(lite):
    django = testcmd.from_eval_script(lite["django__django-11099"])
    script = django.script(["tests/queries/tests.py"], "/s/log", "/s/junit.xml")
    lines = script.splitlines()
    assert lines[0] == "source /opt/miniconda3/bin/activate"
    assert "python -m pip install -e ." not in lines  # a step of its own: install_script
    install = django.install_script().splitlines()
    assert install[0] == lines[0] and install[-1] == "python -m pip install -e ."
    assert lines[-2:] == [
        "{ ./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1 queries.tests",
        "} >/s/log 2>&1",
    ]
    given = testcmd.TestCommand("given", "make test ARGS='{tests}'", selects=True)
    assert "make test ARGS='a/test_x.py'" in given.script(["a/test_x.py"], "/l", "/r")
    assert "PYTEST_ADDOPTS" in given.script([], "/l", "/r")  # JUnit asked for
    assert given.install_script() == ""


def test_for_record_prefers_the_given_command_then_the_record_then_pytest(lite):
    record = lite["django__django-11099"]
    assert testcmd.for_record(record, "") is None
    assert testcmd.for_record(record, "tox").kind == "given"
    assert testcmd.for_record(record, None).kind == "swebench"
    assert testcmd.for_record({}, None, "/py/bin/python").command.startswith("/py/bin/python -m")


def test_swebench_parsers_read_per_test_results(lite):
    django = lite["django__django-11099"]
    log = (
        "test_ascii_validator (auth_tests.test_validators.UsernameValidatorsTests) ... ok\n"
        "test_unicode_validator (auth_tests.test_validators.UsernameValidatorsTests) ... FAIL\n"
    )
    found = testcmd.parse_swebench_log("parse_log_django", log, django)
    assert found == {
        "test_ascii_validator (auth_tests.test_validators.UsernameValidatorsTests)": "passed",
        "test_unicode_validator (auth_tests.test_validators.UsernameValidatorsTests)": "failed",
    }


# -- the map of imports --------------------------------------------------------------------

FILES = {
    "src/shop/__init__.py": "from .cart import Cart\nfrom . import pricing\n",
    "src/shop/cart.py": "class Cart: pass\n",
    "src/shop/pricing/__init__.py": "from shop.pricing.tax import vat, rate\n",
    "src/shop/pricing/tax.py": "def vat(x): return x\nrate = 1\n",
    "src/shop/pricing/discount.py": "def off(x): return x\n",
    "src/shop/templates/cart.html": "<p></p>\n",
    "src/shop/testing.py": "def assert_priced(x): pass\n",  # xarray/testing.py's kind
    "tests/test_helpers.py": "from shop.testing import assert_priced\n",
    "tests/test_tax.py": "from shop.pricing.tax import vat\n",
    "tests/test_reexport.py": "from shop.pricing import vat\n",
    "tests/test_package.py": "from shop import pricing\n",
    "tests/test_cart.py": "from shop import Cart\n",
    "tests/test_py2.py": "print 'old'\nfrom shop.pricing import (\n    rate,\n)\n",
    "tests/test_unrelated.py": "import os\n",
    "src/shop/templates/tests/test_render.py": "import os\n",
    # django's shape: tests/ is no package, each app folder is one
    "tests/pricing_app/__init__.py": "",
    "tests/pricing_app/tests.py": "from .models import M\nfrom shop.pricing.tax import rate\n",
    "tests/pricing_app/models.py": "class M: pass\n",
}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    repo = tmp_path_factory.mktemp("shop")
    for path, text in FILES.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return PyTree.read(str(repo), "HEAD")


def test_modules_and_test_files(shop):
    assert shop.module_of("src/shop/pricing/tax.py") == "shop.pricing.tax"
    assert shop.module_of("src/shop/pricing/__init__.py") == "shop.pricing"
    assert shop.module_of("tests/pricing_app/tests.py") == "pricing_app.tests"
    assert shop.module_of("tests/test_tax.py") == "test_tax"
    assert shop.module_of("src/shop/templates/cart.html") is None
    assert is_test_module("tests/pricing_app/tests.py") and not is_test_module("tests/conftest.py")
    relative = shop.imports("tests/pricing_app/tests.py")
    assert [i.module for i in relative] == ["pricing_app.models", "shop.pricing.tax"]
    assert [i.names for i in shop.imports("tests/test_py2.py")] == [("rate",)]


def test_impacted_tests_are_ranked_direct_reexported_package(shop):
    found = impacted(shop, ["src/shop/pricing/tax.py"], cap=10)
    assert found.modules == ("shop.pricing.tax",)
    # named after the module and importing it first; then by score and path
    assert found.files == (
        "tests/test_tax.py",
        "tests/pricing_app/tests.py",
        "tests/test_py2.py",
        "tests/test_reexport.py",
        "tests/test_package.py",
    )
    assert impacted(shop, ["src/shop/pricing/tax.py"], cap=2).files == found.files[:2]
    assert found.note == ""


def test_a_library_module_named_testing_is_code_not_a_test_file(shop):
    """**Was**: pytree's own rule (any name starting "test") made src/shop/testing.py a
    test file, so a change to it impacted no test; testinfra's rule (one definition now)
    says it is code."""
    assert "src/shop/testing.py" not in shop.test_files()
    found = impacted(shop, ["src/shop/testing.py"], cap=5)
    assert found.modules == ("shop.testing",) and found.files == ("tests/test_helpers.py",)


def test_the_scores_behind_the_ranking(shop):
    from cwm_agent.verification.impact import _Exports, _score

    exports = _Exports(shop)
    tax = "shop.pricing.tax"
    assert _score(shop.imports("tests/test_tax.py"), tax, exports) == DIRECT
    assert _score(shop.imports("tests/test_reexport.py"), tax, exports) == REEXPORTED
    assert _score(shop.imports("tests/test_package.py"), tax, exports) == PACKAGE
    assert _score(shop.imports("tests/test_unrelated.py"), tax, exports) == 0
    assert _score(shop.imports("tests/test_cart.py"), "shop.cart", exports) == REEXPORTED
    assert _score(shop.imports("tests/test_package.py"), "shop.pricing.discount", exports) == 0


def test_a_change_no_test_imports_falls_back_to_tests_beside_it(shop):
    found = impacted(shop, ["src/shop/templates/cart.html"], cap=5)
    assert found.files == ("src/shop/templates/tests/test_render.py",)
    assert "no importable Python module" in found.note
    assert impacted(shop, ["src/shop/pricing/discount.py"], cap=5).files == ()


# -- small parts ---------------------------------------------------------------------------


def test_the_fingerprint_says_what_differs():
    base = Fingerprint.parse("noise\nT=a L=b G=c W=- P=0\n")
    assert base.differences(base) == []
    now = Fingerprint.parse("T=a L=x G=y W=- P=2")
    assert now.differences(base) == ["paths or modes", ".git", "2 process(es) left running"]
    with pytest.raises(WarmError):
        Fingerprint.parse("git add failed: fatal")


def test_a_script_verdict_and_build_inputs():
    assert classify("...\nIssue reproduced\n") == "reproduced"
    assert classify("Issue resolved\nIssue reproduced") == "other"
    assert classify("", timed_out=True) == "timeout"
    assert touches_build(["pkg/_speedups.pyx"]) and not touches_build(["pkg/mod.py"])
