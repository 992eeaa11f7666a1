// kakunin audit verify (--log FILE | --postgres CONNINFO) [--certs DIR] [--ca ca.pem] [--json]
// kakunin audit init-db --postgres CONNINFO
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/commands.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/certificate.hpp"
#include "kakunin/postgres.hpp"
#include "kakunin/replay.hpp"

namespace kakunin::cli {
namespace {

struct VerifyArgs {
    std::string log, postgres, certs, ca;
    bool json = false;
    bool allow_open = false;
};

/// Checks that every certificate the verifier may use as a signer was issued by the CA in
/// `ca_path` (at its own notBefore: a certificate may have expired or been revoked since it
/// signed records), whatever file it came from: these are the very certificates the verifier
/// loaded, so nothing signs unchecked. A copy of the CA certificate itself is the CA log's
/// signer and passes.
void check_issuer(const AuditCertificates& certs, const TrustAnchor& anchor,
                  const std::string& ca_path) {
    for (const AuditCertificates::Entry& e : certs.entries()) {
        if (e.der == anchor.der()) continue;
        const std::string name = e.source.empty() ? e.fingerprint : e.source;
        std::optional<AgentCertificate> cert;
        try {
            cert.emplace(AgentCertificate::from_der(e.der));
        } catch (const Error& x) {
            throw Error(ErrorCategory::unauthorised,
                        name + ": not issued by " + ca_path + ": " + x.what());
        }
        VerifyOptions options;
        options.require_crl = false;
        const CertificateCheck r =
            verify_certificate(*cert, anchor, nullptr, cert->not_before(), options);
        if (!r.ok())
            throw Error(ErrorCategory::unauthorised, name + ": not issued by " + ca_path + ": " +
                                                         to_string(r.status) + ": " + r.detail);
    }
}

void report(const VerifyArgs& a, const std::string& name, const AuditVerifyResult& r);

void run_verify(const VerifyArgs& a) {
    AuditCertificates certs =
        a.certs.empty() ? AuditCertificates{} : AuditCertificates::from_directory(a.certs);
    for (const std::string& note : certs.notes()) std::cerr << "kakunin: note: " << note << "\n";
    if (!a.ca.empty()) {
        const TrustAnchor anchor = TrustAnchor::load_file(a.ca);
        check_issuer(certs, anchor, a.ca);
        // The CA's own log (STATE/audit/ca.jsonl) is signed by the CA key: its certificate
        // verifies it.
        certs.add_der(anchor.der());
    }
    AuditVerifyOptions options;
    options.require_closed = !a.allow_open;
    if (a.log.empty() == a.postgres.empty())
        throw Error(ErrorCategory::invalid_input, "give either --log FILE or --postgres CONNINFO");
    if (!a.postgres.empty()) {
        const auto ids = postgres_audit_log_ids(a.postgres);
        if (ids.empty()) throw Error(ErrorCategory::not_found, "no audit log in the database");
        for (const std::string& id : ids) {
            PostgresAuditSinkOptions so;
            so.log_id = id;
            PostgresAuditSink sink(a.postgres, so);
            AuditLogVerifier verifier(certs, options);
            sink.for_each_line([&](std::string_view line) { verifier.add_line(line); });
            report(a, "postgres:" + id, verifier.finish());
        }
        return;
    }
    report(a, a.log, verify_audit_log_file(a.log, certs, options));
}

void report(const VerifyArgs& a, const std::string& name, const AuditVerifyResult& r) {
    if (a.json) {
        nlohmann::json j;
        j["ok"] = r.ok;
        j["problem"] = to_string(r.problem);
        if (!r.ok) {
            j["first_bad_seq"] = r.first_bad_seq;
            j["line"] = r.line;
        }
        j["message"] = r.message;
        j["log_id"] = r.log_id;
        j["agent"] = r.agent;
        j["records"] = r.records;
        j["signed_records"] = r.signed_records;
        j["checkpoints"] = r.checkpoints;
        j["covered"] = r.covered;
        j["uncovered_records"] = r.uncovered_records;
        j["root"] = to_hex(r.root);
        std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else if (r.ok) {
        std::cout << name << ": ok: log '" << r.log_id << "', " << r.records << " records ("
                  << r.signed_records << " signed), " << r.checkpoints
                  << " checkpoints, last covers " << r.covered << ", root " << to_hex(r.root)
                  << "\n";
    }
    if (!r.ok)
        throw Error(ErrorCategory::invalid_input,
                    a.log + ": " + to_string(r.problem) + ": " + r.message);
}

}  // namespace

void add_audit_commands(CLI::App& app) {
    CLI::App* audit = app.add_subcommand("audit", "Audit log: verify, init-db");
    audit->require_subcommand(1);
    auto args = std::make_shared<VerifyArgs>();
    CLI::App* verify = audit->add_subcommand(
        "verify", "Recompute leaf hashes and roots, check signatures and seq continuity offline");
    verify->add_option("--log", args->log, "Audit log (JSON Lines, DESIGN §5)")
        ->check(CLI::ExistingFile);
    verify->add_option("--postgres", args->postgres,
                       "Verify every log stored in this database (libpq conninfo)");
    verify->add_option("--certs", args->certs,
                       "Directory of the certificates whose keys signed (PEM or DER; files "
                       "that hold no certificate, such as a CRL, are skipped with a note)");
    verify
        ->add_option("--ca", args->ca,
                     "The CA certificate (STATE/ca.pem): it verifies the CA log's signatures "
                     "(STATE/audit/ca.jsonl), and every certificate loaded from --certs must be "
                     "issued by it")
        ->check(CLI::ExistingFile);
    verify->add_flag("--allow-open", args->allow_open,
                     "Accept records after the last checkpoint (a log still being written)");
    verify->add_flag("--json", args->json, "Print the result as JSON");
    verify->callback([args] { run_verify(*args); });

    auto init = std::make_shared<std::pair<std::string, AuditDbOptions>>();
    CLI::App* init_db = audit->add_subcommand(
        "init-db", "Create the write-once audit schema, roles and triggers (docs/postgres.md)");
    init_db->add_option("--postgres", init->first, "libpq conninfo of the installing role")
        ->required();
    init_db->add_option("--owner-role", init->second.owner_role, "NOLOGIN owner of the schema");
    init_db->add_option("--app-role", init->second.app_role,
                        "Role the trading processes connect as (INSERT and SELECT only)");
    init_db->callback([init] {
        init_audit_database(init->first, init->second);
        std::cout << "audit schema ready (owner " << init->second.owner_role
                  << ", application role " << init->second.app_role << ")\n";
    });
}

}  // namespace kakunin::cli
