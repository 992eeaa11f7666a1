// The extension module kakunin._kakunin; python/kakunin/__init__.py re-exports it. One binding
// file per area, like the public headers: values, lifecycle, certificates, audit, guard, testing.
#include "bindings.hpp"

#include "kakunin/version.hpp"

PYBIND11_MODULE(_kakunin, m) {
    namespace kp = kakunin::python;
    m.doc() = "Kakunin: authority, behaviour and audit guard for trading agents";
    m.attr("__version__") = kakunin::version_string;
    kp::bind_errors(m);
    kp::bind_values(m);
    kp::bind_lifecycle(m);
    kp::bind_certificates(m);
    kp::bind_audit(m);
    kp::bind_guard(m);
    kp::bind_testing(m);
    kp::register_callback_shutdown();
}
