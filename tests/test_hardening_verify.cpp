// Hardening of the verifiers (audit log, export package) against the adversarial review: every
// certificate `audit verify --ca` uses is checked against the CA whatever its file; a log is
// signed only by its own agent's certificates (the CA key only signs the CA log); an export of
// agent history made with the CA key alone, or with its generator version changed, is refused;
// deeply nested JSON is a clean error, not a crash; a CRL among the certificates is skipped with a
// note; a period whose records' ts_ns go back a little across its boundary exports every record
// of the period in a contiguous, provable extract.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "audit_test_support.hpp"
#include "cli_test_support.hpp"
#include "export/export_internal.hpp"
#include "kakunin/audit.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/export.hpp"
#include "kakunin/scope.hpp"
#include "kakunin/software_kms.hpp"
#include "kakunin/testing.hpp"
#include "pkcs11_test_support.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

using json = nlohmann::json;
using kakunin_test::read_text;
using kakunin_test::shell_quote;
using kakunin_test::write_text;
namespace fs = std::filesystem;
using namespace kakunin;

namespace {

constexpr const char* k_passphrase = "hardening test passphrase";
constexpr TimeNs ms_ns = 1'000'000;

struct TempDir : kakunin::test::TempDir {
    TempDir() : kakunin::test::TempDir("kakunin-hardening") {}
};

using test::Run;

const test::Cli kakunin_cli{k_passphrase};

/// Runs the real `kakunin` program with `args` (already quoted) in `dir`; -1 when the program
/// died of a signal.
Run cli(const std::string& args, const TempDir& dir) {
    Run r = kakunin_cli.run(dir, args);
    // sh reports a child killed by a signal as 128 + the signal.
    if (r.code >= 128) r.code = -1;
    return r;
}

/// A clean failure: an exit status (no crash) and one line on stderr containing `fragment`.
void require_one_line_error(const Run& r, const std::string& fragment) {
    INFO("exit " << r.code << "\nstdout: " << r.out << "\nstderr: " << r.err);
    REQUIRE(r.code > 0);
    REQUIRE(!r.err.empty());
    CHECK(r.err.rfind("kakunin: ", 0) == 0);
    CHECK(r.err.find('\n') == r.err.size() - 1);
    CHECK_THAT(r.err, Catch::Contains(fragment));
}

void require_ok(const Run& r) {
    INFO("exit " << r.code << "\nstdout: " << r.out << "\nstderr: " << r.err);
    REQUIRE(r.code == 0);
}

std::string order_payload(int i) {
    return R"({"decision":"allow","order":{"instrument":"BTC_EUR","price":"42000.00","quantity":"0.)" +
           std::to_string(1 + i % 9) + R"("},"reasons":[],"score_ppm":)" +
           std::to_string(1000 + i) + "}";
}

struct LogSpec {
    std::string log_id, agent, cert_fp;
    std::uint64_t checkpoint_every = 4;
};

/// Writes `records` order records to `sink`; checkpoints signed by `checkpoint_signer`, records
/// signed by `record_signer` when given.
void write_log(AuditSink& sink, const Clock& clock, const AuditSigner& checkpoint_signer,
               std::optional<AuditSigner> record_signer, const LogSpec& spec, int records) {
    AuditWriterOptions o;
    o.log_id = spec.log_id;
    o.agent = spec.agent;
    o.cert_fp = spec.cert_fp;
    o.checkpoint_every = spec.checkpoint_every;
    AuditLogWriter log(sink, clock, checkpoint_signer, o, record_signer);
    for (int i = 0; i < records; ++i) log.append(audit_event::order_allowed, order_payload(i));
    log.close();
}

std::vector<std::string> memory_log(const Clock& clock, const AuditSigner& checkpoint_signer,
                                    std::optional<AuditSigner> record_signer, const LogSpec& spec,
                                    int records = 10) {
    MemoryAuditSink sink;
    write_log(sink, clock, checkpoint_signer, record_signer, spec, records);
    return sink.lines();
}

std::string lines_text(const std::vector<std::string>& lines) {
    std::string text;
    for (const auto& l : lines) text += l + "\n";
    return text;
}

AuditVerifyResult verify(const std::vector<std::string>& lines, const AuditCertificates& certs) {
    const AuditVerifyResult r = verify_audit_lines(lines, certs);
    UNSCOPED_INFO("verify: " << to_string(r.problem) << ": " << r.message);
    return r;
}

/// Two agents of one CA (TestAuthority), with signers for their keys and the CA's.
struct Authority {
    TestAuthority authority;
    Scope scope = parse_scope_json(test::seed_scope_json);
    GuardCredentials a = authority.credentials_for(scope);
    GuardCredentials b = authority.credentials_for(scope);
    KeyHandle ca_key = authority.kms()->find_key(authority.ca().options().key_label);
    TrustAnchor anchor = authority.ca().trust_anchor();

    AuditSigner signer(const GuardCredentials& c) const {
        return AuditSigner{*c.kms, c.key, c.certificate.fingerprint()};
    }
    AuditSigner ca_signer() { return AuditSigner{*authority.kms(), ca_key, anchor.fingerprint()}; }
    LogSpec spec_of(const GuardCredentials& c) const {
        const std::string id = c.certificate.agent_id();
        return LogSpec{id, id, c.certificate.fingerprint()};
    }
    AuditCertificates all_certificates() const {
        AuditCertificates certs;
        certs.add_der(a.certificate.der());
        certs.add_der(b.certificate.der());
        certs.add_der(anchor.der());
        return certs;
    }
};

/// A deeply nested payload: deep enough to overflow the stack of a recursive walk.
std::string deep_record_line(std::size_t depth) {
    return R"({"agent":"agent-7","cert_fp":"sha256:00","event":"order.allowed","kind":"record","log_id":"agent-7","payload":{"x":)" +
           std::string(depth, '[') + std::string(depth, ']') + R"(},"seq":0,"ts_ns":1})";
}
constexpr std::size_t k_deep = 60000;

}  // namespace

// ---- item 1: every signer checked against the CA, whatever its file ---------------------------

TEST_CASE("audit verify --ca: a self-signed signer in a .crt or .cer file is refused",
          "[hardening][cli]") {
    Authority au;
    TempDir tmp;
    const std::string agent = au.a.certificate.agent_id();
    fs::create_directories(tmp / "certs");
    write_text(tmp / "certs/agent.pem", au.a.certificate.pem());
    write_text(tmp / "ca.pem", au.anchor.pem());
    // The agent's genuine log verifies against this directory.
    {
        FileAuditSink sink(tmp / "genuine.jsonl");
        write_log(sink, au.authority.clock(), au.signer(au.a), au.signer(au.a), au.spec_of(au.a),
                  9);
    }
    require_ok(cli("audit verify --log genuine.jsonl --certs certs --ca ca.pem", tmp));

    // A forger's own key, its self-signed certificate naming the agent, a log signed with it.
    test::AuditTestKms kms;
    const test::TestIdentity forger = test::make_identity(kms, agent);
    {
        FileAuditSink sink(tmp / "forged.jsonl");
        write_log(sink, au.authority.clock(), forger.signer(kms), forger.signer(kms),
                  LogSpec{agent, agent, forger.fp}, 9);
    }
    for (const std::string name : {"extra.crt", "extra.cer"}) {
        INFO(name);
        const std::string der(forger.cert_der.begin(), forger.cert_der.end());
        write_text(tmp / ("certs/" + name), der);
        require_one_line_error(
            cli("audit verify --log forged.jsonl --certs certs --ca ca.pem", tmp),
            name + ": not issued by ca.pem");
        // The genuine log too: a directory with an unchecked signer in it is refused whole.
        require_one_line_error(
            cli("audit verify --log genuine.jsonl --certs certs --ca ca.pem", tmp),
            "not issued by");
        fs::remove(tmp / ("certs/" + name));
    }
}

// ---- item 16: a CRL among the certificates -----------------------------------------------------

TEST_CASE("audit verify --certs: a CRL in the directory is skipped with a note naming it",
          "[hardening][cli]") {
    Authority au;
    TempDir tmp;
    fs::create_directories(tmp / "certs");
    write_text(tmp / "certs/agent.pem", au.a.certificate.pem());
    write_text(tmp / "certs/crl.pem", au.authority.ca().current_crl().pem());
    write_text(tmp / "ca.pem", au.anchor.pem());
    {
        FileAuditSink sink(tmp / "agent.jsonl");
        write_log(sink, au.authority.clock(), au.signer(au.a), au.signer(au.a), au.spec_of(au.a),
                  9);
    }
    for (const std::string extra : {"", " --ca ca.pem"}) {
        INFO("options:" << extra);
        const Run r = cli("audit verify --log agent.jsonl --certs certs" + extra, tmp);
        require_ok(r);
        CHECK_THAT(r.out, Catch::Contains(": ok: log '" + au.a.certificate.agent_id() + "'"));
        CHECK_THAT(r.err, Catch::Contains("crl.pem: skipped, not a certificate"));
    }
    // What is skipped signs nothing: a log signed by a key whose certificate is missing fails.
    fs::remove(tmp / "certs/agent.pem");
    const Run r = cli("audit verify --log agent.jsonl --certs certs", tmp);
    INFO("stderr: " << r.err);
    CHECK(r.code == 1);
    CHECK_THAT(r.err, Catch::Contains("kakunin: note: certs/crl.pem: skipped"));
    CHECK_THAT(r.err, Catch::EndsWith("not among the certificates given\n"));
}

// ---- item 5: a log is signed by its own agent's certificates ----------------------------------

TEST_CASE("verify: a log is signed only by the certificates of its agent", "[hardening][audit]") {
    Authority au;
    const AuditCertificates certs = au.all_certificates();
    const Clock& clock = au.authority.clock();
    const std::string agent_a = au.a.certificate.agent_id();
    const std::string agent_b = au.b.certificate.agent_id();

    SECTION("the agent's own log, and the CA's own log, verify") {
        CHECK(verify(memory_log(clock, au.signer(au.a), au.signer(au.a), au.spec_of(au.a)), certs)
                  .ok);
        CHECK(verify(memory_log(clock, au.signer(au.a), std::nullopt, au.spec_of(au.a)), certs).ok);
        CHECK(verify(au.authority.ca().audit_log_lines(), certs).ok);
        CHECK(verify(
                  memory_log(clock, au.signer(au.a), au.signer(au.a),
                             LogSpec{agent_a + ".replay", agent_a, au.a.certificate.fingerprint()}),
                  certs)
                  .ok);
    }
    SECTION("agent A's log signed entirely by agent B's key") {
        const AuditVerifyResult r =
            verify(memory_log(clock, au.signer(au.b), au.signer(au.b),
                              LogSpec{agent_a, agent_a, au.b.certificate.fingerprint()}),
                   certs);
        CHECK_FALSE(r.ok);
        CHECK(r.first_bad_seq == 0);
        CHECK(r.line == 1);
        CHECK_THAT(r.message, Catch::Contains(", the certificate of '" + agent_b +
                                              "', not of agent '" + agent_a + "'"));
    }
    SECTION("agent A's log with unsigned records under checkpoints by agent B") {
        const AuditVerifyResult r =
            verify(memory_log(clock, au.signer(au.b), std::nullopt, au.spec_of(au.a)), certs);
        CHECK_FALSE(r.ok);
        CHECK(r.line == 5);  // the first checkpoint
        CHECK_THAT(r.message, Catch::Contains("not of agent '" + agent_a + "'"));
    }
    SECTION("B's records claiming to be A's log") {
        const AuditVerifyResult r =
            verify(memory_log(clock, au.signer(au.b), au.signer(au.b),
                              LogSpec{agent_a, agent_b, au.b.certificate.fingerprint()}),
                   certs);
        CHECK_FALSE(r.ok);
        CHECK_THAT(r.message, Catch::Contains("is not the log of agent \"" + agent_b + "\""));
    }
    SECTION("an agent's unsigned records under a checkpoint signed by the CA key") {
        const AuditVerifyResult r =
            verify(memory_log(clock, au.ca_signer(), std::nullopt, au.spec_of(au.a)), certs);
        CHECK_FALSE(r.ok);
        CHECK_THAT(r.message, Catch::Contains(", a CA certificate"));
    }
    SECTION("the CA log signed by an agent") {
        const AuditVerifyResult r =
            verify(memory_log(clock, au.signer(au.a), au.signer(au.a),
                              LogSpec{"ca", "ca", au.a.certificate.fingerprint()}),
                   certs);
        CHECK_FALSE(r.ok);
        CHECK_THAT(r.message, Catch::Contains("only the CA key signs the CA log"));
    }
    SECTION("one exported record against a checkpoint of the CA key") {
        const auto lines = memory_log(clock, au.ca_signer(), std::nullopt, au.spec_of(au.a), 4);
        REQUIRE(lines.size() == 5);
        MerkleTree tree;
        for (int i = 0; i < 4; ++i) tree.append(parse_audit_record(lines[i]).leaf_hash());
        const std::string problem = verify_audit_record_inclusion(
            lines[1], tree.inclusion_proof(1, 4), parse_audit_checkpoint(lines[4]), certs);
        CHECK_THAT(problem, Catch::Contains(", a CA certificate"));
    }
}

// ---- item 10: deep nesting ---------------------------------------------------------------------

TEST_CASE("verify: a deeply nested line is a malformed line naming it and not a crash",
          "[hardening][audit]") {
    Authority au;
    const AuditCertificates certs = au.all_certificates();
    const auto good =
        memory_log(au.authority.clock(), au.signer(au.a), au.signer(au.a), au.spec_of(au.a), 4);
    std::vector<std::string> lines = good;
    lines.push_back(deep_record_line(k_deep));
    const AuditVerifyResult r = verify_audit_lines(lines, certs);
    CHECK_FALSE(r.ok);
    CHECK(r.problem == AuditProblem::malformed_line);
    CHECK(r.line == good.size() + 1);
    CHECK_THAT(r.message, Catch::StartsWith("line " + std::to_string(good.size() + 1) + ": "));
    CHECK_THAT(r.message, Catch::Contains("nested deeper than 256"));
    // Within the bound, nesting is only a matter of canonical form.
    CHECK_THAT(canonical_json("{\"x\":" + std::string(200, '[') + std::string(200, ']') + "}"),
               Catch::StartsWith("{\"x\":[[["));
    CHECK_THROWS_WITH(
        canonical_json("{\"x\":" + std::string(k_deep, '[') + std::string(k_deep, ']') + "}"),
        Catch::Contains("nested deeper than 256"));
}

TEST_CASE("the writer refuses to reopen a log ending in a deeply nested line without a crash",
          "[hardening][audit]") {
    Authority au;
    TempDir tmp;
    const std::string path = tmp / "agent.jsonl";
    {
        FileAuditSink sink(path);
        write_log(sink, au.authority.clock(), au.signer(au.a), au.signer(au.a), au.spec_of(au.a),
                  4);
    }
    write_text(path, read_text(path) + deep_record_line(k_deep) + "\n");
    FileAuditSink sink(path);
    AuditWriterOptions o;
    o.log_id = au.a.certificate.agent_id();
    CHECK_THROWS_WITH(AuditLogWriter(sink, au.authority.clock(), au.signer(au.a), o),
                      Catch::Contains("nested deeper than 256"));
}

TEST_CASE("audit verify and a CA command on a deeply nested line fail with one line",
          "[hardening][cli]") {
    TempDir tmp;
    write_text(tmp / "deep.jsonl", deep_record_line(k_deep) + "\n");
    require_one_line_error(cli("audit verify --log deep.jsonl", tmp),
                           "line 1: (after seq 0 records) objects and arrays nested deeper");
    // A CA whose log ends in such a line (the CA command reopens its log).
    require_ok(cli("ca init --dir state", tmp));
    write_text(tmp / "state/audit/ca.jsonl",
               read_text(tmp / "state/audit/ca.jsonl") + deep_record_line(k_deep) + "\n");
    require_one_line_error(
        cli("agent register --dir state --agent agent-7 --owner o --purpose p", tmp),
        "nested deeper than 256");
}

// ---- item 6: the export verifier binds signers and never skips re-deriving ---------------------

namespace {

/// A state directory with a CA, agent-7 registered with an approved scope and a certificate,
/// and its log in STATE/audit/agent-7.jsonl written at the times given.
struct ExportState {
    TempDir tmp;
    std::string dir = tmp / "state";
    ManualClock clock{utc(2024, 1, 15, 6, 0, 0)};
    std::shared_ptr<SoftwareKms> kms;
    std::shared_ptr<LocalCa> ca;
    KeyHandle agent_key;
    std::optional<AgentCertificate> cert;

    ExportState() {
        fs::create_directories(dir + "/audit");
        kms = SoftwareKms::open(dir + "/keys", k_passphrase);
        LocalCaOptions options;
        options.state_dir = dir;
        options.crl_validity = std::chrono::hours(48);
        ca = LocalCa::init(kms, clock, options);
        ca->register_agent({"agent-7", "Desk 3", "market making", clock.now_ns(), "J. Roe"});
        const Scope scope = parse_scope_json(test::seed_scope_json);
        ca->record_approval(approve_scope(*kms, "agent-7", "A. Officer", scope, clock.now_ns()),
                            scope);
        agent_key = kms->create_key("agent:agent-7", KeyAlgorithm::ed25519);
        cert = ca->issue_for_agent("agent-7", kms->public_key(agent_key).spki_der,
                                   std::chrono::hours(48));
    }

    AuditSigner agent_signer() { return AuditSigner{*kms, agent_key, cert->fingerprint()}; }

    /// The agent's log with one record at each time (a guard.halted every fifth, which the
    /// timeline shows), a checkpoint every `every` records.
    void write_agent_log(const std::vector<TimeNs>& times, std::uint64_t every = 4) {
        FileAuditSink sink(dir + "/audit/agent-7.jsonl");
        AuditWriterOptions o{"agent-7", "agent-7", cert->fingerprint(), every};
        AuditLogWriter log(sink, clock, agent_signer(), o, agent_signer());
        for (std::size_t i = 0; i < times.size(); ++i) {
            clock.set(times[i]);
            if (i % 5 == 4)
                log.append(audit_event::guard_halted,
                           R"({"by":"M. Rossi","reason":"halt )" + std::to_string(i) + "\"}");
            else
                log.append(audit_event::order_allowed, order_payload(static_cast<int>(i)));
        }
        log.close();
    }

    ExportSummary export_to(const std::string& out, std::optional<TimeNs> from = std::nullopt,
                            std::optional<TimeNs> to = std::nullopt) {
        ExportOptions o;
        o.state_dir = dir;
        o.agent = "agent-7";
        o.out_dir = out;
        o.from_ns = from;
        o.to_ns = to;
        o.write_tarball = false;
        return export_package(*ca, *kms, o, clock);
    }

    /// What a firm holding its CA key could do: hash every file into the manifest again and
    /// sign it (docs/export.md).
    void reseal(const std::string& pkg, json manifest) {
        json files = json::array();
        for (const auto& f : manifest["files"]) {
            const std::string p = f["path"].get<std::string>();
            const std::string bytes = read_text(pkg + "/" + p);
            files.push_back({{"path", p},
                             {"sha256", export_detail::sha256_hex(bytes)},
                             {"bytes", bytes.size()}});
        }
        manifest["files"] = files;
        const std::string text = manifest.dump(2) + "\n";
        write_text(pkg + "/manifest.json", text);
        const std::string hash = export_detail::sha256_hex(text);
        const auto sig =
            kms->sign(kms->find_key("ca"), "kakunin-export-manifest/v1\n" + hash + "\n");
        json j = json::parse(read_text(pkg + "/manifest.sig"));
        j["manifest_sha256"] = hash;
        j["signature"] = base64_encode(sig.data(), sig.size());
        write_text(pkg + "/manifest.sig", j.dump(2) + "\n");
    }
};

std::vector<TimeNs> every_minute(TimeNs from, int n) {
    std::vector<TimeNs> t;
    for (int i = 0; i < n; ++i) t.push_back(from + i * 60'000 * ms_ns);
    return t;
}

}  // namespace

TEST_CASE("export verify: agent history made with the CA key alone is refused",
          "[hardening][export][cli]") {
    ExportState s;
    s.write_agent_log(every_minute(utc(2024, 1, 15, 7), 12));
    const std::string pkg = s.tmp / "pkg";
    s.export_to(pkg);
    require_ok(cli("export verify " + shell_quote(pkg), s.tmp));

    // Fabricated: unsigned records of agent-7 under one checkpoint signed by the CA key, with
    // recomputed proofs, manifest counts, timeline and report, resealed with the CA key.
    const TrustAnchor anchor = s.ca->trust_anchor();
    ManualClock clock(utc(2024, 1, 15, 7));
    LogSpec spec{"agent-7", "agent-7", s.cert->fingerprint(), 0};
    const auto lines =
        memory_log(clock, AuditSigner{*s.kms, s.kms->find_key("ca"), anchor.fingerprint()},
                   std::nullopt, spec, 6);
    REQUIRE(lines.size() == 7);
    MerkleTree tree;
    for (int i = 0; i < 6; ++i) tree.append(parse_audit_record(lines[i]).leaf_hash());
    const AuditCheckpoint cp = parse_audit_checkpoint(lines[6]);
    std::string inclusion;
    for (std::uint64_t seq = 0; seq < 6; ++seq) {
        json path = json::array();
        for (const auto& h : tree.inclusion_proof(seq, 6)) path.push_back(to_hex(h));
        inclusion += json{{"seq", seq},
                          {"leaf_hash", to_hex(tree.leaf(seq))},
                          {"checkpoint_size", 6},
                          {"checkpoint_root", to_hex(cp.root)},
                          {"path", path}}
                         .dump() +
                     "\n";
    }
    write_text(pkg + "/audit/extract.jsonl", lines_text(lines));
    write_text(pkg + "/audit/latest-checkpoint.jsonl", lines[6] + "\n");
    write_text(pkg + "/proofs/inclusion.jsonl", inclusion);
    write_text(pkg + "/proofs/consistency.jsonl", "");
    json m = json::parse(read_text(pkg + "/manifest.json"));
    m["audit"]["records"] = 6;
    m["audit"]["first_seq"] = 0;
    m["audit"]["last_seq"] = 5;
    m["audit"]["checkpoints"] = 1;
    m["audit"]["log_records"] = 6;
    m["audit"]["unsigned_records"] = 6;
    m["audit"]["covering_checkpoint"] = {
        {"size", 6}, {"root", to_hex(cp.root)}, {"ts_ns", cp.ts_ns}};
    m["audit"]["latest_checkpoint"] = m["audit"]["covering_checkpoint"];
    export_detail::PackageView view = export_detail::load_package_view(pkg, m);
    view.timeline = export_detail::build_timeline("agent-7", view.extract, view.ca_log,
                                                  std::nullopt, std::nullopt);
    write_text(pkg + "/timeline.json", view.timeline.dump(2) + "\n");
    write_text(pkg + "/report.html", export_detail::render_report(view));
    s.reseal(pkg, m);

    const Run r = cli("export verify " + shell_quote(pkg), s.tmp);
    require_one_line_error(r, "audit/extract.jsonl line 7: signed by " + anchor.fingerprint());
    CHECK_THAT(r.err, Catch::Contains(", a CA certificate"));
    const ExportVerifyResult v = verify_export_package(pkg);
    CHECK_FALSE(v.ok);
    CHECK(v.file == "audit/extract.jsonl");
}

TEST_CASE("export verify: another generator version skips no check", "[hardening][export][cli]") {
    ExportState s;
    s.write_agent_log(every_minute(utc(2024, 1, 15, 7), 12));
    const std::string pkg = s.tmp / "pkg";
    s.export_to(pkg);
    json m = json::parse(read_text(pkg + "/manifest.json"));
    m["generator"]["version"] = "99.0.0";

    SECTION("a doctored timeline") {
        std::string t = read_text(pkg + "/timeline.json");
        const std::size_t pos = t.find("M. Rossi");
        REQUIRE(pos != std::string::npos);
        t.replace(pos, 8, "J. Roe  ");
        write_text(pkg + "/timeline.json", t);
        s.reseal(pkg, m);
        require_one_line_error(cli("export verify " + shell_quote(pkg), s.tmp),
                               "differs from the timeline the records "
                               "produce (the package says it was made by kakunin '99.0.0'");
    }
    SECTION("a doctored report") {
        std::string html = read_text(pkg + "/report.html");
        const std::size_t pos = html.find("agent-7");
        REQUIRE(pos != std::string::npos);
        html.replace(pos, 7, "agent-8");
        write_text(pkg + "/report.html", html);
        s.reseal(pkg, m);
        require_one_line_error(cli("export verify " + shell_quote(pkg), s.tmp),
                               "report.html: differs from the report");
    }
}

// ---- ts_ns is not monotonic in seq order: the period ------------------------------------------

TEST_CASE("export: a period whose ts go back across its boundaries exports all its records",
          "[hardening][export]") {
    ExportState s;
    const TimeNs from = utc(2024, 1, 15, 8), to = utc(2024, 1, 15, 9);
    // As four trading threads write them: each record's time was read before the log's lock,
    // so ts_ns steps back by a few milliseconds now and then, here right across both ends.
    const std::vector<TimeNs> times = {
        from - 30 * ms_ns, from - 2 * ms_ns, from + 1 * ms_ns,  from - 1 * ms_ns,  // seq 0..3
        from + 3 * ms_ns,  from + 2 * ms_ns, from + 10 * ms_ns,                    // 4..6
        to - 5 * ms_ns,    to + 2 * ms_ns,   to - 1 * ms_ns,    to,                // 7..10
        to + 4 * ms_ns,    to + 1 * ms_ns,   to + 30 * ms_ns,                      // 11..13
    };
    s.write_agent_log(times, 3);
    const std::string pkg = s.tmp / "period";
    const ExportSummary sum = s.export_to(pkg, from, to);
    // From the first record in the period (seq 2) to the last (seq 10), contiguous: seq 3 and 8
    // lie outside the period but between its records, so they are in the extract too.
    CHECK(sum.first_seq == 2);
    CHECK(sum.last_seq == 10);
    CHECK(sum.records == 9);
    std::vector<std::uint64_t> seqs;
    for (const auto& l :
         export_detail::parse_json_lines(read_text(pkg + "/audit/extract.jsonl"), "extract"))
        if (l.is_record()) seqs.push_back(l.value["seq"].get<std::uint64_t>());
    for (std::uint64_t seq = 0; seq < times.size(); ++seq) {
        INFO("seq " << seq);
        const bool in_period = times[seq] >= from && times[seq] <= to;
        const bool exported = std::find(seqs.begin(), seqs.end(), seq) != seqs.end();
        if (in_period) CHECK(exported);
        CHECK(exported == (seq >= 2 && seq <= 10));
    }
    const ExportVerifyResult v = verify_export_package(pkg);
    INFO(v.message);
    REQUIRE(v.ok);
    CHECK(v.records == 9);
    // The timeline selects by each record's own time: the halts at seq 4 and 9 are in the
    // period (seq 14 would be the next).
    const json timeline = json::parse(read_text(pkg + "/timeline.json"));
    std::vector<std::uint64_t> on_timeline;
    for (const auto& e : timeline)
        if (e["log"] == "agent") on_timeline.push_back(e["seq"].get<std::uint64_t>());
    CHECK(on_timeline == std::vector<std::uint64_t>{4, 9});
    require_ok(cli("export verify " + shell_quote(pkg), s.tmp));
}
