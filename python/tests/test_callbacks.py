"""Python callables as the Guard's callbacks: on_cancel_all, the error handler and the notifier,
called from background threads, with raising callbacks, and the GIL rules under concurrency
(4 threads checking while one halts with a Python on_cancel_all). The deadlock-prone cases run
in a child interpreter with a time limit, so a deadlock fails the test instead of hanging it."""

import contextlib
import datetime
import subprocess
import sys
import textwrap
import threading

import pytest

import kakunin
from conftest import LIFECYCLE_SCOPE, ROOT, good_order, wait_until

R = kakunin.ReasonCode


@contextlib.contextmanager
def capture_unraisable():
    """What reaches sys.unraisablehook (where a raising callback is reported). Set inside the
    test body: pytest installs its own hook around each test phase."""
    seen = []
    before = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        yield seen
    finally:
        sys.unraisablehook = before


def test_on_cancel_all_gets_the_working_orders_and_may_cancel_them(lifecycle_scope, clock):
    calls = []

    def cancel_all(c):
        calls.append((c.halt_id, c.reason, c.by, list(c.order_ids), threading.get_ident()))
        for order_id in c.order_ids:
            assert guard.cancel(kakunin.Cancel(order_id)).allowed

    guard = kakunin.Guard(lifecycle_scope, clock, on_cancel_all=cancel_all)
    for i in range(3):
        assert guard.check(good_order(client_order_id=f"w-{i}", quantity="0.5")).allowed
    halt_id = guard.halt("desk kill switch", "M. Rossi")
    assert len(calls) == 1  # halt() returns after the callback ran
    assert calls[0][:4] == (halt_id, "desk kill switch", "M. Rossi", ["w-0", "w-1", "w-2"])
    assert calls[0][4] == threading.get_ident()  # on the thread that halted


def test_on_cancel_all_runs_on_the_incident_thread_for_a_lapsed_heartbeat(lifecycle_scope, clock):
    calls = []
    guard = kakunin.Guard(lifecycle_scope, clock, heartbeat_timeout=datetime.timedelta(seconds=5),
                          on_cancel_all=lambda c: calls.append((list(c.order_ids), threading.get_ident())))
    assert guard.check(good_order(client_order_id="h-1")).allowed
    clock.advance(datetime.timedelta(seconds=6))
    assert guard.check(good_order(client_order_id="h-2")).reasons == [R.halted]
    assert wait_until(lambda: calls)
    assert calls[0][0] == ["h-1"]
    assert calls[0][1] != threading.get_ident()


def test_a_raising_on_cancel_all_is_reported_and_the_halt_holds(lifecycle_scope, clock):
    with capture_unraisable() as unraisable:
        check_raising_on_cancel_all(lifecycle_scope, clock, unraisable)


def check_raising_on_cancel_all(lifecycle_scope, clock, unraisable):
    messages = []

    def cancel_all(c):
        raise RuntimeError("venue unreachable")

    guard = kakunin.Guard(lifecycle_scope, clock, on_cancel_all=cancel_all,
                          error_handler=messages.append)
    assert guard.check(good_order(client_order_id="r-1")).allowed
    guard.halt("drill", "M. Rossi")
    assert guard.halted
    assert guard.check(good_order(client_order_id="r-2")).reasons == [R.halted]
    assert len(unraisable) == 1 and isinstance(unraisable[0].exc_value, RuntimeError)
    assert "venue unreachable" in str(unraisable[0].exc_value)
    assert wait_until(lambda: any("on_cancel_all threw" in m for m in messages))


def test_the_error_handler_is_called_on_a_thread_of_its_own(seed_scope, clock):
    seen = []
    guard = kakunin.Guard(seed_scope, clock,
                          error_handler=lambda m: seen.append((m, threading.get_ident())))
    assert guard.check(good_order()).allowed
    clock.advance(datetime.timedelta(seconds=-30))  # a clock step back is reported
    guard.check(good_order())
    assert wait_until(lambda: seen)
    message, thread = seen[0]
    assert "clock stepped back" in message
    assert thread != threading.get_ident()


def test_a_raising_error_handler_is_reported_and_later_messages_still_arrive(seed_scope, clock):
    with capture_unraisable() as unraisable:
        check_raising_error_handler(seed_scope, clock, unraisable)


def check_raising_error_handler(seed_scope, clock, unraisable):
    seen = []

    def handler(message):
        seen.append(message)
        if len(seen) == 1:
            raise ValueError("handler bug")

    guard = kakunin.Guard(seed_scope, clock)
    guard.set_error_handler(handler)
    guard.check(good_order())
    for _ in range(2):
        clock.advance(datetime.timedelta(seconds=-30))
        guard.check(good_order())
    assert wait_until(lambda: len(seen) == 2)
    assert wait_until(lambda: unraisable)
    assert isinstance(unraisable[0].exc_value, ValueError)
    guard.set_error_handler(None)
    clock.advance(datetime.timedelta(seconds=-30))
    guard.check(good_order())
    assert len(seen) == 2


def test_the_notifier_hears_of_a_halt(seed_scope, clock):
    seen = []
    guard = kakunin.Guard(seed_scope, clock, notifier=lambda n: seen.append(n))
    halt_id = guard.halt("desk kill switch", "M. Rossi")
    assert wait_until(lambda: seen)
    n = seen[0]
    assert n.kind == kakunin.NotificationKind.halt
    assert halt_id in n.details_json and n.summary


def test_a_raising_notifier_is_reported_and_the_next_notification_still_arrives(seed_scope, clock):
    with capture_unraisable() as unraisable:
        seen = []

        def notifier(n):
            seen.append(n.kind)
            if len(seen) == 1:
                raise KeyError("notifier bug")

        guard = kakunin.Guard(seed_scope, clock, notifier=notifier)
        guard.halt("first", "M. Rossi")
        guard.resume("A. Schmidt")
        guard.halt("second", "M. Rossi")
        assert wait_until(lambda: len(seen) >= 2)
        assert wait_until(lambda: unraisable)
        assert isinstance(unraisable[0].exc_value, KeyError)
        assert guard.halted


def test_callables_are_checked_when_the_guard_is_made(seed_scope, clock):
    with pytest.raises(TypeError, match="on_cancel_all"):
        kakunin.Guard(seed_scope, clock, on_cancel_all=42)
    with pytest.raises(TypeError, match="notifier"):
        kakunin.Guard(seed_scope, clock, notifier="x")
    with pytest.raises(TypeError, match="error_handler"):
        kakunin.Guard(seed_scope, clock, error_handler=3)


def run_child(script, timeout=120):
    """Runs `script` in a child interpreter; fails on a non-zero exit or on the time limit."""
    code = "import sys\nsys.path.insert(0, %r)\n" % str(ROOT / "python" / "tests") + textwrap.dedent(script)
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"deadlock: the child did not finish within {timeout} s")
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_four_threads_check_while_one_halts_with_a_python_on_cancel_all():
    out = run_child("""
        import threading, time, kakunin
        from conftest import LIFECYCLE_SCOPE, good_order
        R = kakunin.ReasonCode
        clock = kakunin.ManualClock(kakunin.utc(2024, 1, 8, 12))
        scope = kakunin.parse_scope_json(LIFECYCLE_SCOPE.replace('"max_open_orders": 10', '"max_open_orders": 100000'))
        cancelled, calls = [], []
        def cancel_all(c):
            calls.append(list(c.order_ids))
            for i in c.order_ids:
                if guard.cancel(kakunin.Cancel(i)).allowed:
                    cancelled.append(i)
        guard = kakunin.Guard(scope, clock, on_cancel_all=cancel_all,
                              working_order_capacity=100000)
        start = threading.Barrier(5)
        halted_at = {}
        after_halt = []
        def checker(n):
            start.wait()
            order = good_order(quantity="0.000001")
            deadline = time.monotonic() + 60
            k = 0
            while len(after_halt) < 4000 and time.monotonic() < deadline:
                k += 1
                order.client_order_id = f"t{n}-{k}"
                halt_returned = "done" in halted_at  # read before the check it judges
                d = guard.check(order)
                if halt_returned:
                    after_halt.append(d)
        threads = [threading.Thread(target=checker, args=(n,)) for n in range(4)]
        for t in threads: t.start()
        start.wait()
        while guard.counters.allowed < 200:  # the four are checking
            time.sleep(0.001)
        halt_id = guard.halt("desk kill switch", "M. Rossi")
        halted_at["done"] = True
        for t in threads: t.join()
        assert len(calls) == 1, calls
        assert after_halt and all(R.halted in d.reasons and not d.allowed for d in after_halt), ("allowed after halt", len(after_halt), [d for d in after_halt if R.halted not in d.reasons][:3])
        assert sorted(cancelled) == sorted(calls[0])
        c = guard.counters
        assert c.checks == c.allowed + c.rejected
        print(len(calls[0]), c.checks, c.allowed)
    """)
    working, checks, allowed = map(int, out.split())
    assert working > 0 and allowed >= working and checks > allowed


def test_halt_releases_the_gil_while_another_thread_delivers_cancels():
    # The incident thread is inside a Python on_cancel_all (a lapsed heartbeat) that waits for a
    # Python thread; the main thread's halt() waits for that delivery. Holding the GIL in halt()
    # would deadlock all three.
    run_child("""
        import datetime, threading, time, kakunin
        from conftest import LIFECYCLE_SCOPE, good_order
        clock = kakunin.ManualClock(kakunin.utc(2024, 1, 8, 12))
        entered, release = threading.Event(), threading.Event()
        calls = []
        def cancel_all(c):
            calls.append(c.reason)
            if len(calls) == 1:
                entered.set()
                assert release.wait(30)
        guard = kakunin.Guard(kakunin.parse_scope_json(LIFECYCLE_SCOPE), clock,
                              heartbeat_timeout=datetime.timedelta(seconds=5), on_cancel_all=cancel_all)
        assert guard.check(good_order(client_order_id="x-1")).allowed
        clock.advance(datetime.timedelta(seconds=6))
        guard.check(good_order(client_order_id="x-2"))
        assert entered.wait(30)
        threading.Timer(0.3, release.set).start()
        guard.halt("desk kill switch", "M. Rossi")
        assert len(calls) == 2, calls
        del guard  # joins the Guard's threads with the GIL released
    """, timeout=60)


def test_a_guard_with_callbacks_is_destroyed_cleanly_at_exit():
    # The error handler is still busy with reports when the interpreter exits: the module's
    # atexit hook stops the callbacks first, so none is in Python once finalization begins.
    for _ in range(3):
        run_child("""
            import datetime, kakunin
            from conftest import LIFECYCLE_SCOPE, good_order
            clock = kakunin.ManualClock(kakunin.utc(2024, 1, 8, 12))
            guard = kakunin.Guard(kakunin.parse_scope_json(LIFECYCLE_SCOPE), clock,
                                  on_cancel_all=lambda c: None, error_handler=lambda m: sum(range(1000)),
                                  notifier=lambda n: None, heartbeat_timeout=datetime.timedelta(seconds=1))
            guard.check(good_order(client_order_id="e-1"))
            for i in range(300):
                clock.advance(datetime.timedelta(seconds=-5))
                guard.check(good_order(client_order_id=f"e-{i + 2}"))
            guard.halt("end of day", "M. Rossi")
            # left alive: destroyed while the interpreter exits
        """, timeout=60)


def test_replacing_the_error_handler_while_checks_report_does_not_deadlock():
    # The Guard drops its old handler with its handler mutex held; a check() that reports waits
    # for that mutex holding the GIL; the old handler's thread may be waiting for the GIL.
    run_child("""
        import datetime, threading, kakunin
        from conftest import SEED_SCOPE, good_order
        clock = kakunin.ManualClock(kakunin.utc(2024, 1, 8, 12))
        guard = kakunin.Guard(kakunin.parse_scope_json(SEED_SCOPE), clock)
        done = threading.Event()
        def replace():
            for i in range(300):
                guard.set_error_handler(lambda m: sum(range(2000)))
            done.set()
        t = threading.Thread(target=replace)
        t.start()
        order = good_order()
        while not done.is_set():
            clock.advance(datetime.timedelta(seconds=-1))  # every check reports a step back
            guard.check(order)
        t.join()
    """, timeout=60)
