// The compliance export end to end: a real CA (LocalCa on a software KMS with key files) in a
// temporary state directory, a real Guard writing the agent's signed audit log, incident and CA
// log records written the way the Guard and the CA write them, then `export_package`, the
// verifier, every kind of tampering (plain, and re-sealed with the CA's own key, as a firm
// doctoring its evidence could), the period filter, PostgreSQL as the log's source, the
// command line with a replay log, the tar.gz archive read back by GNU tar, and report.html
// rendered by headless Chromium.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "kakunin/audit.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/export.hpp"
#include "kakunin/guard.hpp"
#include "kakunin/incident.hpp"
#include "kakunin/postgres.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/software_kms.hpp"
#include "kakunin/testing.hpp"
#include "kakunin/version.hpp"
#include "pg_test_support.hpp"
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

constexpr const char* k_passphrase = "export test passphrase";
const std::string k_agent = "agent-7";
const std::string k_officer = "A. Schmidt (compliance)";

struct TempDir : kakunin::test::TempDir {
    TempDir() : kakunin::test::TempDir("kakunin-export") {}
};

std::string hex_sha256(const std::string& bytes) { return to_hex(kakunin::sha256(bytes)); }

constexpr TimeNs minute_ns = 60'000'000'000LL;
constexpr TimeNs day_ns = 1440 * minute_ns;

/// Monday 2024-01-15, the second week: the first one was observed for the baseline.
TimeNs day(unsigned h, unsigned m = 0) { return utc(2024, 1, 15, h, m, 0); }

/// An order inside the seed scope. Order holds views: every text here is a string literal.
Order make_order(const char* quantity, const char* region = "eu-west-1",
                 const char* counterparty = "exchange_a") {
    Order o;
    o.client_order_id = "c-42";
    o.instrument = "BTC_EUR";
    o.counterparty = counterparty;
    o.region = region;
    o.side = Side::buy;
    o.quantity = parse_decimal(quantity);
    o.price = parse_decimal("40000.00");
    o.reference_price = o.price;
    return o;
}

/// A state directory as `kakunin ca init`, `agent register`, `scope approve`, `baseline
/// approve` and `cert issue` leave it; the agent's log written by a real Guard enforcing the
/// approved baseline through a trading day with a kill switch, a warning incident that a
/// person acknowledges and resolves, an automatic revocation with its signed review, a renewed
/// certificate and a signed re-enable; and the CA's own log.
struct State {
    TempDir tmp;
    std::string dir = tmp / "state";
    ManualClock clock{utc(2024, 1, 8, 6, 0, 0)};
    std::shared_ptr<SoftwareKms> kms;
    std::shared_ptr<LocalCa> ca;
    KeyHandle agent_key;
    std::optional<AgentCertificate> cert, renewed;
    std::optional<ApprovedBaseline> baseline;
    std::string log_path = dir + "/audit/" + k_agent + ".jsonl";

    /// Each Guard gets its own sink from `make_sink` (default: the file log at log_path).
    using SinkFactory = std::function<std::shared_ptr<AuditSink>()>;
    SinkFactory make_sink;

    explicit State(SinkFactory sinks = nullptr) {
        make_sink = sinks
                        ? std::move(sinks)
                        : SinkFactory([this] { return std::make_shared<FileAuditSink>(log_path); });
        fs::create_directories(dir + "/audit");
        kms = SoftwareKms::open(dir + "/keys", k_passphrase);
        LocalCaOptions options;
        options.state_dir = dir;
        options.crl_validity = std::chrono::hours(48);  // one CRL for the trading day
        ca = LocalCa::init(kms, clock, options);
        ca->register_agent(
            {k_agent, "Desk 3 (J. Roe)", "BTC/ETH/SOL market making", clock.now_ns(), "J. Roe"});
        const Scope scope = parse_scope_json(test::seed_scope_json);
        const ScopeApproval approval =
            approve_scope(*kms, k_agent, k_officer, scope, clock.now_ns());
        ca->record_approval(approval, scope);
        learn_baseline(scope);
        agent_key = kms->create_key("agent:" + k_agent, KeyAlgorithm::ed25519);
        clock.set(day(6, 30));
        cert = ca->issue_for_agent(k_agent, kms->public_key(agent_key).spki_der,
                                   std::chrono::hours(48));
        // Another agent of the same CA: its records in the CA log are not this agent's.
        ca->register_agent(
            {"agent-9", "Desk 5", "arbitrage (other desk)", clock.now_ns(), "K. Lee"});
        const KeyHandle other = kms->create_key("agent:agent-9", KeyAlgorithm::ed25519);
        ca->record_approval(approve_scope(*kms, "agent-9", k_officer, scope, clock.now_ns()),
                            scope);
        (void)ca->issue_for_agent("agent-9", kms->public_key(other).spki_der);
        trade();
    }

    /// A week of observed orders (weekdays 07:00-19:58, one every 2 minutes, 0.05-0.95 BTC,
    /// all from eu-west-1), finalised, stored and approved by the officer (FileBaselineStore).
    void learn_baseline(const Scope& scope) {
        BaselineBuilder b(scope, k_agent);
        b.start(utc(2024, 1, 8));
        unsigned n = 0;
        for (TimeNs t = utc(2024, 1, 8, 7); t < utc(2024, 1, 15); t += 2 * minute_ns) {
            const TimeNs in_day = t % day_ns;
            if (in_day < 7 * 60 * minute_ns || in_day >= 20 * 60 * minute_ns) continue;
            if (minute_of_week(t) >= 5 * 1440) continue;  // weekend
            static const char* sizes[] = {"0.05", "0.15", "0.25", "0.35", "0.45",
                                          "0.55", "0.65", "0.75", "0.85", "0.95"};
            b.observe(make_order(sizes[n++ % 10]), t);
        }
        const Baseline learned = b.finalize(utc(2024, 1, 15));
        FileBaselineStore store(dir);
        const StoredBaseline stored = store.put_baseline(k_agent, to_json(learned));
        clock.set(utc(2024, 1, 15, 6, 10));
        const BaselineApproval approval =
            approve_baseline(*kms, learned, k_officer, clock.now_ns(), stored.version);
        store.put_approval(approval);
        json record = json::parse(to_json(approval));  // as `kakunin baseline approve` does
        record["observed_from_ns"] = learned.observed_from_ns;
        record["observed_to_ns"] = learned.observed_to_ns;
        ca->record_event("baseline.approved", record.dump());
        baseline = ApprovedBaseline{learned, approval};
    }

    void trade() {
        GuardOptions options;
        AuditTrailOptions audit{make_sink()};
        audit.log_id = k_agent;
        audit.checkpoint_every = 7;
        audit.checkpoint_interval = std::chrono::milliseconds(0);  // deterministic: every 7
        options.audit = audit;
        options.baseline = baseline;
        options.authority = ca;
        options.incident_thread = false;
        std::optional<Guard> first;
        first.emplace(
            GuardCredentials{*cert, ca->trust_anchor(), ca->current_crl(), kms, agent_key}, clock,
            options);
        Guard& guard = *first;
        static const char* const sizes[] = {"0.25", "0.5", "0.75", "0.4"};
        auto at = [&](unsigned h, unsigned m) { clock.set(day(h, m)); };
        // 07:00-11:50 every 10 minutes; every fifth order to a counterparty outside the scope.
        for (int i = 0; i < 30; ++i) {
            clock.set(day(7) + i * 10 * minute_ns);
            (void)guard.check(
                make_order(sizes[i % 4], "eu-west-1", i % 5 == 4 ? "exchange_z" : "exchange_a"));
            if (i == 18) guard.halt("desk kill switch", "M. Rossi");
            if (i == 20) guard.resume("A. Schmidt (compliance)");
        }
        // 12:00 an order from a region the agent never used: a warning and an incident.
        at(12, 0);
        {
            const Decision d = guard.check(make_order("0.25", "eu-central-1"));
            std::string why;
            for (ReasonCode r : d.reasons) why += std::string(to_string(r)) + " ";
            INFO("score " << d.score_ppm << " reasons " << why);
            REQUIRE(d.verdict == Verdict::warn);
        }
        guard.process_incidents();
        const std::string warning = guard.incidents().at(0).id;
        at(12, 2);
        guard.acknowledge_incident(warning, "M. Rossi", "checking the new region");
        at(12, 10);
        guard.resolve_incident(warning, "M. Rossi", "eu-central-1 confirmed by the desk");
        // 13:00 nine BTC from that region: revoked, halted, replacement requested.
        at(13, 0);
        REQUIRE(guard.check(make_order("9", "eu-central-1")).verdict == Verdict::reject);
        guard.process_incidents();
        REQUIRE(ca->is_revoked(cert->serial()));
        // 13:30 the signed review, recorded in the CA log (`kakunin incident review`).
        at(13, 30);
        ca->record_event("review.signed", to_json(sign_incident_review(
                                              *kms, k_agent, guard.incidents().at(1).id, k_officer,
                                              "stale position feed", clock.now_ns())));
        // 14:00 the revocation was for keyCompromise, so the key is done: a replacement key, a
        // certificate for it, the signed re-enable (RTS 6 Art. 15(3)) recorded in the CA log
        // as `kakunin agent reenable` does, and a new Guard on the same log.
        at(14, 0);
        const std::string halt_id = guard.current_halt()->halt_id;
        REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(10)));
        first.reset();
        audit.sink.reset();  // the file sink's lock goes with its last owner
        options.audit->sink.reset();
        options.audit->sink = make_sink();
        replace(options, halt_id, sizes);
    }

    void replace(GuardOptions options, const std::string& halt_id, const char* const* sizes) {
        const KeyHandle replacement =
            kms->create_key("agent:" + k_agent + "#2", KeyAlgorithm::ed25519);
        renewed = ca->issue_for_agent(k_agent, kms->public_key(replacement).spki_der,
                                      std::chrono::hours(48));
        const Reenable reenable =
            sign_reenable(*kms, k_agent, halt_id, "B. Head of Desk",
                          "feed fixed; new key and certificate", clock.now_ns());
        ca->record_event("guard.resumed", to_json(reenable));
        // The new Guard continues the log: it restarts halted (the automatic halt is in force
        // until a signed re-enable lifts it), and the revocation for keyCompromise was of the
        // old key, not of this one.
        Guard guard(
            GuardCredentials{*renewed, ca->trust_anchor(), ca->current_crl(), kms, replacement},
            clock, options);
        REQUIRE(guard.halted());
        REQUIRE_FALSE(guard.revoked());
        guard.reenable(reenable);
        for (int i = 0; i < 4; ++i) {
            clock.set(day(14, 10) + i * 10 * minute_ns);
            REQUIRE(guard.check(make_order(sizes[i])).allowed());
        }
        REQUIRE(guard.audit()->wait_durable(std::chrono::seconds(10)));
    }
};

/// The state shared by the read-only tests (built once: key files are slow to make).
State& shared_state() {
    static State state;
    return state;
}

ExportOptions options_for(const State& s, const std::string& out) {
    ExportOptions o;
    o.state_dir = s.dir;
    o.agent = k_agent;
    o.out_dir = out;
    return o;
}

/// A clean package of the shared state, exported once; tests work on copies.
const std::string& clean_package() {
    static TempDir tmp;
    static const std::string out = [] {
        State& s = shared_state();
        const std::string o = tmp / "evidence";
        export_package(*s.ca, *s.kms, options_for(s, o), s.clock);
        return o;
    }();
    return out;
}

std::string copy_of_package(const TempDir& tmp) {
    const std::string to = tmp / "copy";
    fs::copy(clean_package(), to, fs::copy_options::recursive);
    return to;
}

ExportVerifyOptions pinned(const State& s) {
    ExportVerifyOptions o;
    o.pinned_ca = s.ca->trust_anchor().der();
    return o;
}

/// What a firm holding its own CA key could do after doctoring files: recompute every hash in
/// the manifest and sign it again (the scheme of docs/export.md, implemented here
/// independently of the exporter).
void reseal(const std::string& dir, State& s) {
    json m = json::parse(read_text(dir + "/manifest.json"));
    json files = json::array();
    for (const auto& f : m["files"]) {
        const std::string p = f["path"].get<std::string>();
        if (!fs::exists(dir + "/" + p)) continue;
        const std::string bytes = read_text(dir + "/" + p);
        files.push_back({{"path", p}, {"sha256", hex_sha256(bytes)}, {"bytes", bytes.size()}});
    }
    m["files"] = files;
    const std::string text = m.dump(2) + "\n";
    write_text(dir + "/manifest.json", text);
    const std::string hash = hex_sha256(text);
    const auto sig =
        s.kms->sign(s.kms->find_key("ca"), "kakunin-export-manifest/v1\n" + hash + "\n");
    json j = json::parse(read_text(dir + "/manifest.sig"));
    j["manifest_sha256"] = hash;
    j["signature"] = base64_encode(sig.data(), sig.size());
    write_text(dir + "/manifest.sig", j.dump(2) + "\n");
}

/// Replaces the first occurrence of `from` after `after` (if given) in a package file.
void alter(const std::string& path, const std::string& from, const std::string& to,
           const std::string& after = "") {
    std::string text = read_text(path);
    const std::size_t start = after.empty() ? 0 : text.find(after);
    REQUIRE(start != std::string::npos);
    const std::size_t pos = text.find(from, start);
    INFO(path << " has no '" << from << "'");
    REQUIRE(pos != std::string::npos);
    text.replace(pos, from.size(), to);
    write_text(path, text);
}

std::string first_certificate(const std::string& dir) {
    for (const auto& e : fs::directory_iterator(dir + "/certificates"))
        if (e.path().extension() == ".pem" && e.path().filename() != "ca.pem")
            return "certificates/" + e.path().filename().string();
    FAIL("no agent certificate in the package");
    return "";
}

void require_failure(const ExportVerifyResult& r, const std::string& file,
                     const std::string& fragment) {
    INFO("verify said: " << r.message);
    REQUIRE_FALSE(r.ok);
    CHECK(r.file == file);
    CHECK_THAT(r.message, Catch::StartsWith(file));
    CHECK_THAT(r.message, Catch::Contains(fragment));
    CHECK(r.message.find('\n') == std::string::npos);
}

std::vector<json> json_lines(const std::string& path) {
    std::vector<json> out;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) out.push_back(json::parse(line));
    return out;
}

}  // namespace

TEST_CASE("export: a clean package holds the evidence and verifies", "[export]") {
    State& s = shared_state();
    const std::string& dir = clean_package();
    const ExportVerifyResult r = verify_export_package(dir, pinned(s));
    INFO(r.message);
    REQUIRE(r.ok);
    CHECK(r.ca_pinned);
    CHECK(r.agent == k_agent);
    CHECK(r.certificates == 2);  // the revoked one and its renewal
    CHECK(r.baselines == 1);
    std::uint64_t log_records = 0;
    for (const auto& l : json_lines(s.log_path)) log_records += l["kind"] == "record";
    CHECK(log_records > 36);  // 36 orders, halts, resumes, incidents, rotation
    CHECK(r.records == log_records);
    CHECK(r.records == r.inclusion_proofs);
    // One every 7 records, and one as each of the two Guards closed the log.
    CHECK(r.checkpoints >= (log_records + 6) / 7);
    CHECK(r.checkpoints <= (log_records + 6) / 7 + 1);
    CHECK(r.consistency_proofs + 1 == r.checkpoints);
    std::uint64_t ca_records = 0;
    for (const auto& l : json_lines(dir + "/audit/ca.jsonl")) ca_records += l["kind"] == "record";
    CHECK(r.ca_log_records == ca_records);
    CHECK(ca_records >= 12);  // created, CRLs, 2 registrations, 2 approvals, 3 issued, revoked...

    const json m = json::parse(read_text(dir + "/manifest.json"));
    CHECK(m["format"] == "kakunin-export/v1");
    CHECK(m["agent"] == k_agent);
    CHECK(m["log_id"] == k_agent);
    CHECK(m["generator"]["version"] == version_string);
    CHECK(m["audit"]["first_seq"] == 0);
    std::vector<std::string> paths;
    for (const auto& f : m["files"]) paths.push_back(f["path"]);
    for (const std::string& p : std::vector<std::string>{
             "registration.json", "certificates/ca.pem",
             "certificates/" + s.cert->serial() + ".pem",
             "certificates/" + s.cert->serial() + ".json",
             "certificates/" + s.renewed->serial() + ".pem",
             "certificates/" + s.renewed->serial() + ".json", "crl.pem", "approvals/scope.json",
             "baseline/1.json", "baseline/1.approval.json", "audit/extract.jsonl",
             "audit/latest-checkpoint.jsonl", "audit/ca.jsonl", "proofs/inclusion.jsonl",
             "proofs/consistency.jsonl", "timeline.json", "report.html"}) {
        INFO(p);
        CHECK(std::find(paths.begin(), paths.end(), p) != paths.end());
    }
    // Every file of the directory is in the manifest with its SHA-256.
    for (const auto& f : m["files"])
        CHECK(hex_sha256(read_text(dir + "/" + f["path"].get<std::string>())) == f["sha256"]);

    // The regulatory mapping cites the articles as the regulations' texts number them.
    const std::string mapping = m["regulatory_mapping"].dump();
    for (const char* article : {"Art. 68(9)", "Art. 94", "Art. 15(1)", "Art. 15(3)", "Art. 12",
                                "Art. 16", "Delegated Regulation (EU) 2025/1140"})
        CHECK_THAT(mapping, Catch::Contains(article));

    // The certificate's scope, decoded, is the approved scope.
    const json info = json::parse(read_text(dir + "/certificates/" + s.cert->serial() + ".json"));
    CHECK(info["scope"] == json::parse(to_json(parse_scope_json(test::seed_scope_json))));
    CHECK(info["revocation"]["listed_on_crl"] == true);
    CHECK_THAT(info["revocation"]["reason"].get<std::string>(), Catch::Contains("anomaly score"));
    const json renewed =
        json::parse(read_text(dir + "/certificates/" + s.renewed->serial() + ".json"));
    CHECK_FALSE(renewed.contains("revocation"));

    // The extract is the log's lines verbatim, checkpoints included; the agent's whole log.
    CHECK(read_text(dir + "/audit/extract.jsonl") == read_text(s.log_path));

    // Each record checks on its own, by the single-record verifier of the audit library.
    AuditCertificates certs;
    certs.add_der(s.cert->der());
    certs.add_der(s.renewed->der());
    const auto extract = json_lines(dir + "/audit/extract.jsonl");
    const auto proofs = json_lines(dir + "/proofs/inclusion.jsonl");
    std::vector<std::string> lines;
    {
        std::ifstream in(dir + "/audit/extract.jsonl");
        std::string l;
        while (std::getline(in, l)) lines.push_back(l);
    }
    std::size_t p = 0;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        if (extract[i]["kind"] != "record") continue;
        const json& proof = proofs.at(p++);
        CHECK(proof["seq"] == extract[i]["seq"]);
        std::optional<AuditCheckpoint> cp;
        for (std::size_t k = i; k < lines.size() && !cp; ++k)
            if (extract[k]["kind"] == "checkpoint" &&
                extract[k]["size"] == proof["checkpoint_size"])
                cp = parse_audit_checkpoint(lines[k]);
        REQUIRE(cp);
        std::vector<MerkleHash> path;
        for (const auto& h : proof["path"])
            path.push_back(merkle_hash_from_hex(h.get<std::string>()));
        CHECK(verify_audit_record_inclusion(lines[i], path, *cp, certs) == "");
    }
    CHECK(p == proofs.size());

    // manifest.sig: the CA key's signature over the documented text.
    const json sig = json::parse(read_text(dir + "/manifest.sig"));
    const std::string text =
        "kakunin-export-manifest/v1\n" + hex_sha256(read_text(dir + "/manifest.json")) + "\n";
    const auto raw = base64_decode(sig["signature"].get<std::string>());
    CHECK(verify_audit_signature(
        PublicKeyInfo{KeyAlgorithm::ed25519, s.ca->trust_anchor().public_key()},
        reinterpret_cast<const std::uint8_t*>(text.data()), text.size(), raw.data(), raw.size()));

    // The timeline: warnings, incidents, escalation, revocation, halts, sign-offs, with who.
    const json timeline = json::parse(read_text(dir + "/timeline.json"));
    auto find = [&](const std::string& event, const std::string& who) {
        for (const auto& e : timeline)
            if (e["event"] == event && e["who"] == who) return e;
        return json();
    };
    const std::string kakunin = "kakunin (automatic)";
    CHECK(find("guard.halted", "M. Rossi")["detail"] == "desk kill switch");
    CHECK(find("guard.resumed", "A. Schmidt (compliance)")["log"] == "agent");
    const json warned = find("order.warned", kakunin);
    CHECK(warned["score_ppm"].get<std::uint64_t>() >= 750000);
    CHECK(warned["components_ppm"]["origin"].get<std::uint64_t>() >= 750000);
    CHECK(warned["time"] == "2024-01-15T12:00:00Z");
    const json opened = find("incident.opened", kakunin);
    CHECK(opened["score_ppm"] == warned["score_ppm"]);
    const std::string warning = opened["incident"];
    CHECK(find("incident.acknowledged", "M. Rossi")["incident"] == warning);
    CHECK_THAT(find("incident.acknowledged", "M. Rossi")["detail"].get<std::string>(),
               Catch::Contains("checking the new region"));
    CHECK(find("incident.resolved", "M. Rossi")["incident"] == warning);
    const json trigger = find("order.rejected", kakunin);
    CHECK(trigger["score_ppm"].get<std::uint64_t>() >= 850000);
    CHECK(trigger["time"] == "2024-01-15T13:00:00Z");
    const json revoked = find("incident.revoked", kakunin);
    CHECK(revoked["score_ppm"] == trigger["score_ppm"]);
    CHECK_THAT(revoked["detail"].get<std::string>(), Catch::Contains(s.cert->serial()));
    CHECK_FALSE(find("guard.halted", "kakunin").is_null());
    CHECK(find("incident.replacement_requested", kakunin)["incident"] == revoked["incident"]);
    const json review = find("review.signed", k_officer);
    CHECK(review["incident"] == revoked["incident"]);
    CHECK_THAT(review["detail"].get<std::string>(), Catch::Contains("stale position feed"));
    CHECK_THAT(review["detail"].get<std::string>(), Catch::Contains("signed (ed25519)"));
    CHECK_THAT(find("guard.resumed", "B. Head of Desk")["detail"].get<std::string>(),
               Catch::Contains("signed (ed25519)"));
    CHECK(find("scope.approved", k_officer)["log"] == "ca");
    CHECK(find("baseline.approved", k_officer)["log"] == "ca");
    CHECK(find("certificate.revoked", "CA")["log"] == "ca");
    CHECK(find("agent.registered", "J. Roe")["detail"] ==
          "owner: Desk 3 (J. Roe); purpose: BTC/ETH/SOL market making");
    for (const auto& e : timeline) CHECK(e["event"] != "crl.issued");
    for (const auto& e : timeline) CHECK(e["event"] != "order.allowed");
    for (const auto& e : timeline)
        CHECK(e["detail"].get<std::string>().find("other desk") == std::string::npos);
    for (std::size_t i = 1; i < timeline.size(); ++i)
        CHECK(timeline[i - 1]["ts_ns"].get<TimeNs>() <= timeline[i]["ts_ns"].get<TimeNs>());

    // The report: self-contained, no script, nothing fetched.
    const std::string html = read_text(dir + "/report.html");
    CHECK_THAT(html, Catch::Contains("<svg id=\"score-chart\""));
    CHECK_THAT(html, Catch::Contains("data-threshold=\"0.750\""));
    CHECK_THAT(html, Catch::Contains("data-threshold=\"0.850\""));
    CHECK_THAT(html, Catch::Contains(k_officer));
    CHECK_THAT(html, Catch::Contains("stale position feed"));
    CHECK(html.find("<script") == std::string::npos);
    CHECK(html.find(" src=") == std::string::npos);
    CHECK(html.find(" href=") == std::string::npos);
    CHECK(html.find("url(") == std::string::npos);
}

TEST_CASE("export: DIR.tar.gz beside the package, read back by GNU tar", "[export]") {
    clean_package();
    const std::string tarball = clean_package() + ".tar.gz";
    REQUIRE(fs::exists(tarball));
    TempDir tmp;
    const auto r = kakunin_test::run_command(
        "tar -xzf " + shell_quote(tarball) + " -C " + shell_quote(tmp.path().string()), tmp.path());
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
    const std::string extracted = tmp / "evidence";
    const json m = json::parse(read_text(extracted + "/manifest.json"));
    for (const auto& f : m["files"]) {
        const std::string p = f["path"].get<std::string>();
        CHECK(read_text(extracted + "/" + p) == read_text(clean_package() + "/" + p));
    }
    CHECK(read_text(extracted + "/manifest.sig") == read_text(clean_package() + "/manifest.sig"));
    const ExportVerifyResult v = verify_export_package(extracted, pinned(shared_state()));
    INFO(v.message);
    CHECK(v.ok);
}

TEST_CASE("export verify: any altered, missing or extra file is named", "[export][tamper]") {
    State& s = shared_state();
    TempDir tmp;
    const std::string dir = copy_of_package(tmp);
    const std::string cert = first_certificate(dir);

    SECTION("a record byte") {
        alter(dir + "/audit/extract.jsonl", "\"quantity\":\"0.25\"", "\"quantity\":\"0.35\"");
        require_failure(verify_export_package(dir), "audit/extract.jsonl", "SHA-256 differs");
    }
    SECTION("an inclusion proof") {
        alter(dir + "/proofs/inclusion.jsonl", "\"path\":[\"", "\"path\":[\"0");
        require_failure(verify_export_package(dir), "proofs/inclusion.jsonl", "SHA-256 differs");
    }
    SECTION("a checkpoint") {
        alter(dir + "/audit/extract.jsonl", "\"size\":7", "\"size\":6");
        require_failure(verify_export_package(dir), "audit/extract.jsonl", "SHA-256 differs");
    }
    SECTION("a certificate") {
        alter(dir + "/" + cert, "A", "B", "-----BEGIN CERTIFICATE-----\n");
        require_failure(verify_export_package(dir), cert, "SHA-256 differs");
    }
    SECTION("the baseline") {
        alter(dir + "/baseline/1.json", "\"currency\":\"EUR\"", "\"currency\":\"USD\"");
        require_failure(verify_export_package(dir), "baseline/1.json", "SHA-256 differs");
    }
    SECTION("the timeline") {
        alter(dir + "/timeline.json", "M. Rossi", "J. Roe");
        require_failure(verify_export_package(dir), "timeline.json", "SHA-256 differs");
    }
    SECTION("report.html") {
        alter(dir + "/report.html", "stale position feed", "planned test");
        require_failure(verify_export_package(dir), "report.html", "SHA-256 differs");
    }
    SECTION("the manifest itself") {
        alter(dir + "/manifest.json", "\"agent\": \"agent-7\"", "\"agent\": \"agent-8\"");
        require_failure(verify_export_package(dir), "manifest.json", "altered after it was signed");
    }
    SECTION("the signature") {
        json sig = json::parse(read_text(dir + "/manifest.sig"));
        std::string b64 = sig["signature"];
        b64[0] = b64[0] == 'A' ? 'B' : 'A';
        sig["signature"] = b64;
        write_text(dir + "/manifest.sig", sig.dump(2) + "\n");
        require_failure(verify_export_package(dir), "manifest.sig", "does not verify");
    }
    SECTION("an extra file") {
        write_text(dir + "/proofs/extra.jsonl", "{}\n");
        require_failure(verify_export_package(dir), "proofs/extra.jsonl",
                        "not listed in the manifest");
    }
    SECTION("a missing file") {
        fs::remove(dir + "/proofs/consistency.jsonl");
        require_failure(verify_export_package(dir), "proofs/consistency.jsonl",
                        "listed in the manifest but missing");
    }
    SECTION("another CA than the pinned one") {
        TestAuthority other;
        ExportVerifyOptions o;
        o.pinned_ca = other.ca().trust_anchor().der();
        require_failure(verify_export_package(dir, o), "certificates/ca.pem", "not the pinned CA");
        CHECK(verify_export_package(dir, pinned(s)).ok);
    }
}

TEST_CASE("export verify: doctored evidence re-signed with the firm's own CA key is caught",
          "[export][tamper]") {
    State& s = shared_state();
    TempDir tmp;
    const std::string dir = copy_of_package(tmp);
    const std::string cert = first_certificate(dir);
    const std::string extract = dir + "/audit/extract.jsonl";

    SECTION("nothing altered: resealing alone changes nothing") {
        reseal(dir, s);
        const ExportVerifyResult r = verify_export_package(dir, pinned(s));
        INFO(r.message);
        CHECK(r.ok);
    }
    SECTION("a record byte: its signature, and its proof, no longer hold") {
        const auto before = json_lines(extract);
        alter(extract, "\"quantity\":\"0.25\"", "\"quantity\":\"0.35\"");
        std::size_t changed = 0;  // the first line holding that quantity
        while (before.at(changed).dump().find("\"quantity\":\"0.25\"") == std::string::npos)
            ++changed;
        reseal(dir, s);
        const ExportVerifyResult r = verify_export_package(dir, pinned(s));
        require_failure(r, "audit/extract.jsonl", "signature does not verify");
        CHECK(r.line == changed + 1);
        CHECK(r.seq == before[changed]["seq"].get<std::uint64_t>());
    }
    SECTION("a record removed") {
        std::string text = read_text(extract);
        const std::size_t second = text.find('\n') + 1;
        text.erase(second, text.find('\n', second) + 1 - second);
        write_text(extract, text);
        reseal(dir, s);
        const ExportVerifyResult r = verify_export_package(dir, pinned(s));
        require_failure(r, "audit/extract.jsonl", "expected seq 1, found 2");
        CHECK(r.line == 2);
    }
    SECTION("an inclusion proof") {
        // One hash of the path of seq 3 changed, still 64 hex digits.
        std::vector<json> proofs = json_lines(dir + "/proofs/inclusion.jsonl");
        REQUIRE(proofs.at(3)["seq"] == 3);
        std::string h = proofs[3]["path"][0];
        h[0] = h[0] == '0' ? '1' : '0';
        proofs[3]["path"][0] = h;
        std::string text;
        for (const auto& p : proofs) text += p.dump() + "\n";
        write_text(dir + "/proofs/inclusion.jsonl", text);
        reseal(dir, s);
        const ExportVerifyResult r = verify_export_package(dir, pinned(s));
        require_failure(r, "proofs/inclusion.jsonl", "does not lead to the root");
        CHECK(r.line == 4);
        CHECK(r.seq == 3u);
    }
    SECTION("a checkpoint's root") {
        const json first = json_lines(extract).at(7);
        REQUIRE(first["kind"] == "checkpoint");
        const std::string root = first["root"];
        alter(extract, root, std::string(root).replace(0, 1, root[0] == 'a' ? "b" : "a"));
        reseal(dir, s);
        const ExportVerifyResult r = verify_export_package(dir, pinned(s));
        require_failure(r, "audit/extract.jsonl", "checkpoint's signature does not verify");
        CHECK(r.line == 8);
    }
    SECTION("a consistency proof") {
        std::string text = read_text(dir + "/proofs/consistency.jsonl");
        REQUIRE(!text.empty());
        const std::size_t pos = text.find("\"path\":[\"") + 9;
        text[pos] = text[pos] == '0' ? '1' : '0';
        write_text(dir + "/proofs/consistency.jsonl", text);
        reseal(dir, s);
        const ExportVerifyResult r = verify_export_package(dir, pinned(s));
        require_failure(r, "proofs/consistency.jsonl", "is not shown to extend");
        CHECK(r.line == 1);
    }
    SECTION("a certificate") {
        alter(dir + "/" + cert, "A", "B", "-----BEGIN CERTIFICATE-----\nMII");
        reseal(dir, s);
        require_failure(verify_export_package(dir, pinned(s)), cert, "");
    }
    SECTION("a certificate's decoded scope") {
        const std::string info = cert.substr(0, cert.size() - 4) + ".json";
        alter(dir + "/" + info, "\"500000.00\"", "\"900000.00\"");
        reseal(dir, s);
        require_failure(verify_export_package(dir, pinned(s)), info, "not the scope decoded");
    }
    SECTION("the baseline") {
        alter(dir + "/baseline/1.json", "\"currency\":\"EUR\"", "\"currency\":\"USD\"");
        reseal(dir, s);
        require_failure(verify_export_package(dir, pinned(s)), "baseline/1.json",
                        "not the one baseline/1.approval.json approved");
    }
    SECTION("the baseline approval") {
        alter(dir + "/baseline/1.approval.json", "\"approved_at_ns\":1", "\"approved_at_ns\":2");
        reseal(dir, s);
        require_failure(verify_export_package(dir, pinned(s)), "baseline/1.approval.json",
                        "does not verify");
    }
    SECTION("the CA log") {
        alter(dir + "/audit/ca.jsonl", "arbitrage (other desk)", "arbitrage");
        reseal(dir, s);
        require_failure(verify_export_package(dir, pinned(s)), "audit/ca.jsonl",
                        "bad_record_signature");
    }
    SECTION("the timeline") {
        alter(dir + "/timeline.json", "M. Rossi", "J. Roe");
        reseal(dir, s);
        require_failure(verify_export_package(dir, pinned(s)), "timeline.json",
                        "differs from the timeline the records produce");
    }
    SECTION("report.html") {
        alter(dir + "/report.html", "stale position feed", "planned test");
        reseal(dir, s);
        require_failure(verify_export_package(dir, pinned(s)), "report.html",
                        "differs from the report the package's evidence produces");
    }
    SECTION("a required file dropped from the manifest too") {
        fs::remove(dir + "/proofs/inclusion.jsonl");
        reseal(dir, s);
        require_failure(verify_export_package(dir, pinned(s)), "proofs/inclusion.jsonl",
                        "missing: every package has it");
    }
}

TEST_CASE("export: the period filter", "[export]") {
    State& s = shared_state();
    TempDir tmp;
    ExportOptions o = options_for(s, tmp / "morning");
    o.from_ns = day(8, 0);
    o.to_ns = day(9, 55);
    const ExportSummary sum = export_package(*s.ca, *s.kms, o, s.clock);
    CHECK(sum.records == 12);  // 08:00 .. 09:50 every 10 minutes
    const ExportVerifyResult r = verify_export_package(o.out_dir, pinned(s));
    INFO(r.message);
    REQUIRE(r.ok);
    CHECK(r.records == 12);
    std::uint64_t expected = sum.first_seq;
    for (const auto& line : json_lines(o.out_dir + "/audit/extract.jsonl")) {
        if (line["kind"] != "record") continue;
        CHECK(line["seq"] == expected++);
        CHECK(line["ts_ns"].get<TimeNs>() >= *o.from_ns);
        CHECK(line["ts_ns"].get<TimeNs>() <= *o.to_ns);
    }
    CHECK(expected == sum.last_seq + 1);
    // Every record is covered: the extract ends with a checkpoint beyond the last one.
    const auto last = json_lines(o.out_dir + "/audit/extract.jsonl").back();
    CHECK(last["kind"] == "checkpoint");
    CHECK(last["size"].get<std::uint64_t>() > sum.last_seq);
    const json m = json::parse(read_text(o.out_dir + "/manifest.json"));
    CHECK(m["period"]["from_ns"] == *o.from_ns);
    CHECK(m["period"]["to_ns"] == *o.to_ns);
    // Nothing of the afternoon's incident is in this period's timeline.
    for (const auto& e : json::parse(read_text(o.out_dir + "/timeline.json"))) {
        CHECK(e["ts_ns"].get<TimeNs>() >= *o.from_ns);
        CHECK(e["ts_ns"].get<TimeNs>() <= *o.to_ns);
    }

    SECTION("a period with nothing in it is an honest, empty package") {
        ExportOptions q = options_for(s, tmp / "night");
        q.from_ns = day(22);
        q.to_ns = day(23);
        const ExportSummary e = export_package(*s.ca, *s.kms, q, s.clock);
        CHECK(e.records == 0);
        CHECK_THAT(e.notes.front(), Catch::Contains("no record in the requested period"));
        CHECK(verify_export_package(q.out_dir, pinned(s)).ok);
    }
    SECTION("from after to is refused") {
        ExportOptions q = options_for(s, tmp / "backwards");
        q.from_ns = day(10);
        q.to_ns = day(9);
        CHECK_THROWS_WITH(export_package(*s.ca, *s.kms, q, s.clock),
                          Catch::Contains("is after --to"));
        CHECK_FALSE(fs::exists(q.out_dir));
    }
}

TEST_CASE("export: refusals leave nothing behind", "[export]") {
    State s;
    TempDir tmp;
    SECTION("an output directory that holds something") {
        fs::create_directories(tmp / "busy");
        write_text(tmp / "busy/keep.txt", "mine");
        CHECK_THROWS_WITH(export_package(*s.ca, *s.kms, options_for(s, tmp / "busy"), s.clock),
                          Catch::Contains("never overwritten"));
        CHECK(read_text(tmp / "busy/keep.txt") == "mine");
    }
    SECTION("an unknown agent") {
        ExportOptions o = options_for(s, tmp / "x");
        o.agent = "agent-unknown";
        CHECK_THROWS_WITH(export_package(*s.ca, *s.kms, o, s.clock),
                          Catch::Contains("not registered"));
    }
    SECTION("records not covered by a checkpoint yet") {
        // A record appended after the last checkpoint, as a crash before the next one leaves it.
        const auto lines = json_lines(s.log_path);
        std::uint64_t next = 0;
        for (const auto& l : lines)
            if (l["kind"] == "record") next = l["seq"].get<std::uint64_t>() + 1;
        AuditRecord rec = make_audit_record(next, day(16), k_agent, k_agent, s.cert->fingerprint(),
                                            "order.allowed", R"({"decision":"allow"})");
        std::ofstream(s.log_path, std::ios::app) << rec.line() << "\n";
        CHECK_THROWS_WITH(export_package(*s.ca, *s.kms, options_for(s, tmp / "open"), s.clock),
                          Catch::Contains("not covered by a signed checkpoint"));
        CHECK_FALSE(fs::exists(tmp / "open"));
        CHECK_FALSE(fs::exists(tmp / "open.tar.gz"));
        ExportOptions o = options_for(s, tmp / "closed-part");
        o.to_ns = day(15);
        const ExportSummary sum = export_package(*s.ca, *s.kms, o, s.clock);
        CHECK(sum.last_seq + 1 == next);
        CHECK_THAT(sum.notes.front(), Catch::Contains("still open"));
        CHECK(verify_export_package(o.out_dir, pinned(s)).ok);
    }
    SECTION("a log that does not verify") {
        std::string text = read_text(s.log_path);
        const std::size_t pos = text.find("\"quantity\":\"0.25\"");
        REQUIRE(pos != std::string::npos);
        text.replace(pos, 17, "\"quantity\":\"0.35\"");
        write_text(s.log_path, text);
        CHECK_THROWS_WITH(
            export_package(*s.ca, *s.kms, options_for(s, tmp / "bad"), s.clock),
            Catch::Contains("does not verify") && Catch::Contains("bad_record_signature"));
        CHECK_FALSE(fs::exists(tmp / "bad"));
    }
}

TEST_CASE("export --postgres: the agent's log read from PostgreSQL", "[export][postgres]") {
    test::AuditTestDb db(test::shared_pg_conninfo());
    PostgresAuditSinkOptions so;
    so.log_id = k_agent;
    State s([&] { return std::make_shared<PostgresAuditSink>(db.app(), so); });
    TempDir tmp;
    ExportOptions o = options_for(s, tmp / "from-pg");
    o.postgres = db.app();
    const ExportSummary sum = export_package(*s.ca, *s.kms, o, s.clock);
    CHECK(sum.records > 36);  // 36 orders and the halts, incidents, resumes
    const ExportVerifyResult r = verify_export_package(o.out_dir, pinned(s));
    INFO(r.message);
    REQUIRE(r.ok);
    CHECK(r.records == sum.records);
    CHECK(r.records == sum.log_records);
    CHECK(json::parse(read_text(o.out_dir + "/manifest.json"))["source"] == "postgres");
    // Without --postgres the file log is looked for, and there is none.
    CHECK_THROWS_WITH(export_package(*s.ca, *s.kms, options_for(s, tmp / "no-file"), s.clock),
                      Catch::Contains("no audit log 'agent-7'"));
}

TEST_CASE("export: report.html renders in headless Chromium with its chart", "[export][chromium]") {
    const std::string chromium = kakunin_test::on_path("chromium")           ? "chromium"
                                 : kakunin_test::on_path("chromium-browser") ? "chromium-browser"
                                                                             : "";
    if (chromium.empty())
        FAIL(
            "chromium is not installed: install the Debian package 'chromium' (scripts/test and "
            "scripts/demo install it) — the report must be shown to render");
    TempDir tmp;
    const std::string report = clean_package() + "/report.html";
    const std::string flags =
        " --headless --no-sandbox --disable-gpu --hide-scrollbars "
        "--user-data-dir=" +
        shell_quote(tmp / "profile") + " --window-size=1280,2000 ";
    const auto dom = kakunin_test::run_command(
        chromium + flags + "--dump-dom " + shell_quote("file://" + report), tmp.path());
    INFO(dom.output.substr(0, 2000));
    REQUIRE(dom.exit_code == 0);
    CHECK_THAT(dom.output, Catch::Contains("<svg id=\"score-chart\""));
    CHECK_THAT(dom.output, Catch::Contains("data-threshold=\"0.750\""));
    CHECK_THAT(dom.output, Catch::Contains("data-threshold=\"0.850\""));
    CHECK_THAT(dom.output, Catch::Contains("<circle"));
    CHECK_THAT(dom.output, Catch::Contains("Incident timeline"));

    // The screenshot is kept beside the test's working directory for people to look at.
    const std::string png = (fs::current_path() / "export-report-screenshot.png").string();
    const std::string blank_png = tmp / "blank.png";
    fs::remove(png);
    write_text(tmp / "blank.html", "<!DOCTYPE html><html><body></body></html>");
    const auto shot =
        kakunin_test::run_command(chromium + flags + "--screenshot=" + shell_quote(png) + " " +
                                      shell_quote("file://" + report),
                                  tmp.path());
    INFO(shot.output);
    REQUIRE(shot.exit_code == 0);
    const auto blank =
        kakunin_test::run_command(chromium + flags + "--screenshot=" + shell_quote(blank_png) +
                                      " " + shell_quote("file://" + (tmp / "blank.html")),
                                  tmp.path());
    REQUIRE(blank.exit_code == 0);
    REQUIRE(fs::exists(png));
    const std::string bytes = read_text(png);
    REQUIRE(bytes.size() > 24);
    CHECK(bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
    auto be32 = [&](std::size_t at) {
        return (std::uint32_t(std::uint8_t(bytes[at])) << 24) |
               (std::uint32_t(std::uint8_t(bytes[at + 1])) << 16) |
               (std::uint32_t(std::uint8_t(bytes[at + 2])) << 8) | std::uint8_t(bytes[at + 3]);
    };
    CHECK(be32(16) == 1280);  // IHDR width
    CHECK(be32(20) == 2000);  // IHDR height
    // A rendered page with tables and a chart compresses far worse than an empty one.
    const auto blank_size = fs::file_size(blank_png);
    INFO("report screenshot " << bytes.size() << " bytes, blank page " << blank_size << " bytes");
    CHECK(bytes.size() > 10 * blank_size);
    const std::string kept = (fs::current_path() / "export-report.html").string();
    fs::copy_file(report, kept, fs::copy_options::overwrite_existing);
    std::cout << "export: report screenshot kept at " << png << " (" << bytes.size()
              << " bytes), the report at " << kept << "\n";
}

TEST_CASE("kakunin export: the command line on a replay log", "[export][cli]") {
    TempDir tmp;
    const std::string env = "env KAKUNIN_KMS_PASSPHRASE=" + shell_quote(k_passphrase) + " ";
    auto cli = [&](const std::string& args) {
        return kakunin_test::run_command("cd " + shell_quote(tmp.path().string()) + " && " + env +
                                             shell_quote(KAKUNIN_CLI_PATH) + " " + args,
                                         tmp.path());
    };
    auto ok = [&](const std::string& args) {
        const auto r = cli(args);
        INFO(args << "\n" << r.output);
        REQUIRE(r.exit_code == 0);
        return r.output;
    };
    write_text(tmp / "scope.json", test::seed_scope_json);
    ok("ca init --dir state");
    ok("agent register --dir state --agent agent-7 --owner 'Desk 3' --purpose 'market making' "
       "--by 'J. Roe'");
    ok("scope approve --dir state --agent agent-7 --scope scope.json --approver 'A. Schmidt'");
    ok("replay --dir state --agent agent-7 --orders " +
       shell_quote(std::string(KAKUNIN_SOURCE_DIR) + "/examples/orders_sample.csv"));

    // The agent has no production log yet: a clear refusal.
    const auto none = cli("export --dir state --agent agent-7 --out none");
    CHECK(none.exit_code != 0);
    CHECK_THAT(none.output, Catch::Contains("no audit log 'agent-7'"));

    const std::string out =
        ok("export --dir state --agent agent-7 --log-id agent-7.replay --out pkg");
    CHECK_THAT(out, Catch::Contains("pkg.tar.gz"));
    CHECK_THAT(out, Catch::Contains("replay log"));
    const std::string verified = ok("export verify pkg --ca state/ca.pem");
    CHECK_THAT(verified, Catch::Contains("pkg: ok"));
    CHECK_THAT(verified, Catch::Contains("(the pinned CA)"));
    const json j = json::parse(ok("export verify pkg --json"));
    CHECK(j["ok"] == true);
    CHECK(j["log_id"] == "agent-7.replay");
    CHECK(j["records"] == 11);
    CHECK(j["ca_pinned"] == false);

    // The manifest signature checks with OpenSSL alone, over the documented text.
    if (!kakunin_test::on_path("openssl"))
        FAIL("the openssl program is not installed: run scripts/test");
    const auto openssl = kakunin_test::run_command(
        "cd " + shell_quote(tmp.path().string()) +
            " && openssl x509 -in pkg/certificates/ca.pem -pubkey -noout > ca-pub.pem"
            " && printf 'kakunin-export-manifest/v1\\n%s\\n' \"$(sha256sum pkg/manifest.json | cut "
            "-d' ' -f1)\" > signed.txt"
            " && sed -n 's/.*\"signature\": \"\\(.*\\)\".*/\\1/p' pkg/manifest.sig | base64 -d > "
            "sig.bin"
            " && openssl pkeyutl -verify -pubin -inkey ca-pub.pem -rawin -in signed.txt -sigfile "
            "sig.bin",
        tmp.path());
    INFO(openssl.output);
    CHECK(openssl.exit_code == 0);
    CHECK_THAT(openssl.output, Catch::Contains("Signature Verified Successfully"));

    // From the archive alone.
    fs::create_directories(tmp / "supervisor");
    REQUIRE(kakunin_test::run_command("tar -xzf " + shell_quote(tmp / "pkg.tar.gz") + " -C " +
                                          shell_quote(tmp / "supervisor"),
                                      tmp.path())
                .exit_code == 0);
    ok("export verify supervisor/pkg --ca state/ca.pem");

    // A tampered report: non-zero exit, one line naming the file.
    alter(tmp / "pkg/report.html", "</table>", "</table><p>all fine</p>");
    const auto bad = cli("export verify pkg");
    CHECK(bad.exit_code == 1);
    CHECK_THAT(bad.output,
               Catch::StartsWith("kakunin: export verify: pkg: report.html: its SHA-256 differs"));
    CHECK(std::count(bad.output.begin(), bad.output.end(), '\n') == 1);
    const auto bad_json = cli("export verify pkg --json");
    CHECK(bad_json.exit_code == 1);
    CHECK_THAT(bad_json.output, Catch::Contains("\"file\":\"report.html\""));

    // Never over existing evidence.
    const auto again = cli("export --dir state --agent agent-7 --log-id agent-7.replay --out pkg");
    CHECK(again.exit_code != 0);
    CHECK_THAT(again.output, Catch::Contains("never overwritten"));
}
