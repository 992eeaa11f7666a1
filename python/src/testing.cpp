// TestAuthority: real certificates with any scope in one line, on a clock the test controls, for
// strategy unit tests under pytest (include/kakunin/testing.hpp).
#include <pybind11/chrono.h>
#include <pybind11/stl.h>

#include "bindings.hpp"
#include "guard_holder.hpp"
#include "kakunin/testing.hpp"

namespace kakunin::python {

namespace {

/// A scope given as a Scope or as its JSON text.
Scope scope_of(py::handle s) {
    if (py::isinstance<py::str>(s)) return parse_scope_json(s.cast<std::string>());
    return s.cast<Scope>();
}

}  // namespace

void bind_testing(py::module_& m) {
    using TA = TestAuthority;
    using release = py::call_guard<py::gil_scoped_release>;
    py::class_<TA>(m, "TestAuthority",
                   "An in-memory CA on a software Kms with a ManualClock (Monday 2024-01-08 "
                   "12:00 UTC by default); what it mints are genuine X.509 certificates. Scopes "
                   "are Scope objects or their JSON text.")
        .def(py::init<TimeNs>(), py::arg("start_ns") = utc(2024, 1, 8, 12, 0, 0), release())
        .def_property_readonly("clock", &TA::clock, py::return_value_policy::reference_internal)
        .def_property_readonly("kms", &TA::kms)
        .def_property_readonly("revocation_feed", &TA::revocation_feed)
        .def_property_readonly_static("officer", [](py::object) { return TA::officer; })
        .def(
            "guard_for",
            [](TA& a, py::handle scope) {
                const Scope s = scope_of(scope);
                std::unique_ptr<Guard> g;
                {
                    py::gil_scoped_release r;
                    g = a.guard_for(s);
                }
                return std::make_unique<GuardHolder>(std::move(g));
            },
            py::arg("scope"), py::keep_alive<0, 1>(),
            "A Guard on a fresh agent's 24 h certificate for the scope, on this authority's "
            "clock and revocation feed.")
        .def(
            "credentials_for",
            [](TA& a, py::handle scope, std::chrono::seconds validity) {
                const Scope s = scope_of(scope);
                py::gil_scoped_release r;
                return a.credentials_for(s, validity);
            },
            py::arg("scope"), py::arg("validity") = std::chrono::seconds(24 * 3600))
        .def(
            "expired", [](TA& a, py::handle s) { return a.expired(scope_of(s)); }, py::arg("scope"))
        .def(
            "not_yet_valid", [](TA& a, py::handle s) { return a.not_yet_valid(scope_of(s)); },
            py::arg("scope"))
        .def(
            "revoked", [](TA& a, py::handle s) { return a.revoked(scope_of(s)); }, py::arg("scope"))
        .def(
            "wrong_ca", [](TA& a, py::handle s) { return a.wrong_ca(scope_of(s)); },
            py::arg("scope"))
        .def(
            "tampered", [](TA& a, py::handle s) { return a.tampered(scope_of(s)); },
            py::arg("scope"))
        .def(
            "key_mismatch", [](TA& a, py::handle s) { return a.key_mismatch(scope_of(s)); },
            py::arg("scope"))
        .def("renew", &TA::renew, py::arg("certificate"), release())
        .def(
            "revoke",
            [](TA& a, const AgentCertificate& c, std::string_view reason) { a.revoke(c, reason); },
            py::arg("certificate"), py::arg("reason"), release(),
            "Revokes on the CA and pushes the revocation to every Guard from guard_for().");
}

}  // namespace kakunin::python
