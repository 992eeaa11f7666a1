// Agent keys off the CA: `kakunin agent keygen` makes the agent's key in a key store of the
// trading host's own (software KMS or a SoftHSM2 token), `cert issue --csr` certifies it on the
// CA's side, and a Guard runs with only that key store, the certificate, ca.pem and the CRL,
// the CA's keys moved away. The real `kakunin` program (KAKUNIN_CLI_PATH) does every step.
#include <catch2/catch.hpp>

#include <botan/ber_dec.h>
#include <botan/der_enc.h>
#include <botan/pem.h>
#include <botan/pkcs10.h>
#include <botan/pkix_types.h>

#include <unistd.h>
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli_test_support.hpp"
#include "kakunin/kakunin.hpp"
#include "kakunin/pkcs11_kms.hpp"
#include "pkcs11_test_support.hpp"
#include "support.hpp"
#include "temp_dir.hpp"

using json = nlohmann::json;
using kakunin_test::read_text;
using kakunin_test::shell_quote;
using kakunin_test::write_text;
namespace fs = std::filesystem;

namespace {

constexpr const char* k_ca_passphrase = "the CA's passphrase, on the CA host";
constexpr const char* k_host_passphrase = "the trading host's own passphrase";

struct TempDir : kakunin::test::TempDir {
    TempDir() : kakunin::test::TempDir("kakunin-agent-keys") {}
};

using kakunin::test::require_ok;
using kakunin::test::Run;
using kakunin::test::run_in;

std::string passphrase_env(const char* passphrase) {
    return std::string("KAKUNIN_KMS_PASSPHRASE=") + shell_quote(passphrase);
}

/// The program with `env` (VAR=value words or "-u VAR" for env(1)); by default the CA's
/// passphrase, as on the CA host.
Run cli(const std::string& args, const TempDir& dir,
        const std::string& env = passphrase_env(k_ca_passphrase)) {
    return run_in(dir, "env " + env + " " + shell_quote(KAKUNIN_CLI_PATH) + " " + args);
}

/// The program as on the trading host: its own passphrase, not the CA's.
Run host_cli(const std::string& args, const TempDir& dir) {
    return cli(args, dir, passphrase_env(k_host_passphrase));
}

/// A failure with exactly one line on stderr, "kakunin: ...", containing `fragment`.
void require_one_line_error(const Run& r, const std::string& fragment) {
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.code != 0);
    CHECK(r.err.rfind("kakunin: ", 0) == 0);
    REQUIRE(!r.err.empty());
    CHECK(r.err.find('\n') == r.err.size() - 1);
    CHECK_THAT(r.err, Catch::Contains(fragment));
}

void require_openssl() {
    if (!kakunin_test::on_path("openssl"))
        FAIL("the openssl program is not installed: run scripts/test");
}

/// The seed scope, traded on every day of the week (the test runs at whatever time it is).
std::string all_week_scope() {
    return kakunin::test::seed_with(
        R"({"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "from": "07:00", "to": "20:00"})",
        R"({"days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "from": "00:00", "to": "24:00"})");
}

/// On the CA host (dir/ca): ca init, agent register and scope approve for agent-7.
void set_up_ca(const TempDir& dir) {
    fs::create_directories(dir.path() / "ca");
    fs::create_directories(dir.path() / "host");
    write_text(dir / "ca/scope.json", all_week_scope());
    require_ok(cli("ca init --dir ca/state", dir), "ca init");
    require_ok(cli("agent register --dir ca/state --agent agent-7 --owner 'Desk 3' "
                   "--purpose 'BTC market making' --by 'Jane Roe'",
                   dir),
               "agent register");
    require_ok(cli("scope approve --dir ca/state --agent agent-7 --scope ca/scope.json "
                   "--approver 'Jane Doe'",
                   dir),
               "scope approve");
}

/// The key files of a software key store (one per key).
std::vector<std::string> key_files(const fs::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

/// What the CA hands the trading host: the certificate (already there), ca.pem and the CRL.
void hand_over_to_host(const TempDir& dir) {
    require_ok(cli("crl --dir ca/state --out host/crl.pem", dir), "crl");
    fs::copy_file(dir / "ca/state/ca.pem", dir / "host/ca.pem");
    fs::create_directories(dir.path() / "host/certs");
    fs::copy_file(dir / "host/agent-7.pem", dir / "host/certs/agent-7.pem");
}

std::vector<std::string> events_of(const std::string& log) {
    std::vector<std::string> events;
    std::istringstream lines(read_text(log));
    for (std::string line; std::getline(lines, line);) {
        if (line.empty()) continue;
        const json j = json::parse(line);
        if (j.at("kind") == "record") events.push_back(j.at("event").get<std::string>());
    }
    return events;
}

/// The README's Guard, on the trading host's files only: one order allowed, one rejected, every
/// decision in a signed log that `kakunin audit verify` accepts with the host's certificate.
void trade_on_host(const TempDir& dir, std::shared_ptr<kakunin::Kms> kms,
                   const std::string& label) {
    const std::string host = (dir.path() / "host").string();
    {
        kakunin::SystemClock clock;
        kakunin::GuardOptions options;
        options.audit = kakunin::AuditTrailOptions{
            std::make_shared<kakunin::FileAuditSink>(host + "/agent-7.jsonl")};
        const kakunin::KeyHandle key = kms->find_key(label);
        kakunin::Guard guard(
            kakunin::GuardCredentials{
                kakunin::AgentCertificate::load_file(host + "/agent-7.pem"),
                kakunin::TrustAnchor::load_file(host + "/ca.pem"),
                kakunin::CertificateRevocationList::load_file(host + "/crl.pem"), kms, key},
            clock, options);
        const kakunin::Order good = kakunin::test::good_order();
        const kakunin::Decision allowed = guard.check(good);
        CHECK(allowed.allowed());
        kakunin::Order bad = kakunin::test::good_order();
        bad.client_order_id = "c-2";
        bad.instrument = "DOGE_EUR";
        const kakunin::Decision rejected = guard.check(bad);
        CHECK_FALSE(rejected.allowed());
        CHECK(rejected.reasons.contains(kakunin::ReasonCode::instrument_not_allowed));
    }
    const std::vector<std::string> events = events_of(host + "/agent-7.jsonl");
    CHECK(std::count(events.begin(), events.end(), "order.allowed") == 1);
    CHECK(std::count(events.begin(), events.end(), "order.rejected") == 1);
    const Run verified = host_cli(
        "audit verify --log host/agent-7.jsonl --certs host/certs --ca host/ca.pem --json", dir);
    require_ok(verified, "audit verify");
    CHECK(json::parse(verified.out).at("ok") == true);

    // The check is real: a record altered on the host is caught.
    std::string text = read_text(host + "/agent-7.jsonl");
    const auto pos = text.find("DOGE_EUR");
    REQUIRE(pos != std::string::npos);
    text.replace(pos, 8, "BTC_EUR_");
    write_text(host + "/tampered.jsonl", text);
    CHECK(
        host_cli("audit verify --log host/tampered.jsonl --certs host/certs --ca host/ca.pem", dir)
            .code != 0);
}

std::vector<std::uint8_t> pem_der(const std::string& pem) {
    std::string label;
    const Botan::secure_vector<std::uint8_t> der = Botan::PEM_Code::decode(pem, label);
    return {der.begin(), der.end()};
}

std::string request_pem(const std::vector<std::uint8_t>& der) {
    return Botan::PEM_Code::encode(der, "CERTIFICATE REQUEST");
}

/// The request with `signature` in place of its own (the signed part and algorithm unchanged).
std::vector<std::uint8_t> with_signature(const std::vector<std::uint8_t>& der,
                                         const std::vector<std::uint8_t>& signature) {
    const Botan::PKCS10_Request req(der);
    std::vector<std::uint8_t> out;
    Botan::DER_Encoder(out)
        .start_cons(Botan::SEQUENCE)
        .raw_bytes(req.tbs_data())
        .encode(req.signature_algorithm())
        .encode(signature, Botan::BIT_STRING)
        .end_cons();
    return out;
}

/// The issue command for a request, with a certificate that must not appear.
std::string issue_args(const std::string& csr, const std::string& out) {
    return "cert issue --dir ca/state --agent agent-7 --csr " + csr + " --out " + out;
}

}  // namespace

TEST_CASE("agent keys: a trading host holds only its agent's key (software KMS)",
          "[agent_keys][cli]") {
    TempDir dir;
    set_up_ca(dir);

    // On the trading host, with its own passphrase: the key and a request signed by it.
    const Run made = host_cli(
        "agent keygen --agent agent-7 --keys host/keys --csr-out host/agent-7.csr --json", dir);
    require_ok(made, "agent keygen");
    const json summary = json::parse(made.out);
    CHECK(summary.at("label") == "agent:agent-7");
    CHECK(summary.at("algorithm") == "ed25519");
    CHECK(summary.at("created") == true);
    CHECK(key_files(dir.path() / "host/keys") ==
          std::vector<std::string>{"agent%3Aagent-7.key.pem"});
    CHECK((fs::status(dir.path() / "host/keys").permissions() & fs::perms::all) ==
          fs::perms::owner_all);
    CHECK((fs::status(dir.path() / "host/keys/agent%3Aagent-7.key.pem").permissions() &
           fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
    // The request names the agent and carries the key's public half.
    const std::string csr = read_text(dir / "host/agent-7.csr");
    const Botan::PKCS10_Request req(pem_der(csr));
    CHECK(req.subject_dn().get_first_attribute("X520.CommonName") == "agent-7");
    auto host_kms = std::shared_ptr<kakunin::Kms>(
        kakunin::SoftwareKms::open((dir.path() / "host/keys").string(), k_host_passphrase));
    const auto host_spki = host_kms->public_key(host_kms->find_key("agent:agent-7")).spki_der;
    CHECK(kakunin::public_key_from_csr(csr) == host_spki);

    // On the CA host: certified from the request alone; the CA's key store never gets an agent
    // key (what `cert issue` without --csr would have made there).
    require_ok(cli(issue_args("host/agent-7.csr", "host/agent-7.pem"), dir), "cert issue --csr");
    const std::vector<std::string> ca_keys = key_files(dir.path() / "ca/state/keys");
    CHECK(ca_keys == std::vector<std::string>{"approver%3AJane%20Doe.key.pem", "ca.key.pem"});
    const kakunin::AgentCertificate cert =
        kakunin::AgentCertificate::load_file(dir / "host/agent-7.pem");
    CHECK(cert.agent_id() == "agent-7");
    CHECK(cert.public_key() == host_spki);
    hand_over_to_host(dir);

    // The CA's keys are gone from reach: the Guard needs none of them.
    fs::rename(dir.path() / "ca/state/keys", dir.path() / "ca/keys-locked-away");
    trade_on_host(dir, host_kms, "agent:agent-7");
}

TEST_CASE("agent keys: a trading host's key on its own SoftHSM2 token", "[agent_keys][pkcs11]") {
    auto& hsm = kakunin_test::SoftHsm::instance();
    const std::string token = hsm.new_token("host");
    // Both tokens before this process loads the module (it lists the slots once).
    const std::string ca_token = hsm.new_token("ca");
    const std::string pin_env =
        std::string("KAKUNIN_PKCS11_PIN=") + shell_quote(kakunin_test::k_user_pin);
    TempDir dir;
    set_up_ca(dir);
    const std::string p11 =
        "--kms pkcs11 --pkcs11-module " + shell_quote(hsm.module()) + " --token " + token;
    // ECDSA P-256: SoftHSM2's EdDSA signing leaks inside the module under LeakSanitizer.
    require_ok(cli("agent keygen --agent agent-7 " + p11 +
                       " --algorithm ecdsa-p256 --csr-out host/agent-7.csr",
                   dir, pin_env),
               "agent keygen on the token");
    const auto view = kakunin_test::raw_inspect_private_key(
        hsm.module(), token, kakunin_test::k_user_pin, "agent:agent-7");
    CHECK(view.found);
    CHECK(view.sensitive == CK_TRUE);
    CHECK(view.extractable == CK_FALSE);
    CHECK_FALSE(fs::exists(dir / "host/keys"));
    // Once is enough: the token refuses a second key under the label, nothing is replaced.
    require_one_line_error(cli("agent keygen --agent agent-7 " + p11 +
                                   " --algorithm ecdsa-p256 --csr-out host/again.csr",
                               dir, pin_env),
                           "already exists");
    CHECK_FALSE(fs::exists(dir / "host/again.csr"));

    require_ok(cli(issue_args("host/agent-7.csr", "host/agent-7.pem"), dir), "cert issue --csr");
    CHECK(key_files(dir.path() / "ca/state/keys") ==
          std::vector<std::string>{"approver%3AJane%20Doe.key.pem", "ca.key.pem"});
    hand_over_to_host(dir);
    fs::rename(dir.path() / "ca/state/keys", dir.path() / "ca/keys-locked-away");

    auto kms = std::shared_ptr<kakunin::Kms>(
        kakunin::Pkcs11Kms::open(hsm.module(), token, kakunin_test::k_user_pin));
    const kakunin::AgentCertificate cert =
        kakunin::AgentCertificate::load_file(dir / "host/agent-7.pem");
    CHECK(cert.public_key() == kms->public_key(kms->find_key("agent:agent-7")).spki_der);
    trade_on_host(dir, kms, "agent:agent-7");

    // A token that holds a CA key is a CA's: no agent key goes on it.
    require_ok(cli("ca init --dir ca/hsm-state --algorithm ecdsa-p256 --kms pkcs11 "
                   "--pkcs11-module " +
                       shell_quote(hsm.module()) + " --token " + ca_token,
                   dir, pin_env),
               "ca init on a token");
    require_one_line_error(cli("agent keygen --agent agent-7 --kms pkcs11 --pkcs11-module " +
                                   shell_quote(hsm.module()) + " --token " + ca_token +
                                   " --algorithm ecdsa-p256 --csr-out host/ca-token.csr",
                               dir, pin_env),
                           "--token: the PKCS#11 token '" + ca_token + "'");
    CHECK_FALSE(kakunin_test::raw_inspect_private_key(hsm.module(), ca_token,
                                                      kakunin_test::k_user_pin, "agent:agent-7")
                    .found);
    require_one_line_error(cli("agent keygen --agent agent-7 " + p11 + " --csr-out x.csr", dir,
                               "-u KAKUNIN_PKCS11_PIN"),
                           "KAKUNIN_PKCS11_PIN");
}

TEST_CASE("agent keys: cert issue --csr refuses a request without proof of possession",
          "[agent_keys][cli]") {
    require_openssl();
    TempDir dir;
    set_up_ca(dir);
    require_ok(
        host_cli("agent keygen --agent agent-7 --keys host/keys --csr-out host/agent-7.csr", dir),
        "agent keygen");
    const std::vector<std::uint8_t> der = pem_der(read_text(dir / "host/agent-7.csr"));

    SECTION("a changed subject: the signature no longer covers it") {
        std::vector<std::uint8_t> changed = der;
        const std::string name = "agent-7";
        auto it = std::search(changed.begin(), changed.end(), name.begin(), name.end());
        REQUIRE(it != changed.end());
        it[6] = '8';
        write_text(dir / "tampered.csr", request_pem(changed));
        require_one_line_error(cli(issue_args("tampered.csr", "bad.pem"), dir),
                               "self-signature does not verify");
    }
    SECTION("a changed signature") {
        const Botan::PKCS10_Request req(der);
        std::vector<std::uint8_t> sig = req.signature();
        sig[10] ^= 0x01;
        write_text(dir / "tampered.csr", request_pem(with_signature(der, sig)));
        require_one_line_error(cli(issue_args("tampered.csr", "bad.pem"), dir),
                               "self-signature does not verify");
    }
    SECTION("an Ed25519 signature with S + L, which Botan 2 alone would accept") {
        const Botan::PKCS10_Request req(der);
        std::vector<std::uint8_t> sig = req.signature();
        REQUIRE(sig.size() == 64);
        // L, the order of the Ed25519 group, little-endian (RFC 8032 §5.1).
        const std::uint8_t order[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58,
                                        0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
                                        0,    0,    0,    0,    0,    0,    0,    0,
                                        0,    0,    0,    0,    0,    0,    0,    0x10};
        unsigned carry = 0;
        for (int i = 0; i < 32; ++i) {
            const unsigned sum = sig[32 + i] + order[i] + carry;
            sig[32 + i] = static_cast<std::uint8_t>(sum);
            carry = sum >> 8;
        }
        REQUIRE(carry == 0);
        write_text(dir / "malleated.csr", request_pem(with_signature(der, sig)));
        require_one_line_error(cli(issue_args("malleated.csr", "bad.pem"), dir),
                               "self-signature does not verify");
    }
    SECTION("an RSA key, which the CA does not certify") {
        require_ok(run_in(dir,
                          "openssl req -new -newkey rsa:2048 -nodes -keyout rsa.key -subj "
                          "/CN=agent-7 -out rsa.csr"),
                   "openssl req rsa");
        require_one_line_error(cli(issue_args("rsa.csr", "bad.pem"), dir),
                               "its key is RSA: the CA certifies only Ed25519 and ECDSA P-256");
    }
    SECTION("a P-384 key") {
        require_ok(run_in(dir,
                          "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-384 -nodes "
                          "-keyout p384.key -subj /CN=agent-7 -out p384.csr"),
                   "openssl req p-384");
        require_one_line_error(cli(issue_args("p384.csr", "bad.pem"), dir),
                               "its key is ECDSA on secp384r1");
    }
    SECTION("a P-256 key signed with SHA-384, which Kakunin's verifier does not check") {
        require_ok(run_in(dir,
                          "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha384 "
                          "-nodes -keyout p256.key -subj /CN=agent-7 -out p256.csr"),
                   "openssl req p-256 sha-384");
        require_one_line_error(cli(issue_args("p256.csr", "bad.pem"), dir),
                               "signed with ECDSA/EMSA1(SHA-384)");
    }
    CHECK_FALSE(fs::exists(dir / "bad.pem"));
    CHECK(cli("cert verify --dir ca/state bad.pem", dir).code != 0);
    // Nothing was issued: the CA log has no certificate.
    CHECK(read_text(dir / "ca/state/audit/ca.jsonl").find("certificate.issued") ==
          std::string::npos);

    // A P-256 request made elsewhere (openssl, SHA-256) is still taken.
    require_ok(run_in(dir,
                      "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 "
                      "-nodes -keyout ok.key -subj /CN=agent-7 -out ok.csr"),
               "openssl req p-256");
    require_ok(cli(issue_args("ok.csr", "ok.pem"), dir), "issue from an openssl P-256 request");
}

TEST_CASE("agent keygen: an existing key is never replaced", "[agent_keys][cli]") {
    TempDir dir;
    fs::create_directories(dir.path() / "host");
    require_ok(host_cli("agent keygen --agent agent-7 --keys host/keys --csr-out first.csr", dir),
               "agent keygen");
    const std::string key_file = dir / "host/keys/agent%3Aagent-7.key.pem";
    const std::string key_before = read_text(key_file);
    const std::string csr_before = read_text(dir / "first.csr");

    require_one_line_error(
        host_cli("agent keygen --agent agent-7 --keys host/keys --csr-out first.csr", dir),
        "key 'agent:agent-7' already exists");
    require_one_line_error(host_cli("agent keygen --agent agent-7 --keys host/keys --algorithm "
                                    "ecdsa-p256 --csr-out second.csr",
                                    dir),
                           "already exists");
    CHECK(read_text(key_file) == key_before);
    CHECK(read_text(dir / "first.csr") == csr_before);  // not even the request is rewritten
    CHECK_FALSE(fs::exists(dir / "second.csr"));

    // Told to, a new request for the same key (a certificate renewal).
    require_ok(host_cli("agent keygen --agent agent-7 --keys host/keys --reuse-key --csr-out "
                        "renewal.csr",
                        dir),
               "--reuse-key");
    CHECK(read_text(key_file) == key_before);
    CHECK(kakunin::public_key_from_csr(read_text(dir / "renewal.csr")) ==
          kakunin::public_key_from_csr(csr_before));
    require_one_line_error(host_cli("agent keygen --agent agent-7 --keys host/keys --reuse-key "
                                    "--algorithm ecdsa-p256 --csr-out x.csr",
                                    dir),
                           "--algorithm: key 'agent:agent-7' is ed25519, not ecdsa-p256");
    require_one_line_error(
        host_cli("agent keygen --agent agent-9 --keys host/keys --reuse-key --csr-out x.csr", dir),
        "--reuse-key: no key 'agent:agent-9'");

    // A new key beside the old one (a key rotation) under its own label.
    require_ok(host_cli("agent keygen --agent agent-7 --keys host/keys --label agent:agent-7/2 "
                        "--algorithm ecdsa-p256 --csr-out rotated.csr",
                        dir),
               "--label");
    CHECK(kakunin::public_key_from_csr(read_text(dir / "rotated.csr")) !=
          kakunin::public_key_from_csr(csr_before));
    CHECK(read_text(key_file) == key_before);
    CHECK_FALSE(fs::exists(dir / "x.csr"));
}

TEST_CASE("agent keygen: refuses the CA's key store and bad options, naming them",
          "[agent_keys][cli]") {
    TempDir dir;
    set_up_ca(dir);
    const std::string base = "agent keygen --agent agent-7 --csr-out x.csr ";

    require_one_line_error(cli(base + "--keys ca/state/keys", dir),
                           "--keys: 'ca/state/keys' is inside the CA state directory");
    require_one_line_error(cli(base + "--keys ca/state", dir),
                           "--keys: 'ca/state' is a CA state directory");
    require_one_line_error(cli(base + "--keys ca/state/certs/keys", dir),
                           "is inside the CA state directory");
    CHECK_FALSE(fs::exists(dir / "ca/state/certs/keys"));
    // A copy of the CA's key files elsewhere is still a CA's key store, whatever the passphrase.
    fs::create_directories(dir.path() / "copy");
    fs::copy_file(dir / "ca/state/keys/ca.key.pem", dir / "copy/ca.key.pem");
    require_one_line_error(cli(base + "--keys copy", dir), "holds the CA key 'ca'");
    require_one_line_error(host_cli(base + "--keys copy", dir), "holds the CA key 'ca'");
    CHECK(key_files(dir.path() / "copy") == std::vector<std::string>{"ca.key.pem"});
    CHECK(key_files(dir.path() / "ca/state/keys") ==
          std::vector<std::string>{"approver%3AJane%20Doe.key.pem", "ca.key.pem"});

    require_one_line_error(host_cli(base, dir), "--kms software needs --keys DIR");
    require_one_line_error(host_cli(base + "--keys k --kms vault", dir),
                           "--kms: 'vault' is neither software nor pkcs11");
    require_one_line_error(
        host_cli(base + "--keys k --kms pkcs11 --pkcs11-module m.so --token t", dir),
        "--keys belongs to --kms software");
    require_one_line_error(host_cli(base + "--kms pkcs11 --token t", dir),
                           "--kms pkcs11 needs --pkcs11-module");
    require_one_line_error(host_cli(base + "--keys k --token t", dir),
                           "--pkcs11-module and --token belong to --kms pkcs11");
    require_one_line_error(host_cli(base + "--keys k --algorithm rsa", dir), "--algorithm");
    require_one_line_error(host_cli(base + "--keys k --label ca", dir),
                           "--label: 'ca' must be 'agent:agent-7'");
    require_one_line_error(host_cli(base + "--keys k --label 'approver:Jane Doe'", dir), "--label");
    require_one_line_error(host_cli(base + "--keys k --label agent:agent-70", dir), "--label");
    require_one_line_error(host_cli(base + "--keys k --label agent:agent-7/", dir), "--label");
    require_one_line_error(host_cli("agent keygen --agent 'bad id' --keys k --csr-out x.csr", dir),
                           "--agent: agent id 'bad id'");
    require_one_line_error(cli(base + "--keys k", dir, "-u KAKUNIN_KMS_PASSPHRASE"),
                           "KAKUNIN_KMS_PASSPHRASE");
    fs::create_directories(dir.path() / "a-directory");
    require_one_line_error(
        host_cli("agent keygen --agent agent-7 --keys k --csr-out a-directory", dir),
        "a-directory");
    // None of these made a key or a request.
    CHECK_FALSE(fs::exists(dir / "k"));
    CHECK_FALSE(fs::exists(dir / "x.csr"));
}

TEST_CASE("agent keys: renewing the certificate and rotating the key on the trading host",
          "[agent_keys][cli]") {
    TempDir dir;
    set_up_ca(dir);
    const std::string host = (dir.path() / "host").string();
    require_ok(
        host_cli("agent keygen --agent agent-7 --keys host/keys --csr-out host/agent-7.csr", dir),
        "agent keygen");
    require_ok(cli(issue_args("host/agent-7.csr", "host/agent-7.pem"), dir), "cert issue");
    hand_over_to_host(dir);
    auto kms = std::shared_ptr<kakunin::Kms>(
        kakunin::SoftwareKms::open(host + "/keys", k_host_passphrase));
    kakunin::SystemClock clock;
    auto guard_options = [&] {
        kakunin::GuardOptions options;
        options.audit = kakunin::AuditTrailOptions{
            std::make_shared<kakunin::FileAuditSink>(host + "/agent-7.jsonl")};
        return options;
    };
    const auto anchor = kakunin::TrustAnchor::load_file(host + "/ca.pem");
    const auto crl = kakunin::CertificateRevocationList::load_file(host + "/crl.pem");
    kakunin::Order order = kakunin::test::good_order();
    {
        kakunin::Guard guard(
            kakunin::GuardCredentials{kakunin::AgentCertificate::load_file(host + "/agent-7.pem"),
                                      anchor, crl, kms, kms->find_key("agent:agent-7")},
            clock, guard_options());
        CHECK(guard.check(order).allowed());

        // Renewal: a new request for the same key, a new certificate, Guard::rotate().
        require_ok(host_cli("agent keygen --agent agent-7 --keys host/keys --reuse-key "
                            "--csr-out host/renewal.csr",
                            dir),
                   "--reuse-key");
        require_ok(cli(issue_args("host/renewal.csr", "host/renewed.pem"), dir), "renewal");
        const auto renewed = kakunin::AgentCertificate::load_file(host + "/renewed.pem");
        guard.rotate(renewed);
        CHECK(guard.certificate()->serial() == renewed.serial());
        order.client_order_id = "c-2";
        CHECK(guard.check(order).allowed());

        // A certificate for another key is not a renewal: rotate() refuses it.
        require_ok(host_cli("agent keygen --agent agent-7 --keys host/keys --label "
                            "agent:agent-7/2 --csr-out host/rotated.csr",
                            dir),
                   "keygen --label");
        require_ok(cli(issue_args("host/rotated.csr", "host/rotated.pem"), dir), "new key");
        CHECK_THROWS_AS(guard.rotate(kakunin::AgentCertificate::load_file(host + "/rotated.pem")),
                        kakunin::Error);
        CHECK(guard.certificate()->serial() == renewed.serial());
    }
    // Key rotation: a new Guard on the new key continues the same log.
    {
        kakunin::Guard guard(
            kakunin::GuardCredentials{kakunin::AgentCertificate::load_file(host + "/rotated.pem"),
                                      anchor, crl, kms, kms->find_key("agent:agent-7/2")},
            clock, guard_options());
        order.client_order_id = "c-3";
        CHECK(guard.check(order).allowed());
    }
    const std::vector<std::string> events = events_of(host + "/agent-7.jsonl");
    CHECK(std::count(events.begin(), events.end(), "order.allowed") == 3);
    CHECK(std::count(events.begin(), events.end(), "guard.rotated") == 1);
    fs::copy_file(host + "/renewed.pem", host + "/certs/renewed.pem");
    // Without the new key's certificate the records it signed do not verify; with it they do.
    CHECK(host_cli("audit verify --log host/agent-7.jsonl --certs host/certs --ca host/ca.pem", dir)
              .code != 0);
    fs::copy_file(host + "/rotated.pem", host + "/certs/rotated.pem");
    require_ok(
        host_cli("audit verify --log host/agent-7.jsonl --certs host/certs --ca host/ca.pem", dir),
        "audit verify over both keys");
}

TEST_CASE("cert list: every certificate the CA issued, with its status and the newest marked",
          "[agent_keys][cli]") {
    TempDir dir;
    set_up_ca(dir);
    require_ok(
        host_cli("agent keygen --agent agent-7 --keys host/keys --csr-out host/agent-7.csr", dir),
        "agent keygen");
    require_ok(cli(issue_args("host/agent-7.csr", "host/first.pem") + " --json", dir), "issue 1");
    const Run second = cli(issue_args("host/agent-7.csr", "host/second.pem") + " --json", dir);
    require_ok(second, "issue 2");
    const std::string first_serial =
        kakunin::AgentCertificate::load_file((dir.path() / "host/first.pem").string()).serial();
    const std::string second_serial = json::parse(second.out).at("serial");
    require_ok(
        cli("cert revoke --dir ca/state --serial " + first_serial + " --reason 'superseded: test'",
            dir),
        "cert revoke");

    const Run listed = cli("cert list --dir ca/state --json", dir);
    require_ok(listed, "cert list");
    const json certs = json::parse(listed.out).at("certificates");
    REQUIRE(certs.size() == 2);
    CHECK(certs[0].at("serial") == first_serial);
    CHECK(certs[0].at("status") == "revoked");
    CHECK(certs[0].at("newest") == false);
    CHECK_THAT(certs[0].at("revocation_reason").get<std::string>(), Catch::Contains("superseded"));
    CHECK(certs[1].at("serial") == second_serial);
    CHECK(certs[1].at("status") == "valid");
    CHECK(certs[1].at("newest") == true);
    CHECK(certs[1].at("agent_id") == "agent-7");

    const Run table = cli("cert list --dir ca/state --agent agent-7", dir);
    require_ok(table, "cert list table");
    CHECK_THAT(table.out, Catch::Contains(second_serial) && Catch::Contains("(superseded)"));
    CHECK(json::parse(cli("cert list --dir ca/state --agent nobody --json", dir).out)
              .at("certificates")
              .empty());
    require_one_line_error(cli("cert list --dir nowhere", dir), "nowhere");
}
