// The audit trail: sinks (file, memory, PostgreSQL), the trail's options and counters, and the
// offline verifier (what `kakunin audit verify` runs).
#include <pybind11/chrono.h>
#include <pybind11/stl.h>

#include <cstdio>

#include "bindings.hpp"
#include "kakunin/audit_sink.hpp"
#include "kakunin/audit_trail.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/postgres.hpp"

namespace kakunin::python {

namespace {

std::string hex(const MerkleHash& h) {
    std::string s;
    char b[3];
    for (std::uint8_t c : h) {
        std::snprintf(b, sizeof b, "%02x", c);
        s += b;
    }
    return s;
}

AuditVerifyOptions verify_options(bool require_record_signatures, bool require_closed,
                                  std::string expected_log_id) {
    AuditVerifyOptions o;
    o.require_record_signatures = require_record_signatures;
    o.require_closed = require_closed;
    o.expected_log_id = std::move(expected_log_id);
    return o;
}

}  // namespace

void bind_audit(py::module_& m) {
    // Sinks are written by the trail's writer thread; Python only creates and reads them.
    py::class_<AuditSink, std::shared_ptr<AuditSink>>(m, "AuditSink",
                                                      "Where audit lines go (JSON Lines).")
        .def_property_readonly("name", &AuditSink::name)
        .def(
            "lines",
            [](AuditSink& s) {
                std::vector<std::string> out;
                {
                    py::gil_scoped_release release;
                    s.for_each_line([&](std::string_view l) { out.emplace_back(l); });
                }
                return out;
            },
            "Every stored line, in order.");

    py::class_<FileAuditSink, AuditSink, std::shared_ptr<FileAuditSink>>(m, "FileAuditSink")
        .def(py::init([](std::string path, bool sync_every_append, std::string log_id) {
                 FileAuditSinkOptions o;
                 o.sync_every_append = sync_every_append;
                 o.log_id = std::move(log_id);
                 py::gil_scoped_release release;
                 return std::make_shared<FileAuditSink>(std::move(path), std::move(o));
             }),
             py::arg("path"), py::kw_only(), py::arg("sync_every_append") = true,
             py::arg("log_id") = "")
        .def_property_readonly("path", &FileAuditSink::path);

    py::class_<MemoryAuditSink, AuditSink, std::shared_ptr<MemoryAuditSink>>(m, "MemoryAuditSink")
        .def(py::init([] { return std::make_shared<MemoryAuditSink>(); }));

    py::class_<PostgresAuditSink, AuditSink, std::shared_ptr<PostgresAuditSink>>(
        m, "PostgresAuditSink", "The kakunin_audit tables, connected as the application role.")
        .def(py::init([](std::string conninfo, std::string log_id) {
                 PostgresAuditSinkOptions o;
                 o.log_id = std::move(log_id);
                 py::gil_scoped_release release;
                 return std::make_shared<PostgresAuditSink>(std::move(conninfo), std::move(o));
             }),
             py::arg("conninfo"), py::kw_only(), py::arg("log_id"));
    m.def(
        "init_audit_database",
        [](const std::string& conninfo, std::string owner_role, std::string app_role) {
            AuditDbOptions o;
            o.owner_role = std::move(owner_role);
            o.app_role = std::move(app_role);
            py::gil_scoped_release release;
            init_audit_database(conninfo, o);
        },
        py::arg("conninfo"), py::kw_only(), py::arg("owner_role") = "kakunin_owner",
        py::arg("app_role") = "kakunin_app",
        "Creates the audit schema (docs/postgres.md); idempotent.");

    py::class_<AuditTrailOptions>(m, "AuditTrailOptions",
                                  "GuardOptions.audit: a signed Merkle log of every decision.")
        .def(
            py::init([](std::shared_ptr<AuditSink> sink, std::string log_id, bool record_signatures,
                        std::size_t queue_capacity, std::uint64_t checkpoint_every,
                        std::chrono::milliseconds checkpoint_interval, py::object error_handler) {
                if (!sink) throw py::type_error("AuditTrailOptions.sink: a sink is required");
                AuditTrailOptions o;
                o.sink = std::move(sink);
                o.log_id = std::move(log_id);
                o.record_signatures = record_signatures;
                o.queue_capacity = queue_capacity;
                o.checkpoint_every = checkpoint_every;
                o.checkpoint_interval = checkpoint_interval;
                if (!error_handler.is_none())
                    o.error_handler =
                        message_handler(std::move(error_handler), "audit error handler");
                return o;
            }),
            py::arg("sink"), py::kw_only(), py::arg("log_id") = "",
            py::arg("record_signatures") = true, py::arg("queue_capacity") = 4096,
            py::arg("checkpoint_every") = 1000,
            py::arg("checkpoint_interval") = std::chrono::milliseconds(1000),
            py::arg("error_handler") = py::none())
        .def_readonly("sink", &AuditTrailOptions::sink)
        .def_readonly("log_id", &AuditTrailOptions::log_id)
        .def_readonly("record_signatures", &AuditTrailOptions::record_signatures)
        .def_readonly("queue_capacity", &AuditTrailOptions::queue_capacity);

    py::class_<AuditTrailCounters>(m, "AuditTrailCounters")
        .def_readonly("queued", &AuditTrailCounters::queued)
        .def_readonly("durable", &AuditTrailCounters::durable)
        .def_readonly("unrecorded_rejections", &AuditTrailCounters::unrecorded_rejections)
        .def_readonly("unrecorded_reports", &AuditTrailCounters::unrecorded_reports)
        .def_readonly("sink_failures", &AuditTrailCounters::sink_failures)
        .def_readonly("healthy", &AuditTrailCounters::healthy);

    py::class_<AuditCertificates>(m, "AuditCertificates",
                                  "The certificates an audit log's signatures are checked with.")
        .def(py::init<>())
        .def_static("from_directory", &AuditCertificates::from_directory, py::arg("directory"))
        .def("add_file", &AuditCertificates::add_file, py::arg("path"))
        .def(
            "add_der",
            [](AuditCertificates& c, const py::bytes& der) {
                const std::string s = der;
                return c.add_der(std::vector<std::uint8_t>(s.begin(), s.end()));
            },
            py::arg("der"), "Adds a certificate (DER); returns its fingerprint.")
        .def("__len__", &AuditCertificates::size)
        .def("__contains__", &AuditCertificates::contains);

    py::enum_<AuditProblem> problem(m, "AuditProblem");
    for (AuditProblem p :
         {AuditProblem::none, AuditProblem::empty_log, AuditProblem::malformed_line,
          AuditProblem::wrong_log_id, AuditProblem::seq_gap, AuditProblem::unknown_certificate,
          AuditProblem::bad_record_signature, AuditProblem::missing_record_signature,
          AuditProblem::bad_checkpoint_signature, AuditProblem::checkpoint_regressed,
          AuditProblem::checkpoint_beyond_records, AuditProblem::root_mismatch,
          AuditProblem::not_covered, AuditProblem::known_checkpoint_mismatch,
          AuditProblem::wrong_agent, AuditProblem::wrong_signer})
        problem.value(to_string(p), p);

    py::class_<AuditVerifyResult>(m, "AuditVerifyResult")
        .def_readonly("ok", &AuditVerifyResult::ok)
        .def_readonly("problem", &AuditVerifyResult::problem)
        .def_readonly("first_bad_seq", &AuditVerifyResult::first_bad_seq)
        .def_readonly("line", &AuditVerifyResult::line)
        .def_readonly("message", &AuditVerifyResult::message)
        .def_readonly("log_id", &AuditVerifyResult::log_id)
        .def_readonly("agent", &AuditVerifyResult::agent)
        .def_readonly("records", &AuditVerifyResult::records)
        .def_readonly("signed_records", &AuditVerifyResult::signed_records)
        .def_readonly("checkpoints", &AuditVerifyResult::checkpoints)
        .def_readonly("covered", &AuditVerifyResult::covered)
        .def_property_readonly("root", [](const AuditVerifyResult& r) { return hex(r.root); })
        .def_readonly("uncovered_records", &AuditVerifyResult::uncovered_records)
        .def("__bool__", [](const AuditVerifyResult& r) { return r.ok; });

    m.def(
        "verify_audit_log_file",
        [](const std::string& path, const AuditCertificates& certs, bool require_record_signatures,
           bool require_closed, std::string expected_log_id) {
            const AuditVerifyOptions o = verify_options(require_record_signatures, require_closed,
                                                        std::move(expected_log_id));
            py::gil_scoped_release release;
            return verify_audit_log_file(path, certs, o);
        },
        py::arg("path"), py::arg("certificates"), py::kw_only(),
        py::arg("require_record_signatures") = false, py::arg("require_closed") = true,
        py::arg("expected_log_id") = "",
        "Verifies an audit log offline (`kakunin audit verify`): an AuditVerifyResult naming the "
        "first problem; an unreadable file is kakunin.IoError.");
    m.def(
        "verify_audit_lines",
        [](const std::vector<std::string>& lines, const AuditCertificates& certs,
           bool require_record_signatures, bool require_closed, std::string expected_log_id) {
            const AuditVerifyOptions o = verify_options(require_record_signatures, require_closed,
                                                        std::move(expected_log_id));
            py::gil_scoped_release release;
            return verify_audit_lines(lines, certs, o);
        },
        py::arg("lines"), py::arg("certificates"), py::kw_only(),
        py::arg("require_record_signatures") = false, py::arg("require_closed") = true,
        py::arg("expected_log_id") = "");
}

}  // namespace kakunin::python
