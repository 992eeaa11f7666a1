// bindings.hpp — what the binding files share: exact conversion of Python amounts to Decimal,
// the owning Order, GIL-safe holders for Python callables, and the dispatcher that hands
// background-thread reports to Python without blocking the thread that reports.
//
// GIL rules (docs/python.md): hot calls (check, amend, cancel, on_execution, heartbeat) keep the
// GIL — they are sub-microsecond and never wait on another thread. Every cold call that can wait
// on a Guard mutex, a background thread or a callback releases it. A Python callable runs only
// with the GIL taken on its own: on_cancel_all on the thread that halted (halt() waits for it),
// the error handler and notifier on the dispatcher's thread (their C++ contracts say "must not
// block", and waiting for the GIL can block for as long as another thread holds it).
#pragma once

#include <pybind11/pybind11.h>

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "kakunin/decimal.hpp"
#include "kakunin/lifecycle.hpp"
#include "kakunin/order.hpp"

namespace kakunin::python {

namespace py = pybind11;

void bind_errors(py::module_& m);
void bind_values(py::module_& m);
void bind_lifecycle(py::module_& m);
void bind_certificates(py::module_& m);
void bind_audit(py::module_& m);
void bind_guard(py::module_& m);
void bind_testing(py::module_& m);

/// decimal.Decimal, str or int -> an exact Decimal. A float (or bool) is a TypeError naming
/// `field`; text that is not a decimal number is kakunin.InvalidInputError naming it.
Decimal to_decimal(py::handle value, const char* field);
/// The same, None -> nullopt.
std::optional<Decimal> to_optional_decimal(py::handle value, const char* field);
/// decimal.Decimal with exactly the value and scale.
py::object from_decimal(Decimal d);
py::object from_optional_decimal(const std::optional<Decimal>& d);
/// decimal.Decimal(text), for the Guard's decimal strings (LifecycleState).
py::object decimal_from_text(const std::string& text);

/// The Python Order: owns its text, so the C++ Order (views) can be built without allocating.
struct PyOrder {
    std::string client_order_id, instrument, counterparty, region, reasoning;
    Side side = Side::buy;
    Decimal quantity, price;
    std::optional<Decimal> reference_price;

    Order view() const noexcept {
        Order o;
        o.client_order_id = client_order_id;
        o.instrument = instrument;
        o.counterparty = counterparty;
        o.side = side;
        o.quantity = quantity;
        o.price = price;
        o.region = region;
        o.reference_price = reference_price;
        o.reasoning = reasoning;
        return o;
    }
};

/// The Python lifecycle requests and reports: they own their text, like PyOrder.
struct PyAmend {
    std::string client_order_id;
    std::optional<Decimal> quantity, price, reference_price;
    Amend view() const noexcept { return Amend{client_order_id, quantity, price, reference_price}; }
};
struct PyCancel {
    std::string client_order_id;
    Cancel view() const noexcept { return Cancel{client_order_id}; }
};
struct PyExecutionReport {
    ExecutionType type = ExecutionType::ack;
    std::string client_order_id, instrument;
    Side side = Side::buy;
    Decimal quantity, price;
    ExecutionReport view() const noexcept {
        return ExecutionReport{type, client_order_id, instrument, side, quantity, price};
    }
};

/// True once the interpreter is finalizing, or the module's atexit hook has stopped callbacks:
/// a background thread must not take the GIL then (CPython would end the thread inside C++
/// frames, or find the interpreter's state gone).
bool interpreter_finalizing() noexcept;

/// Held by a background thread while it runs (or is about to run) Python. `ok` is false once
/// the module's atexit hook has run: the caller must not touch Python then. The hook waits (GIL
/// released, bounded) until no entry is held, so no callback is in Python when finalization
/// begins.
class CallbackEntry {
public:
    CallbackEntry() noexcept;
    ~CallbackEntry();
    CallbackEntry(const CallbackEntry&) = delete;
    CallbackEntry& operator=(const CallbackEntry&) = delete;
    bool ok() const noexcept { return m_ok; }

private:
    bool m_ok;
};
/// Registers the atexit hook (module initialisation).
void register_callback_shutdown();

/// A Python object that may be copied and destroyed on any thread, with or without the GIL.
class PyRef {
public:
    explicit PyRef(py::object o)
        : m_obj(new py::object(std::move(o)), [](py::object* p) {
              const CallbackEntry entry;
              if (!entry.ok() && !PyGILState_Check()) {
                  (void)p->release();  // leaked: the interpreter is going away
                  delete p;
                  return;
              }
              py::gil_scoped_acquire gil;
              delete p;
          }) {}
    /// The GIL must be held.
    const py::object& get() const noexcept { return *m_obj; }

private:
    std::shared_ptr<py::object> m_obj;
};

/// Reports a Python exception raised by a callback (sys.unraisablehook: stderr by default) and
/// clears it. The GIL must be held.
void report_callback_exception(py::error_already_set& e, const char* where);

/// Hands items to a Python callable on a thread of its own, in order. push() never blocks on the
/// GIL and never throws; over `capacity` waiting items a new one is counted as dropped and a
/// line saying how many were dropped goes to stderr once the queue drains. An exception raised
/// by the callable is reported (report_callback_exception) and the next item is delivered.
/// The destructor never waits and never releases the callable: the thread (detached, the only
/// owner of the queue and the callable) delivers what is queued, releases them and ends. Either
/// on the destroying thread could deadlock: the Guard drops its old error handler with its
/// handler mutex held, while a check() that reports holds the GIL and waits for that mutex.
template <class T>
class PyDispatcher {
public:
    PyDispatcher(py::object fn, const char* where, std::size_t capacity = 4096) {
        auto owned = std::make_unique<State>(std::move(fn), where, capacity);
        m_state = owned.get();
        std::thread([owned = std::move(owned)]() mutable { run(std::move(owned)); }).detach();
    }
    ~PyDispatcher() {
        // Notified under the lock: once it is released the thread may free the state.
        std::lock_guard<std::mutex> lock(m_state->mutex);
        m_state->stop = true;
        m_state->wake.notify_all();
    }
    PyDispatcher(const PyDispatcher&) = delete;
    PyDispatcher& operator=(const PyDispatcher&) = delete;

    void push(const T& item) noexcept {
        State& s = *m_state;
        try {
            std::lock_guard<std::mutex> lock(s.mutex);
            if (s.queue.size() >= s.capacity) {
                ++s.dropped;
                return;
            }
            s.queue.push_back(item);
        } catch (...) {
            return;  // out of memory: the report is lost, the caller is unaffected
        }
        s.wake.notify_one();
    }

private:
    struct State {
        State(py::object f, const char* w, std::size_t c)
            : fn(std::move(f)), where(w), capacity(c) {}
        PyRef fn;
        const char* where;
        std::size_t capacity;
        std::mutex mutex;
        std::condition_variable wake;
        std::deque<T> queue;
        std::uint64_t dropped = 0;
        bool stop = false;
    };

    static void run(std::unique_ptr<State> state) noexcept {
        State& s = *state;
        std::unique_lock<std::mutex> lock(s.mutex);
        for (;;) {
            s.wake.wait(lock, [&] { return s.stop || !s.queue.empty(); });
            if (s.queue.empty()) break;  // stopped and drained
            T item = std::move(s.queue.front());
            s.queue.pop_front();
            const std::uint64_t dropped = s.dropped;
            s.dropped = 0;
            lock.unlock();
            deliver(s, item, dropped);
            lock.lock();
        }
        lock.unlock();
        state.reset();  // the callable is released here (PyRef takes the GIL, or leaks at exit)
    }
    static void deliver(State& s, const T& item, std::uint64_t dropped) noexcept {
        const CallbackEntry entry;
        if (!entry.ok()) return;
        try {
            py::gil_scoped_acquire gil;
            if (dropped > 0)
                PySys_WriteStderr("kakunin: %s: %llu reports dropped (the callback is too slow)\n",
                                  s.where, static_cast<unsigned long long>(dropped));
            try {
                s.fn.get()(item);
            } catch (py::error_already_set& e) {
                report_callback_exception(e, s.where);
            } catch (const std::exception& e) {
                PySys_WriteStderr("kakunin: %s raised: %.500s\n", s.where, e.what());
            }
        } catch (...) {
        }
    }

    State* m_state;  ///< owned by the thread, which outlives this object
};

/// A C++ handler taking a message, delivering it to `fn` on a dispatcher thread.
std::function<void(std::string_view)> message_handler(py::object fn, const char* where);

}  // namespace kakunin::python
