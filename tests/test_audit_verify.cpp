// Offline verification of audit logs: an intact log verifies; every kind of tampering is caught
// with the first bad seq and a message saying what is wrong.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <botan/base64.h>
#include <botan/pem.h>

#include <filesystem>
#include <fstream>

#include "audit_test_support.hpp"
#include "kakunin/audit.hpp"

using namespace kakunin;
using kakunin::test::AuditTestKms;
using kakunin::test::TestIdentity;

namespace {

std::string payload(int i) {
    return R"({"decision":"allow","order":{"instrument":"BTC_EUR","price":"42000.00","qty":"1.5"},"score_ppm":)" +
           std::to_string(1000 + i) + "}";
}

// 20 records, a checkpoint every 5: lines are r0..r4 c5 r5..r9 c10 r10..r14 c15 r15..r19 c20.
std::vector<std::string> make_log(AuditTestKms& kms, const TestIdentity& id,
                                  const std::string& log_id, bool sign_records, int records = 20) {
    ManualClock clock(utc(2024, 1, 8, 7));
    MemoryAuditSink sink;
    std::optional<AuditSigner> record_signer;
    if (sign_records) record_signer = id.signer(kms);
    AuditLogWriter log(sink, clock, id.signer(kms), AuditWriterOptions{log_id, "", "", 5},
                       record_signer);
    for (int i = 0; i < records; ++i) {
        log.append(i % 7 == 3 ? audit_event::order_rejected : audit_event::order_allowed,
                   payload(i));
        clock.advance(std::chrono::microseconds(250));
    }
    log.close();
    return sink.lines();
}

std::size_t line_of_seq(std::uint64_t seq) { return seq + seq / 5; }

// Replaces the first occurrence of `from` in the line.
void edit(std::string& line, const std::string& from, const std::string& to) {
    const auto pos = line.find(from);
    REQUIRE(pos != std::string::npos);
    line.replace(pos, from.size(), to);
}

// An attacker without the log key: recomputes every root over the (altered) records and signs
// the checkpoints with a key of their own, claiming `claimed_fp`.
void rewrite_checkpoints(std::vector<std::string>& lines, AuditTestKms& kms,
                         const TestIdentity& attacker, const std::string& claimed_fp) {
    MerkleTree tree;
    for (auto& line : lines) {
        if (line.find("\"kind\":\"checkpoint\"") != std::string::npos) {
            AuditCheckpoint c = parse_audit_checkpoint(line);
            c.root = tree.root(c.size);
            c.key_fp = claimed_fp;
            c.sig = kms.sign(attacker.key, c.signed_text());
            line = c.line();
        } else {
            tree.append(parse_audit_record(line).leaf_hash());
        }
    }
}

struct Fixture {
    AuditTestKms kms;
    TestIdentity agent = test::make_identity(kms, "agent:agent-7");
    TestIdentity other = test::make_identity(kms, "agent:agent-8");
    TestIdentity attacker = test::make_identity(kms, "attacker");
    AuditCertificates certs;
    Fixture() {
        // The test certificates name the key label, not the agent: bound explicitly.
        certs.add_der(agent.cert_der, "agent-7");
        certs.add_der(other.cert_der, "agent-8");
    }
};

AuditVerifyResult check(const std::vector<std::string>& lines, const AuditCertificates& certs,
                        const AuditVerifyOptions& options = {}) {
    AuditVerifyResult r = verify_audit_lines(lines, certs, options);
    UNSCOPED_INFO("problem " << to_string(r.problem) << " at seq " << r.first_bad_seq << ": "
                             << r.message);
    return r;
}

}  // namespace

TEST_CASE("verify: an intact log verifies", "[audit][verify]") {
    Fixture f;
    for (bool signed_records : {true, false}) {
        const auto lines = make_log(f.kms, f.agent, "agent-7", signed_records);
        REQUIRE(lines.size() == 24);
        AuditVerifyOptions opts;
        opts.require_record_signatures = signed_records;
        const auto r = check(lines, f.certs, opts);
        CHECK(r.ok);
        CHECK(r.problem == AuditProblem::none);
        CHECK(r.log_id == "agent-7");
        CHECK(r.records == 20);
        CHECK(r.signed_records == (signed_records ? 20u : 0u));
        CHECK(r.checkpoints == 4);
        CHECK(r.covered == 20);
        CHECK(r.uncovered_records == 0);
        CHECK(r.root == parse_audit_checkpoint(lines.back()).root);
    }
}

TEST_CASE("verify: ECDSA P-256 keys verify too", "[audit][verify]") {
    AuditTestKms kms;
    const auto id = test::make_identity(kms, "agent:p256", KeyAlgorithm::ecdsa_p256);
    AuditCertificates certs;
    certs.add_der(id.cert_der, "p256");
    auto lines = make_log(kms, id, "p256", true);
    CHECK(check(lines, certs).ok);
    edit(lines[line_of_seq(12)], "\"qty\":\"1.5\"", "\"qty\":\"9.5\"");
    const auto r = check(lines, certs);
    CHECK(r.problem == AuditProblem::bad_record_signature);
    CHECK(r.first_bad_seq == 12);
}

TEST_CASE("verify: a payload byte altered", "[audit][verify]") {
    Fixture f;
    SECTION("signed records: the record's own signature fails") {
        auto lines = make_log(f.kms, f.agent, "agent-7", true);
        edit(lines[line_of_seq(7)], "\"qty\":\"1.5\"", "\"qty\":\"7.5\"");
        const auto r = check(lines, f.certs);
        CHECK_FALSE(r.ok);
        CHECK(r.problem == AuditProblem::bad_record_signature);
        CHECK(r.first_bad_seq == 7);
        CHECK(r.line == line_of_seq(7) + 1);
        CHECK_THAT(r.message,
                   Catch::Contains("seq 7") && Catch::Contains("signature does not verify"));
    }
    SECTION("checkpoints only: the covering checkpoint's root no longer matches") {
        auto lines = make_log(f.kms, f.agent, "agent-7", false);
        edit(lines[line_of_seq(7)], "\"qty\":\"1.5\"", "\"qty\":\"7.5\"");
        const auto r = check(lines, f.certs);
        CHECK(r.problem == AuditProblem::root_mismatch);
        CHECK(r.first_bad_seq == 5);
        CHECK_THAT(r.message,
                   Catch::Contains("checkpoint of size 10") && Catch::Contains("[5, 10)"));
    }
}

TEST_CASE("verify: a record deleted", "[audit][verify]") {
    Fixture f;
    auto lines = make_log(f.kms, f.agent, "agent-7", true);
    lines.erase(lines.begin() + static_cast<long>(line_of_seq(7)));
    const auto r = check(lines, f.certs);
    CHECK(r.problem == AuditProblem::seq_gap);
    CHECK(r.first_bad_seq == 7);
    CHECK_THAT(r.message, Catch::Contains("expected seq 7, found seq 8"));
}

TEST_CASE("verify: a record inserted", "[audit][verify]") {
    Fixture f;
    SECTION("a copy of an earlier record") {
        auto lines = make_log(f.kms, f.agent, "agent-7", true);
        lines.insert(lines.begin() + static_cast<long>(line_of_seq(7)), lines[line_of_seq(3)]);
        const auto r = check(lines, f.certs);
        CHECK(r.problem == AuditProblem::seq_gap);
        CHECK(r.first_bad_seq == 7);
        CHECK_THAT(r.message, Catch::Contains("found seq 3"));
    }
    SECTION("a forged record with the following records renumbered") {
        auto lines = make_log(f.kms, f.agent, "agent-7", false);
        std::vector<std::string> forged;
        std::uint64_t seq = 0;
        for (const auto& l : lines) {
            if (l.find("\"kind\":\"checkpoint\"") != std::string::npos) {
                forged.push_back(l);
                continue;
            }
            if (seq == 7) {
                forged.push_back(make_audit_record(seq++, 1, "agent-7", "agent-7", f.agent.fp,
                                                   audit_event::order_allowed, payload(99))
                                     .line());
            }
            AuditRecord r = parse_audit_record(l);
            forged.push_back(make_audit_record(seq++, r.ts_ns, "agent-7", "agent-7", f.agent.fp,
                                               r.event, payload(static_cast<int>(r.seq)))
                                 .line());
        }
        const auto r = check(forged, f.certs);
        CHECK(r.problem == AuditProblem::root_mismatch);
        CHECK(r.first_bad_seq == 5);
    }
}

TEST_CASE("verify: two records swapped", "[audit][verify]") {
    Fixture f;
    auto lines = make_log(f.kms, f.agent, "agent-7", true);
    std::swap(lines[line_of_seq(7)], lines[line_of_seq(8)]);
    const auto r = check(lines, f.certs);
    CHECK(r.problem == AuditProblem::seq_gap);
    CHECK(r.first_bad_seq == 7);
    CHECK_THAT(r.message, Catch::Contains("expected seq 7, found seq 8"));
}

TEST_CASE("verify: records missing after the last checkpoint", "[audit][verify]") {
    Fixture f;
    auto lines = make_log(f.kms, f.agent, "agent-7", true);
    SECTION("the tail and its checkpoint removed: what is left is not covered") {
        lines.resize(line_of_seq(17));  // keeps r0..r16 (c15 included), drops r17..r19 and c20
        const auto r = check(lines, f.certs);
        CHECK_FALSE(r.ok);
        CHECK(r.problem == AuditProblem::not_covered);
        CHECK(r.first_bad_seq == 15);
        CHECK(r.uncovered_records == 2);
        CHECK_THAT(r.message, Catch::Contains("[15, 17) are not covered by a checkpoint"));
        // An open log (a crash before close) may be checked without the closing requirement.
        AuditVerifyOptions open;
        open.require_closed = false;
        const auto r2 = check(lines, f.certs, open);
        CHECK(r2.ok);
        CHECK(r2.covered == 15);
        CHECK(r2.uncovered_records == 2);
    }
    SECTION("records removed before the final checkpoint") {
        const std::string final_checkpoint = lines.back();
        lines.resize(line_of_seq(17));
        lines.push_back(final_checkpoint);
        const auto r = check(lines, f.certs);
        CHECK(r.problem == AuditProblem::checkpoint_beyond_records);
        CHECK(r.first_bad_seq == 17);
        CHECK_THAT(r.message, Catch::Contains("covers 20 records but only 17"));
    }
    SECTION("cut back exactly at an earlier checkpoint: caught with the auditor's checkpoint") {
        const AuditCheckpoint known = parse_audit_checkpoint(lines.back());
        lines.resize(line_of_seq(15));    // ends with c15
        CHECK(check(lines, f.certs).ok);  // the file alone cannot tell
        AuditVerifyOptions opts;
        opts.known_checkpoint = known;
        const auto r = check(lines, f.certs, opts);
        CHECK(r.problem == AuditProblem::known_checkpoint_mismatch);
        CHECK(r.first_bad_seq == 15);
    }
}

TEST_CASE("verify: a record spliced from another agent's log", "[audit][verify]") {
    Fixture f;
    auto lines = make_log(f.kms, f.agent, "agent-7", true);
    const auto foreign = make_log(f.kms, f.other, "agent-8", true);
    SECTION("as it was") {
        lines[line_of_seq(7)] = foreign[line_of_seq(7)];
        const auto r = check(lines, f.certs);
        CHECK(r.problem == AuditProblem::wrong_log_id);
        CHECK(r.first_bad_seq == 7);
        CHECK_THAT(r.message, Catch::Contains("log \"agent-8\" in log \"agent-7\""));
    }
    SECTION("with its log_id rewritten") {
        std::string l = foreign[line_of_seq(7)];
        edit(l, "\"log_id\":\"agent-8\"", "\"log_id\":\"agent-7\"");
        lines[line_of_seq(7)] = l;
        const auto r = check(lines, f.certs);
        CHECK(r.problem == AuditProblem::bad_record_signature);
        CHECK(r.first_bad_seq == 7);
    }
}

TEST_CASE("verify: a rewrite that recomputes every root without the key", "[audit][verify]") {
    Fixture f;
    auto lines = make_log(f.kms, f.agent, "agent-7", false);
    edit(lines[line_of_seq(7)], "\"qty\":\"1.5\"", "\"qty\":\"7.5\"");
    SECTION("claiming the real key: signatures fail") {
        rewrite_checkpoints(lines, f.kms, f.attacker, f.agent.fp);
        const auto r = check(lines, f.certs);
        CHECK(r.problem == AuditProblem::bad_checkpoint_signature);
        CHECK(r.first_bad_seq == 0);  // the very first checkpoint is already forged
        CHECK_THAT(r.message, Catch::Contains("checkpoint of size 5") &&
                                  Catch::Contains("signature does not verify"));
    }
    SECTION("under the attacker's own certificate: not a certificate the auditor trusts") {
        rewrite_checkpoints(lines, f.kms, f.attacker, f.attacker.fp);
        const auto r = check(lines, f.certs);
        CHECK(r.problem == AuditProblem::unknown_certificate);
        CHECK_THAT(r.message, Catch::Contains(f.attacker.fp));
    }
    SECTION("signed records stripped of their signatures") {
        auto signed_lines = make_log(f.kms, f.agent, "agent-7", true);
        for (auto& l : signed_lines) {
            if (l.find("\"kind\":\"record\"") != std::string::npos) {
                AuditRecord r = parse_audit_record(l);
                r.sig.clear();
                l = r.line();
            }
        }
        edit(signed_lines[line_of_seq(7)], "\"qty\":\"1.5\"", "\"qty\":\"7.5\"");
        rewrite_checkpoints(signed_lines, f.kms, f.attacker, f.agent.fp);
        AuditVerifyOptions opts;
        opts.require_record_signatures = true;
        const auto r = check(signed_lines, f.certs, opts);
        CHECK(r.problem == AuditProblem::missing_record_signature);
        CHECK(r.first_bad_seq == 0);
    }
}

TEST_CASE("verify: malformed and foreign lines", "[audit][verify]") {
    Fixture f;
    auto lines = make_log(f.kms, f.agent, "agent-7", true);
    SECTION("whitespace added (not canonical)") {
        edit(lines[line_of_seq(4)], "\"seq\":4", "\"seq\": 4");
        const auto r = check(lines, f.certs);
        CHECK(r.problem == AuditProblem::malformed_line);
        CHECK(r.first_bad_seq == 4);
        CHECK_THAT(r.message, Catch::Contains("canonical form"));
    }
    SECTION("a floating-point number") {
        edit(lines[line_of_seq(4)], "\"score_ppm\":1004", "\"score_ppm\":1004.5");
        const auto r = check(lines, f.certs);
        CHECK(r.problem == AuditProblem::malformed_line);
        CHECK_THAT(r.message, Catch::Contains("payload.score_ppm"));
    }
    SECTION("a torn last line") {
        lines.push_back(lines[0].substr(0, 30));
        const auto r = check(lines, f.certs);
        CHECK(r.problem == AuditProblem::malformed_line);
        CHECK(r.first_bad_seq == 20);
        CHECK(r.line == 25);
    }
    SECTION("certificates missing") {
        AuditCertificates none;
        const auto r = check(lines, none);
        CHECK(r.problem == AuditProblem::unknown_certificate);
        CHECK(r.first_bad_seq == 0);
    }
    SECTION("a log that starts late") {
        lines.erase(lines.begin());
        const auto r = check(lines, f.certs);
        CHECK(r.problem == AuditProblem::seq_gap);
        CHECK(r.first_bad_seq == 0);
    }
    SECTION("an expected log_id") {
        AuditVerifyOptions opts;
        opts.expected_log_id = "agent-8";
        const auto r = check(lines, f.certs, opts);
        CHECK(r.problem == AuditProblem::wrong_log_id);
    }
    SECTION("empty") {
        const auto r = check({}, f.certs);
        CHECK(r.problem == AuditProblem::empty_log);
        CHECK_FALSE(r.ok);
    }
}

TEST_CASE("verify: a file log against a certificate directory", "[audit][verify]") {
    Fixture f;
    std::string tmpl = (std::filesystem::temp_directory_path() / "kakunin-verify-XXXXXX").string();
    const std::filesystem::path dir = ::mkdtemp(tmpl.data());
    std::filesystem::create_directories(dir / "certs");
    {
        std::ofstream pem(dir / "certs" / "agent.pem");
        pem << Botan::PEM_Code::encode(f.agent.cert_der, "CERTIFICATE");
        std::ofstream der(dir / "certs" / "other.der", std::ios::binary);
        der.write(reinterpret_cast<const char*>(f.other.cert_der.data()),
                  static_cast<std::streamsize>(f.other.cert_der.size()));
        std::ofstream junk(dir / "certs" / "README.txt");
        junk << "not a certificate";
    }
    auto certs = AuditCertificates::from_directory((dir / "certs").string());
    CHECK(certs.size() == 2);
    // The test certificate names its key label, not the agent: bound explicitly.
    certs.add_der(f.agent.cert_der, "agent-7");
    CHECK(certs.contains(f.agent.fp));
    CHECK(certs.contains(f.other.fp));
    const std::string path = (dir / "agent-7.jsonl").string();
    {
        FileAuditSink sink(path);
        ManualClock clock(utc(2024, 1, 8));
        AuditLogWriter log(sink, clock, f.agent.signer(f.kms),
                           AuditWriterOptions{"agent-7", "", "", 64}, f.agent.signer(f.kms));
        for (int i = 0; i < 1000; ++i) log.append(audit_event::order_allowed, payload(i));
        log.close();
    }
    const auto r = verify_audit_log_file(path, certs);
    INFO(r.message);
    CHECK(r.ok);
    CHECK(r.records == 1000);
    CHECK(r.checkpoints == 16);
    {
        // A complete record without its newline is still an interrupted write.
        std::string content;
        std::ifstream in(path, std::ios::binary);
        content.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        const std::string torn_path = (dir / "torn.jsonl").string();
        std::ofstream(torn_path, std::ios::binary) << content.substr(0, content.size() - 1);
        const auto t = verify_audit_log_file(torn_path, certs);
        CHECK(t.problem == AuditProblem::malformed_line);
        CHECK(t.line == 1016);
        CHECK_THAT(t.message, Catch::Contains("without a final newline"));
    }
    CHECK_THROWS_AS(verify_audit_log_file((dir / "missing.jsonl").string(), certs), Error);
    CHECK_THROWS_AS(AuditCertificates::from_directory((dir / "nope").string()), Error);
    std::filesystem::remove_all(dir);
}

TEST_CASE("verify: verify_audit_signature over a Kms public key", "[audit][verify]") {
    AuditTestKms kms;
    for (KeyAlgorithm alg : {KeyAlgorithm::ed25519, KeyAlgorithm::ecdsa_p256}) {
        const KeyHandle k = kms.create_key(std::string("k-") + to_string(alg), alg);
        const std::string msg = "kakunin-checkpoint/v1\n";
        const auto sig = kms.sign(k, msg);
        const PublicKeyInfo pub = kms.public_key(k);
        const auto* m = reinterpret_cast<const std::uint8_t*>(msg.data());
        CHECK(verify_audit_signature(pub, m, msg.size(), sig.data(), sig.size()));
        CHECK_FALSE(verify_audit_signature(pub, m, msg.size() - 1, sig.data(), sig.size()));
        PublicKeyInfo wrong = pub;
        wrong.algorithm =
            alg == KeyAlgorithm::ed25519 ? KeyAlgorithm::ecdsa_p256 : KeyAlgorithm::ed25519;
        CHECK_THROWS_AS(verify_audit_signature(wrong, m, msg.size(), sig.data(), sig.size()),
                        Error);
    }
}

TEST_CASE("verify: one exported record with its inclusion proof", "[audit][verify]") {
    Fixture f;
    const auto lines = make_log(f.kms, f.agent, "agent-7", true);
    AuditLogVerifier v(f.certs);
    for (const auto& l : lines) REQUIRE(v.add_line(l));
    REQUIRE(v.finish().ok);
    const AuditCheckpoint last = parse_audit_checkpoint(lines.back());
    for (std::uint64_t seq : {0u, 7u, 19u}) {
        const auto proof = v.tree().inclusion_proof(seq, last.size);
        CHECK(verify_audit_record_inclusion(lines[line_of_seq(seq)], proof, last, f.certs).empty());
    }
    const auto proof7 = v.tree().inclusion_proof(7, last.size);
    CHECK_THAT(verify_audit_record_inclusion(lines[line_of_seq(8)], proof7, last, f.certs),
               Catch::Contains("seq 8 is not included"));
    std::string altered = lines[line_of_seq(7)];
    edit(altered, "\"qty\":\"1.5\"", "\"qty\":\"2.5\"");
    CHECK_THAT(verify_audit_record_inclusion(altered, proof7, last, f.certs),
               Catch::Contains("not included"));
    AuditCheckpoint forged = last;
    forged.size = 21;
    CHECK_THAT(verify_audit_record_inclusion(lines[line_of_seq(7)], proof7, forged, f.certs),
               Catch::Contains("checkpoint signature does not verify"));
    AuditCertificates none;
    CHECK_THAT(verify_audit_record_inclusion(lines[line_of_seq(7)], proof7, last, none),
               Catch::Contains("not among the certificates"));
    // Consistency between two checkpoints of the same log.
    const AuditCheckpoint c10 = parse_audit_checkpoint(lines[line_of_seq(10) - 1]);
    REQUIRE(c10.size == 10);
    CHECK(verify_consistency(10, 20, c10.root, last.root, v.tree().consistency_proof(10, 20)));
}
