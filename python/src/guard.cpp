// The Guard and its clocks. check(), amend(), cancel(), on_execution() and heartbeat() keep the
// GIL (sub-microsecond, they wait on nobody); every other call releases it, since it may wait on
// a Guard mutex, the incident thread or an on_cancel_all running Python on another thread.
#include <pybind11/chrono.h>
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "guard_holder.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/clock.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/notifier.hpp"
#include "kakunin/shared_threads.hpp"

namespace kakunin::python {

namespace {

/// A Notifier that hands every notification to a Python callable on a dispatcher thread (the
/// Guard notifies from its incident thread with its incident mutex held: never wait there).
class PyNotifier final : public Notifier {
public:
    explicit PyNotifier(py::object fn) : m_dispatch(std::move(fn), "notifier") {}
    void notify(const Notification& n) noexcept override { m_dispatch.push(n); }

private:
    PyDispatcher<Notification> m_dispatch;
};

/// on_cancel_all runs synchronously on the thread that halted (halt() returns after it did): it
/// takes the GIL itself. A Python exception is reported and becomes the C++ exception the Guard
/// records ("on_cancel_all threw: ...") and tells its error handler about.
std::function<void(const CancelAll&)> cancel_all_callback(py::object fn) {
    PyRef ref(std::move(fn));
    return [ref](const CancelAll& c) {
        const CallbackEntry entry;
        if (!entry.ok() && !PyGILState_Check())
            throw std::runtime_error("the Python interpreter is shutting down");
        py::gil_scoped_acquire gil;
        try {
            ref.get()(py::cast(c, py::return_value_policy::copy));
        } catch (py::error_already_set& e) {
            const std::string what = e.what();
            report_callback_exception(e, "on_cancel_all");
            throw std::runtime_error(what);
        }
    };
}

GuardOptions make_options(bool observe, bool incident_thread, py::object on_cancel_all,
                          std::chrono::milliseconds heartbeat_timeout,
                          std::size_t working_order_capacity,
                          std::optional<AuditTrailOptions> audit, py::object notifier,
                          std::chrono::seconds expiry_warning,
                          std::optional<ApprovedBaseline> baseline,
                          std::shared_ptr<SharedThreads> threads) {
    GuardOptions o;
    o.threads = std::move(threads);
    o.baseline = std::move(baseline);
    o.observe = observe;
    o.incident_thread = incident_thread;
    if (!on_cancel_all.is_none()) {
        if (!PyCallable_Check(on_cancel_all.ptr()))
            throw py::type_error("on_cancel_all: expected a callable taking a CancelAll");
        o.on_cancel_all = cancel_all_callback(std::move(on_cancel_all));
    }
    o.heartbeat_timeout = heartbeat_timeout;
    o.working_order_capacity = working_order_capacity;
    o.audit = std::move(audit);
    if (!notifier.is_none()) {
        if (!PyCallable_Check(notifier.ptr()))
            throw py::type_error("notifier: expected a callable taking a Notification");
        o.notifier = std::make_shared<PyNotifier>(std::move(notifier));
    }
    o.expiry_warning = expiry_warning;
    return o;
}

void set_handler(GuardHolder& h, py::object fn) {
    GuardErrorHandler handler;
    if (!fn.is_none()) {
        if (!PyCallable_Check(fn.ptr()))
            throw py::type_error("error_handler: expected a callable taking a str");
        handler = message_handler(std::move(fn), "error handler");
    }
    py::gil_scoped_release release;
    h.guard().set_error_handler(std::move(handler));
}

std::unique_ptr<GuardHolder> construct(
    std::function<std::unique_ptr<Guard>(GuardOptions)> make, bool observe, bool incident_thread,
    py::object on_cancel_all, std::chrono::milliseconds heartbeat_timeout,
    std::size_t working_order_capacity, std::optional<AuditTrailOptions> audit, py::object notifier,
    py::object error_handler, std::chrono::seconds expiry_warning,
    std::optional<ApprovedBaseline> baseline, std::shared_ptr<SharedThreads> threads) {
    GuardOptions options =
        make_options(observe, incident_thread, std::move(on_cancel_all), heartbeat_timeout,
                     working_order_capacity, std::move(audit), std::move(notifier), expiry_warning,
                     std::move(baseline), std::move(threads));
    std::unique_ptr<Guard> guard;
    {
        py::gil_scoped_release release;
        guard = make(std::move(options));
    }
    auto holder = std::make_unique<GuardHolder>(std::move(guard));
    if (!error_handler.is_none()) set_handler(*holder, std::move(error_handler));
    return holder;
}

}  // namespace

GuardHolder::~GuardHolder() {
    if (!m_guard) return;
    // ~Guard joins its threads, which may be waiting for the GIL in a callback.
    if (PyGILState_Check()) {
        py::gil_scoped_release release;
        m_guard.reset();
    } else {
        m_guard.reset();
    }
}

void bind_guard(py::module_& m) {
    py::class_<Clock>(m, "Clock", "Where a Guard reads time (nanoseconds since the epoch, UTC).")
        .def("now_ns", &Clock::now_ns);
    py::class_<SystemClock, Clock>(m, "SystemClock").def(py::init<>());
    py::class_<ManualClock, Clock>(m, "ManualClock",
                                   "A clock that moves only when told (tests, backtests).")
        .def(py::init<TimeNs>(), py::arg("start_ns") = 0)
        .def("set", &ManualClock::set, py::arg("t_ns"))
        .def(
            "advance", [](ManualClock& c, std::chrono::nanoseconds d) { c.advance(d); },
            py::arg("delta"), "Moves the clock by a datetime.timedelta.")
        .def(
            "advance_ns",
            [](ManualClock& c, std::int64_t ns) { c.advance(std::chrono::nanoseconds(ns)); },
            py::arg("ns"));
    m.def(
        "utc",
        [](std::int64_t y, unsigned mo, unsigned d, unsigned h, unsigned mi, unsigned s,
           std::uint32_t ns) { return utc(y, mo, d, h, mi, s, ns); },
        py::arg("year"), py::arg("month"), py::arg("day"), py::arg("hour") = 0,
        py::arg("minute") = 0, py::arg("second") = 0, py::arg("nanos") = 0,
        "UTC civil time to nanoseconds since the epoch.");

    py::class_<GuardCounters>(m, "GuardCounters")
        .def_readonly("checks", &GuardCounters::checks)
        .def_readonly("allowed", &GuardCounters::allowed)
        .def_readonly("rejected", &GuardCounters::rejected);

    py::enum_<GuardEvent::Kind>(m, "GuardEventKind")
        .value("halted", GuardEvent::Kind::halted)
        .value("resumed", GuardEvent::Kind::resumed)
        .value("revoked", GuardEvent::Kind::revoked)
        .value("rotated", GuardEvent::Kind::rotated)
        .value("crl_updated", GuardEvent::Kind::crl_updated);
    py::class_<GuardEvent>(m, "GuardEvent")
        .def_readonly("kind", &GuardEvent::kind)
        .def_readonly("at_ns", &GuardEvent::at_ns)
        .def_readonly("by", &GuardEvent::by)
        .def_readonly("reason", &GuardEvent::reason)
        .def_readonly("halt_id", &GuardEvent::halt_id);

    py::enum_<Notification::Kind>(m, "NotificationKind")
        .value("warning", Notification::Kind::warning)
        .value("escalation", Notification::Kind::escalation)
        .value("revocation", Notification::Kind::revocation)
        .value("halt", Notification::Kind::halt)
        .value("incident", Notification::Kind::incident);
    py::class_<Notification>(m, "Notification")
        .def_readonly("kind", &Notification::kind)
        .def_readonly("agent_id", &Notification::agent_id)
        .def_readonly("incident_id", &Notification::incident_id)
        .def_readonly("at_ns", &Notification::at_ns)
        .def_readonly("score_ppm", &Notification::score_ppm)
        .def_readonly("summary", &Notification::summary)
        .def_readonly("details_json", &Notification::details_json);

    py::class_<AuditTrail>(m, "AuditTrail")
        .def_property_readonly("counters", &AuditTrail::counters)
        .def_property_readonly("log_id", &AuditTrail::log_id)
        .def("wait_durable", &AuditTrail::wait_durable, py::arg("timeout"),
             py::call_guard<py::gil_scoped_release>(),
             "Waits until every record queued so far is durable; False on timeout.");

    using release = py::call_guard<py::gil_scoped_release>;
    // Behaviour (docs/behaviour.md): learn a baseline, have a named person approve it, score.
    py::class_<Baseline>(m, "Baseline", "An agent's learned behaviour (kakunin-baseline/v1).")
        .def("to_json", [](const Baseline& b) { return to_json(b); })
        .def_static(
            "from_json", [](std::string_view j) { return parse_baseline_json(j); }, py::arg("json"))
        .def_property_readonly("sha256", [](const Baseline& b) { return baseline_sha256_hex(b); });
    py::class_<BaselineApproval>(m, "BaselineApproval", "A named person's signed approval.")
        .def("to_json", [](const BaselineApproval& a) { return to_json(a); })
        .def_static(
            "from_json", [](std::string_view j) { return baseline_approval_from_json(j); },
            py::arg("json"));
    py::class_<ApprovedBaseline>(m, "ApprovedBaseline", "Guard(baseline=...): scores every order.")
        .def(py::init([](Baseline b, BaselineApproval a) {
                 return ApprovedBaseline{std::move(b), std::move(a)};
             }),
             py::arg("baseline"), py::arg("approval"))
        .def_readonly("baseline", &ApprovedBaseline::baseline)
        .def_readonly("approval", &ApprovedBaseline::approval);
    py::class_<BaselineBuilder>(m, "BaselineBuilder", "Learns a baseline from allowed orders.")
        .def(py::init([](const Scope& s, std::string agent) {
                 return BaselineBuilder(s, std::move(agent));
             }),
             py::arg("scope"), py::arg("agent_id"))
        .def("start", &BaselineBuilder::start, py::arg("t_ns"))
        .def(
            "observe",
            [](BaselineBuilder& b, const PyOrder& o, TimeNs t) { b.observe(o.view(), t); },
            py::arg("order"), py::arg("t_ns"))
        .def_property_readonly("orders", &BaselineBuilder::orders)
        .def("finalize", &BaselineBuilder::finalize, py::arg("now_ns"), release());
    m.def(
        "approve_baseline",
        [](Kms& kms, const Baseline& b, std::string_view approver, TimeNs at,
           std::uint64_t version) { return approve_baseline(kms, b, approver, at, version); },
        py::arg("kms"), py::arg("baseline"), py::arg("approver"), py::arg("approved_at_ns"),
        py::arg("version") = 0, release(),
        "Signs the baseline's approval with the approver's key (approver:NAME in the Kms).");

    py::class_<SharedThreads, std::shared_ptr<SharedThreads>>(
        m, "SharedThreads",
        "The threads the Guards of one process share: one audit writer, one audit watchdog, one "
        "thread for its messages and one incident thread for every Guard given it "
        "(Guard(..., threads=...)), instead of three per Guard.")
        .def(py::init<>())
        .def_property_readonly("audit_trails", &SharedThreads::audit_trails)
        .def_property_readonly("incident_desks", &SharedThreads::incident_desks);

    using G = GuardHolder;
    py::class_<G>(m, "Guard",
                  "The pre-trade gate. check() every order before it leaves the process. The "
                  "clock is kept alive by the Guard.")
        .def(py::init([](const Scope& scope, const Clock& clock, bool observe, bool incident_thread,
                         py::object on_cancel_all, std::chrono::milliseconds heartbeat_timeout,
                         std::size_t working_order_capacity, std::optional<AuditTrailOptions> audit,
                         py::object notifier, py::object error_handler,
                         std::chrono::seconds expiry_warning,
                         std::optional<ApprovedBaseline> baseline,
                         std::shared_ptr<SharedThreads> threads) {
                 return construct(
                     [&](GuardOptions o) {
                         return std::make_unique<Guard>(scope, clock, std::move(o));
                     },
                     observe, incident_thread, std::move(on_cancel_all), heartbeat_timeout,
                     working_order_capacity, std::move(audit), std::move(notifier),
                     std::move(error_handler), expiry_warning, std::move(baseline),
                     std::move(threads));
             }),
             py::arg("scope"), py::arg("clock"), py::kw_only(), py::arg("observe") = true,
             py::arg("incident_thread") = true, py::arg("on_cancel_all") = py::none(),
             py::arg("heartbeat_timeout") = std::chrono::milliseconds(0),
             py::arg("working_order_capacity") = 0, py::arg("audit") = py::none(),
             py::arg("notifier") = py::none(), py::arg("error_handler") = py::none(),
             py::arg("expiry_warning") = std::chrono::seconds(2 * 3600),
             py::arg("baseline") = py::none(), py::arg("threads") = py::none(),
             py::keep_alive<1, 3>())
        .def(py::init([](const GuardCredentials& credentials, const Clock& clock, bool observe,
                         bool incident_thread, py::object on_cancel_all,
                         std::chrono::milliseconds heartbeat_timeout,
                         std::size_t working_order_capacity, std::optional<AuditTrailOptions> audit,
                         py::object notifier, py::object error_handler,
                         std::chrono::seconds expiry_warning,
                         std::optional<ApprovedBaseline> baseline,
                         std::shared_ptr<SharedThreads> threads) {
                 return construct(
                     [&](GuardOptions o) {
                         return std::make_unique<Guard>(credentials, clock, std::move(o));
                     },
                     observe, incident_thread, std::move(on_cancel_all), heartbeat_timeout,
                     working_order_capacity, std::move(audit), std::move(notifier),
                     std::move(error_handler), expiry_warning, std::move(baseline),
                     std::move(threads));
             }),
             py::arg("credentials"), py::arg("clock"), py::kw_only(), py::arg("observe") = true,
             py::arg("incident_thread") = true, py::arg("on_cancel_all") = py::none(),
             py::arg("heartbeat_timeout") = std::chrono::milliseconds(0),
             py::arg("working_order_capacity") = 0, py::arg("audit") = py::none(),
             py::arg("notifier") = py::none(), py::arg("error_handler") = py::none(),
             py::arg("expiry_warning") = std::chrono::seconds(2 * 3600),
             py::arg("baseline") = py::none(), py::arg("threads") = py::none(),
             py::keep_alive<1, 3>())
        // The hot calls: keep the GIL, allocate nothing but the result object.
        .def(
            "check", [](G& g, const PyOrder& o) { return g.guard().check(o.view()); },
            py::arg("order"), "Decides on one order: a Decision, never an exception.")
        .def(
            "amend", [](G& g, const PyAmend& a) { return g.guard().amend(a.view()); },
            py::arg("amend"))
        .def(
            "cancel", [](G& g, const PyCancel& c) { return g.guard().cancel(c.view()); },
            py::arg("cancel"))
        .def(
            "on_execution",
            [](G& g, const PyExecutionReport& e) { return g.guard().on_execution(e.view()); },
            py::arg("report"))
        .def("heartbeat", [](G& g) { g.guard().heartbeat(); })
        .def_property_readonly("counters", [](G& g) { return g.guard().counters(); })
        .def_property_readonly("halted", [](G& g) { return g.guard().halted(); })
        .def_property_readonly("reduce_only_in_force",
                               [](G& g) { return g.guard().reduce_only_in_force(); })
        // The cold calls: release the GIL.
        .def(
            "halt",
            [](G& g, std::string_view reason, std::string_view by) {
                return g.guard().halt(reason, by);
            },
            py::arg("reason"), py::arg("by"), release(),
            "Kill switch (RTS 6 Art. 12): returns the halt id once on_cancel_all has run.")
        .def(
            "resume", [](G& g, std::string_view by) { g.guard().resume(by); }, py::arg("by"),
            release())
        .def(
            "reduce_only",
            [](G& g, std::string_view reason, std::string_view by) {
                g.guard().reduce_only(reason, by);
            },
            py::arg("reason"), py::arg("by"), release())
        .def(
            "lift_reduce_only", [](G& g, std::string_view by) { g.guard().lift_reduce_only(by); },
            py::arg("by"), release())
        .def_property_readonly("revoked",
                               [](G& g) {
                                   py::gil_scoped_release r;
                                   return g.guard().revoked();
                               })
        .def(
            "working_orders", [](G& g) { return g.guard().working_orders(); }, release())
        .def(
            "lifecycle_state", [](G& g) { return g.guard().lifecycle_state(); }, release())
        .def(
            "current_halt", [](G& g) { return g.guard().current_halt(); }, release())
        .def(
            "events", [](G& g) { return g.guard().events(); }, release())
        .def(
            "rotate", [](G& g, const AgentCertificate& c) { g.guard().rotate(c); },
            py::arg("renewed"), release())
        .def(
            "update_crl", [](G& g, const CertificateRevocationList& c) { g.guard().update_crl(c); },
            py::arg("crl"), release())
        .def(
            "process_incidents", [](G& g) { g.guard().process_incidents(); }, release())
        .def(
            "wait_incidents",
            [](G& g, std::chrono::milliseconds t) { return g.guard().wait_incidents(t); },
            py::arg("timeout"), release())
        .def("set_error_handler", &set_handler, py::arg("handler"),
             "A callable taking one str; called on a thread of the module's (never blocks the "
             "Guard). None removes it.")
        .def_property_readonly("enforcing_baseline",
                               [](G& g) { return g.guard().enforcing_baseline(); })
        .def(
            "observation", [](G& g) { return g.guard().observation(); }, release(),
            "What observation has learned so far (a copy), or None when enforcing a baseline.")
        .def(
            "enforce_baseline",
            [](G& g, const ApprovedBaseline& a) { g.guard().enforce_baseline(a); },
            py::arg("approved"), release())
        .def(
            "scope", [](G& g) { return g.guard().scope(); }, release())
        .def(
            "certificate", [](G& g) { return g.guard().certificate(); }, release())
        .def_property_readonly(
            "audit", [](G& g) { return g.guard().audit(); },
            py::return_value_policy::reference_internal,
            "The audit trail, or None when the Guard records nothing.");
}

}  // namespace kakunin::python
