// Hardening of the local CA and its state directory: the CA acts on what its signed log says,
// not on files restored from an older state; a key revoked for keyCompromise is revoked in every
// certificate and never certified again; refused outputs are refused before anything is issued;
// a failed baseline approval leaves the store as it was; one durable-write helper; one signature
// verifier (canonical encodings) for every signed statement.
#include <sys/stat.h>
#include <unistd.h>

#include <botan/data_src.h>
#include <botan/ed25519.h>
#include <botan/pubkey.h>
#include <botan/x509_key.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli_test_support.hpp"
#include "crypto/encoding.hpp"
#include "crypto/signature.hpp"
#include "io/durable_file.hpp"
#include "kakunin/audit_verify.hpp"
#include "kakunin/baseline.hpp"
#include "kakunin/ca.hpp"
#include "kakunin/replay.hpp"
#include "kakunin/scope.hpp"
#include "kakunin/software_kms.hpp"
#include "support.hpp"

using json = nlohmann::json;
namespace fs = std::filesystem;
using namespace kakunin;

namespace {

constexpr const char* k_passphrase = "hardening passphrase";

using test::quote;
using test::Run;
using test::slurp;
using test::write_file;

const test::Cli cli{k_passphrase};

/// A refusal: non-zero exit and one line on stderr that contains `fragment`.
Run refused(const test::TempDir& d, const std::string& args, const std::string& fragment) {
    Run r = cli.run(d, args);
    INFO("kakunin " << args << "\nstdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.code != 0);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK_THAT(r.err, Catch::Contains(fragment));
    return r;
}

std::vector<json> records_of(const std::string& path, const std::string& event = {}) {
    std::vector<json> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        if (line.empty()) continue;
        json j = json::parse(line);
        if (j["kind"] == "record" && (event.empty() || j["event"] == event))
            out.push_back(std::move(j));
    }
    return out;
}

std::size_t pem_files(const std::string& dir) {
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(dir)) n += e.path().extension() == ".pem";
    return n;
}

/// ca init, agent register and scope approve (the seed scope) for agent-7 in d/state.
void set_up(const test::TempDir& d) {
    write_file(d / "scope.json", test::seed_scope_json);
    cli.ok(d, "ca init --dir state");
    cli.ok(d,
           "agent register --dir state --agent agent-7 --owner 'Desk 3' --purpose 'BTC making' "
           "--by 'Jane Roe'");
    cli.ok(d, "scope approve --dir state --agent agent-7 --scope scope.json --approver 'Jane Doe'");
}

std::string issue(const test::TempDir& d, const std::string& out) {
    const Run r = cli.ok(d, "cert issue --dir state --agent agent-7 --out " + out + " --json");
    return json::parse(r.out).at("serial").get<std::string>();
}

/// The seed scope without SOL_EUR: what a later, narrower approval certifies.
std::string narrow_scope() { return test::seed_with(R"(, "SOL_EUR")", ""); }

void copy_over(const std::string& from, const std::string& to) {
    fs::copy_file(from, to, fs::copy_options::overwrite_existing);
}

}  // namespace

// ---- item 2: the CA's state comes from its signed log ------------------------------------------

TEST_CASE("hardening-ca: an older crl.pem copied back cannot undo a revocation", "[hardening-ca]") {
    test::TempDir d("kakunin-hardening-ca");
    set_up(d);
    const std::string serial = issue(d, "agent.pem");
    copy_over(d / "state/crl.pem", d / "crl-before.pem");
    cli.ok(d, "cert revoke --dir state --serial " + serial + " --reason superseded");
    copy_over(d / "crl-before.pem", d / "state/crl.pem");
    const auto log_size = fs::file_size(d / "state/audit/ca.jsonl");

    // The CA refuses to act on it: no CRL is signed from the restored copy.
    refused(d, "crl --dir state --out crl.pem", "crl.pem is not the latest CRL in the CA log");
    CHECK_FALSE(fs::exists(d / "crl.pem"));
    refused(d, "cert issue --dir state --agent agent-7 --out again.pem", "crl.pem");
    CHECK(fs::file_size(d / "state/audit/ca.jsonl") == log_size);
    // cert verify does not trust it either.
    refused(d, "cert verify --dir state agent.pem", "crl.pem");

    // Removed, the CA writes its latest CRL again from the log: the certificate is revoked.
    fs::remove(d / "state/crl.pem");
    cli.ok(d, "crl --dir state --out crl.pem");
    refused(d, "cert verify --dir state agent.pem", "revoked");
    for (const json& rec : records_of(d / "state/audit/ca.jsonl", "crl.issued")) {
        if (rec["seq"] < records_of(d / "state/audit/ca.jsonl", "certificate.revoked").at(0)["seq"])
            continue;
        const auto serials = rec["payload"]["revoked_serials"];
        CHECK(std::find(serials.begin(), serials.end(), serial) != serials.end());
    }
}

TEST_CASE("hardening-ca: an older scope approval copied back is not certified", "[hardening-ca]") {
    test::TempDir d("kakunin-hardening-ca");
    set_up(d);
    copy_over(d / "state/approvals/agent-7.json", d / "approval-wide.json");
    write_file(d / "narrow.json", narrow_scope());
    cli.ok(d,
           "scope approve --dir state --agent agent-7 --scope narrow.json --approver 'Jane Doe'");
    copy_over(d / "approval-wide.json", d / "state/approvals/agent-7.json");

    refused(d, "cert issue --dir state --agent agent-7 --out agent.pem",
            "approvals/agent-7.json holds the scope sha256:");
    CHECK_FALSE(fs::exists(d / "agent.pem"));
    CHECK(pem_files(d / "state/certs") == 0);

    fs::remove(d / "state/approvals/agent-7.json");
    issue(d, "agent.pem");
    const json j = json::parse(cli.ok(d, "cert inspect agent.pem").out);
    CHECK(j.at("scope") == json::parse(to_json(parse_scope_json(narrow_scope()))));
    // The file is the logged approval again.
    CHECK(json::parse(slurp(d / "state/approvals/agent-7.json")).at("scope") ==
          to_json(parse_scope_json(narrow_scope())));
}

TEST_CASE("hardening-ca: restored or foreign state files are refused, naming the file",
          "[hardening-ca]") {
    test::TempDir d("kakunin-hardening-ca");
    set_up(d);
    const std::string serial = issue(d, "agent.pem");
    SECTION("revocations.json from before a revocation") {
        copy_over(d / "state/revocations.json", d / "revocations-before.json");
        cli.ok(d, "cert revoke --dir state --serial " + serial + " --reason superseded");
        copy_over(d / "revocations-before.json", d / "state/revocations.json");
        refused(d, "cert issue --dir state --agent agent-7 --out b.pem",
                "revocations.json is not the CA log's list of revocations (" + serial + ")");
    }
    SECTION("a registration the CA never made") {
        std::string text = slurp(d / "state/registrations/agent-7.json");
        text.replace(text.find("agent-7"), 7, "agent-8");
        write_file(d / "state/registrations/agent-8.json", text);
        refused(d, "scope approve --dir state --agent agent-8 --scope scope.json --approver X",
                "registrations/agent-8.json registers agent 'agent-8', which the CA log does not");
    }
    SECTION("a changed registration") {
        std::string text = slurp(d / "state/registrations/agent-7.json");
        text.replace(text.find("Desk 3"), 6, "Desk 9");
        write_file(d / "state/registrations/agent-7.json", text);
        refused(d, "cert issue --dir state --agent agent-7 --out b.pem",
                "registrations/agent-7.json is not the registration in the CA log");
    }
    SECTION("a certificate the CA log never issued") {
        test::TempDir other("kakunin-hardening-ca");
        set_up(other);
        const std::string foreign = issue(other, "x.pem");
        fs::copy_file(other / ("state/certs/" + foreign + ".pem"),
                      d / ("state/certs/" + foreign + ".pem"));
        refused(d, "cert revoke --dir state --serial " + foreign + " --reason superseded",
                "which the CA log never issued");
    }
    SECTION("a missing issued certificate is written again from the log") {
        fs::remove(d / ("state/certs/" + serial + ".pem"));
        cli.ok(d, "crl --dir state --out crl.pem");
        CHECK(slurp(d / ("state/certs/" + serial + ".pem")) == slurp(d / "agent.pem"));
    }
    SECTION("a CA log that was removed") {
        fs::remove(d / "state/audit/ca.jsonl");
        refused(d, "cert issue --dir state --agent agent-7 --out b.pem",
                "audit/ca.jsonl is missing");
    }
    SECTION("a CA log that was edited") {
        std::string log = slurp(d / "state/audit/ca.jsonl");
        const auto at = log.find("Jane Doe");
        REQUIRE(at != std::string::npos);
        log.replace(at, 8, "Jane Dot");
        write_file(d / "state/audit/ca.jsonl", log);
        refused(d, "cert issue --dir state --agent agent-7 --out b.pem", "state/audit/ca.jsonl");
    }
    SECTION("a record appended to the CA log without the CA's signature") {
        // A forged registration of another agent, after the last checkpoint.
        auto records = records_of(d / "state/audit/ca.jsonl");
        json forged = records_of(d / "state/audit/ca.jsonl", "agent.registered").at(0);
        forged["seq"] = records.size();
        forged.erase("sig");
        std::ofstream(d / "state/audit/ca.jsonl", std::ios::app) << forged.dump() << "\n";
        refused(d, "cert issue --dir state --agent agent-7 --out b.pem",
                "does not verify with the key of ca.pem");
    }
    CHECK_FALSE(fs::exists(d / "b.pem"));
}

// ---- item 8: keyCompromise covers the key -------------------------------------------------------

TEST_CASE(
    "hardening-ca: keyCompromise revokes every certificate of the key and the key is "
    "never certified again",
    "[hardening-ca]") {
    test::TempDir d("kakunin-hardening-ca");
    set_up(d);
    const std::string first = issue(d, "first.pem");
    const std::string renewal = issue(d, "renewal.pem");  // same key (agent:agent-7 in the KMS)
    REQUIRE(first != renewal);

    cli.ok(d, "cert revoke --dir state --serial " + renewal +
                  " --reason 'keyCompromise: key found on a shared drive'");
    refused(d, "cert verify --dir state renewal.pem", "revoked");
    refused(d, "cert verify --dir state first.pem", "revoked");

    const json revocations = json::parse(slurp(d / "state/revocations.json"));
    REQUIRE(revocations.size() == 2);
    const auto revoked = records_of(d / "state/audit/ca.jsonl", "certificate.revoked");
    REQUIRE(revoked.size() == 2);
    CHECK(revoked[0]["payload"]["serial"] == renewal);
    CHECK(revoked[1]["payload"]["serial"] == first);
    CHECK(revoked[1]["payload"]["same_key_as_serial"] == renewal);
    CHECK(revoked[1]["payload"]["reason_code"] == "keyCompromise");

    refused(d, "cert issue --dir state --agent agent-7 --out third.pem",
            "was revoked for keyCompromise (serial " + renewal);
    CHECK_FALSE(fs::exists(d / "third.pem"));
    CHECK(records_of(d / "state/audit/ca.jsonl", "certificate.issued").size() == 2);
}

TEST_CASE("hardening-ca: a keyCompromise of a certificate revoked before still stops the key",
          "[hardening-ca]") {
    test::TempDir d("kakunin-hardening-ca");
    set_up(d);
    const std::string first = issue(d, "first.pem");
    const std::string renewal = issue(d, "renewal.pem");  // same key
    cli.ok(d, "cert revoke --dir state --serial " + renewal +
                  " --reason 'cessationOfOperation: done'");
    cli.ok(d, "cert verify --dir state first.pem");
    cli.ok(d, "cert revoke --dir state --serial " + renewal + " --reason 'keyCompromise: leaked'");
    refused(d, "cert verify --dir state first.pem", "revoked");
    refused(d, "cert issue --dir state --agent agent-7 --out third.pem", "keyCompromise");
    CHECK_FALSE(fs::exists(d / "third.pem"));
    const auto revoked = records_of(d / "state/audit/ca.jsonl", "certificate.revoked");
    REQUIRE(revoked.size() == 3);
    CHECK(revoked[1]["payload"]["reason_update"] == true);
    CHECK(revoked[1]["payload"]["previous_reason"] == "cessationOfOperation: done");
    // The CA opens again from its log with the updated reason (the files still match it).
    refused(d, "cert issue --dir state --agent agent-7 --out third.pem", "keyCompromise");
    cli.ok(d, "crl --dir state --out crl-copy.pem");
}

TEST_CASE("hardening-ca: a revocation for another reason revokes that certificate only",
          "[hardening-ca]") {
    test::TempDir d("kakunin-hardening-ca");
    set_up(d);
    const std::string first = issue(d, "first.pem");
    const std::string renewal = issue(d, "renewal.pem");
    cli.ok(d, "cert revoke --dir state --serial " + renewal + " --reason superseded");
    refused(d, "cert verify --dir state renewal.pem", "revoked");
    cli.ok(d, "cert verify --dir state first.pem");
    issue(d, "third.pem");
}

// ---- item 17: an unwritable --out is refused before anything is issued --------------------------

TEST_CASE("hardening-ca: cert issue with an unwritable --out issues nothing", "[hardening-ca]") {
    test::TempDir d("kakunin-hardening-ca");
    set_up(d);
    fs::create_directory(d / "a-directory");
    refused(d, "cert issue --dir state --agent agent-7 --out missing/agent.pem",
            "missing/agent.pem: cannot write");
    refused(d, "cert issue --dir state --agent agent-7 --out a-directory", "is a directory");
    CHECK(pem_files(d / "state/certs") == 0);
    CHECK(records_of(d / "state/audit/ca.jsonl", "certificate.issued").empty());
    // No temporary file is left behind either.
    for (const auto& e : fs::directory_iterator(d.path()))
        CHECK(e.path().filename().string().find(".tmp") == std::string::npos);

    refused(d,
            "agent reenable --dir state --agent agent-7 --halt halt-agent-7-20240108T060000Z-0-1 "
            "--by 'M. Rossi' --reason fixed "
            "--out missing/reenable.json",
            "missing/reenable.json: cannot write");
    CHECK(records_of(d / "state/audit/ca.jsonl", "guard.resumed").empty());
}

// ---- item 14: a failed baseline approval stores nothing ----------------------------------------

namespace {

const TimeNs minute = 60'000'000'000LL, hour = 60 * minute, day = 24 * hour;
const TimeNs t0 = utc(2024, 1, 8, 0, 0, 0);

/// `days` of an order every 3 minutes 06:00-22:00 UTC.
std::string orders_csv(int days) {
    std::string csv = "ts,instrument,counterparty,side,quantity,price,region\n";
    unsigned n = 0;
    for (TimeNs t = t0; t < t0 + days * day; t += 3 * minute) {
        const auto h = floor_mod(t, day) / hour;
        if (h < 6 || h >= 22) continue;
        csv += format_timestamp(t) + (n % 3 == 2 ? ",ETH_EUR" : ",BTC_EUR") + ",exchange_a,BUY,0." +
               std::to_string(1 + n % 9) + ",40000,eu-west-1\n";
        ++n;
    }
    return csv;
}

const char* const wide_scope = R"({"version":1,
 "max_transaction":{"currency":"EUR","amount":"50000000.00"},
 "instruments":["BTC_EUR","ETH_EUR","SOL_EUR"],"counterparties":["exchange_a"],
 "trading_hours":[{"days":["Mon","Tue","Wed","Thu","Fri","Sat","Sun"],"from":"00:00","to":"24:00"}],
 "regions":["eu-west-1","eu-central-1"],"limits":{"max_orders_per_second":50}})";

}  // namespace

TEST_CASE("hardening-ca: a failed baseline approve leaves the approved baseline enforced",
          "[hardening-ca]") {
    test::TempDir d("kakunin-hardening-ca");
    write_file(d / "scope.json", wide_scope);
    cli.ok(d, "ca init --dir state");
    cli.ok(d, "agent register --dir state --agent agent-7 --owner Desk --purpose 'market making'");
    cli.ok(d,
           "scope approve --dir state --agent agent-7 --scope scope.json --approver 'A. Officer'");
    write_file(d / "learn.csv", orders_csv(8));
    cli.ok(d, "replay --dir state --agent agent-7 --orders learn.csv --observe-until " +
                  format_timestamp(t0 + 8 * day) + " --baseline-out learned.json");
    cli.ok(d,
           "baseline approve --dir state --agent agent-7 --baseline learned.json "
           "--approver 'C. Officer'");
    const auto approvals_before = records_of(d / "state/audit/ca.jsonl", "baseline.approved");

    refused(d, "baseline approve --dir state --agent agent-7 --baseline learned.json --approver ''",
            "approver");
    CHECK_FALSE(fs::exists(d / "state/baselines/agent-7/2.json"));
    refused(d,
            "baseline approve --dir state --agent agent-7 --baseline learned.json --approver "
            "'D. Officer\nof Another Line'",
            "one line");
    CHECK_FALSE(fs::exists(d / "state/baselines/agent-7/2.json"));
    CHECK(records_of(d / "state/audit/ca.jsonl", "baseline.approved").size() ==
          approvals_before.size());

    // The approved version is still the one replay enforces: an unseen region warns.
    write_file(d / "later.csv", orders_csv(1) + format_timestamp(t0 + day + 10 * hour) +
                                    ",BTC_EUR,exchange_a,BUY,0.2,40000,eu-central-1\n");
    const json s = json::parse(
        cli.ok(d,
               "replay --dir state --agent agent-7 --orders later.csv --json --audit-out l.jsonl")
            .out);
    CHECK(s["baseline"]["from_state"] == true);
    CHECK(s["baseline"]["approved_by"] == "C. Officer");
    CHECK(s["warned_orders"] == 1);
}

// ---- item 20: one durable-write helper ----------------------------------------------------------

TEST_CASE("hardening-ca: write_durable replaces or refuses, and leaves no temporary file",
          "[hardening-ca][durable]") {
    test::TempDir d("kakunin-hardening-ca");
    const std::string p = d / "file.txt";
    io::write_durable(p, "one\n");
    CHECK(slurp(p) == "one\n");
    io::write_durable(p, "two\n");
    CHECK(slurp(p) == "two\n");
    try {
        io::write_durable(p, "three\n", io::Overwrite::refuse);
        FAIL("an existing file was replaced");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::invalid_state);
        CHECK_THAT(e.what(), Catch::Contains(p));
    }
    CHECK(slurp(p) == "two\n");
    io::write_durable(d / "new.txt", "new", io::Overwrite::refuse, 0600);
    struct stat st;
    REQUIRE(::stat((d / "new.txt").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);

    // prepare() refuses an unusable path before the caller does anything.
    CHECK_THROWS_AS(io::DurableFile::prepare(d / "missing/x.txt"), Error);
    CHECK_THROWS_AS(io::DurableFile::prepare(d.path().string()), Error);
    CHECK_THROWS_AS(io::DurableFile::prepare(""), Error);
    {
        auto f = io::DurableFile::prepare(p);
        // Until commit, the target is unchanged; an abandoned file leaves nothing behind.
        CHECK(slurp(p) == "two\n");
    }
    CHECK(slurp(p) == "two\n");
    {
        auto f = io::DurableFile::prepare(p);
        f.commit("four\n");
        CHECK_THROWS_AS(f.commit("five\n"), Error);
    }
    CHECK(slurp(p) == "four\n");
    std::size_t files = 0;
    for (const auto& e : fs::directory_iterator(d.path())) {
        ++files;
        CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
    }
    CHECK(files == 2);
}

TEST_CASE("hardening-ca: the CA, the baseline store and the KMS write through the helper",
          "[hardening-ca][durable]") {
    // What the helper guarantees that the old writers did not: an existing key file or baseline
    // is never replaced, and a failed write leaves no temporary file in the state directory.
    test::TempDir d("kakunin-hardening-ca");
    set_up(d);
    const std::string serial = issue(d, "agent.pem");
    cli.ok(d, "cert revoke --dir state --serial " + serial + " --reason superseded");
    for (const auto& e : fs::recursive_directory_iterator(d / "state"))
        CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
    auto kms = SoftwareKms::open(d / "state/keys", k_passphrase);
    CHECK_THROWS_AS(kms->create_key("agent:agent-7", KeyAlgorithm::ed25519), Error);
}

// ---- item 20: one signature verifier ------------------------------------------------------------

namespace {

/// S + L: the same Ed25519 signature in a second, non-canonical encoding (RFC 8032 §5.1.7).
std::vector<std::uint8_t> malleate(std::vector<std::uint8_t> sig) {
    static constexpr std::uint8_t L[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58,
                                           0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
                                           0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                           0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10};
    REQUIRE(sig.size() == 64);
    unsigned carry = 0;
    for (std::size_t i = 0; i < 32; ++i) {
        const unsigned v = sig[32 + i] + L[i] + carry;
        sig[32 + i] = static_cast<std::uint8_t>(v);
        carry = v >> 8;
    }
    REQUIRE(carry == 0);
    return sig;
}

/// What a plain Botan verifier (the second verifier the code base had) says.
bool botan_accepts(const std::vector<std::uint8_t>& spki, const std::string& message,
                   const std::vector<std::uint8_t>& sig) {
    Botan::DataSource_Memory src(spki);
    std::unique_ptr<Botan::Public_Key> key(Botan::X509::load_key(src));
    Botan::PK_Verifier v(*key, "Pure");
    return v.verify_message(reinterpret_cast<const std::uint8_t*>(message.data()), message.size(),
                            sig.data(), sig.size());
}

}  // namespace

TEST_CASE("hardening-ca: a non-canonical signature on a scope approval is refused",
          "[hardening-ca][signature]") {
    auto kms = std::shared_ptr<Kms>(SoftwareKms::in_memory());
    ManualClock clock(utc(2024, 3, 4, 9, 0, 0));
    const Scope scope = parse_scope_json(test::seed_scope_json);
    const ScopeApproval good =
        approve_scope(*kms, "agent-7", "Jane Doe", scope, clock.now_ns() - 1);
    REQUIRE(verify_scope_approval(good, scope));
    ScopeApproval bad = good;
    bad.signature = malleate(good.signature);
    // The malleated signature is valid to a verifier without the canonical-encoding check ...
    REQUIRE(botan_accepts(good.approver_public_key, scope_approval_text(bad), bad.signature));
    // ... and refused by the one verifier, whichever way it is reached.
    CHECK_FALSE(verify_scope_approval(bad, scope));
    CHECK_FALSE(
        crypto::verify_signature(bad.approver_public_key, scope_approval_text(bad), bad.signature));
    const std::string text = scope_approval_text(bad);
    CHECK_FALSE(
        verify_audit_signature(PublicKeyInfo{KeyAlgorithm::ed25519, bad.approver_public_key},
                               reinterpret_cast<const std::uint8_t*>(text.data()), text.size(),
                               bad.signature.data(), bad.signature.size()));

    auto ca = LocalCa::init(kms, clock, {});
    ca->register_agent({"agent-7", "Desk 3", "BTC", clock.now_ns(), "Jane Roe"});
    try {
        ca->record_approval(bad, scope);
        FAIL("an approval with a non-canonical signature was recorded");
    } catch (const Error& e) {
        CHECK(e.category() == ErrorCategory::unauthorised);
        CHECK_THAT(e.what(), Catch::Contains("does not verify"));
    }
    ca->record_approval(good, scope);
}

TEST_CASE("hardening-ca: a non-canonical signature on a baseline approval is refused",
          "[hardening-ca][signature]") {
    auto kms = SoftwareKms::in_memory();
    test::TempDir d("kakunin-hardening-ca");
    write_file(d / "learn.csv", orders_csv(8));
    // A baseline learned by replay, read back as the officer would approve it.
    write_file(d / "scope.json", wide_scope);
    cli.ok(d, "ca init --dir state");
    cli.ok(d, "agent register --dir state --agent agent-7 --owner Desk --purpose 'market making'");
    cli.ok(d,
           "scope approve --dir state --agent agent-7 --scope scope.json --approver 'A. Officer'");
    cli.ok(d, "replay --dir state --agent agent-7 --orders learn.csv --observe-until " +
                  format_timestamp(t0 + 8 * day) + " --baseline-out learned.json");
    const Baseline b = parse_baseline_json(slurp(d / "learned.json"));
    const BaselineApproval good = approve_baseline(*kms, b, "C. Officer", t0 + 9 * day, 1);
    REQUIRE(check_baseline_approval(good, b).empty());
    BaselineApproval bad = good;
    std::vector<std::uint8_t> sig = crypto::base64_decode(good.signature, "signature");
    sig = malleate(sig);
    bad.signature = crypto::base64_encode(sig);
    REQUIRE(botan_accepts(crypto::base64_decode(good.approver_public_key, "key"),
                          baseline_approval_text(bad), sig));
    CHECK(check_baseline_approval(bad, b) == "the approval signature does not verify");
}

// ---- log ids: an agent cannot be registered under a name that claims another log ----------

TEST_CASE("hardening-ca: agent register refuses the ids ca and AGENT.suffix", "[hardening-ca]") {
    test::TempDir d("kakunin-hardening-ca");
    set_up(d);
    for (const char* id : {"ca", "CA", "agent-7.replay", "agent-7.x"})
        refused(d,
                std::string("agent register --dir state --agent ") + id +
                    " --owner 'Desk 3' --purpose p --by 'Jane Roe'",
                "names the CA's own log");
    CHECK(records_of(d / "state/audit/ca.jsonl", "agent.registered").size() == 1);
    cli.ok(
        d,
        "agent register --dir state --agent agent-8 --owner 'Desk 3' --purpose p --by 'Jane Roe'");
}
