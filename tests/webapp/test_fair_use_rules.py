"""The fair-use rules on their own: allowance, order, cost, addresses, sign-in throttle, upload area, names
and log lines, temp folders. tests/webapp/test_fair_use.py attacks a real app process with them on."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections import Counter
from types import SimpleNamespace

import pytest

from sketchlvm.webapp import fair_use
from sketchlvm.webapp.fair_use import COST_UNIT_BYTES, Allowance, Held, Refused, check, client_address, fair_order
from sketchlvm.webapp.safe_text import SafeLogFormatter, display_name, from_page, log_safe, to_page
from sketchlvm.webapp.sign_in_throttle import SignInThrottle
from sketchlvm.webapp.temp_sweep import sweep_dead
from sketchlvm.webapp.uploads import UploadArea, discard, sweep_partial


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------------------------
# Allowance and order


def test_a_client_past_its_requests_or_cost_is_refused_and_alone_always_let_in():
    allowance = Allowance(requests=4, cost=16)
    check(Held(3, 3), 1, allowance)  # the fourth request
    with pytest.raises(Refused, match="at most 4"):
        check(Held(4, 4), 1, allowance)
    with pytest.raises(Refused, match="at most 3"):
        check(Held(1, 1, session_requests=3), 1, allowance)  # one page, three requests already
    with pytest.raises(Refused, match="cost"):
        check(Held(1, 14), 14, allowance)  # a second large drawing behind the first
    check(Held(0, 0), 100, allowance)  # nothing queued: the largest legal query gets through


def test_cost_grows_with_the_size_of_a_request():
    small = fair_use.request_cost(["[[[1,2],[3,4]]]", "category", 12, "", 0.5])
    large = fair_use.request_cost(["x" * 900_000, "category", 12, "", 0.5])
    assert small == 1 and large == 1 + 900_000 // COST_UNIT_BYTES


def test_fair_order_puts_each_clients_first_request_before_anyones_second():
    events = [SimpleNamespace(a=a, n=n) for a, n in
              [("flood", 1), ("flood", 2), ("flood", 3), ("alice", 1), ("flood", 4), ("bob", 1), ("alice", 2)]]
    order = fair_order(events, Counter(), lambda e: e.a)
    assert [(e.a, e.n) for e in order] == [("flood", 1), ("alice", 1), ("bob", 1), ("flood", 2), ("alice", 2),
                                           ("flood", 3), ("flood", 4)]
    # A client already running goes after those who run nothing.
    order = fair_order(events, Counter(flood=1), lambda e: e.a)
    assert [(e.a, e.n) for e in order][:3] == [("alice", 1), ("bob", 1), ("flood", 1)]


def scope(peer: str, forwarded: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"type": "http", "client": (peer, 5000), "headers": headers}


def test_a_forwarded_header_counts_only_where_a_proxy_is_trusted():
    assert client_address(scope("10.0.0.1", "1.2.3.4"), trust_forwarded=False) == "10.0.0.1"
    # Behind the proxy: its own entry, the last; whatever the client wrote before it is not believed.
    assert client_address(scope("10.0.0.1", "6.6.6.6, 1.2.3.4"), trust_forwarded=True) == "1.2.3.4"
    assert client_address(scope("10.0.0.1"), trust_forwarded=True) == "10.0.0.1"


def test_the_forwarded_header_is_trusted_on_a_space_unless_the_owner_says_otherwise(monkeypatch):
    for name in ("SPACE_ID", "SKETCHLVM_TRUST_FORWARDED", "SKETCHLVM_CLIENT_REQUESTS", "SKETCHLVM_CLIENT_COST"):
        monkeypatch.delenv(name, raising=False)
    assert not Allowance.from_environment().trust_forwarded
    monkeypatch.setenv("SPACE_ID", "user/space")
    assert Allowance.from_environment().trust_forwarded
    monkeypatch.setenv("SKETCHLVM_TRUST_FORWARDED", "0")
    assert not Allowance.from_environment().trust_forwarded
    monkeypatch.setenv("SKETCHLVM_CLIENT_REQUESTS", "9")
    monkeypatch.setenv("SKETCHLVM_CLIENT_COST", "nonsense")
    allowance = Allowance.from_environment()
    assert allowance.requests == 9 and allowance.cost == Allowance.cost


# --------------------------------------------------------------------------------------------
# Sign-in


def test_failed_sign_ins_lock_an_address_for_longer_each_time_and_not_others():
    clock = Clock()
    throttle = SignInThrottle(free=3, first_lock_s=2, max_lock_s=60, clock=clock)
    assert [throttle.failed("guesser") for _ in range(3)] == [0, 0, 0]
    assert throttle.wait_s("guesser") == 0
    locks = [throttle.failed("guesser") for _ in range(6)]
    assert locks == [2, 4, 8, 16, 32, 60]
    assert throttle.wait_s("guesser") == 60
    assert throttle.wait_s("owner") == 0  # another address is not slowed down
    clock.now += 61
    assert throttle.wait_s("guesser") == 0
    throttle.succeeded("guesser")
    assert throttle.failed("guesser") == 0  # a success starts the count again


def test_the_sign_in_record_is_bounded():
    throttle = SignInThrottle(max_addresses=100)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert len(throttle._records) == 100


# --------------------------------------------------------------------------------------------
# Upload area


def test_the_upload_area_limits_each_address_and_the_whole(tmp_path):
    clock = Clock()
    mb = 2**20
    area = UploadArea(tmp_path, area_bytes=50 * mb, rate_per_min=20 * mb, clock=clock)
    assert area.admit("a", 10 * mb) is None and area.admit("a", 10 * mb) is None
    status, reason = area.admit("a", 10 * mb)
    assert status == 429 and "try again in 30 s" in reason  # 10 MiB at 20 MiB a minute
    assert area.admit("b", 10 * mb) is None  # another address has its own allowance
    assert area.admit("c", 10 * mb) is None
    assert area.admit("d", 10 * mb) is None  # 50 MiB counted (the folder is measured every few seconds)
    status, reason = area.admit("e", 10 * mb)
    assert status == 503 and "full" in reason
    clock.now += 30  # measured again: the files were removed once used (here: never written)
    assert area.admit("a", 10 * mb) is None  # and a's bucket refilled by 10 MiB


def test_discard_removes_only_files_in_the_upload_folder(tmp_path):
    folder = tmp_path / "uploads"
    (folder / "abc").mkdir(parents=True)
    used = folder / "abc" / "sketch.png"
    used.write_bytes(b"png")
    outside = tmp_path / "keep.txt"
    outside.write_text("mine")
    assert not discard(outside, folder) and outside.exists()
    assert not discard(folder / ".." / "keep.txt", folder) and outside.exists()
    assert discard(used, folder) and not used.exists() and not (folder / "abc").exists()


def test_partial_uploads_and_empty_folders_are_swept_once_old(tmp_path):
    (tmp_path / "tmpabc").write_bytes(b"")  # Gradio's temp file of an upload cut short
    (tmp_path / "empty").mkdir()
    (tmp_path / "hash").mkdir()
    (tmp_path / "hash" / "photo.jpg").write_bytes(b"jpeg")  # an upload in use
    assert sweep_partial(tmp_path, age_s=60) == 0  # too new: it may still be written
    assert sweep_partial(tmp_path, age_s=60, now=time.time() + 120) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hash"]
    assert (tmp_path / "hash" / "photo.jpg").exists()


# --------------------------------------------------------------------------------------------
# Names and log lines


NOT_UTF8 = b"caf\xe9 \xff.jpg".decode("utf-8", "surrogateescape")


def test_a_name_that_is_not_utf8_is_shown_with_replacement_characters_and_still_found():
    shown = display_name(NOT_UTF8)
    assert shown == "caf\ufffd \ufffd.jpg"
    shown.encode("utf-8")  # JSON can carry it
    token = to_page("cat/" + NOT_UTF8)
    token.encode("utf-8")
    assert from_page(token) == "cat/" + NOT_UTF8
    assert to_page("cat/photo.jpg") == "cat/photo.jpg" == from_page("cat/photo.jpg")


def test_a_name_with_a_line_break_cannot_forge_a_log_line():
    record = logging.LogRecord("sketchlvm.x", logging.WARNING, __file__, 1, "cannot read %s",
                               ("x.jpg\nINFO sketchlvm.webapp: owner signed in\r\x1b[2J",), None)
    line = SafeLogFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line == "WARNING sketchlvm.x: cannot read x.jpg\\x0aINFO sketchlvm.webapp: owner signed in\\x0d\\x1b[2J"
    assert log_safe("a\u2028b") == "a\\u2028b"


# --------------------------------------------------------------------------------------------
# Temp folders of killed runs


def test_temp_folders_of_dead_processes_are_swept_and_others_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tmp_path / f"sketchlvm-public-{dead.pid}-abc"
    (gone / "originals").mkdir(parents=True)
    (tmp_path / f"sketchlvm-examples-{dead.pid}-def").mkdir()
    alive = tmp_path / f"sketchlvm-public-{os.getpid()}-ghi"
    alive.mkdir()
    legacy = tmp_path / "sketchlvm-public-xyz"  # no pid: whose it is cannot be told
    legacy.mkdir()
    other = tmp_path / "something-else-1-x"
    other.mkdir()
    removed = sweep_dead(tmp_path)
    assert sorted(p.name for p in removed) == sorted([gone.name, f"sketchlvm-examples-{dead.pid}-def"])
    assert alive.exists() and legacy.exists() and other.exists() and not gone.exists()


def test_a_flooders_refusals_are_one_log_line_a_minute(caplog):
    clock = Clock()
    refusals = fair_use.RefusalLog(clock=clock)
    with caplog.at_level(logging.INFO, logger="sketchlvm.webapp.fair_use"):
        for _ in range(300):
            refusals.note("10.0.0.9", "too many")
            clock.now += 0.1  # 300 refusals in 30 s
        clock.now += 31
        refusals.note("10.0.0.9", "too many")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "300 refusals since the last line" in lines[1], lines
