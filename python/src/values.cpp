// Values: errors (one Python exception per ErrorCategory), exact amounts, Side, Verdict,
// ReasonCode, Order, Decision and Scope.
#include <pybind11/stl.h>

#include <array>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "bindings.hpp"
#include "kakunin/decision.hpp"
#include "kakunin/error.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/scope.hpp"

namespace kakunin::python {

namespace {

/// Leaked on purpose: module-lifetime Python objects must not be destroyed after finalization.
PyObject* g_error_base = nullptr;
std::array<PyObject*, 9> g_errors{};
PyObject* g_decimal_type = nullptr;

struct CategoryInfo {
    ErrorCategory category;
    const char* name;
    PyObject* extra_base;  // a builtin exception the class also derives from, or null
};

/// Raises the Python exception of the error's category with the message and `category` set.
void raise_error(const Error& e) {
    const auto i = static_cast<std::size_t>(e.category());
    PyObject* type = i < g_errors.size() && g_errors[i] ? g_errors[i] : g_error_base;
    py::object instance =
        py::reinterpret_steal<py::object>(PyObject_CallFunction(type, "s", e.what()));
    if (!instance) return;  // the call set an exception already
    PyObject_SetAttrString(instance.ptr(), "category", py::str(to_string(e.category())).ptr());
    PyErr_SetObject(type, instance.ptr());
}

}  // namespace

namespace {
std::atomic<bool> g_callbacks_stopped{false};
std::atomic<int> g_callbacks_active{0};
}  // namespace

bool interpreter_finalizing() noexcept {
    if (g_callbacks_stopped.load()) return true;
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing() != 0;
#else
    return _Py_IsFinalizing() != 0;
#endif
}

CallbackEntry::CallbackEntry() noexcept {
    g_callbacks_active.fetch_add(1);  // before the flag is read: the hook sees us or we see it
    m_ok = !interpreter_finalizing();
}

CallbackEntry::~CallbackEntry() { g_callbacks_active.fetch_sub(1); }

void register_callback_shutdown() {
    py::module_::import("atexit").attr("register")(py::cpp_function([] {
        g_callbacks_stopped.store(true);
        py::gil_scoped_release release;  // let a callback that holds an entry finish
        for (int i = 0; i < 5000 && g_callbacks_active.load() > 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }));
}

void report_callback_exception(py::error_already_set& e, const char* where) {
    e.discard_as_unraisable(where);
}

std::function<void(std::string_view)> message_handler(py::object fn, const char* where) {
    auto dispatcher = std::make_shared<PyDispatcher<std::string>>(std::move(fn), where);
    return [dispatcher](std::string_view message) { dispatcher->push(std::string(message)); };
}

void bind_errors(py::module_& m) {
    py::enum_<ErrorCategory>(m, "ErrorCategory")
        .value("invalid_input", ErrorCategory::invalid_input)
        .value("invalid_state", ErrorCategory::invalid_state)
        .value("crypto", ErrorCategory::crypto)
        .value("kms", ErrorCategory::kms)
        .value("io", ErrorCategory::io)
        .value("database", ErrorCategory::database)
        .value("network", ErrorCategory::network)
        .value("not_found", ErrorCategory::not_found)
        .value("unauthorised", ErrorCategory::unauthorised);

    g_error_base = PyErr_NewExceptionWithDoc(
        "kakunin.Error",
        "Every error of Kakunin's cold paths; `category` names its kakunin::ErrorCategory.",
        PyExc_Exception, nullptr);
    if (!g_error_base) throw py::error_already_set();
    m.attr("Error") = py::handle(g_error_base);
    const CategoryInfo infos[] = {
        {ErrorCategory::invalid_input, "InvalidInputError", PyExc_ValueError},
        {ErrorCategory::invalid_state, "InvalidStateError", nullptr},
        {ErrorCategory::crypto, "CryptoError", nullptr},
        {ErrorCategory::kms, "KmsError", nullptr},
        {ErrorCategory::io, "IoError", nullptr},
        {ErrorCategory::database, "DatabaseError", nullptr},
        {ErrorCategory::network, "NetworkError", nullptr},
        {ErrorCategory::not_found, "NotFoundError", PyExc_LookupError},
        {ErrorCategory::unauthorised, "UnauthorisedError", nullptr},
    };
    for (const CategoryInfo& info : infos) {
        py::tuple bases =
            info.extra_base ? py::make_tuple(py::handle(g_error_base), py::handle(info.extra_base))
                            : py::make_tuple(py::handle(g_error_base));
        const std::string qualified = std::string("kakunin.") + info.name;
        PyObject* type = PyErr_NewException(qualified.c_str(), bases.ptr(), nullptr);
        if (!type) throw py::error_already_set();
        g_errors[static_cast<std::size_t>(info.category)] = type;
        m.attr(info.name) = py::handle(type);
    }
    // Raises the exception of a category as a C++ kakunin::Error would: lets the tests reach the
    // categories no call of the module raises on demand (network, crypto).
    m.def(
        "_raise_error",
        [](ErrorCategory category, const std::string& message) { throw Error(category, message); },
        py::arg("category"), py::arg("message"));
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const Error& e) {
            raise_error(e);
        }
    });
}

Decimal to_decimal(py::handle value, const char* field) {
    PyObject* v = value.ptr();
    if (PyFloat_Check(v))
        throw py::type_error(std::string(field) +
                             ": a float is not an exact amount; pass decimal.Decimal, str or int");
    if (PyBool_Check(v))
        throw py::type_error(std::string(field) +
                             ": a bool is not an amount; pass decimal.Decimal, str or int");
    std::string text;
    if (PyUnicode_Check(v)) {
        text = value.cast<std::string>();
    } else if (PyLong_Check(v)) {
        text = py::str(value).cast<std::string>();
    } else if (PyObject_IsInstance(v, g_decimal_type) == 1) {
        // Fixed-point form: Decimal("1E+3") is "1000"; NaN and Infinity stay words and fail.
        text =
            py::str(py::module_::import("builtins").attr("format")(value, "f")).cast<std::string>();
    } else {
        throw py::type_error(std::string(field) + ": expected decimal.Decimal, str or int, not " +
                             std::string(py::str(py::type::handle_of(value).attr("__name__"))));
    }
    const auto d = try_parse_decimal(text);
    if (!d)
        throw Error(ErrorCategory::invalid_input,
                    std::string(field) + ": '" + text +
                        "' is not a decimal number (digits, optional '.' and up to 18 fractional "
                        "digits, optional leading '-', within 64 bits)");
    return *d;
}

std::optional<Decimal> to_optional_decimal(py::handle value, const char* field) {
    if (value.is_none()) return std::nullopt;
    return to_decimal(value, field);
}

py::object from_decimal(Decimal d) {
    return py::reinterpret_borrow<py::object>(g_decimal_type)(to_string(d));
}

py::object decimal_from_text(const std::string& text) {
    return py::reinterpret_borrow<py::object>(g_decimal_type)(text);
}

py::object from_optional_decimal(const std::optional<Decimal>& d) {
    return d ? from_decimal(*d) : py::none();
}

namespace {

py::list reason_list(const ReasonSet& reasons) {
    py::list out;
    for (ReasonCode r : reasons) out.append(py::cast(r));
    return out;
}

std::string decision_repr(const Decision& d) {
    std::string s = std::string("Decision(") + to_string(d.verdict) + ", reasons=[";
    bool first = true;
    for (ReasonCode r : d.reasons) {
        if (!first) s += ", ";
        s += to_string(r);
        first = false;
    }
    return s + "], score_ppm=" + std::to_string(d.score_ppm) + ")";
}

}  // namespace

void bind_values(py::module_& m) {
    py::object decimal_type = py::module_::import("decimal").attr("Decimal");
    g_decimal_type = decimal_type.release().ptr();

    py::enum_<Side>(m, "Side").value("buy", Side::buy).value("sell", Side::sell);

    py::enum_<Verdict>(m, "Verdict")
        .value("allow", Verdict::allow)
        .value("warn", Verdict::warn)
        .value("reject", Verdict::reject);

    py::enum_<ReasonCode> reason(m, "ReasonCode",
                                 "Why an order was refused or warned; numbered in ranges "
                                 "(1xx Guard state, 2xx authority, 3xx RTS 6 limits, 4xx "
                                 "malformed order, 5xx behaviour, 6xx credentials).");
    for (ReasonCode r : all_reason_codes) reason.value(to_string(r), r);

    py::class_<PyOrder>(m, "Order",
                        "An order to check. Amounts are exact: decimal.Decimal, str or int "
                        "(a float is a TypeError).")
        .def(py::init([](std::string instrument, std::string counterparty, Side side,
                         py::object quantity, py::object price, std::string region,
                         py::object reference_price, std::string client_order_id,
                         std::string reasoning) {
                 PyOrder o;
                 o.instrument = std::move(instrument);
                 o.counterparty = std::move(counterparty);
                 o.side = side;
                 o.quantity = to_decimal(quantity, "Order.quantity");
                 o.price = to_decimal(price, "Order.price");
                 o.region = std::move(region);
                 o.reference_price = to_optional_decimal(reference_price, "Order.reference_price");
                 o.client_order_id = std::move(client_order_id);
                 o.reasoning = std::move(reasoning);
                 return o;
             }),
             py::kw_only(), py::arg("instrument") = "", py::arg("counterparty") = "",
             py::arg("side") = Side::buy, py::arg("quantity") = 0, py::arg("price") = 0,
             py::arg("region") = "", py::arg("reference_price") = py::none(),
             py::arg("client_order_id") = "", py::arg("reasoning") = "")
        .def_readwrite("instrument", &PyOrder::instrument)
        .def_readwrite("counterparty", &PyOrder::counterparty)
        // By value: a def_readwrite enum would be a view of this Order's field, changing with it.
        .def_property(
            "side", [](const PyOrder& o) { return o.side; },
            [](PyOrder& o, Side side) { o.side = side; })
        .def_readwrite("region", &PyOrder::region)
        .def_readwrite("client_order_id", &PyOrder::client_order_id)
        .def_readwrite("reasoning", &PyOrder::reasoning,
                       "The agent's stated rationale; kept in the audit record.")
        .def_property(
            "quantity", [](const PyOrder& o) { return from_decimal(o.quantity); },
            [](PyOrder& o, py::handle v) { o.quantity = to_decimal(v, "Order.quantity"); })
        .def_property(
            "price", [](const PyOrder& o) { return from_decimal(o.price); },
            [](PyOrder& o, py::handle v) { o.price = to_decimal(v, "Order.price"); })
        .def_property(
            "reference_price",
            [](const PyOrder& o) { return from_optional_decimal(o.reference_price); },
            [](PyOrder& o, py::handle v) {
                o.reference_price = to_optional_decimal(v, "Order.reference_price");
            })
        .def("__repr__", [](const PyOrder& o) {
            return "Order(" + o.instrument + " " + to_string(o.side) + " " + to_string(o.quantity) +
                   " @ " + to_string(o.price) + ", counterparty=" + o.counterparty +
                   ", region=" + o.region +
                   (o.client_order_id.empty() ? std::string() : ", id=" + o.client_order_id) + ")";
        });

    py::class_<Decision>(m, "Decision", "What Guard.check() answers: a value, never an exception.")
        .def_readonly("verdict", &Decision::verdict)
        .def_property_readonly("allowed", &Decision::allowed)
        .def_property_readonly(
            "reasons", [](const Decision& d) { return reason_list(d.reasons); },
            "Every reason that applied, as ReasonCode members, in numeric order.")
        .def_readonly("ts_ns", &Decision::ts_ns)
        .def_readonly("score_ppm", &Decision::score_ppm)
        .def_property_readonly(
            "components",
            [](const Decision& d) {
                py::dict out;
                for (std::size_t i = 0; i < score_component_count; ++i)
                    out[component_name(i)] = d.components_ppm[i];
                return out;
            },
            "The anomaly score's components in ppm, by name.")
        .def("__bool__", &Decision::allowed)
        .def("__repr__", &decision_repr);

    py::class_<Scope>(m, "Scope",
                      "An agent's authority limits (DESIGN §3); from parse_scope_json().")
        .def_readonly("version", &Scope::version)
        .def_readonly("instruments", &Scope::instruments)
        .def_readonly("counterparties", &Scope::counterparties)
        .def_readonly("regions", &Scope::regions)
        .def_property_readonly("max_transaction",
                               [](const Scope& s) {
                                   return py::make_tuple(s.max_transaction.currency.code(),
                                                         from_decimal(s.max_transaction.amount));
                               })
        .def_property_readonly("has_lifecycle_limits",
                               [](const Scope& s) { return s.limits.has_lifecycle_limits(); })
        .def(
            "to_json", [](const Scope& s) { return to_json(s); },
            "Canonical JSON (sorted keys, no whitespace): what the approval hash covers.")
        .def("to_pretty_json", [](const Scope& s) { return to_pretty_json(s); })
        .def("__eq__", [](const Scope& a, const Scope& b) { return to_json(a) == to_json(b); })
        .def("__repr__", [](const Scope& s) { return "Scope(" + to_json(s) + ")"; });
    m.def("parse_scope_json", &parse_scope_json, py::arg("text"),
          "Parses and validates a scope; kakunin.InvalidInputError names the member at fault.");
    m.def("load_scope_file", &load_scope_file, py::arg("path"));
}

}  // namespace kakunin::python
