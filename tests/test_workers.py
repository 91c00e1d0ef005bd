"""Long-lived helper interpreters (rxlib.workers): results, other lines, errors that leave the helper
usable, and a helper that dies."""
from __future__ import annotations

import os
import textwrap

import pytest

from rxlib.workers import Helper, HelperDied, HelperPool

_MODULE = textwrap.dedent('''
    import os, sys
    from rxlib.workers import serve

    def handle(job):
        if job.get("die"):
            print("dying on purpose", file=sys.stderr, flush=True)
            os._exit(7)
        if job.get("bad"):
            raise ValueError("bad job " + str(job["bad"]))
        if job.get("bug"):
            return {}["missing"]
        if job.get("warn"):
            print("a warning of job", job["warn"], file=sys.stderr, flush=True)
        if job.get("kill"):
            os.kill(os.getpid(), 9)  # dies without a word
        if job.get("mimic"):
            print('rxlib-helper-result: {"job": 99, "result": {"fake": 1}}')
            print("no end of line", end="", flush=True)
        if job.get("slow"):
            import time
            time.sleep(job["slow"])
        print("progress 1")
        print("not a result: rxlib-helper-result is only a prefix at the start of a line")
        return {"pid": os.getpid(), "twice": 2 * job["x"]}

    if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
        sys.exit(serve(handle, known_errors=(ValueError,)))
''')


@pytest.fixture
def helper_module(tmp_path, monkeypatch):
    (tmp_path / "echo_helper.py").write_text(_MODULE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    return "echo_helper"


def test_a_helper_answers_job_after_job_in_one_process_and_passes_other_lines_on(helper_module):
    helper, lines = Helper(helper_module), []
    try:
        first = helper.run({"x": 2}, lines.append)
        second = helper.run({"x": 5}, lines.append)
    finally:
        helper.close()
    assert first["twice"] == 4 and second["twice"] == 10
    assert first["pid"] == second["pid"]  # the same interpreter: imports paid once
    assert lines[:2] == ["progress 1", "not a result: rxlib-helper-result is only a prefix at the start of a line"]
    assert len(lines) == 4


def test_a_failing_job_comes_back_as_an_error_and_the_helper_goes_on(helper_module):
    helper = Helper(helper_module)
    try:
        assert helper.run({"bad": 3}) == {"error": "bad job 3"}
        assert helper.run({"bug": 1}) == {"error": "KeyError: 'missing'"}  # unexpected: its type named
        assert helper.run({"x": 1})["twice"] == 2
    finally:
        helper.close()


def test_a_helper_that_dies_names_its_last_error_line_and_a_new_one_starts_after(helper_module):
    helper = Helper(helper_module)
    try:
        with pytest.raises(HelperDied, match=r"echo_helper helper ended \(exit status 7\): dying on purpose"):
            helper.run({"die": 1})
        assert helper.run({"x": 3})["twice"] == 6  # started again
    finally:
        helper.close()


def test_a_pool_lends_each_idle_helper_again_and_closes_them_all(helper_module):
    with HelperPool(helper_module) as pool:
        with pool.borrow() as a:
            pid_a = a.run({"x": 1})["pid"]
            with pool.borrow() as b:  # a is busy: a second helper
                assert b is not a and b.run({"x": 1})["pid"] != pid_a
        with pool.borrow() as again:
            assert again.run({"x": 1})["pid"] in {pid_a, b.run({"x": 1})["pid"]}
        helpers = list(pool._all)
    assert len(helpers) == 2 and all(h._process is None for h in helpers)


def test_a_jobs_own_output_is_never_taken_for_its_result(helper_module):
    helper, lines = Helper(helper_module), []
    try:
        assert helper.run({"mimic": 1, "x": 4}, lines.append)["twice"] == 8  # not the fake, and no hang
        assert helper.run({"x": 5})["twice"] == 10  # the next job gets its own answer
    finally:
        helper.close()
    assert any("rxlib-helper-result" in line for line in lines) and any("no end of line" in line for line in lines)


def test_a_parent_side_error_mid_job_kills_the_helper_so_no_later_job_gets_its_answer(helper_module):
    helper = Helper(helper_module)

    def explode(line):
        raise RuntimeError("the callback failed")

    try:
        with pytest.raises(RuntimeError, match="the callback failed"):
            helper.run({"x": 1}, explode)
        assert helper._process is None  # killed, not lent out again half-way through
        assert helper.run({"x": 2})["twice"] == 4 and helper.run({"x": 3})["twice"] == 6
    finally:
        helper.close()


def test_a_helper_killed_without_a_word_does_not_report_an_earlier_jobs_stderr(helper_module):
    helper = Helper(helper_module)
    try:
        helper.run({"warn": 1, "x": 1})
        with pytest.raises(HelperDied) as info:
            helper.run({"kill": 1})
        assert "a warning of job 1" not in str(info.value) and "exit status -9" in str(info.value)
    finally:
        helper.close()


def test_a_killed_pool_lends_no_more_helpers_and_reuse_false_ends_each(helper_module):
    with HelperPool(helper_module, reuse=False) as pool:
        with pool.borrow() as a:
            first = a.run({"x": 1})["pid"]
        assert a._process is None  # ended after its job
        with pool.borrow() as b:
            assert b.run({"x": 1})["pid"] != first
        pool.kill()
        with pytest.raises(HelperDied, match="stopped"):
            with pool.borrow():
                pass
