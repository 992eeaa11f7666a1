// Lifecycle values: Amend, Cancel, ExecutionReport and what applying one did, the lifecycle
// state, and the CancelAll a halt hands to on_cancel_all (docs/lifecycle.md).
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/lifecycle.hpp"

namespace kakunin::python {

void bind_lifecycle(py::module_& m) {
    py::class_<PyAmend>(m, "Amend",
                        "A change to a working order: its new total quantity and/or price.")
        .def(py::init([](std::string id, py::object quantity, py::object price,
                         py::object reference_price) {
                 PyAmend a;
                 a.client_order_id = std::move(id);
                 a.quantity = to_optional_decimal(quantity, "Amend.quantity");
                 a.price = to_optional_decimal(price, "Amend.price");
                 a.reference_price = to_optional_decimal(reference_price, "Amend.reference_price");
                 return a;
             }),
             py::arg("client_order_id"), py::kw_only(), py::arg("quantity") = py::none(),
             py::arg("price") = py::none(), py::arg("reference_price") = py::none())
        .def_readwrite("client_order_id", &PyAmend::client_order_id)
        .def_property(
            "quantity", [](const PyAmend& a) { return from_optional_decimal(a.quantity); },
            [](PyAmend& a, py::handle v) { a.quantity = to_optional_decimal(v, "Amend.quantity"); })
        .def_property(
            "price", [](const PyAmend& a) { return from_optional_decimal(a.price); },
            [](PyAmend& a, py::handle v) { a.price = to_optional_decimal(v, "Amend.price"); })
        .def_property(
            "reference_price",
            [](const PyAmend& a) { return from_optional_decimal(a.reference_price); },
            [](PyAmend& a, py::handle v) {
                a.reference_price = to_optional_decimal(v, "Amend.reference_price");
            });

    py::class_<PyCancel>(m, "Cancel", "A request to cancel a working order.")
        .def(py::init([](std::string id) { return PyCancel{std::move(id)}; }),
             py::arg("client_order_id"))
        .def_readwrite("client_order_id", &PyCancel::client_order_id);

    py::enum_<ExecutionType>(m, "ExecutionType")
        .value("ack", ExecutionType::ack)
        .value("reject", ExecutionType::reject)
        .value("fill", ExecutionType::fill)
        .value("cancelled", ExecutionType::cancelled)
        .value("expired", ExecutionType::expired)
        .value("mark", ExecutionType::mark);

    py::class_<PyExecutionReport>(m, "ExecutionReport", "What the venue reports.")
        .def(py::init([](ExecutionType type, std::string id, std::string instrument, Side side,
                         py::object quantity, py::object price) {
                 PyExecutionReport e;
                 e.type = type;
                 e.client_order_id = std::move(id);
                 e.instrument = std::move(instrument);
                 e.side = side;
                 e.quantity = to_decimal(quantity, "ExecutionReport.quantity");
                 e.price = to_decimal(price, "ExecutionReport.price");
                 return e;
             }),
             py::arg("type"), py::kw_only(), py::arg("client_order_id") = "",
             py::arg("instrument") = "", py::arg("side") = Side::buy, py::arg("quantity") = 0,
             py::arg("price") = 0)
        .def_property(
            "type", [](const PyExecutionReport& e) { return e.type; },
            [](PyExecutionReport& e, ExecutionType v) { e.type = v; })
        .def_readwrite("client_order_id", &PyExecutionReport::client_order_id)
        .def_readwrite("instrument", &PyExecutionReport::instrument)
        .def_property(
            "side", [](const PyExecutionReport& e) { return e.side; },
            [](PyExecutionReport& e, Side v) { e.side = v; })
        .def_property(
            "quantity", [](const PyExecutionReport& e) { return from_decimal(e.quantity); },
            [](PyExecutionReport& e, py::handle v) {
                e.quantity = to_decimal(v, "ExecutionReport.quantity");
            })
        .def_property(
            "price", [](const PyExecutionReport& e) { return from_decimal(e.price); },
            [](PyExecutionReport& e, py::handle v) {
                e.price = to_decimal(v, "ExecutionReport.price");
            });

    py::class_<ExecutionResult>(m, "ExecutionResult")
        .def_readonly("applied", &ExecutionResult::applied)
        .def_readonly("unknown_order", &ExecutionResult::unknown_order)
        .def_readonly("order_closed", &ExecutionResult::order_closed)
        .def_readonly("reduce_only_entered", &ExecutionResult::reduce_only_entered)
        .def_property_readonly("problem", [](const ExecutionResult& r) -> py::object {
            if (r.problem == nullptr) return py::none();
            return py::str(r.problem);
        });

    py::class_<LifecycleState::Position>(m, "Position")
        .def_readonly("instrument", &LifecycleState::Position::instrument)
        .def_property_readonly(
            "position",
            [](const LifecycleState::Position& p) { return decimal_from_text((p.position)); })
        .def_property_readonly(
            "working_buy",
            [](const LifecycleState::Position& p) { return decimal_from_text((p.working_buy)); })
        .def_property_readonly("working_sell", [](const LifecycleState::Position& p) {
            return decimal_from_text((p.working_sell));
        });

    py::class_<LifecycleState>(m, "LifecycleState")
        .def_readonly("positions", &LifecycleState::positions)
        .def_readonly("working_orders", &LifecycleState::working_orders)
        .def_property_readonly(
            "filled_today",
            [](const LifecycleState& s) { return decimal_from_text((s.filled_today)); })
        .def_property_readonly(
            "working_notional",
            [](const LifecycleState& s) { return decimal_from_text((s.working_notional)); })
        .def_property_readonly(
            "daily_pnl", [](const LifecycleState& s) { return decimal_from_text((s.daily_pnl)); })
        .def_readonly("reduce_only", &LifecycleState::reduce_only);

    py::class_<CancelAll>(m, "CancelAll",
                          "What a halt hands to on_cancel_all: the orders working at that moment.")
        .def_readonly("halt_id", &CancelAll::halt_id)
        .def_readonly("reason", &CancelAll::reason)
        .def_readonly("by", &CancelAll::by)
        .def_readonly("at_ns", &CancelAll::at_ns)
        .def_readonly("order_ids", &CancelAll::order_ids);
}

}  // namespace kakunin::python
